"""SCIM lists and filters on 100,000 users: `python bench/scim_list.py SERVER_URL`.

SERVER_URL is a PostgreSQL server (`postgresql+asyncpg://postgres@127.0.0.1:5432/x`); a
fresh database is made on it, filled with 100,000 users in one statement, served by the
app in-process, and dropped. Prints the median time of each request the clients send.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import databases
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on

USERS = 100_000
RUNS = 7
REQUESTS = {
    "Okta's probe (count=2)": "/Users?count=2&startIndex=1",
    "first page of 100": "/Users?startIndex=1&count=100",
    "page at startIndex 99,901": "/Users?startIndex=99901&count=100",
    "userName eq": '/Users?filter=userName eq "user50000"',
    'emails[type eq "work"].value eq': '/Users?filter=emails[type eq "work"].value eq '
    '"user77777@example.com"',
    "externalId eq": '/Users?filter=externalId eq "ext-12345"',
    "title co (kept jsonb, a scan)": '/Users?filter=title co "99"&count=10',
    "active eq false, by userName": "/Users?filter=active eq false&sortBy=userName&count=100",
}
FILL = f"""
INSERT INTO users (id, email, username, full_name, password_hash, is_active, is_admin,
                   version, external_id, scim)
SELECT gen_random_uuid(), 'user' || n || '@example.com', 'user' || n, 'User ' || n, NULL,
       n % 10 <> 0, false, 1, 'ext-' || n,
       jsonb_build_object('title', 'Title ' || n,
           '$emails', jsonb_build_array('user' || n || '@example.com'), 'emails',
           jsonb_build_array(jsonb_build_object(
               'value', 'user' || n || '@example.com', 'type', 'work', 'primary', true)))
FROM generate_series(1, {USERS}) AS n
"""


async def main(server: str) -> None:
    name = databases.fresh_name()
    url = await databases.create_database(server, name)
    try:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await upgrade_on(connection)
            await connection.execute(text(FILL))
            await connection.execute(text("ANALYZE users"))
        await engine.dispose()
        settings = Settings(
            database_url=url,
            secret_key="bench-secret-key-that-is-at-least-32-bytes",
            data_dir=Path(tempfile.mkdtemp()),
            _env_file=None,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            _, token = await app.state.scim_tokens.create("bench")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench/scim/v2",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                print(f"{USERS:,} users; median of {RUNS} runs")
                for label, path in REQUESTS.items():
                    times = []
                    for _ in range(RUNS):
                        started = time.perf_counter()
                        response = await client.get(path)
                        times.append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
                    total = response.json()["totalResults"]
                    median = statistics.median(times) * 1000
                    print(f"{median:8.1f} ms  {label}  (totalResults {total:,})")
    finally:
        await databases.drop_database(server, name)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
