"""Does a failed login take the same time for an unknown user as for a known one?

Runs the real app in-process (ASGI, no network noise) on a real PostgreSQL: the embedded
one in a throw-away folder, or the server in TEST_DATABASE_URL. It alternates failed
logins for an unknown name, a known user with a wrong password and an inactive user, and
reports each group's median and the differences. The throttle is raised out of the way.

    .venv/bin/python -m bench.login_timing --tries 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text

from tests import databases
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on


async def _measure(client: httpx.AsyncClient, tries: int) -> dict[str, list[float]]:
    cases: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "unknown user": lambda: client.post(
            "/api/v1/auth/token", data={"username": "nobody-here", "password": "whatever it is"}
        ),
        "wrong password": lambda: client.post(
            "/api/v1/auth/token", data={"username": "known", "password": "not the password"}
        ),
        "inactive user": lambda: client.post(
            "/api/v1/auth/token", data={"username": "asleep", "password": "the right password"}
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(tries):
        for name, attempt in cases.items():
            started = time.perf_counter()
            response = await attempt()
            timings[name].append(time.perf_counter() - started)
            assert response.status_code == 401, response.text
    return timings


async def _run(url: str, tries: int) -> None:
    settings = Settings(
        database_url=url,
        secret_key="benchmark-secret-key-at-least-32-bytes",
        login_failures_per_account=10**9,
        login_failures_per_address=10**9,
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.engine.begin() as connection:
            await upgrade_on(connection)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for username, active in (("known", True), ("asleep", False)):
                created = await client.post(
                    "/api/v1/users",
                    json={
                        "email": f"{username}@example.com",
                        "username": username,
                        "password": "the right password",
                    },
                )
                assert created.status_code == 201, created.text
                if not active:
                    async with app.state.engine.begin() as connection:
                        await connection.execute(
                            text("UPDATE users SET is_active = false WHERE username = :u"),
                            {"u": username},
                        )
            await _measure(client, 5)  # warm-up: the dummy hash, the statement caches
            timings = await _measure(client, tries)
    _report(timings, tries)


def _report(timings: dict[str, list[float]], tries: int) -> None:
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["wrong password"]
    print(f"failed logins, {tries} tries each, interleaved")
    print(f"{'case':<16}{'median ms':>12}{'p95 ms':>10}{'vs wrong password':>20}")
    for name, values in timings.items():
        p95 = statistics.quantiles(values, n=20)[-1]
        delta = (medians[name] - base) / base * 100
        print(f"{name:<16}{medians[name] * 1000:>12.2f}{p95 * 1000:>10.2f}{delta:>+19.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=100)
    args = parser.parse_args()
    server = databases.server_url()
    if server is None:
        with databases.embedded_server() as (_, url):
            asyncio.run(_run(url, args.tries))
        return
    name = databases.fresh_name()
    url = asyncio.run(databases.create_database(server, name))
    try:
        asyncio.run(_run(url, args.tries))
    finally:
        asyncio.run(databases.drop_database(server, name))


if __name__ == "__main__":
    main()
