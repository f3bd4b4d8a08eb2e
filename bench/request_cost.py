"""CPU per request in-process: what a layer in front of every request costs.

Builds the app (no server, no sockets) on a real PostgreSQL (the embedded one in a
throw-away folder, or a fresh database on the server in TEST_DATABASE_URL), signs an
admin in, and sends authenticated `GET /api/v1/users/{id}` through
`httpx.ASGITransport`, timing rounds with `time.process_time()` (every thread of this
process: the app, httpx's client side and asyncpg). The client side is the same before
and after a change, so the difference between two checkouts is what the change costs.
httpx's half is most of that time and most of its noise, so the same requests are also
sent as bare ASGI calls (a prepared scope, messages collected in a list): the app's own
CPU, with asyncpg's. A report, not a test:

    .venv/bin/python -m bench.request_cost --requests 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Message

from bench.event_loop import database
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on

PASSWORD = "benchmark password that is long"
SECRET_KEY = "benchmark-secret-key-at-least-32-bytes"


async def _measure(url: str, requests: int, rounds: int) -> tuple[list[float], list[float]]:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    await engine.dispose()
    app = create_app(Settings(database_url=url, secret_key=SECRET_KEY, _env_file=None))
    async with app.router.lifespan_context(app):
        admin = await app.state.users.ensure_admin(
            email="root@example.com", username="root", password=PASSWORD
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            token = await client.post(
                "/api/v1/auth/token", data={"username": "root", "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            path = f"/api/v1/users/{admin['id']}"
            through_httpx, direct = [], []
            for round_ in range(rounds + 1):
                started = time.process_time()
                for _ in range(requests):
                    response = await client.get(path, headers=headers)
                    assert response.status_code == 200, response.text
                middle = time.process_time()
                for _ in range(requests):
                    await _call(app, path, headers["Authorization"])
                ended = time.process_time()
                if round_:  # the first round warms caches up
                    through_httpx.append((middle - started) / requests * 1e6)
                    direct.append((ended - middle) / requests * 1e6)
    return through_httpx, direct


def get_scope(path: str, authorization: str) -> dict[str, Any]:
    """An HTTP/1.1 `GET path` with a bearer token, as uvicorn would hand it to the app."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"accept", b"*/*"),
            (b"authorization", authorization.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(app: ASGIApp, path: str, authorization: str) -> None:
    scope = get_scope(path, authorization)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent


def _line(name: str, samples: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(samples):.1f} µs CPU a request "
        f"(min {min(samples):.1f}, max {max(samples):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    with database() as url:
        through_httpx, direct = asyncio.run(_measure(url, arguments.requests, arguments.rounds))
    print(f"GET /api/v1/users/{{id}}, {arguments.rounds} rounds of {arguments.requests}:")
    print(_line("  through httpx.ASGITransport", through_httpx))
    print(_line("  as bare ASGI calls         ", direct))


if __name__ == "__main__":
    main()
