"""The `users-api` command: serve, migrate, create-admin, set-admin, scim-token.

Only Typer is imported up here. The commands import what they use when they run:
SQLAlchemy, FastAPI, Alembic and uvicorn take seconds to import, which `--help`,
`--version` and a bad setting should not pay for.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from users_api import __version__


def _deferred(module: str, name: str) -> Callable[..., Any]:
    """`from module import name` for a callable, done at its first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


if TYPE_CHECKING:
    from users_api.config import Settings
    from users_api.users.queries import UserRow
    from users_api.users.service import UserService


class _Log:
    """The command's logger, made at first use (structlog is not needed for `--help`)."""

    def __getattr__(self, name: str) -> Any:
        from users_api import logs

        return getattr(logs.get_logger("users_api.cli"), name)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"users-api {__version__}")
        raise typer.Exit


cli = typer.Typer(
    name="users-api",
    help="An async user-management REST service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@cli.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


log = _Log()
T = TypeVar("T")
# A placeholder for `migrate --sql` with no database: offline mode only needs the dialect.
_OFFLINE_URL = "postgresql+asyncpg://offline/users_api"


def fail(message: str, code: int = 1) -> NoReturn:
    """Say why in one log line (at error level, in LOG_FORMAT) and exit with `code`; also
    when LOG_LEVEL=critical would drop that line: a failure is never silent."""
    import logging

    import structlog

    from users_api import logs

    if not structlog.is_configured():
        logs.configure_logging()
    logger = logging.getLogger("users_api.cli")
    if logger.isEnabledFor(logging.ERROR):
        log.error(message)
    else:  # past the level's filter, straight to the handlers: the same line
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (), None)
        for handler in logging.getLogger().handlers:
            handler.handle(record)
    raise typer.Exit(code)


def preflight(check: Callable[[], None]) -> None:
    """Run a check of `preflight.py`; a refusal is one line and the exit."""
    from users_api.preflight import Refused

    try:
        check()
    except Refused as exc:
        fail(str(exc), code=exc.exit_status)


def _from_environment(name: str, choices: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, "").strip().lower()
    return value if value in choices else default


def load_settings() -> Settings:
    """Read the settings and set up logging as they say; a bad setting is one line."""
    from pydantic import ValidationError

    from users_api import logs
    from users_api.config import DotEnvError, Settings, describe_error

    try:
        settings = Settings()
    except (ValidationError, DotEnvError) as exc:
        # The settings are unread: log as the environment says, if it says something sane.
        logs.configure_logging(
            _from_environment("LOG_LEVEL", logs.LEVELS, "info"),
            _from_environment("LOG_FORMAT", logs.FORMATS, "auto"),
        )
        message = describe_error(exc) if isinstance(exc, ValidationError) else str(exc)
        fail(message, code=2)
    logs.configure_logging(settings.log_level, settings.log_format)
    return settings


class _StopRequested(BaseException):
    """SIGTERM or SIGINT asked us to stop; a BaseException so no `except Exception` eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# A stop asked for while the embedded database starts, answered once it has (`_held_stops`).
_held: list[int] = []
_holding = False


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # Once is enough: further signals must not interrupt the clean-up they asked for.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if _holding:
        _held.append(signum)
        return
    raise _StopRequested(signum)


@contextmanager
def _held_stops() -> Iterator[None]:
    """A stop that comes while the block runs is answered when it ends: a start of the
    embedded database cut short in the library's own code left a server that nobody
    knew of to stop."""
    global _holding
    _holding = True
    try:
        yield
    finally:
        _holding = False
    if _held:
        raise _StopRequested(_held.pop())


@contextmanager
def stop_on_signals(*, interrupted_fails: bool = False) -> Iterator[None]:
    """Make SIGTERM and SIGINT end the block by unwinding it (so the embedded database it
    started stops), and then return normally: a server asked to stop has done its job. A
    command that had work to finish (`interrupted_fails`) exits with 128 + the signal's
    number instead, as the shell reports a killed command.

    uvicorn handles both while it serves, then raises the signal again once it has shut
    down. SIGTERM's default handler then kills the process outright: the embedded
    PostgreSQL was never stopped and the exit status was -15. Outside uvicorn (starting
    the database, migrating) either signal would otherwise end the same way or as a
    KeyboardInterrupt.
    """
    previous = {sig: signal.signal(sig, _request_stop) for sig in _STOP_SIGNALS}
    try:
        yield
    except _StopRequested as stop:
        if interrupted_fails:
            raise typer.Exit(128 + stop.signum) from None
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
    from users_api.db.embedded import (
        EmbeddedDatabaseError,
        EmbeddedPostgres,
        StopOutcome,
        server_pid,
    )

    embedded = EmbeddedPostgres(settings.data_dir)
    where = {"data_dir": str(embedded.pgdata)}
    try:
        with _held_stops():
            try:
                url = embedded.start().render_as_string(hide_password=False)
            except EmbeddedDatabaseError as exc:
                fail(str(exc))
            except OSError as exc:  # the data folder, changed since it was checked
                fail(f"cannot start the embedded PostgreSQL in {settings.data_dir}: {exc}")
            log.info(
                # Another process (a server, most likely) runs it: this one must not claim it.
                "embedded PostgreSQL already running"
                if embedded.reused
                else "embedded PostgreSQL started",
                pid=server_pid(embedded.pgdata),
                socket_dir=str(embedded.socket_dir),
                **where,
            )
        yield url
    finally:
        try:
            outcome = embedded.stop()
        except EmbeddedDatabaseError as exc:
            log.error(str(exc), **where)
        else:
            if outcome is StopOutcome.STOPPED:
                log.info("embedded PostgreSQL stopped", **where)
            elif outcome is StopOutcome.LEFT_RUNNING:
                log.info(
                    "embedded PostgreSQL left running for the other processes using it",
                    pids=embedded.users,
                    **where,
                )
            elif outcome is StopOutcome.ALREADY_DOWN:
                log.warning("embedded PostgreSQL had stopped already", **where)


def apply_migrations(
    url: str,
    revision: str = "head",
    *,
    sql: bool = False,
    quiet: bool = False,
    setting: str | None = "DATABASE_URL",
) -> None:
    """`quiet`: what was applied is told at debug, for a command whose output is its own
    one line (create-admin, set-admin, scim-token), which a failure must be too.
    `setting`: the variable `url` came from (None: the embedded database), named when the
    database cannot be reached or refuses the connection, as a bad setting is."""
    from sqlalchemy.engine import make_url

    from users_api.db import migrations

    named = f"{setting}: " if setting else ""
    try:
        applied = migrations.upgrade(url, revision, sql=sql)
    except BrokenPipeError:  # `migrate --sql | head`: click ends it quietly
        raise
    except OSError as exc:  # refused, unknown host, timed out: no server to talk to
        where = make_url(url).render_as_string(hide_password=True)
        fail(f"{named}cannot reach the database at {where}: {exc}".splitlines()[0])
    except Exception as exc:  # a CLI reports any failure as one line
        refusal = _connection_refusal(exc)
        if refusal is not None:
            where = make_url(url).render_as_string(hide_password=True)
            fail(f"{named}the database at {where} refused the connection: {refusal}")
        fail(f"migrations failed: {type(exc).__name__}: {exc}".splitlines()[0])
    if sql:
        return
    say = log.debug if quiet else log.info
    if applied:
        say("migrations applied", revisions=applied, target=revision)
    else:
        say("no migrations to apply", target=revision)


def _source(settings: Settings) -> str | None:
    """Which setting the migrations' URL comes from (None: the embedded database)."""
    if settings.migrations_database_url is not None:
        return "MIGRATIONS_DATABASE_URL"
    return "DATABASE_URL" if settings.database_url is not None else None


# SQLSTATE classes of a server that refuses the connection itself: no such database
# (3D), no such role or a wrong password (28). The setting is wrong, not the schema.
_REFUSED_CONNECTION = ("3D", "28")


def _connection_refusal(exc: BaseException) -> str | None:
    """The server's words when `exc` (or what caused it) is its refusal of the connection."""
    seen: BaseException | None = exc
    while seen is not None:
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state[:2] in _REFUSED_CONNECTION:
            return str(getattr(seen, "args", ("",))[0] or seen).splitlines()[0]
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _pooled(settings: Settings, url: str) -> bool:
    """Whether `url` is a pooler (DB_PGBOUNCER, or found out: db/pooler.py). A database
    that does not answer is taken as none: what comes next says why in one line."""
    import asyncio

    from users_api.db.pooler import detect_pooler

    return asyncio.run(detect_pooler(settings, url=url)) is True


def prepare_schema(settings: Settings, url: str, *, apart: bool) -> None:
    """Bring the schema to head before serving: over MIGRATIONS_DATABASE_URL if set, else
    over `url`, unless that is a pooler. Alembic needs a session of its own (its lock,
    DDL, prepared statements), which PgBouncer in transaction mode does not give: then
    the schema is only checked, and a schema behind head stops start-up in one line."""
    direct = settings.migrations_database_url
    if direct is None and _pooled(settings, url):
        _check_at_head(settings, url)
        return
    if apart:
        migrate_apart(direct or url)
    else:
        apply_migrations(direct or url, quiet=True, setting=_source(settings))


def _check_at_head(settings: Settings, url: str) -> None:
    import asyncio

    from sqlalchemy.engine import make_url

    from users_api.db import migrations
    from users_api.db.database import connect_arguments

    arguments = connect_arguments(settings, pooled=True, url=url)
    try:
        current = asyncio.run(migrations.current_revision(arguments))
    except Exception as exc:  # a CLI reports any failure as one line
        where = make_url(url).render_as_string(hide_password=True)
        fail(
            f"DATABASE_URL: cannot read the schema's revision at {where}: "
            f"{type(exc).__name__}: {exc}"
        )
    head = migrations.head()
    if current != head:
        fail(
            f"the schema is at revision {current or 'none'}, not at {head}, and DATABASE_URL "
            "is a connection pooler (DB_PGBOUNCER): run `users-api migrate` with "
            "MIGRATIONS_DATABASE_URL set to a direct connection first"
        )


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
    from users_api import preflight as checks
    from users_api.metrics import multiprocess_directory

    settings = load_settings()
    # Whatever would fail once the database is up and the app starts fails now.
    preflight(lambda: checks.check_first_admin(settings))
    preflight(lambda: checks.check_data_dir(settings, serving=True))
    preflight(lambda: checks.check_secret_key(settings))
    preflight(lambda: checks.check_can_listen(host, port))
    # With workers, their metric files go to a directory of this run (metrics.py).
    with stop_on_signals(), database(settings) as url, multiprocess_directory(workers):
        prepare_schema(settings, url, apart=True)
        # Workers (and the reloader) build their own app from the environment, and stop
        # when this process dies, whatever kills it (`serving._end_with_supervisor`).
        os.environ["DATABASE_URL"] = url
        if workers > 1 or reload:
            os.environ["USERS_API_SUPERVISOR_PID"] = str(os.getpid())
        if port == 0:  # not known until bound: uvicorn's "running on" line names it
            log.info("starting the HTTP server on a free port", host=host, workers=workers)
        else:
            base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            log.info("starting the HTTP server", url=base, docs=f"{base}/docs", workers=workers)
        import uvicorn

        from users_api.http.protocol import ServiceHttpProtocol

        uvicorn.run(
            "users_api.serving:app_factory",
            factory=True,
            # httptools, with its refusals as problems and a bound on request headers.
            http=ServiceHttpProtocol,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            # The package's own code, not the working folder: the embedded database and the
            # mail it keeps there (DATA_DIR) changed all the time, each a reload.
            reload_dirs=[str(Path(__file__).parent)] if reload else None,
            timeout_graceful_shutdown=10,
            # No WebSocket route: its protocol modules are not loaded (~1 MiB a worker).
            ws="none",
            # The service decides itself whose X-Forwarded-For to believe (TRUSTED_PROXIES).
            proxy_headers=False,
            # Its loggers go through ours (logs.py): no logging configuration of its own.
            log_config=None,
            log_level=settings.log_level,
            # Nothing tells a client which server software answers (`server: uvicorn`).
            server_header=False,
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
    from users_api import preflight as checks

    settings = load_settings()
    if sql:
        apply_migrations(settings.database_url or _OFFLINE_URL, revision, sql=True)
        return
    if settings.migrations_database_url is not None:
        apply_migrations(settings.migrations_database_url, revision, setting=_source(settings))
        return
    preflight(lambda: checks.check_data_dir(settings, serving=False))
    with stop_on_signals(interrupted_fails=True), database(settings) as url:
        if _pooled(settings, url):
            fail(
                "DATABASE_URL is a connection pooler (DB_PGBOUNCER): migrations need a "
                "direct connection; set MIGRATIONS_DATABASE_URL"
            )
        apply_migrations(url, revision, setting=_source(settings))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # Exactly as given, less the line ending the pipe added.
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        fail("no terminal to read the password from: pipe it in with --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@asynccontextmanager
async def _users(settings: Settings) -> AsyncIterator[UserService]:
    """The users service on its own small pool, as the app builds it."""
    from users_api.db.database import Database
    from users_api.db.metadata import UNIQUE_FIELDS
    from users_api.events.writer import build_writer
    from users_api.groups.service import GroupService
    from users_api.security.passwords import Passwords
    from users_api.throttle.service import LoginThrottle
    from users_api.users.service import UserService

    small = settings.model_copy(update={"db_pool_size": 1})
    database = await Database.open(small, unique_fields=UNIQUE_FIELDS)
    passwords = Passwords()
    try:
        events = build_writer()
        yield UserService(
            database,
            passwords,
            password_min_length=settings.password_min_length,
            allow_registration=False,
            throttle=LoginThrottle.from_settings(settings),
            events=events,
            leave_groups=GroupService(database, events).leave_all,
        )
    finally:
        passwords.close()
        await database.close()


def _on_users(settings: Settings, work: Callable[[UserService], Awaitable[T]]) -> T:
    """Migrate, then run `work` with the users service; a refusal is one clear line."""
    import asyncio

    from pydantic import ValidationError

    from users_api import preflight as checks
    from users_api.errors import DomainError, InvalidInput

    preflight(lambda: checks.check_data_dir(settings, serving=False))
    with stop_on_signals(interrupted_fails=True), database(settings) as url:
        prepare_schema(settings, url, apart=False)
        configured = settings.model_copy(update={"database_url": url})

        async def run() -> T:
            async with _users(configured) as users:
                return await work(users)

        try:
            return asyncio.run(run())
        except InvalidInput as exc:
            fail(str(exc))
        except DomainError as exc:
            fail(exc.detail)
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"invalid {first['loc'][0]}: {first['msg']}")


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    username: Annotated[str, typer.Option(help="The admin's username.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an admin. The password is read from the terminal (or stdin), never argv."""
    from users_api.users.schemas import UserCreate

    settings = load_settings()
    password = _read_password(password_stdin)

    async def create(users: UserService) -> UserRow:
        data = UserCreate(email=email, username=username, password=password, is_admin=True)
        return await users.create(data, caller=None, system=True, verified=True)

    admin = _on_users(settings, create)
    log.info("admin created", username=username, id=str(admin["id"]))


@cli.command("set-admin")
def set_admin(
    user: Annotated[str, typer.Argument(help="The user's username or email.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Demote instead of promote.")] = False,
) -> None:
    """Promote a user to admin, or demote one with --revoke (never the last active admin)."""
    settings = load_settings()
    changed = _on_users(settings, lambda users: users.set_admin(user, admin=not revoke))
    log.info(
        "admin revoked" if revoke else "admin granted",
        username=changed["username"],
        id=str(changed["id"]),
    )


scim_token = typer.Typer(
    help="Provisioning tokens: what opens /scim/v2 (and nothing else).",
    no_args_is_help=True,
)
cli.add_typer(scim_token, name="scim-token")


@scim_token.command("create")
def scim_token_create(
    name: Annotated[str, typer.Option(help="What the token is for (e.g. 'Entra ID').")],
) -> None:
    """Make a provisioning token and print it, once: only its hash is stored."""
    from users_api.scim.tokens import ScimTokens

    if not 1 <= len(name) <= 200 or "\x00" in name:
        fail("invalid name: 1 to 200 characters")
    settings = load_settings()
    row, token = _on_users(settings, lambda users: ScimTokens(users.db, users.events).create(name))
    log.info("provisioning token created", id=str(row["id"]), name=name)
    typer.echo(token)


@scim_token.command("list")
def scim_token_list() -> None:
    """List the provisioning tokens (never the tokens themselves)."""
    from users_api.scim.tokens import ScimTokens

    settings = load_settings()
    rows = _on_users(settings, lambda users: ScimTokens(users.db, users.events).list())
    for row in rows:
        state = f"revoked {row['revoked_at'].isoformat()}" if row["revoked_at"] else "active"
        used = row["last_used_at"].isoformat() if row["last_used_at"] else "never used"
        typer.echo(
            f"{row['id']}\t{row['name']}\tcreated {row['created_at'].isoformat()}\t{used}\t{state}"
        )


@scim_token.command("revoke")
def scim_token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (see list).")],
) -> None:
    """Revoke a provisioning token: the next request with it is refused (401)."""
    import uuid

    from users_api.scim.tokens import ScimTokens

    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        fail(f"invalid id: {token_id!r} is not a UUID")
    settings = load_settings()
    row = _on_users(settings, lambda users: ScimTokens(users.db, users.events).revoke(parsed))
    log.info("provisioning token revoked", id=str(row["id"]), name=row["name"])


def main() -> None:
    """The command line. A usage mistake (an unknown command or option, a bad value) is
    one line too, as every failure (`fail`), with click's exit status 2; Typer drew a
    box of four lines or more."""
    # Typer's own copy of click raises these (typer exports only some of its names).
    from typer._click import exceptions as errors

    try:
        code = cli(standalone_mode=False)
    except errors.NoArgsIsHelpError as exc:  # `users-api` alone: the help, as before
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
        code = exc.exit_code
    except errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "users-api"
        try:
            fail(f"{exc.format_message()} (see `{where} -h`)", exc.exit_code)
        except typer.Exit as done:
            code = done.exit_code
    except errors.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
