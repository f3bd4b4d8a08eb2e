"""Run the Alembic migrations from code: the CLI, the embedded mode and the tests."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

SCRIPT_LOCATION = "users_api:migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade the database at `url`; with `sql`, print the SQL instead of running it."""
    command.upgrade(alembic_config(url), revision, sql=sql)


def _run_on(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def upgrade_on(connection: AsyncConnection, revision: str = "head") -> None:
    await connection.run_sync(_run_on, "upgrade", revision)


async def downgrade_on(connection: AsyncConnection, revision: str) -> None:
    await connection.run_sync(_run_on, "downgrade", revision)
