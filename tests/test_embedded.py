"""The embedded PostgreSQL: first start, reuse, clean stop, recovery after a crash, `serve`.

Every test has its own data folder and real processes; a crash is a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import USERS_API, clean_environment, run_cli
from tests.resilience.helpers import wait_until_ready
from tests.resilience.serve import serve
from users_api.db.embedded import (
    DATABASE_NAME,
    EmbeddedDatabaseError,
    EmbeddedPostgres,
    StopOutcome,
    server_pid,
)

# Runs on a PostgreSQL of its own: the same whatever TEST_DATABASE_URL says.
pytestmark = pytest.mark.own_database

# Generous: two shared cores, and initdb runs on the first start.
STARTUP_TIMEOUT = 90.0

# Starts the embedded server in the folder given as argv[1], says so, then waits to be killed.
_HOLDER = """
import sys, time
from pathlib import Path
from users_api.db.embedded import EmbeddedPostgres
url = EmbeddedPostgres(Path(sys.argv[1])).start()
print(url.render_as_string(hide_password=False), flush=True)
time.sleep(3600)
"""


def _is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for its parent (init here) to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _is_gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def _servers_on(pgdata: Path) -> list[int]:
    """Pids of live postgres processes started on `pgdata`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(pgdata) in cmdline:
            found.append(proc.pid)
    return found


def _assert_stopped(pgdata: Path, pid: int) -> None:
    assert _is_gone(pid), f"postmaster {pid} still runs"
    assert not (pgdata / "postmaster.pid").exists()
    assert _servers_on(pgdata) == []


async def _scalar(url: URL | str, sql: str) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


def _read_line(stream: IO[str], timeout: float = STARTUP_TIMEOUT) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        assert selector.select(timeout), "no output in time"
    return stream.readline()


def _stop_any_server(data: Path) -> None:
    """Whatever a test did, leave no server running on `data` behind: a fast shutdown
    (SIGINT) of a postmaster that still runs. Not a start and a stop, which under load
    failed once to start a server that had only to be stopped."""
    pid = server_pid(data / "pgdata")
    if pid is not None:
        os.kill(pid, signal.SIGINT)
        _wait_until_gone(pid)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    """Another process that starts the server in a fresh folder and holds it, until killed."""
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_environment(tmp_path),
    )
    try:
        assert process.stdout is not None
        url = _read_line(process.stdout).strip()
        assert url, f"the holder failed to start (exit {process.poll()})"
        yield process, data.resolve() / "pgdata", url
    finally:
        process.kill()
        process.wait()
        # Whatever the test did, leave no server behind.
        _stop_any_server(data)


async def test_first_start_initialises_then_stop_stops(tmp_path: Path) -> None:
    embedded = EmbeddedPostgres(tmp_path / "data")
    pgdata = (tmp_path / "data").resolve() / "pgdata"
    url = embedded.start()
    try:
        pid = server_pid(pgdata)
        assert pid is not None
        assert (pgdata / "PG_VERSION").is_file()
        assert embedded.pgdata == pgdata
        assert url.database == DATABASE_NAME
        assert await _scalar(url, "SELECT current_database()") == DATABASE_NAME
        assert await _scalar(url, "SELECT 6 * 7") == 42
    finally:
        embedded.stop()
    _assert_stopped(pgdata, pid)


async def test_second_start_reuses_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedPostgres(data) as url:
        await _scalar(url, "CREATE TABLE kept AS SELECT 'hello' AS note")
        identity = await _scalar(url, "SELECT system_identifier FROM pg_control_system()")
        first_pid = server_pid(data.resolve() / "pgdata")
    assert first_pid is not None
    _assert_stopped(data.resolve() / "pgdata", first_pid)

    with EmbeddedPostgres(data) as url:
        assert await _scalar(url, "SELECT note FROM kept") == "hello"
        # The same cluster, not a new initdb.
        assert await _scalar(url, "SELECT system_identifier FROM pg_control_system()") == identity


def test_a_database_that_cannot_be_created_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libpq's PGOPTIONS reaches the client that creates the database: read-only, it fails.
    monkeypatch.setenv("PGOPTIONS", "-c default_transaction_read_only=on")
    embedded = EmbeddedPostgres(tmp_path / "data")
    with pytest.raises(EmbeddedDatabaseError, match="read-only transaction"):
        embedded.start()
    monkeypatch.delenv("PGOPTIONS")
    try:
        assert server_pid(embedded.pgdata) is None  # a failed start leaves no server behind
    finally:
        _stop_any_server(tmp_path / "data")


async def test_start_after_the_owner_was_killed_reuses_and_then_stops_the_server(
    holder: tuple[subprocess.Popen[str], Path, str],
) -> None:
    process, pgdata, _ = holder
    pid = server_pid(pgdata)
    assert pid is not None
    process.kill()
    process.wait()
    # The server outlives its owner, whose pid is still listed as holding a handle.
    assert not _is_gone(pid)
    assert process.pid in json.loads((pgdata / ".handle_pids.json").read_text())

    embedded = EmbeddedPostgres(pgdata.parent)
    url = embedded.start()
    try:
        assert server_pid(pgdata) == pid  # reused, not restarted
        assert await _scalar(url, "SELECT 1") == 1
    finally:
        embedded.stop()
    _assert_stopped(pgdata, pid)


async def test_start_after_the_server_was_killed_recovers(
    holder: tuple[subprocess.Popen[str], Path, str],
) -> None:
    process, pgdata, holder_url = holder
    await _scalar(holder_url, "CREATE TABLE kept AS SELECT 'hello' AS note")
    pid = server_pid(pgdata)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    process.kill()
    process.wait()
    _wait_until_gone(pid)
    assert (pgdata / "postmaster.pid").exists()  # stale

    embedded = EmbeddedPostgres(pgdata.parent)
    url = embedded.start()
    try:
        new_pid = server_pid(pgdata)
        assert new_pid is not None
        assert new_pid != pid
        # Committed before the crash, so crash recovery keeps it.
        assert await _scalar(url, "SELECT note FROM kept") == "hello"
    finally:
        embedded.stop()
    _assert_stopped(pgdata, new_pid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve_until_signal(cwd: Path, env: dict[str, str], stop: signal.Signals) -> tuple[str, int]:
    """Run `users-api serve` in `cwd`, register a user, stop it with `stop`; say what it said
    and what status the registration got."""
    port = _free_port()
    log = cwd / f"serve-{stop.name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(USERS_API), "serve", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        pid = server_pid(cwd.resolve() / ".data" / "pgdata")
        assert pid is not None
        created = httpx.post(
            f"{base}/api/v1/users",
            json={"email": "kept@example.com", "username": "kept", "password": "plum-otter-42-k!"},
            timeout=30,
        )
        process.send_signal(stop)
        assert process.wait(timeout=STARTUP_TIMEOUT) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output_text = log.read_text()
    assert "Traceback" not in output_text, output_text
    _assert_stopped(cwd.resolve() / ".data" / "pgdata", pid)
    return output_text, created.status_code


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_command_stopped_by_a_signal_stops_the_database_it_started(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """`migrate` interrupted once its embedded PostgreSQL is up: the database stops with
    it, and the exit status says the work was cut short (before, SIGTERM killed the
    command outright and left PostgreSQL running)."""
    env = clean_environment(tmp_path, LOG_FORMAT="json")
    pgdata = tmp_path.resolve() / ".data" / "pgdata"
    process = subprocess.Popen(
        [str(USERS_API), "migrate"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (pid := server_pid(pgdata)) is None:
            assert process.poll() is None, "migrate ended before its database was up"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(stop)
        status = process.wait(timeout=STARTUP_TIMEOUT)
        stderr = process.stderr.read() if process.stderr else ""
        assert status == 128 + stop, stderr
        assert "Traceback" not in stderr, stderr
        assert _is_gone(pid), stderr
        _assert_stopped(pgdata, pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _stop_any_server(tmp_path / ".data")


def test_serve_runs_on_the_embedded_database_and_stops_it(tmp_path: Path) -> None:
    env = clean_environment(tmp_path, LOG_FORMAT="json")
    cwd = tmp_path / "work"
    cwd.mkdir()
    pgdata = cwd.resolve() / ".data" / "pgdata"
    try:
        said, status = _serve_until_signal(cwd, env, signal.SIGTERM)
        assert f'"data_dir":"{pgdata}"' in said
        assert status == 201

        # Same folder again: the same data, so the same user is now taken.
        said, status = _serve_until_signal(cwd, env, signal.SIGINT)
        assert f'"data_dir":"{pgdata}"' in said
        assert status == 409
    finally:
        _stop_any_server(cwd / ".data")


def test_stop_says_what_it_did(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path, str]
) -> None:
    """Beside another user of the server, stop leaves it running and says so; after a
    crash, it says the server had stopped already."""
    process, pgdata, _ = holder
    pid = server_pid(pgdata)
    beside = EmbeddedPostgres(pgdata.parent)
    beside.start()
    assert beside.reused
    assert beside.stop() is StopOutcome.LEFT_RUNNING
    assert beside.users == [process.pid]
    assert server_pid(pgdata) == pid  # not stopped under the holder's feet

    alone = EmbeddedPostgres(tmp_path / "alone")
    alone.start()
    assert not alone.reused
    crashed = server_pid(alone.pgdata)
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)
    _wait_until_gone(crashed)
    assert alone.stop() is StopOutcome.ALREADY_DOWN
    assert alone.stop() is StopOutcome.NOT_STARTED


def _events(text: str) -> list[str]:
    """The messages of a command's JSON log lines."""
    return [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]


def _create_admin(cwd: Path, name: str) -> list[str]:
    result = run_cli(
        *("create-admin", "--email", f"{name}@example.com", "--username", name),
        "--password-stdin",
        cwd=cwd,
        env=clean_environment(cwd, LOG_FORMAT="json"),
        stdin="a password that is long enough\n",
    )
    assert result.returncode == 0, result.stderr
    return _events(result.stderr)


async def test_commands_beside_a_server_and_an_outage_leave_nothing_running(
    tmp_path: Path,
) -> None:
    """`create-admin` beside `serve` neither stops the server's database nor says it did;
    after an outage in which such a command started the database anew, stopping `serve`
    stops that one too, instead of leaving it running while saying it was stopped."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    pgdata = cwd.resolve() / ".data" / "pgdata"
    try:
        with serve(cwd, SECRET_KEY="a-secret-key-that-is-at-least-32-bytes-long") as served:
            first = server_pid(pgdata)
            assert first is not None

            said = _create_admin(cwd, "ada")
            assert "embedded PostgreSQL already running" in said
            assert "embedded PostgreSQL left running for the other processes using it" in said
            assert "embedded PostgreSQL stopped" not in said
            assert server_pid(pgdata) == first

            # The outage: the server dies; a command run meanwhile starts it anew.
            os.kill(first, signal.SIGKILL)
            _wait_until_gone(first)
            said = _create_admin(cwd, "grace")
            assert "embedded PostgreSQL started" in said
            assert "embedded PostgreSQL stopped" not in said
            second = server_pid(pgdata)
            assert second not in (None, first)
            async with httpx.AsyncClient(base_url=served.base_url) as client:
                await wait_until_ready(client)  # serve recovered on the new server

            served.terminate()
            assert served.wait(within=STARTUP_TIMEOUT) == 0, served.output
        assert "embedded PostgreSQL stopped" in served.output
        _assert_stopped(pgdata, second)
    finally:
        _stop_any_server(cwd / ".data")


def test_a_standalone_backends_pid_file_names_no_server(tmp_path: Path) -> None:
    """initdb's bootstrap backend writes its pid negated into `postmaster.pid`; one that
    died there (once in CI) left such a file, which is no running server."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"-{os.getpid()}\n{pgdata}\n")
    assert server_pid(pgdata) is None
