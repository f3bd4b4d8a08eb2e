"""Does a login storm stall the event loop? p99 of a cheap read, with and without one.

Starts `users-api serve` as a real process on a real PostgreSQL (the embedded one in a
throw-away folder, or a fresh database on the server in TEST_DATABASE_URL), then times
`GET /api/v1/users/{id}` (authenticated: one primary-key read per request), first alone,
then while 16 clients log in over and over (argon2id, ~19 MiB and tens of ms of CPU
each). Hashing runs in worker threads behind a limiter, so the read's p99 should grow
by CPU contention, not by the length of a queue of hashes. A report, not a test.

    .venv/bin/python -m bench.event_loop --requests 500 --logins 16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests import databases
from tests.resilience.serve import serve

PASSWORD = "benchmark password that is long"
SECRET_KEY = "benchmark-secret-key-at-least-32-bytes"


@contextmanager
def database() -> Iterator[str]:
    server = databases.server_url()
    if server is None:
        with databases.embedded_server() as (_, url):
            yield url
        return
    name = databases.fresh_name()
    url = asyncio.run(databases.create_database(server, name))
    try:
        yield url
    finally:
        asyncio.run(databases.drop_database(server, name))


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _reads(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int
) -> list[float]:
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return timings


async def _keep_logging_in(client: httpx.AsyncClient, stop: asyncio.Event, done: list[int]) -> None:
    while not stop.is_set():
        response = await client.post(
            "/api/v1/auth/token", data={"username": "reader", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        done.append(1)


def _report(name: str, timings: list[float]) -> None:
    ms = [t * 1000 for t in timings]
    print(
        f"{name:<22} n={len(ms):<5} p50={statistics.median(ms):7.2f} ms  "
        f"p99={_percentile(ms, 0.99):7.2f} ms  max={max(ms):7.2f} ms"
    )


async def _measure(base_url: str, requests: int, logins: int) -> None:
    limits = httpx.Limits(max_connections=logins + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        token = await client.post(
            "/api/v1/auth/token", data={"username": "root", "password": PASSWORD}
        )
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body = {"email": "reader@example.com", "username": "reader", "password": PASSWORD}
        created = await client.post("/api/v1/users", json=body, headers=admin)
        assert created.status_code == 201, created.text
        login = await client.post(
            "/api/v1/auth/token", data={"username": "reader", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        path = f"/api/v1/users/{created.json()['id']}"

        await _reads(client, path, headers, 50)  # warm up the pool and the caches
        alone = await _reads(client, path, headers, requests)

        stop, done = asyncio.Event(), list[int]()
        storm = [asyncio.create_task(_keep_logging_in(client, stop, done)) for _ in range(logins)]
        await asyncio.sleep(0.5)  # let the storm build up
        started = time.perf_counter()
        during = await _reads(client, path, headers, requests)
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*storm)

    _report("GET alone", alone)
    _report(f"GET + {logins} logins", during)
    print(f"logins completed during the second run: {len(done)} ({len(done) / elapsed:.1f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--logins", type=int, default=16)
    args = parser.parse_args()
    with database() as url, tempfile.TemporaryDirectory() as workdir:
        env = {
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET_KEY,
            "FIRST_ADMIN_EMAIL": "root@example.com",
            "FIRST_ADMIN_USERNAME": "root",
            "FIRST_ADMIN_PASSWORD": PASSWORD,
        }
        with serve(Path(workdir), **env) as served:
            asyncio.run(_measure(served.base_url, args.requests, args.logins))
            served.terminate()
            served.wait(within=15)


if __name__ == "__main__":
    main()
