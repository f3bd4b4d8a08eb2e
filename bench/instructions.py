"""Instructions per request, counted by callgrind: the same count on a busy machine.

Builds users-api's app and the raw reference (`bench/reference/raw_app.py`) in this
process, on one real PostgreSQL (the embedded one in a throw-away folder, or a fresh
database on the server in TEST_DATABASE_URL), signs an admin in, and sends authenticated
`GET /api/v1/users/{id}` to one of them as bare ASGI calls (a prepared scope, messages
collected in a list). Only the measured requests are counted: the script switches
callgrind's instrumentation on and off around them with `callgrind_control`.
Timings on this 2-core VM move by 10-30 % from run to run; instruction counts move by
well under 1 %, so a change of a few microseconds shows. A report, not a test:

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python -m bench.instructions users-api --requests 300
    grep ^totals: /tmp/cg.out      # divided by the requests: instructions a request

`raw` instead of `users-api` counts the reference. Without valgrind it just runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Message

from bench.event_loop import database
from bench.request_cost import get_scope
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on
from users_api.logs import configure_logging
from users_api.serving import settle_process

PASSWORD = "benchmark password that is long"
SECRET_KEY = "benchmark-secret-key-at-least-32-bytes"
RAW_APP = Path(__file__).parent / "reference" / "raw_app.py"


def _instrument(on: bool) -> None:
    """Switch callgrind's counting on or off for this process (nothing without it)."""
    if shutil.which("callgrind_control") is None:
        return
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=False,
        capture_output=True,
    )


def _raw_app(url: str) -> Any:
    os.environ["SECRET_KEY"] = SECRET_KEY
    os.environ["DATABASE_URL"] = url
    spec = importlib.util.spec_from_file_location("raw_app", RAW_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.App()


async def _measure(url: str, server: str, requests: int) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()
    raw = _raw_app(url)
    await raw.startup()
    # As a served worker logs (serving.py): JSON lines at info to standard error, which
    # the interpreter opens writing through to an unbuffered file; here into nothing.
    devnull = io.TextIOWrapper(io.FileIO(os.devnull, "w"), write_through=True)
    configure_logging("info", "json", stream=devnull)
    app = create_app(Settings(database_url=url, secret_key=SECRET_KEY, _env_file=None))
    async with app.router.lifespan_context(app):
        admin = await app.state.users.ensure_admin(
            email="root@example.com", username="root", password=PASSWORD
        )
        assert admin is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            token = await client.post(
                "/api/v1/auth/token", data={"username": "root", "password": PASSWORD}
            )
        settle_process()
        target: ASGIApp = app if server == "users-api" else raw
        path, authorization = (
            f"/api/v1/users/{admin['id']}",
            f"Bearer {token.json()['access_token']}",
        )
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        for _ in range(200):  # warm-up: caches, prepared statements, the token's claims
            await target(get_scope(path, authorization), receive, send)
        sent.clear()
        _instrument(on=True)
        for _ in range(requests):
            await target(get_scope(path, authorization), receive, send)
        _instrument(on=False)
        statuses = {message["status"] for message in sent if "status" in message}
        assert statuses == {200}, statuses
    await raw.shutdown()
    print(f"{server}: {requests} authenticated GETs counted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("users-api", "raw"))
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args()
    with database() as url:
        asyncio.run(_measure(url, arguments.server, arguments.requests))


if __name__ == "__main__":
    main()
