"""One front: every API request is answered by its route's own handler.

Each operation the clients repeat (a user, `/me`, a page, a PATCH, a registration, a
login) is a FastAPI route of its own, in the OpenAPI document, and nothing in front of
the routes answers for them: the routing records the endpoint it chose in the request's
scope, and here it must be the operation's handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from tests.auth.helpers import PASSWORD, bearer, register_and_login
from tests.conftest import BASE_URL
from users_api.http.routing import RequestRoute

USERS = "/api/v1/users"


class Chosen:
    """The app, remembering which endpoint answered each request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.endpoints: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            endpoint = scope.get("endpoint")
            self.endpoints.append(getattr(endpoint, "__name__", repr(endpoint)))


@pytest.fixture
async def chosen(app: FastAPI) -> AsyncIterator[tuple[Chosen, httpx.AsyncClient]]:
    recorder = Chosen(app)
    transport = httpx.ASGITransport(app=recorder, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield recorder, client


async def test_each_common_request_is_answered_by_its_own_handler(
    chosen: tuple[Chosen, httpx.AsyncClient], admin_client: httpx.AsyncClient
) -> None:
    recorder, client = chosen
    user, tokens = await register_and_login(client, "ada")
    signed_in = bearer(tokens["access_token"])
    admin = {"Authorization": admin_client.headers["Authorization"]}
    recorder.endpoints.clear()
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{USERS}/{user['id']}", {"headers": signed_in}),
        ("GET", f"{USERS}/me", {"headers": signed_in}),
        ("GET", USERS, {"headers": admin, "params": {"limit": 1}}),
        ("PATCH", f"{USERS}/{user['id']}", {"headers": signed_in, "json": {"full_name": "A"}}),
        (
            "POST",
            USERS,
            {"json": {"email": "b@example.com", "username": "bob", "password": PASSWORD}},
        ),
        ("POST", "/api/v1/auth/token", {"data": {"username": "ada", "password": PASSWORD}}),
        ("DELETE", f"{USERS}/{user['id']}", {"headers": signed_in}),
    ]
    for method, url, options in requests:
        response = await client.request(method, url, **options)
        assert response.status_code < 300, (method, url, response.text)
    assert recorder.endpoints == [
        "get_user",
        "get_me",
        "list_users",
        "update_user",
        "create_user",
        "login",
        "delete_user",
    ]


def test_every_api_route_is_in_the_document_with_what_it_reads(app: FastAPI) -> None:
    """The handlers take only the request; the document still says what each reads."""
    document = app.openapi()
    api_routes = [route for route in app.routes if isinstance(route, RequestRoute)]
    assert len(api_routes) >= 9
    for route in api_routes:
        for method in route.methods or ():
            assert method.lower() in document["paths"][route.path_format], route.path
    get_user = document["paths"][f"{USERS}/{{user_id}}"]["get"]
    assert {(p["in"], p["name"]) for p in get_user["parameters"]} == {
        ("path", "user_id"),
        ("header", "If-None-Match"),
        ("header", "X-Consistency-Token"),
    }
    assert get_user["security"] == [{"OAuth2PasswordBearer": []}]
    patch = document["paths"][f"{USERS}/{{user_id}}"]["patch"]
    schema = patch["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/UserUpdate"}
    assert "UserUpdate" in document["components"]["schemas"]
    listing = document["paths"][USERS]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "cursor", "sort", "q"}
    login = document["paths"]["/api/v1/auth/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in login
