"""What every response carries: a request id, nosniff, no-store, and problems with a
`code` and the `request_id`; CORS for the configured origins; a full `Allow`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from uuid_utils.compat import uuid7

from tests.auth.helpers import PASSWORD, app_with, bearer, register_and_login
from tests.conftest import BASE_URL, login
from tests.users.helpers import USERS, assert_problem, user_url
from users_api.app import create_app
from users_api.config import Settings
from users_api.http.request_id import current_request_id
from users_api.middleware import Cors

KEBAB = re.compile(r"[a-z]+(-[a-z]+)*")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ORIGIN = "https://app.example.com"
LIMIT = 64 * 1024

# An id no user has, fixed so that every pytest-xdist worker collects the same tests.
UNKNOWN_ID = "01a2417e-bcb6-763e-9a7d-731348a920c7"


def assert_standard_headers(response: httpx.Response) -> str:
    """The headers every response carries; return its request id."""
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in response.headers
    request_id = response.headers["x-request-id"]
    assert SANE_ID.fullmatch(request_id), request_id
    assert len(response.headers.get_list("x-request-id")) == 1
    return request_id


def assert_full_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem with its stable `code` (the last part of `type`) and the request's id."""
    body = assert_problem(response, status)
    assert KEBAB.fullmatch(body["code"]), body
    assert body["type"].rsplit(":", 1)[1] == body["code"]
    assert body["request_id"] == assert_standard_headers(response)
    return body


@asynccontextmanager
async def faulty(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a route that fails as unforeseen code does."""
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unforeseen")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        yield client


# --- request ids and problems --------------------------------------------------


async def test_every_problem_has_a_code_and_the_request_id(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Framework refusals and faults included: no route, wrong method, too large, not
    valid, no credentials, and a 500 (answered by Starlette's outermost layer)."""
    json = {"content-type": "application/json"}
    refusals = [
        (await client.get("/api/v1/nothing-here"), 404, "not-found"),
        (await client.put(USERS), 405, "method-not-allowed"),
        (await client.post(USERS, content=b"{" + b" " * LIMIT + b"}", headers=json), 413, None),
        (await client.post(USERS, content=b"{", headers=json), 422, "validation"),
        (await client.get(user_url("not-a-uuid"), headers=bearer("x")), 401, None),
        (await client.get(USERS), 401, "unauthorized"),
    ]
    async with faulty(settings) as failing:
        refusals.append((await failing.get("/boom"), 500, "internal"))
    for response, status, code in refusals:
        body = assert_full_problem(response, status)
        assert code is None or body["code"] == code


async def test_a_sane_request_id_is_kept_and_any_other_replaced(client: httpx.AsyncClient) -> None:
    for sane in ("a", "req-42", "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e", "A.b_c:d-E", "x" * 128):
        response = await client.get("/nothing", headers={"X-Request-ID": sane})
        assert response.headers["x-request-id"] == sane
        assert response.json()["request_id"] == sane
    seen = set()
    for insane in ("", "x" * 129, "has space", "semi;colon", "ünï", "a/b", "<script>"):
        response = await client.get("/healthz", headers={b"X-Request-ID": insane.encode()})
        request_id = assert_standard_headers(response)
        assert request_id != insane
        seen.add(request_id)
    assert len(seen) == 7  # a new one for each


async def test_the_request_id_is_set_only_while_a_request_is_served(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz", headers={"X-Request-ID": "one"})
    assert current_request_id() is None


# --- headers on every response -------------------------------------------------


async def test_every_answer_carries_the_standard_headers(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    user, tokens = await register_and_login(client, "ada")
    signed_in = bearer(tokens["access_token"])
    answers = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/openapi.json"),
        await client.get(user_url(user["id"]), headers=signed_in),
        await client.get(f"{USERS}/me", headers=signed_in | {"If-None-Match": '"1"'}),
        await admin_client.get(USERS),
        await client.get(user_url(uuid7()), headers=signed_in),
        await client.post("/api/v1/auth/token", data={"username": "ada", "password": "no"}),
    ]
    for response in answers:
        assert_standard_headers(response)
    assert answers[4].status_code == 304


async def test_user_data_and_tokens_are_never_stored(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    body = {"email": "bob@example.com", "username": "bob", "password": PASSWORD}
    created = await client.post(USERS, json=body)
    login = await client.post("/api/v1/auth/token", data={"username": "bob", "password": PASSWORD})
    tokens = login.json()
    signed_in = bearer(tokens["access_token"])
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    user_id = created.json()["id"]
    answers = [
        created,
        login,
        refreshed,
        await client.get(user_url(user_id), headers=signed_in),
        await client.get(f"{USERS}/me", headers=signed_in),
        await admin_client.get(USERS, params={"limit": 1}),
        await admin_client.patch(user_url(user_id), json={"full_name": "Bob"}),
    ]
    for response in answers:
        assert response.status_code < 300, response.text
        assert "no-store" in response.headers["cache-control"], response.request.url
        assert len(response.headers.get_list("cache-control")) == 1


async def test_a_204_has_no_content_type(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    answers = [
        await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    ]
    # That login's session has ended, its access token with it: a second login.
    again = await login(client, "ada", PASSWORD)
    answers.append(
        await client.post("/api/v1/auth/logout-all", headers=bearer(again["access_token"]))
    )
    _, tokens = await register_and_login(client, "bob")
    me = (await client.get(f"{USERS}/me", headers=bearer(tokens["access_token"]))).json()
    answers.append(await client.delete(user_url(me["id"]), headers=bearer(tokens["access_token"])))
    for response in answers:
        assert response.status_code == 204, response.text
        assert "content-type" not in response.headers
        assert response.content == b""
        assert_standard_headers(response)


async def test_head_answers_as_get_without_the_body(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    """RFC 9110 §9.3.2: wherever GET is answered, HEAD is, with GET's status and headers."""
    me = (await admin_client.get(f"{USERS}/me")).json()
    for path in (f"{USERS}/me", user_url(me["id"]), f"{USERS}?limit=1", "/healthz", "/readyz"):
        got = await admin_client.get(path)
        head = await admin_client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "etag", "cache-control", "link"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    # a HEAD with the ETag it holds is a 304, as a GET would be
    etag = (await admin_client.get(f"{USERS}/me")).headers["etag"]
    unchanged = await admin_client.head(f"{USERS}/me", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    # and who may not GET may not HEAD
    assert (await client.head(f"{USERS}/me")).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", USERS, "GET, HEAD, POST"),
        ("POST", f"{USERS}/{UNKNOWN_ID}", "DELETE, GET, HEAD, PATCH"),
        ("OPTIONS", "/healthz", "GET, HEAD"),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_full_problem(response, 405)
    assert response.headers["allow"] == allowed


# --- CORS ----------------------------------------------------------------------


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_with(settings, cors_origins=(ORIGIN, "http://localhost:3000")) as client:
        yield client


def _preflight(
    origin: str, method: str = "PATCH", headers: str = "authorization, if-match"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_a_preflight_from_a_configured_origin_is_answered(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options(f"{USERS}/{uuid7()}", headers=_preflight(ORIGIN))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "PATCH" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    sendable = set(allowed.replace(" ", "").split(","))
    assert {"authorization", "if-match", "content-type", "x-consistency-token"} <= sendable
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens, no cookies
    assert_standard_headers(response)


async def test_a_cross_origin_answer_exposes_the_api_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.get("/api/v1/nothing", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        name.strip().lower()
        for name in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "link", "location", "retry-after", "x-request-id"} <= exposed
    assert "x-consistency-token" in exposed  # read-your-writes from a browser too
    other = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "preflight",
    [
        _preflight("https://evil.example"),
        _preflight(ORIGIN, method="TRACE"),
        _preflight(ORIGIN, headers="x-not-allowed"),
    ],
)
async def test_a_refused_preflight_is_a_problem(
    cors_client: httpx.AsyncClient, preflight: dict[str, str]
) -> None:
    response = await cors_client.options(USERS, headers=preflight)
    body = assert_full_problem(response, 400)
    assert body["code"] == "cors-refused"
    assert "access-control-allow-origin" not in response.headers


async def test_without_cors_origins_a_preflight_is_a_405(client: httpx.AsyncClient) -> None:
    response = await client.options(USERS, headers=_preflight(ORIGIN))
    assert_full_problem(response, 405)
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("given", "origins"),
    [
        ("", ()),
        ("https://App.Example.com/", ("https://app.example.com",)),
        (
            " http://localhost:3000 , https://[::1]:8443",
            ("http://localhost:3000", "https://[::1]:8443"),
        ),
        ("*", ("*",)),
    ],
)
def test_cors_origins_setting(given: str, origins: tuple[str, ...]) -> None:
    assert Settings(cors_origins=given, _env_file=None).cors_origins == origins


@pytest.mark.parametrize("given", ["app.example.com", "https://app.example.com/path", "ftp://x"])
def test_cors_origins_must_be_origins(given: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=given, _env_file=None)


async def test_cors_is_not_in_the_way_of_same_origin_requests(app: FastAPI) -> None:
    """No CORS layer at all unless configured: nothing to pay on every request."""
    layers: list[object] = [layer.cls for layer in app.user_middleware]
    assert Cors not in layers


async def test_a_write_answer_carries_a_consistency_token_and_a_read_none(
    client: httpx.AsyncClient,
) -> None:
    """The contract's read-your-writes header, with or without replicas configured."""
    created = await client.post(
        USERS,
        json={
            "email": "ct@example.com",
            "username": "consistent",
            "password": "a sentence long enough to pass",
        },
    )
    assert created.status_code == 201, created.text
    token = created.headers["x-consistency-token"]
    assert token  # opaque: the primary's WAL position after the commit
    read = await client.get("/healthz", headers={"X-Consistency-Token": token})
    assert read.status_code == 200
    assert "x-consistency-token" not in read.headers
