"""A real SMTP server for every mail test, and an app that sends to it, polling fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from tests.conftest import asgi_client
from tests.mail.smtp import SmtpServer
from users_api.app import create_app
from users_api.config import Settings

FAST = {"outbox_poll_seconds": 0.05, "outbox_retry_seconds": 0.05}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def mail_settings(settings: Settings, smtp: SmtpServer, **changes: Any) -> Settings:
    return settings.model_copy(
        update={"smtp_url": SecretStr(smtp.url), "mail_from": "users-api <no-reply@example.com>"}
        | FAST
        | changes
    )


@pytest.fixture
async def mail_app(settings: Settings, smtp: SmtpServer) -> AsyncIterator[FastAPI]:
    app = create_app(mail_settings(settings, smtp))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def mail_client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(mail_app) as client:
        yield client
