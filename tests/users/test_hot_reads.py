"""The read shortcut (`users/hot_reads.py`) answers exactly as the routes do.

Every request goes to the app twice: as served (the shortcut answers what it
recognises) and to a twin without the shortcut (the FastAPI routes answer everything).
Status, headers and body must be the same, byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from tests.auth.helpers import bearer, register, register_and_login
from tests.conftest import BASE_URL
from users_api.app import create_app
from users_api.config import Settings
from users_api.users.hot_reads import HotReads

USERS = "/api/v1/users"


@pytest.fixture(scope="module")
async def routes_only(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same service over the same database, without the shortcut."""
    app: FastAPI = create_app(settings.model_copy(update={"db_pool_size": 2}))
    shortcut: Any = HotReads
    kept = [entry for entry in app.user_middleware if entry.cls is not shortcut]
    assert len(kept) == len(app.user_middleware) - 1
    app.user_middleware = kept
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app as served, with no credentials of its own."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, response.headers.multi_items(), response.content


async def _same_answer(
    served: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    params: Any = None,
) -> httpx.Response:
    shortcut = await served.get(path, headers=headers, params=params)
    route = await routes_only.get(path, headers=headers, params=params)
    assert _answer(shortcut) == _answer(route), (path, params, shortcut.text, route.text)
    return shortcut


async def test_user_reads_answer_as_the_routes_do(
    served: httpx.AsyncClient,
    admin_client: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
) -> None:
    ada, ada_tokens = await register_and_login(served, "ada")
    bob = await register(served, "bob")
    as_admin = {"Authorization": admin_client.headers["Authorization"]}
    as_ada = bearer(ada_tokens["access_token"])
    cases: list[tuple[str, dict[str, str], int]] = [
        (f"{USERS}/{ada['id']}", as_admin, 200),
        (f"{USERS}/{ada['id']}", as_ada, 200),
        (f"{USERS}/{ada['id']}", {**as_ada, "If-None-Match": '"1"'}, 304),
        (f"{USERS}/{ada['id']}", {**as_ada, "If-None-Match": '"2", W/"1"'}, 304),
        (f"{USERS}/{ada['id']}", {**as_ada, "If-None-Match": '"2"'}, 200),
        (f"{USERS}/{bob['id']}", as_ada, 404),
        (f"{USERS}/{uuid7()}", as_admin, 404),
        (f"{USERS}/{str(ada['id']).upper()}", as_admin, 200),
        (f"{USERS}/{str(ada['id']).replace('-', '')}", as_admin, 200),
        (f"{USERS}/me", as_ada, 200),
        (f"{USERS}/me/", as_ada, 307),  # the routes redirect a trailing slash
        (f"{USERS}/not-an-id", as_admin, 422),
        (f"{USERS}/{ada['id']}", {"Authorization": "Bearer not.a.token"}, 401),
        (f"{USERS}/{ada['id']}", {"Authorization": "Basic YWRhOmFkYQ=="}, 401),
        (f"{USERS}/{ada['id']}", {}, 401),
    ]
    for path, headers, status in cases:
        response = await _same_answer(served, routes_only, path, headers)
        assert response.status_code == status, (path, headers, response.text)

    # A token that verifies but was revoked: the database says 401, both ways.
    assert (await served.post("/api/v1/auth/logout-all", headers=as_ada)).status_code == 204
    for path in (f"{USERS}/{ada['id']}", f"{USERS}/me", USERS):
        response = await _same_answer(served, routes_only, path, as_ada)
        assert response.status_code == 401


async def test_pages_answer_as_the_routes_do(
    served: httpx.AsyncClient,
    admin_client: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
) -> None:
    for name in ("ada", "bob", "cyd", "dee"):
        await register(served, name)
    _, ada_tokens = await register_and_login(served, "eve")
    as_admin = {"Authorization": admin_client.headers["Authorization"]}
    first = await _same_answer(served, routes_only, USERS, as_admin, {"limit": 2})
    assert first.status_code == 200
    assert 'rel="next"' in first.headers["link"]
    next_cursor = first.json()["next_cursor"]
    cases: list[tuple[dict[str, str], Any, int]] = [
        (as_admin, {"limit": 2, "cursor": next_cursor}, 200),
        (as_admin, {"sort": "-username", "limit": 3}, 200),
        (as_admin, {"q": "d", "is_admin": "false"}, 200),
        (as_admin, {"created_after": "2000-01-01T00:00:00Z", "sort": "created_at"}, 200),
        (as_admin, {"cursor": "not-a-cursor"}, 400),
        (as_admin, {"limit": 0}, 422),
        (as_admin, {"limit": ""}, 422),
        (as_admin, [("limit", "1"), ("limit", "2")], 200),
        (as_admin, {"unknown": "ignored"}, 200),
        (bearer(ada_tokens["access_token"]), None, 403),
        ({}, None, 401),
    ]
    for headers, params, status in cases:
        response = await _same_answer(served, routes_only, USERS, headers, params)
        assert response.status_code == status, (params, response.text)


_PARAMETERS = (
    "limit",
    "cursor",
    "sort",
    "q",
    "email",
    "username",
    "is_active",
    "is_admin",
    "created_after",
    "created_before",
    "other",
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            *("1", "2", "50", "201", "true", "0", "-username", "email", "-created_at", "ada"),
            *("2026-01-01T00:00:00Z", "2026-01-01", "1e9", "%", "_", ""),
        ]
    ),
    st.text(max_size=12),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=st.lists(st.tuples(st.sampled_from(_PARAMETERS), _VALUES), max_size=4))
@example(params=[("limit", "1"), ("sort", "-email")])
@example(params=[("is_active", "yes")])
async def test_any_list_query_answers_as_the_route_does(
    served: httpx.AsyncClient,
    admin_client: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
    params: list[tuple[str, str]],
) -> None:
    headers = {"Authorization": admin_client.headers["Authorization"]}
    await _same_answer(served, routes_only, USERS, headers, params)
