"""Logs as an operator reads them: real processes, their standard error, line by line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from tests.processes import clean_environment, run_cli
from tests.resilience.serve import serve

SECRET_KEY = "logging-secret-key-that-is-at-least-32-bytes"
ADMIN_PASSWORD = "admin password that is long enough"
DATABASE_PASSWORD = "database-password-never-logged"
GRACE_SECONDS = 10


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every line is one JSON object with a timestamp, a level, an event and a logger."""
    events = []
    for line in text.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert {"timestamp", "level", "event", "logger"} <= event.keys(), line
        assert event["timestamp"].endswith("Z"), line
        events.append(event)
    return events


async def test_serve_logs_each_step_once_in_json_and_no_secret(
    tmp_path: Path, fresh_database_url: str
) -> None:
    # Local connections are trusted: the password is never checked, only carried.
    url = make_url(fresh_database_url).set(password=DATABASE_PASSWORD)
    with serve(
        tmp_path,
        DATABASE_URL=url.render_as_string(hide_password=False),
        SECRET_KEY=SECRET_KEY,
        FIRST_ADMIN_EMAIL="root@example.com",
        FIRST_ADMIN_USERNAME="root",
        FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LOG_FORMAT="json",
    ) as served:
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
            login = await client.post(
                "/api/v1/auth/token", data={"username": "root", "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
        served.terminate()
        assert served.wait(within=GRACE_SECONDS + 5) == 0, served.output

    raw = "\n".join(served.lines)
    events = _json_lines(raw)
    said = Counter(event["event"] for event in events)
    for step in (
        "migrations applied",
        "starting the HTTP server",
        "Waiting for application startup.",
        "created the first admin root",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
    ):
        assert said[step] == 1, (step, raw)
    # Start-up is told in order, by our code, the app's stdlib loggers and uvicorn's alike.
    order = [event["event"] for event in events]
    assert order.index("migrations applied") < order.index("created the first admin root")
    assert order.index("created the first admin root") < order.index(
        "Application startup complete."
    )
    loggers = {event["event"]: event["logger"] for event in events}
    assert loggers["created the first admin root"] == "users_api.app"
    assert loggers["Application startup complete."] == "uvicorn.error"
    assert all(event["level"] == "info" for event in events), raw
    for secret in (SECRET_KEY, ADMIN_PASSWORD, DATABASE_PASSWORD, token):
        assert secret not in raw


def test_log_level_and_format_are_settings(tmp_path: Path, fresh_database_url: str) -> None:
    env = clean_environment(tmp_path, DATABASE_URL=fresh_database_url)
    quiet = run_cli("migrate", cwd=tmp_path, env={**env, "LOG_LEVEL": "WARNING"})
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # the migrations were applied, at info: not shown

    readable = run_cli("migrate", cwd=tmp_path, env={**env, "LOG_FORMAT": "console"})
    assert readable.returncode == 0, readable.stderr
    (line,) = readable.stderr.splitlines()
    assert "[info" in line
    assert "no migrations to apply" in line
    assert not line.startswith("{")

    as_json = run_cli("migrate", cwd=tmp_path, env=env)  # not a terminal: JSON
    assert [event["event"] for event in _json_lines(as_json.stderr)] == ["no migrations to apply"]


def test_logs_are_readable_lines_on_a_terminal(tmp_path: Path) -> None:
    env = clean_environment(tmp_path, DB_POOL_SIZE="abc")
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "users_api", "migrate"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    text = shown.decode()
    assert done.returncode == 2
    assert "invalid setting DB_POOL_SIZE" in text
    assert "error" in text
    assert not text.lstrip().startswith("{")


def _python(program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`program` run by a fresh interpreter, its standard error captured as a pipe."""
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_no_secret_reaches_a_log_whoever_logs_it(tmp_path: Path) -> None:
    program = (
        "from users_api import logs\n"
        "logs.configure_logging(log_format='json')\n"
        "logs.get_logger('probe').info('signed in', user='ada', password='hunter2-pw',\n"
        "    refresh_token='rt-value', secret_key='sk-value', password_hash='$argon2id$x')\n"
    )
    done = _python(program, tmp_path)
    (event,) = _json_lines(done.stderr)
    assert event["user"] == "ada"
    for key in ("password", "refresh_token", "secret_key", "password_hash"):
        assert event[key] == "[redacted]"


def test_serve_on_port_0_logs_no_url_with_port_0(tmp_path: Path, fresh_database_url: str) -> None:
    """`--port 0` said `url: http://127.0.0.1:0`; the port is known once bound, and the
    line that names it is uvicorn's, which is then the one URL in the log."""
    env = clean_environment(tmp_path, DATABASE_URL=fresh_database_url, LOG_FORMAT="json")
    executable = Path(sys.executable).with_name("users-api")
    with subprocess.Popen(
        [str(executable), "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        lines = []
        try:
            for line in process.stderr:
                lines.append(line)
                if "Uvicorn running on" in line:
                    break
        finally:
            process.terminate()
            process.wait(timeout=GRACE_SECONDS + 5)
    events = _json_lines("".join(lines))
    said = {event["event"]: event for event in events}
    assert "starting the HTTP server on a free port" in said, lines
    running = next(event["event"] for event in events if "Uvicorn running on" in event["event"])
    assert ":0 " not in running
    assert not any(":0/" in line or line.rstrip().endswith(':0"') for line in lines), lines


def test_a_request_line_goes_straight_to_standard_errors_descriptor(tmp_path: Path) -> None:
    """A served worker logs a line per request: on standard error as the interpreter opens
    it (writing through to an unbuffered file, not line-buffered) the line is one `write`
    to the descriptor, not a pass through the stream's own `write` (its slower way, which
    every request took until this test), and lines still come out in the order logged."""
    program = (
        "import io, sys\n"
        "from users_api import logs, request_log\n"
        "class Counting(io.TextIOWrapper):\n"
        "    calls = 0\n"
        "    def write(self, text):\n"
        "        Counting.calls += 1\n"
        "        return super().write(text)\n"
        "stream = Counting(io.FileIO(2, 'w', closefd=False), write_through=True)\n"
        "def shape(s):\n"
        "    return (s.write_through, s.line_buffering, isinstance(s.buffer, io.RawIOBase))\n"
        "assert shape(stream) == shape(sys.stderr), (shape(stream), shape(sys.stderr))\n"
        "logs.configure_logging('info', 'json', stream=stream)\n"
        "line = request_log.request_logger()\n"
        "scope = {'method': 'GET', 'path': '/healthz', 'route': None}\n"
        "line(scope, 200, 0.002, 'first')\n"
        "logs.get_logger('probe').info('between')\n"
        "line(scope, 204, 0.003, 'last')\n"
        "print(Counting.calls)\n"
    )
    done = _python(program, tmp_path)
    events = _json_lines(done.stderr)
    assert [(event["event"], event.get("request_id")) for event in events] == [
        ("request", "first"),
        ("between", None),
        ("request", "last"),
    ]
    assert events[2]["status"] == 204
    assert done.stdout.split() == ["1"]  # only the structlog line used the stream
