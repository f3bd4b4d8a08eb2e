"""Small helpers for the authentication tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import BASE_URL, login
from users_api.app import create_app
from users_api.config import Settings

PASSWORD = "a perfectly fine password"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/users",
        json={"email": f"{username}@example.com", "username": username, "password": password}
        | extra,
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def register_and_login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> tuple[dict[str, Any], dict[str, Any]]:
    user = await register(client, username, password)
    return user, await login(client, username, password)


@asynccontextmanager
async def app_with(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app over the same database, with some settings changed."""
    app: FastAPI = create_app(settings.model_copy(update=changes))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
