"""Alembic environment on the async engine.

Three ways in: `users-api migrate` (a URL in the config's attributes, run with
`asyncio.run`), `--sql` (offline, prints SQL), and tests or callers that already hold a
connection and pass it in `config.attributes["connection"]`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, func, pool, select
from sqlalchemy.ext.asyncio import create_async_engine

from users_api.db.locks import MIGRATIONS_LOCK_CLASS
from users_api.db.metadata import metadata

CONNECT_TIMEOUT_SECONDS = 10

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from users_api.config import Settings

        url = Settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return str(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        # `users-api migrate` notes each revision applied, to log what it did.
        on_version_apply=config.attributes.get("on_version_apply", ()),
    )
    with context.begin_transaction():
        # Replicas starting together all run `serve`, which migrates first: the first to
        # get this lock migrates, the others then find the schema at head.
        connection.execute(select(func.pg_advisory_xact_lock(MIGRATIONS_LOCK_CLASS, 0)))
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(
        _url(), poolclass=pool.NullPool, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS}
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
