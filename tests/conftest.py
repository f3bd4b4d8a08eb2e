"""A real PostgreSQL for every test run; each test starts from an empty users table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests import databases
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.migrations import upgrade_on

BASE_URL = "http://testserver"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database for this run, at the latest migration."""
    import asyncio

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


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:
        await upgrade_on(connection)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # `_env_file=None`: a developer's own .env must not leak into the tests.
    return Settings(database_url=database_url, _env_file=None)


@pytest.fixture(scope="session")
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


@pytest.fixture(autouse=True)
async def _empty_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE users CASCADE"))
