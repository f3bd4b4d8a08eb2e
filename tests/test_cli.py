"""The `users-api` command as an operator runs it: a real process, its status and stderr."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import clean_environment, run_cli
from users_api.db.migrations import alembic_config


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr and no traceback; that line."""
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


async def test_migrate_upgrades_the_given_database(tmp_path: Path, fresh_database_url: str) -> None:
    env = clean_environment(tmp_path, DATABASE_URL=fresh_database_url)
    for _ in range(2):  # the second run has nothing left to do, and says so with status 0
        result = run_cli("migrate", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_async_engine(fresh_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            assert (await connection.scalar(text("SELECT to_regclass('users')::text"))) == "users"
            assert (
                await connection.scalar(text("SELECT version_num FROM alembic_version"))
            ) == head
    finally:
        await engine.dispose()
    assert not (tmp_path / ".data").exists()  # no embedded database was started


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "not a url"),
        ("DB_POOL_SIZE", "abc"),
        ("SECRET_KEY", "short"),
    ],
)
def test_a_bad_setting_fails_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = clean_environment(tmp_path, **{variable: value})
    line = _one_error_line(run_cli("migrate", cwd=tmp_path, env=env))
    assert variable in line
    assert not (tmp_path / ".data").exists()


def test_an_unreachable_database_fails_with_one_clear_line(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://postgres:hunter2-secret@127.0.0.1:1/x"
    line = _one_error_line(
        run_cli("migrate", cwd=tmp_path, env=clean_environment(tmp_path, DATABASE_URL=url))
    )
    assert "127.0.0.1:1" in line
    assert "hunter2-secret" not in line


def test_an_unknown_revision_fails_with_one_line(tmp_path: Path) -> None:
    line = _one_error_line(
        run_cli("migrate", "--sql", "nonexistent", cwd=tmp_path, env=clean_environment(tmp_path))
    )
    assert "nonexistent" in line


def test_python_dash_m_shows_help(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path, env=clean_environment(tmp_path), module=True)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate"):
        assert command in result.stdout


def test_dotenv_in_the_working_folder_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=abc\nSECRET_KEY=short\n")
    env = clean_environment(tmp_path, DB_POOL_SIZE="5")
    line = _one_error_line(run_cli("migrate", "--sql", cwd=tmp_path, env=env))
    assert "SECRET_KEY" in line  # read from .env
    assert "DB_POOL_SIZE" not in line  # the environment's valid value won
