"""A client holding a live provisioning token, made as `scim-token create` makes one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import asgi_client
from users_api.scim.tokens import ScimTokens

SCIM = "/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
async def scim_token(app: FastAPI) -> str:
    tokens: ScimTokens = app.state.scim_tokens
    _, token = await tokens.create("tests")
    return token


@pytest.fixture
async def scim(app: FastAPI, scim_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        client.headers["Authorization"] = f"Bearer {scim_token}"
        client.headers["Content-Type"] = "application/scim+json"
        yield client


def new_user(user_name: str, email: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "emails": [{"value": email or f"{user_name}@example.com", "type": "work", "primary": True}],
        **extra,
    }
