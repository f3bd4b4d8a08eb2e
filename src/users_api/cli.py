"""The `users-api` command: serve, migrate, create-admin."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.engine import make_url

from users_api.config import Settings, describe_error
from users_api.errors import DomainError, InvalidInput
from users_api.security.passwords import Passwords

cli = typer.Typer(
    name="users-api",
    help="An async user-management REST service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(stderr=True, highlight=False)
# A placeholder for `migrate --sql` with no database: offline mode only needs the dialect.
_OFFLINE_URL = "postgresql+asyncpg://offline/users_api"


def fail(message: str, code: int = 1) -> NoReturn:
    out.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail(describe_error(exc), code=2)


class _StopRequested(BaseException):
    """SIGTERM or SIGINT asked us to stop; a BaseException so no `except Exception` eats it."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # Once is enough: further signals must not interrupt the clean-up they asked for.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _StopRequested


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Make SIGTERM and SIGINT end the block by unwinding it, and then return normally.

    uvicorn handles both while it serves, then raises the signal again once it has shut
    down. SIGTERM's default handler then kills the process outright: the embedded
    PostgreSQL was never stopped and the exit status was -15. Outside uvicorn (starting
    the database, migrating) either signal would otherwise end the same way or as a
    KeyboardInterrupt.
    """
    previous = {sig: signal.signal(sig, _request_stop) for sig in _STOP_SIGNALS}
    try:
        yield
    except _StopRequested:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield the URL of the configured database, or start the embedded one for the block."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    # Imported only here: psutil and the wrapper take ~2 MiB that a worker serving a
    # database given by URL (production) would otherwise keep for its whole life.
    from users_api.db.embedded import EmbeddedDatabaseError, EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        url = embedded.start().render_as_string(hide_password=False)
    except EmbeddedDatabaseError as exc:
        fail(str(exc))
    out.print(f"[green]users-api:[/] {embedded.describe()}", soft_wrap=True)
    try:
        yield url
    finally:
        embedded.stop()
        out.print("[green]users-api:[/] embedded PostgreSQL stopped")


def apply_migrations(url: str, revision: str = "head", *, sql: bool = False) -> None:
    # Imported here, like uvicorn in `serve`: Alembic and uvicorn take most of the start-up
    # time, which `--help` and a bad setting should not pay for.
    from users_api.db import migrations

    try:
        migrations.upgrade(url, revision, sql=sql)
    except OSError as exc:  # refused, unknown host, timed out: no server to talk to
        where = make_url(url).render_as_string(hide_password=True)
        fail(f"cannot reach the database at {where}: {exc}".splitlines()[0])
    except Exception as exc:  # a CLI reports any failure as one line
        fail(f"migrations failed: {type(exc).__name__}: {exc}".splitlines()[0])


def migrate_apart(url: str) -> None:
    """Run `users-api migrate` in a child process against `url`.

    Alembic and the migration scripts take ~13 MiB that a serving process would keep for
    its whole life; a child hands them back when it exits.
    """
    command = [sys.executable, "-m", "users_api", "migrate"]
    environment = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(command, env=environment, check=False)  # noqa: S603  # our own command
    if done.returncode != 0:
        raise typer.Exit(done.returncode)  # the child has said why, in one line


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Apply pending migrations, then serve the API."""
    settings = load_settings()
    with stop_on_signals(), database(settings) as url:
        migrate_apart(url)
        # Workers (and the reloader) build their own app from the environment.
        os.environ["DATABASE_URL"] = url
        out.print(f"[green]users-api:[/] serving on http://{host}:{port} (docs at /docs)")
        import uvicorn

        uvicorn.run(
            "users_api.serving:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            timeout_graceful_shutdown=10,
            # The service decides itself whose X-Forwarded-For to believe (TRUSTED_PROXIES).
            proxy_headers=False,
            # Nothing tells a client which server software answers (`server: uvicorn`).
            server_header=False,
            log_level="info",
            access_log=settings.access_log,
        )


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Upgrade the database schema (Alembic) to REVISION."""
    settings = load_settings()
    if sql:
        apply_migrations(settings.database_url or _OFFLINE_URL, revision, sql=True)
        return
    with database(settings) as url:
        apply_migrations(url, revision)
        out.print(f"[green]users-api:[/] database at revision {revision}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # Exactly as given, less the line ending the pipe added.
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        fail("no terminal to read the password from: pipe it in with --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


async def _create_admin(settings: Settings, *, email: str, username: str, password: str) -> str:
    from users_api.db.database import Database
    from users_api.users.models import UNIQUE_FIELDS
    from users_api.users.schemas import UserCreate
    from users_api.users.service import UserService

    database = await Database.open(
        settings.model_copy(update={"db_pool_size": 1}), unique_fields=UNIQUE_FIELDS
    )
    passwords = Passwords()
    try:
        users = UserService(
            database,
            passwords,
            password_min_length=settings.password_min_length,
            allow_registration=False,
        )
        data = UserCreate(email=email, username=username, password=password, is_admin=True)
        admin = await users.create(data, caller=None, system=True)
        return str(admin["id"])
    finally:
        passwords.close()
        await database.close()


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    username: Annotated[str, typer.Option(help="The admin's username.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an admin. The password is read from the terminal (or stdin), never argv."""
    settings = load_settings()
    password = _read_password(password_stdin)
    with database(settings) as url:
        apply_migrations(url)
        configured = settings.model_copy(update={"database_url": url})
        try:
            user_id = asyncio.run(
                _create_admin(configured, email=email, username=username, password=password)
            )
        except InvalidInput as exc:
            fail(str(exc))
        except DomainError as exc:
            fail(exc.detail)
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"invalid {first['loc'][0]}: {first['msg']}")
    out.print(f"[green]users-api:[/] created admin {username} ({user_id})")


def main() -> None:
    cli()
