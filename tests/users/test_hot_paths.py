"""The shortcut (`users/hot_paths.py`) answers exactly as the routes do.

Every request goes to the app twice: as served (the shortcut answers what it
recognises) and to a twin without the shortcut (the FastAPI routes answer everything).
Status, headers and body must be the same, byte for byte; for a PATCH, the users are
put back as they were in between, and only `updated_at` (the clock) may differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import asgi_client
from users_api.app import create_app
from users_api.config import Settings
from users_api.users.hot_paths import HotPaths
from users_api.users.models import User
from users_api.users.schemas import UserListQuery

USERS = "/api/v1/users"


@pytest.fixture(scope="module")
async def routes_only(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same service over the same database, without the shortcut."""
    app: FastAPI = create_app(settings.model_copy(update={"db_pool_size": 2}))
    shortcut: Any = HotPaths
    kept = [entry for entry in app.user_middleware if entry.cls is not shortcut]
    assert len(kept) == len(app.user_middleware) - 1
    app.user_middleware = kept
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app as served, with no credentials of its own."""
    async with asgi_client(app) as client:
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


_PARAMETERS = (*UserListQuery.model_fields, "other")
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


async def _rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM users ORDER BY id"))
        return [dict(row) for row in result.mappings()]


async def _put_back(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as connection:
        for row in rows:
            values = {name: value for name, value in row.items() if name != "id"}
            await connection.execute(update(User).where(User.id == row["id"]).values(values))


def _comparable(response: httpx.Response) -> tuple[Any, ...]:
    headers = dict(response.headers)
    headers.pop("content-length")
    body: Any = response.content
    if response.headers["content-type"] == "application/json":
        body = response.json()
        body.pop("updated_at")
    return response.status_code, headers, body


async def test_patches_answer_as_the_routes_do(
    served: httpx.AsyncClient,
    admin_client: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
    engine: AsyncEngine,
) -> None:
    ada, ada_tokens = await register_and_login(served, "ada")
    bob = await register(served, "bob")
    as_admin = {"Authorization": admin_client.headers["Authorization"]}
    as_ada = bearer(ada_tokens["access_token"])
    json_type = {"Content-Type": "application/json"}
    ada_url, bob_url = f"{USERS}/{ada['id']}", f"{USERS}/{bob['id']}"
    cases: list[tuple[str, dict[str, str], bytes, int]] = [
        (ada_url, as_admin, b'{"full_name": "Ada Lovelace"}', 200),
        (ada_url, as_ada, b'{"username": "Countess", "email": "ada@lovelace.example"}', 200),
        (ada_url, {**as_ada, "If-Match": '"1"'}, b'{"full_name": "Ada"}', 200),
        (ada_url, {**as_ada, "If-Match": '"7"'}, b'{"full_name": "Ada"}', 412),
        (ada_url, as_ada, b'{"full_name": null}', 200),
        (ada_url, as_ada, b'{"username": "ada"}', 200),  # unchanged: version stays
        (ada_url, as_ada, b'{"username": "BOB"}', 409),
        (bob_url, as_ada, b'{"full_name": "Robert"}', 404),
        (f"{USERS}/{uuid7()}", as_admin, b'{"full_name": "Nobody"}', 404),
        (ada_url, as_ada, b'{"full_name": 7}', 422),
        (ada_url, as_ada, b'{"full_name": "x", "is_admin": true}', 403),
        (ada_url, as_ada, b'{"nickname": "x"}', 422),
        (ada_url, as_ada, b"[1, 2]", 422),
        (ada_url, as_ada, b'{"full_name": "x"', 422),
        (ada_url, as_admin, b'{"is_active": false}', 200),
        (ada_url, {}, b'{"full_name": "x"}', 401),
        (ada_url, {"Authorization": "Bearer not.a.token"}, b'{"full_name": "x"}', 401),
    ]
    for path, headers, content, status in cases:
        before = await _rows(engine)
        shortcut = await served.patch(path, headers=headers | json_type, content=content)
        await _put_back(engine, before)
        route = await routes_only.patch(path, headers=headers | json_type, content=content)
        await _put_back(engine, before)
        assert shortcut.status_code == status, (path, content, shortcut.text)
        assert _comparable(shortcut) == _comparable(route), (content, shortcut.text, route.text)

    # Other content types are the routes' to judge, the same as ever.
    charset = {"Content-Type": "application/json; charset=utf-8"}
    response = await served.patch(ada_url, headers=as_ada | charset, content=b'{"full_name": "A"}')
    assert response.status_code == 200, response.text
    text_plain = {"Content-Type": "text/plain"}
    response = await served.patch(ada_url, headers=as_ada | text_plain, content=b"full_name=A")
    assert response.status_code == 422, response.text


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN = "/api/v1/auth/token"


async def test_logins_answer_as_the_routes_do(
    served: httpx.AsyncClient, routes_only: httpx.AsyncClient
) -> None:
    """Failures byte for byte; a success alike in all but the tokens, which both work."""
    password = "pässword that is long"  # percent-encoded as UTF-8 in a form
    await register(served, "lin", password)
    await register(served, "lou", password)
    encoded = "p%C3%A4ssword+that+is+long"
    await register(served, "lia", password)
    # Each failure counts twice (once per app) against its account's throttle: one
    # account per failing case keeps them all under the limit.
    cases: list[tuple[dict[str, str], bytes, int | None]] = [
        (FORM, f"username=lin&password={encoded}".encode(), 200),
        (FORM, f"grant_type=password&username=LOU%40example.com&password={encoded}".encode(), 200),
        (FORM, b"username=lia&password=wrong+password", 401),
        (FORM, b"username=nobody&password=whatever+it+is", 401),
        (FORM, b"username=n1", 422),
        (FORM, b"username=&password=x", 422),
        (FORM, b"username=n2&username=n3&password=x", None),  # the route decides
        (FORM, b"username=n4;password=x", None),
        (FORM, "username=n5&password=pässword".encode(), None),  # raw UTF-8
        (FORM, b"username=n6&password=%FF%FE", None),  # not UTF-8
        (FORM, b"username=n%007&password=x", 422),
        ({"Content-Type": "application/json"}, b'{"username": "n8"}', 422),
    ]
    for headers, content, status in cases:
        shortcut = await served.post(TOKEN, headers=headers, content=content)
        route = await routes_only.post(TOKEN, headers=headers, content=content)
        if status is not None:
            assert shortcut.status_code == status, (content, shortcut.text)
        if shortcut.status_code != 200:
            assert _answer(shortcut) == _answer(route), (content, shortcut.text, route.text)
            continue
        assert route.status_code == 200, route.text
        assert shortcut.headers["cache-control"] == "no-store"
        drop = {"content-length"}
        assert [h for h in shortcut.headers.multi_items() if h[0] not in drop] == [
            h for h in route.headers.multi_items() if h[0] not in drop
        ]
        mine, theirs = shortcut.json(), route.json()
        assert list(mine) == list(theirs)
        assert mine["token_type"] == theirs["token_type"] == "bearer"
        assert mine["expires_in"] == theirs["expires_in"]
        me = [
            (await served.get(f"{USERS}/me", headers=bearer(body["access_token"]))).json()
            for body in (mine, theirs)
        ]
        assert me[0] == me[1]


async def test_the_shortcut_answers_plain_logins_itself(
    app: FastAPI, served: httpx.AsyncClient
) -> None:
    """Behind the shortcut, an app that answers every request with 599: a plain login
    never gets there, anything else does."""
    await register(served, "solo")
    reached: list[str] = []

    async def routes(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await Response(status_code=599)(scope, receive, send)

    async def mounted(scope: Any, receive: Any, send: Any) -> None:
        # The shortcut finds the service's parts through scope["app"], as in the app.
        await HotPaths(routes)({**scope, "app": app}, receive, send)

    transport = httpx.ASGITransport(app=mounted)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        plain = await client.post(
            TOKEN, headers=FORM, data={"username": "solo", "password": PASSWORD}
        )
        assert plain.status_code == 200, plain.text
        assert reached == []
        odd = await client.post(TOKEN, headers=FORM, content=b"username=solo")
        assert odd.status_code == 599
        assert reached == [TOKEN]
