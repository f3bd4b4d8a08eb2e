"""`users-api serve` as a real process on a free port, with its output collected."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STARTED_WITHIN_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    lines: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The log lines (JSON, one object a line) decoded; other lines are left out."""
        return [event for line in self.lines if (event := parse_log_line(line)) is not None]

    @property
    def output(self) -> str:
        """What it said: each log line's message, and any other line as it came."""
        said = []
        for line in self.lines:
            event = parse_log_line(line)
            said.append(line if event is None else str(event.get("event")))
        return "\n".join(said)

    def embedded_socket_dir(self) -> str:
        for event in self.events:
            if event.get("event") in {
                "embedded PostgreSQL started",
                "embedded PostgreSQL already running",
            }:
                return str(event["socket_dir"])
        raise AssertionError(f"no embedded PostgreSQL started:\n{self.output}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, within: float) -> int:
        return self.process.wait(timeout=within)


def parse_log_line(line: str) -> dict[str, Any] | None:
    """A JSON log line decoded (None for any other line)."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


@contextmanager
def serve(workdir: Path, *options: str, **env: str) -> Iterator[Served]:
    """Start `users-api serve` in `workdir` (so no developer's .env is read), with
    `options` (`--workers 2`, say); it logs JSON lines unless `env` says otherwise."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # A small pool, as the in-process apps' (tests/conftest.py): many servers share one
    # PostgreSQL when the tests run on a server.
    environment |= {"LOG_FORMAT": "json", "DB_POOL_SIZE": "6", **env}
    executable = Path(sys.executable).with_name("users-api")
    process = subprocess.Popen(
        [str(executable), "serve", "--port", str(port), *options],
        cwd=workdir,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(process, f"http://127.0.0.1:{port}")

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served.lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        _wait_until_ready(served)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=5)


def _wait_until_ready(served: Served) -> None:
    deadline = time.monotonic() + STARTED_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{served.output}")
        try:
            if httpx.get(f"{served.base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve not ready within {STARTED_WITHIN_SECONDS} s:\n{served.output}")
