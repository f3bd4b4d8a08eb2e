"""The application factory: one app per settings object, nothing global."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import Response

from users_api import __version__
from users_api.auth.login import Login
from users_api.auth.passwords import Passwords, common_passwords, default_hash_concurrency
from users_api.auth.router import router as auth_router
from users_api.auth.secret import resolve_secret_key
from users_api.auth.throttle import ThrottleRules
from users_api.auth.tokens import AccessTokens
from users_api.config import Settings
from users_api.db.direct import DirectPool
from users_api.db.engine import create_engine, open_pool
from users_api.db.session import create_session_factory
from users_api.docs import add_docs_routes
from users_api.errors import install_error_handlers, problem, problem_responses
from users_api.middleware import BodySizeLimit
from users_api.users.creation import UserCreation
from users_api.users.hot_paths import HotPaths
from users_api.users.quick_update import QuickUpdate
from users_api.users.reader import UserReader
from users_api.users.router import router as users_router
from users_api.users.service import UserService

READY_TIMEOUT_SECONDS = 1.0
log = logging.getLogger(__name__)

DESCRIPTION = """
User management over HTTP. Every error is an RFC 9457 `application/problem+json`
document. A user's `version` is its ETag: send it back in `If-Match` to make a change
conditional (412 when stale), or in `If-None-Match` to revalidate a read (304).

When the database cannot serve a request right now, the answer is 503 with
`Retry-After`, never a 500: its problem type ends in `database-unavailable` (unreachable,
starting up, shutting down, or no pooled connection free within `DB_POOL_TIMEOUT`) or
`database-timeout` (the statement ran past `DB_STATEMENT_TIMEOUT_MS`, or waited too long
for a lock). Nothing of such a request is stored: each request is one transaction.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        await open_pool(engine, settings.db_session_pool_size)
        pool = await DirectPool.open(engine, settings)
        app.state.direct_pool = pool
        app.state.user_reader = UserReader(pool)
        app.state.quick_update = QuickUpdate(pool)
        app.state.login = Login(
            pool,
            passwords=app.state.passwords,
            tokens=app.state.tokens,
            refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
            throttle=ThrottleRules(
                per_account=settings.login_failures_per_account,
                per_address=settings.login_failures_per_address,
                window=timedelta(seconds=settings.login_failure_window_seconds),
            ),
        )
        app.state.user_creation = UserCreation(
            pool,
            app.state.passwords,
            password_min_length=settings.password_min_length,
            allow_registration=settings.allow_registration,
        )
        await _ensure_first_admin(app, settings)
        common_passwords()  # read now, not on the loop during the first registration
        _settle_after_startup()
        try:
            yield
        finally:
            await pool.close()
            await engine.dispose()
            app.state.passwords.close()

    app = FastAPI(
        title="users-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.passwords = Passwords(
        concurrency=settings.password_hash_concurrency or default_hash_concurrency()
    )
    app.state.tokens = AccessTokens(
        secret=resolve_secret_key(settings),
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    install_error_handlers(app)
    app.add_middleware(HotPaths)  # the common requests skip the rest (hot_paths.py)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)  # outermost of ours
    app.include_router(auth_router)
    app.include_router(users_router)
    _add_operations(app)
    add_docs_routes(app)  # /docs with its assets served from here: no CDN
    return app


def _settle_after_startup() -> None:
    """Set the process up for serving once everything long-lived has been built.

    What start-up built (modules, the OpenAPI models, compiled SQL) lives as long as the
    process: frozen, the cyclic collector stops walking it again and again, and its full
    collections no longer stall requests for tens of milliseconds (p99). A request leaves
    hundreds of container objects, nearly all freed by reference counting: collecting the
    young generation every 700 allocations (the default) ran several times per request
    for little; every 20,000 is still well bounded.

    Then glibc is asked to hand back the heap pages that start-up's garbage freed
    (import-time objects, the source of the common-password list): ~3 MiB of a worker's
    RSS, measured. Elsewhere than glibc there is no `malloc_trim` and nothing to do.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


async def _ensure_first_admin(app: FastAPI, settings: Settings) -> None:
    """FIRST_ADMIN_*: create that admin at start-up unless a user has the email."""
    email, username = settings.first_admin_email, settings.first_admin_username
    password = settings.first_admin_password
    if not (email and username and password):
        return
    async with app.state.session_factory() as session, session.begin():
        service = UserService(
            session, app.state.passwords, password_min_length=settings.password_min_length
        )
        created = await service.ensure_admin(
            email=email, username=username, password=password.get_secret_value()
        )
    if created is not None:
        log.info("created the first admin %s", created.username)


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database answers within one second",
        responses=problem_responses(),
    )
    async def readyz(request: Request) -> Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                async with request.app.state.direct_pool.connection() as connection:
                    await connection.execute("SELECT 1")
        except Exception:  # any failure at all means "not ready"
            return problem(
                503,
                detail="The database did not answer within one second.",
                code="not-ready",
                headers={"Retry-After": "1"},
            )
        return Response(content=b'{"status":"ready"}', media_type="application/json")


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory`: settings come from the environment."""
    return create_app(Settings())
