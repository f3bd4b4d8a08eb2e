"""Run the Alembic migrations from code: the CLI, the embedded mode and the tests."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

SCRIPT_LOCATION = "users_api:migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head", *, sql: bool = False) -> list[str]:
    """Upgrade the database at `url`; with `sql`, print the SQL instead of running it.

    Returns the revisions applied, oldest first, each as `id (message)`.
    """
    applied: list[str] = []

    def note(*, step: MigrationInfo, **_: Any) -> None:
        if step.is_upgrade:
            doc = getattr(step.up_revision, "doc", None)  # a Script's message
            applied.append(f"{step.up_revision_id} ({doc})" if doc else str(step.up_revision_id))

    config = alembic_config(url)
    config.attributes["on_version_apply"] = note
    command.upgrade(config, revision, sql=sql)
    return applied


def _run_on(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def upgrade_on(connection: AsyncConnection, revision: str = "head") -> None:
    await connection.run_sync(_run_on, "upgrade", revision)


async def downgrade_on(connection: AsyncConnection, revision: str) -> None:
    await connection.run_sync(_run_on, "downgrade", revision)


def head() -> str:
    """The latest revision of the migration scripts."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None  # there are migrations
    return revision


async def current_revision(arguments: dict[str, Any]) -> str | None:
    """The database's revision (None: never migrated), read with `asyncpg.connect`
    `arguments`: a statement that is safe through a pooler, unlike Alembic's session."""
    import asyncpg

    connection = await asyncpg.connect(**arguments)
    try:
        revision: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()
    return revision
