"""What `users-api serve` runs in each uvicorn process: logging first, then the app."""

from __future__ import annotations

from fastapi import FastAPI

from users_api.app import create_app
from users_api.config import Settings
from users_api.logs import configure_logging
from users_api.request_log import RequestLog


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory`: settings come from the environment.

    Each worker (and the reloader's child) is a fresh interpreter: it sets up logging
    again, the same way as the command that started it.
    """
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.add_middleware(RequestLog)  # outermost: it sees every answer, the hot paths' too
    return app
