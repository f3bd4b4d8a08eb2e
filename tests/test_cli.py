"""The `users-api` command as an operator runs it: a real process, its status and stderr."""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import USERS_API, clean_environment, run_cli
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
    assert (json.loads(line)["event"] if line.startswith("{") else line).startswith("DATABASE_URL")


@pytest.mark.parametrize("variable", ["DATABASE_URL", "MIGRATIONS_DATABASE_URL"])
@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"database": "no_such_database_here"}, 'database "no_such_database_here" does not exist'),
        ({"username": "no_such_role_here"}, 'role "no_such_role_here" does not exist'),
    ],
)
def test_a_database_that_refuses_the_connection_is_a_bad_setting_named(
    tmp_path: Path,
    direct_database_url: str,
    variable: str,
    change: dict[str, Any],
    said: str,
) -> None:
    """No such database, no such role: the server refuses before any migration runs, and
    the line names the variable to fix (it said "migrations failed: DBAPIError ...")."""
    url = make_url(direct_database_url).set(**change).render_as_string(hide_password=False)
    line = _one_error_line(
        run_cli("migrate", cwd=tmp_path, env=clean_environment(tmp_path, **{variable: url}))
    )
    said_first = json.loads(line)["event"] if line.startswith("{") else line
    assert said_first.startswith(f"{variable}: "), line
    assert said in said_first
    assert "migrations failed" not in line


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


_COMMANDS = {
    "serve": ("serve", "--port", "0"),
    "migrate": ("migrate",),
    "create-admin": (
        "create-admin",
        *("--email", "a@example.com", "--username", "ada", "--password-stdin"),
    ),
}


@pytest.mark.parametrize("command", sorted(_COMMANDS))
@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_data_dir_that_is_no_folder_fails_with_one_line_naming_it(
    tmp_path: Path, command: str, where: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = clean_environment(tmp_path, DATA_DIR=where)
    result = run_cli(
        *_COMMANDS[command],
        cwd=tmp_path,
        env=env,
        stdin="a long password for ada\n",
    )
    line = _one_error_line(result)
    assert "DATA_DIR" in line
    assert where in line
    assert not (tmp_path / ".data").exists()


def test_serve_needs_no_data_dir_with_a_database_a_secret_key_and_smtp(tmp_path: Path) -> None:
    """Nothing is kept in DATA_DIR then: it is not checked (the port is, and is taken)."""
    (tmp_path / "a-file").write_text("not a folder")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = clean_environment(
            tmp_path,
            DATA_DIR="a-file",
            DATABASE_URL="postgresql://postgres@127.0.0.1:1/x",
            SECRET_KEY="a-secret-key-that-is-at-least-32-bytes-long",
            SMTP_URL="smtp://127.0.0.1:1",
        )
        line = _one_error_line(
            run_cli("serve", "--port", str(taken.getsockname()[1]), cwd=tmp_path, env=env)
        )
    assert "DATA_DIR" not in line
    assert "--port" in line


def test_serve_without_smtp_keeps_its_mail_in_data_dir_so_checks_it(tmp_path: Path) -> None:
    """Without SMTP_URL each mail is a file under DATA_DIR: a server that could not write
    one would answer every sign-up and lose its mail."""
    (tmp_path / "a-file").write_text("not a folder")
    env = clean_environment(
        tmp_path,
        DATA_DIR="a-file",
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/x",
        SECRET_KEY="a-secret-key-that-is-at-least-32-bytes-long",
    )
    line = _one_error_line(run_cli("serve", "--port", "0", cwd=tmp_path, env=env))
    assert "DATA_DIR" in line
    assert "a-file" in line


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (
            {"FIRST_ADMIN_EMAIL": "root@example.com"},
            ["FIRST_ADMIN_USERNAME", "FIRST_ADMIN_PASSWORD"],
        ),
        (
            {"FIRST_ADMIN_EMAIL": "root@example.com", "FIRST_ADMIN_PASSWORD": "pw-of-root-42!"},
            ["FIRST_ADMIN_USERNAME"],
        ),
        ({"FIRST_ADMIN_PASSWORD": "pw-of-root-42!"}, ["FIRST_ADMIN_EMAIL", "FIRST_ADMIN_USERNAME"]),
    ],
)
def test_first_admin_settings_are_all_three_or_none(
    tmp_path: Path, given: dict[str, str], missing: list[str]
) -> None:
    env = clean_environment(tmp_path, **given)
    line = _one_error_line(run_cli("serve", "--port", "0", cwd=tmp_path, env=env))
    for name in missing:
        assert name in line
    assert "pw-of-root-42!" not in line
    assert not (tmp_path / ".data").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FIRST_ADMIN_PASSWORD", "123456qwerty"),  # among the most common passwords
        ("FIRST_ADMIN_PASSWORD", "short-pw"),
        ("FIRST_ADMIN_PASSWORD", "root@example.com"),  # the email
        ("FIRST_ADMIN_EMAIL", "root@localhost"),
        ("FIRST_ADMIN_USERNAME", "r"),
    ],
)
def test_a_first_admin_the_service_would_refuse_stops_serve_before_anything_starts(
    tmp_path: Path, variable: str, value: str
) -> None:
    admin = {
        "FIRST_ADMIN_EMAIL": "root@example.com",
        "FIRST_ADMIN_USERNAME": "root",
        "FIRST_ADMIN_PASSWORD": "a perfectly fine password",
    }
    env = clean_environment(tmp_path, **{**admin, variable: value})
    line = _one_error_line(run_cli("serve", "--port", "0", cwd=tmp_path, env=env))
    assert variable in line
    assert "serving" not in line
    if variable == "FIRST_ADMIN_PASSWORD":
        assert value not in line
    assert not (tmp_path / ".data").exists()  # no database was started


def test_a_port_in_use_fails_with_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(port), cwd=tmp_path, env=clean_environment(tmp_path)
        )
    line = _one_error_line(result)
    assert f"127.0.0.1:{port}" in line
    assert "--port" in line
    assert "address already in use" in line
    assert not (tmp_path / ".data" / "pgdata").exists()  # the embedded database never started


def test_unknown_keys_in_dotenv_are_refused_and_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "ACESS_TOKEN_TTL_SECONDS=60\nALOW_REGISTRATION=\nDB_ECHO=false\n"
    )
    line = _one_error_line(
        run_cli("migrate", "--sql", cwd=tmp_path, env=clean_environment(tmp_path))
    )
    assert "ACESS_TOKEN_TTL_SECONDS" in line
    assert "ACCESS_TOKEN_TTL_SECONDS?" in line  # did you mean
    assert "ALOW_REGISTRATION" in line  # even with no value
    assert "DB_ECHO" not in line


def test_a_dotenv_line_that_is_no_key_value_pair_is_refused_and_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_ECHO=false\nALLOW_REGISTRATION: false\n")
    line = _one_error_line(
        run_cli("migrate", "--sql", cwd=tmp_path, env=clean_environment(tmp_path))
    )
    assert "line 2 of .env is not KEY=value: 'ALLOW_REGISTRATION: false'" in line


@pytest.mark.parametrize("content", [b"x", b"", None])
def test_a_broken_stored_secret_key_stops_serve_with_one_line(
    tmp_path: Path, content: bytes | None
) -> None:
    """Before, the workers each died with a traceback once the database was up (and with
    `--workers` were started again for ever)."""
    (tmp_path / "data").mkdir()
    key = tmp_path / "data" / "secret_key"
    if content is None:
        key.mkdir()  # not even a file
    else:
        key.write_bytes(content)
    env = clean_environment(
        tmp_path,
        DATA_DIR="data",
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/x",
        SMTP_URL="smtp://127.0.0.1:1",
    )
    line = _one_error_line(run_cli("serve", "--port", "0", cwd=tmp_path, env=env))
    assert "secret key" in line
    assert "data/secret_key" in line
    assert "SECRET_KEY" in line  # what to do about it


def test_a_failure_is_said_even_when_the_log_level_drops_errors(tmp_path: Path) -> None:
    env = clean_environment(
        tmp_path, LOG_LEVEL="critical", DATABASE_URL="postgresql://postgres@127.0.0.1:1/x"
    )
    line = _one_error_line(run_cli("migrate", cwd=tmp_path, env=env))
    # The same line as at any other level, in LOG_FORMAT (it was plain "error: ..." text).
    fields = json.loads(line)
    assert fields["level"] == "error"
    assert "127.0.0.1:1" in fields["event"]


def test_unknown_variables_of_the_environment_are_not_checked(tmp_path: Path) -> None:
    env = clean_environment(tmp_path, ACESS_TOKEN_TTL_SECONDS="60")
    result = run_cli("migrate", "--sql", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path, env=clean_environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"users-api {importlib.metadata.version('users-api')}\n"


@pytest.mark.parametrize("command", [(), ("serve",), ("migrate",), ("create-admin",)])
def test_dash_h_is_help_everywhere(tmp_path: Path, command: tuple[str, ...]) -> None:
    env = clean_environment(tmp_path)
    short, long = (run_cli(*command, flag, cwd=tmp_path, env=env) for flag in ("-h", "--help"))
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    assert "Usage: users-api" in short.stdout


def test_help_loads_none_of_what_the_commands_run_on(tmp_path: Path) -> None:
    """`--help` took two seconds, importing the whole service; now only Typer."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "users_api", "--help"],
        cwd=tmp_path,
        env=clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    heavy = {"sqlalchemy", "fastapi", "starlette", "pydantic", "alembic", "uvicorn", "asyncpg"}
    assert heavy.isdisjoint(imported)
    assert "structlog" not in imported
    assert "users_api.config" not in imported


async def test_set_admin_promotes_and_demotes_but_never_the_last_admin(
    tmp_path: Path, fresh_database_url: str
) -> None:
    """`set-admin` goes through the users service: the same last-admin guard as the API."""
    env = clean_environment(
        tmp_path, DATABASE_URL=fresh_database_url, SECRET_KEY="k" * 40, LOG_FORMAT="json"
    )
    password = "an admin password that is long\n"
    for name in ("root", "ada"):
        created = run_cli(
            *("create-admin", "--email", f"{name}@example.com", "--username", name),
            "--password-stdin",
            cwd=tmp_path,
            env=env,
            stdin=password,
        )
        assert created.returncode == 0, created.stderr
    demoted = run_cli("set-admin", "ADA@example.com", "--revoke", cwd=tmp_path, env=env)
    assert demoted.returncode == 0, demoted.stderr
    last = run_cli("set-admin", "root", "--revoke", cwd=tmp_path, env=env)
    assert last.returncode != 0
    (refusal,) = last.stderr.splitlines()  # one clear line, no migration chatter before it
    assert "no active admin" in refusal
    promoted = run_cli("set-admin", "ada", cwd=tmp_path, env=env)
    assert promoted.returncode == 0, promoted.stderr
    unknown = run_cli("set-admin", "nobody", cwd=tmp_path, env=env)
    assert unknown.returncode != 0
    (refusal,) = unknown.stderr.splitlines()
    assert "No user" in refusal
    engine = create_async_engine(fresh_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT username, is_admin, version, email_verified FROM users"
                    " ORDER BY username"
                )
            )
            # create-admin's address is vouched for by the operator: verified.
            assert [tuple(row) for row in rows] == [("ada", True, 3, True), ("root", True, 1, True)]
    finally:
        await engine.dispose()


def test_migrate_sql_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    """`users-api migrate --sql | head -1`: was "cannot reach the database … Broken pipe"."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)  # less than the SQL: the writer blocks
    with subprocess.Popen(
        [str(USERS_API), "migrate", "--sql"],
        cwd=tmp_path,
        env=clean_environment(tmp_path),
        stdout=writer,
        stderr=subprocess.PIPE,
    ) as command:
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            assert pipe.read(6) == b"BEGIN;"
            time.sleep(0.5)  # the pipe is full when it closes
        _, errors = command.communicate(timeout=60)
    assert errors == b""
    assert command.returncode == 1


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("bogus",), "No such command 'bogus'"),
        (("serve", "--port", "abc"), "Invalid value for '--port'"),
        (("serve", "--workers", "0"), "Invalid value for '--workers'"),
        (("scim-token", "revoke"), "Missing argument 'ID'"),
        (("create-admin", "--password", "x"), "No such option: --password"),
    ],
)
def test_a_usage_mistake_is_one_line_with_status_2(
    tmp_path: Path, arguments: tuple[str, ...], said: str
) -> None:
    """As every failure: one line (it was a box of four or more, drawn by Typer)."""
    result = run_cli(*arguments, cwd=tmp_path, env=clean_environment(tmp_path))
    line = _one_error_line(result)
    assert result.returncode == 2
    assert said in json.loads(line)["event"]
