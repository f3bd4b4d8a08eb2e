"""CPU of a sign-up besides its argon2 hash, in-process: what POST /users costs the one CPU.

Builds the app (no server, no sockets) on a real PostgreSQL (as `bench.request_cost`),
signs an admin in and sends `POST /api/v1/users` as bare ASGI calls with the bench's
body (`bench/wrk/scenario.lua`, as the admin). In this harness only, the argon2 hash is
replaced by a ready-made hash (the thread hop stays), so what `time.process_time()`
sees (every thread: the app, asyncpg, the zxcvbn and hashing threads) is the rest of a
sign-up. Each round is timed in two parts: the requests, then what is left of the
outbox sender's delivery of their verification mails (.eml files under a throw-away
DATA_DIR) until the backlog is empty; each commit wakes the sender, so most mails are
delivered, and counted, among the requests. The strength estimate of the bench's password and one
real hash are timed alone for comparison. A report, not a test:

    .venv/bin/python -m bench.signup_cost --requests 300 --rounds 5

Under callgrind (`--instr-atstart=no`, as `bench.instructions`) only the measured
requests and deliveries are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Message

from bench.event_loop import database
from bench.instructions import _instrument
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on
from users_api.outbox.sender import backlog
from users_api.security.passwords import Passwords, policy_violation

PASSWORD = "benchmark password that is long"
SECRET_KEY = "benchmark-secret-key-at-least-32-bytes"
SIGN_UP_PASSWORD = "Bench-Password-Long-42!"  # the scenario's


class _ReadyHash:
    """Stands in for pwdlib's `PasswordHash` in this harness: one hash made up front."""

    def __init__(self, hashed: str) -> None:
        self.hashed = hashed

    def hash(self, password: str) -> str:
        return self.hashed


def _post_scope(authorization: str) -> dict[str, Any]:
    path = "/api/v1/users"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"accept", b"*/*"),
            (b"content-type", b"application/json"),
            (b"authorization", authorization.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _post(app: ASGIApp, authorization: str, name: str) -> None:
    body = json.dumps(
        {"email": f"{name}@bench.example", "username": name, "password": SIGN_UP_PASSWORD}
    ).encode()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_post_scope(authorization), receive, send)
    assert sent[0]["status"] == 201, sent


async def _measure(url: str, requests: int, rounds: int, data_dir: Path) -> dict[str, list[float]]:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()
    settings = Settings(database_url=url, secret_key=SECRET_KEY, data_dir=data_dir, _env_file=None)
    app = create_app(settings)
    results: dict[str, list[float]] = {"requests": [], "mail": []}
    async with app.router.lifespan_context(app):
        users = app.state.users
        await users.ensure_admin(email="root@example.com", username="root", password=PASSWORD)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            token = await client.post(
                "/api/v1/auth/token", data={"username": "root", "password": PASSWORD}
            )
        authorization = f"Bearer {token.json()['access_token']}"
        passwords = users.passwords
        passwords._hash = _ReadyHash(passwords._hash.hash(SIGN_UP_PASSWORD))
        for round_ in range(rounds + 1):
            _instrument(bool(round_))
            started = time.process_time()
            for i in range(requests):
                await _post(app, authorization, f"s{round_}_{i}")
            middle = time.process_time()
            await _delivered(app.state.db)
            ended = time.process_time()
            _instrument(False)
            if round_:  # the first round warms caches up
                results["requests"].append((middle - started) / requests * 1e3)
                results["mail"].append((ended - middle) / requests * 1e3)
    return results


async def _delivered(db: Any) -> None:
    """Until the outbox sender has delivered every message (it was woken by each commit)."""
    pending = True
    while pending:
        pending = bool((await backlog(db))[0])
        await asyncio.sleep(0.005 if pending else 0)


def _alone(function: Any, *args: Any, times: int, **keywords: Any) -> float:
    """Median ms of CPU of `function(*args)` on this thread."""
    samples = []
    for _ in range(times):
        started = time.process_time()
        function(*args, **keywords)
        samples.append((time.process_time() - started) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    with database() as url, tempfile.TemporaryDirectory() as data_dir:
        results = asyncio.run(_measure(url, arguments.requests, arguments.rounds, Path(data_dir)))
    name = "s1_1"
    estimate = _alone(
        policy_violation,
        SIGN_UP_PASSWORD,
        times=50,
        email=f"{name}@bench.example",
        username=name,
        min_length=8,
    )
    hashing = _alone(Passwords()._hash.hash, SIGN_UP_PASSWORD, times=7)
    request_ms = statistics.median(results["requests"])
    mail_ms = statistics.median(results["mail"])
    rest = request_ms + mail_ms
    print(f"POST /api/v1/users, {arguments.rounds} rounds of {arguments.requests}, hash stubbed:")
    print(
        f"  request (incl. strength estimate): {request_ms:.2f} ms CPU a sign-up "
        f"(min {min(results['requests']):.2f}, max {max(results['requests']):.2f})"
    )
    print(
        f"  mail still undelivered after them: {mail_ms:.2f} ms CPU a sign-up "
        f"(min {min(results['mail']):.2f}, max {max(results['mail']):.2f})"
    )
    print(f"  password policy alone:            {estimate:.2f} ms")
    print(f"  one argon2 hash alone:            {hashing:.2f} ms")
    print(
        f"  predicted at 1 CPU: 1/(hash + rest) = {1e3 / (hashing + rest):.1f} req/s, "
        f"hash bound {1e3 / hashing:.1f} ({hashing / (hashing + rest):.0%})"
    )


if __name__ == "__main__":
    main()
