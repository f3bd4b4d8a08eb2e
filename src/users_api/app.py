"""The application factory: one app per settings object, nothing global."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import text

from users_api import __version__
from users_api.auth.passwords import Passwords
from users_api.config import Settings
from users_api.db.engine import create_engine
from users_api.db.session import create_session_factory
from users_api.errors import install_error_handlers, problem, problem_responses
from users_api.middleware import BodySizeLimit
from users_api.users.router import router as users_router

READY_TIMEOUT_SECONDS = 1.0

DESCRIPTION = """
User management over HTTP. Every error is an RFC 9457 `application/problem+json`
document. A user's `version` is its ETag: send it back in `If-Match` to make a change
conditional (412 when stale), or in `If-None-Match` to revalidate a read (304).
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="users-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.passwords = Passwords()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.include_router(users_router)
    _add_operations(app)
    return app


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
                async with request.app.state.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
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
