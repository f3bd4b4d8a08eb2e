"""Every error on every path is application/problem+json, and a 5xx leaks nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from uuid_utils.compat import uuid7

from tests.users.helpers import (
    PASSWORD,
    USERS,
    assert_problem,
    create_user,
    user_url,
    without_admin,
)
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import Database, Unit
from users_api.middleware import BodySizeLimit

LIMIT = 64 * 1024
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"

# An id no user has, fixed so that every pytest-xdist worker collects the same tests.
UNKNOWN_ID = "01a2417e-bcb6-763e-9a7d-731348a920c7"


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/api/v1"),
        ("GET", "/api/v2/users"),
        ("POST", "/api/v1/nope"),
        ("DELETE", "/api/v1/users/x/y"),
    ],
)
async def test_unknown_route_is_404_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    # No route matches, so this is the same for anyone, signed in or not.
    response = await client.request(method, path)
    assert_problem(response, 404)


async def test_a_nul_user_id_is_404_or_422_problem(admin_client: httpx.AsyncClient) -> None:
    # /users/%00 reaches the route, which checks the caller first: an admin gets to the id.
    response = await admin_client.get("/api/v1/users/%00")
    assert response.status_code in (404, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", USERS, {"GET", "HEAD", "POST"}),
        ("DELETE", USERS, {"GET", "HEAD", "POST"}),
        ("PATCH", USERS, {"GET", "HEAD", "POST"}),
        ("POST", f"{USERS}/{UNKNOWN_ID}", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("PUT", f"{USERS}/{UNKNOWN_ID}", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        # `/users/me` is its own path: it listed (and routed PATCH and DELETE to) the
        # id route's methods, whose `me` is no UUID (422).
        ("PATCH", f"{USERS}/me", {"GET", "HEAD"}),
        ("DELETE", f"{USERS}/me", {"GET", "HEAD"}),
        ("PUT", f"{USERS}/me", {"GET", "HEAD"}),
    ],
)
async def test_wrong_method_is_405_problem_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path, json={})
    assert_problem(response, 405)
    # Every method of the path, though Starlette names only the first route's (just
    # POST for /users).
    named = {part.strip() for part in response.headers["allow"].split(",")}
    assert named == allowed


def padded_user_body(size: int) -> bytes:
    """A valid registration body padded with JSON whitespace to exactly `size` bytes."""
    body = json.dumps({"email": "big@example.com", "username": "big", "password": PASSWORD})
    padded = (body[:-1] + " " * (size - len(body)) + "}").encode()
    assert len(padded) == size
    return padded


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        USERS, content=padded_user_body(LIMIT), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_body_over_the_limit_is_413_before_parsing(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    response = await client.post(
        USERS, content=padded_user_body(LIMIT + 1), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    # Only an admin may list users; the list holds that admin and no one else.
    assert without_admin((await admin_client.get(USERS)).json()["items"]) == []


async def test_huge_declared_length_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        USERS,
        content=b"{" + b" " * (10 * LIMIT) + b"}",
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413)


JSON_CONTENT = {"content-type": "application/json"}


async def chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("path", [USERS, f"{USERS}/{UNKNOWN_ID}"])
async def test_streamed_body_over_the_limit_is_413(
    admin_client: httpx.AsyncClient, path: str
) -> None:
    # As an admin, who may PATCH and list: the limit is the only reason to refuse.
    client = admin_client
    method = "POST" if path == USERS else "PATCH"
    request = client.build_request(
        method,
        path,
        content=chunks(padded_user_body(LIMIT + 1)),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    body = assert_problem(response, 413)
    assert without_admin((await client.get(USERS)).json()["items"]) == []
    # The same problem whichever layer refused it: streamed or declared.
    declared = await client.request(
        method, path, content=padded_user_body(LIMIT + 1), headers=JSON_CONTENT
    )
    assert body["type"] == assert_problem(declared, 413)["type"]
    assert body["type"].endswith(":too-large")


async def test_every_framework_refusal_has_a_code(client: httpx.AsyncClient) -> None:
    """No route, wrong method: a stable `code` at the end of the type, as everywhere."""
    missing = assert_problem(await client.get("/api/v1/nothing-here"), 404)
    assert missing["type"].endswith(":not-found")
    wrong = assert_problem(await client.put(USERS), 405)
    assert wrong["type"].endswith(":method-not-allowed")


async def test_streamed_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        USERS,
        content=chunks(padded_user_body(LIMIT)),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content",
    [b'{"email": "ada@example.com",', b"{'single': 'quotes'}", b"\xff\xfe", b"nul\x00", b"{}{}"],
)
async def test_malformed_json_is_422_problem(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        USERS, content=content, headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert body["errors"]


async def test_malformed_json_in_a_patch_is_422(admin_client: httpx.AsyncClient) -> None:
    # As an admin, who may PATCH anyone: the body is the only thing wrong.
    client = admin_client
    user = await create_user(client)
    response = await client.patch(
        user_url(user["id"]), content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"", "application/json"), (b"email=a@b.c", "application/x-www-form-urlencoded")],
)
async def test_missing_or_non_json_body_is_422(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(USERS, content=content, headers={"content-type": content_type})
    assert_problem(response, 422)


# --- server faults ---------------------------------------------------------------

SECRET = "s3cr3t-token-value"


@pytest.fixture
async def faulty_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with two extra routes that fail the way real code can."""
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError(f"unexpected state; api key {SECRET}")

    @app.get("/bad-sql")
    async def bad_sql(request: Request) -> dict[str, Any]:
        async def work(unit: Unit) -> None:
            await unit.connection.execute(f"SELECT password_hash FROM no_such_table_{SECRET[:6]}")  # noqa: S608

        database: Database = request.app.state.db
        await database.run(work)
        return {}

    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


@pytest.mark.parametrize("path", ["/boom", "/bad-sql"])
async def test_a_500_leaks_nothing(faulty_client: httpx.AsyncClient, path: str) -> None:
    response = await faulty_client.get(path)
    body = assert_problem(response, 500)
    for leak in (SECRET, SECRET[:6], "Traceback", "SELECT", "password_hash", "no_such_table"):
        assert leak not in response.text
        assert leak not in str(response.headers)
    assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}


async def test_an_unreachable_database_is_503_problem(
    settings: Settings, admin_client: httpx.AsyncClient
) -> None:
    # An admin's token (the same secret signs it): checking it needs the database, too.
    signed_in = {"Authorization": admin_client.headers["Authorization"]}
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE}))
    async with app.router.lifespan_context(app), client_for(app) as client:
        for request in (
            client.build_request("GET", USERS, headers=signed_in),
            client.build_request("GET", user_url(uuid7()), headers=signed_in),
            client.build_request("DELETE", user_url(uuid7()), headers=signed_in),
        ):
            response = await client.send(request)
            assert_problem(response, 503)
            assert int(response.headers["retry-after"]) > 0
            assert "127.0.0.1" not in response.text
            assert "nope" not in response.text


async def _body_reader(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body and answers with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def _through_limit(http_version: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """Two 8-byte chunks with no declared length through a 10-byte BodySizeLimit."""
    chunks = [
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8, "more_body": False},
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return chunks.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "http_version": http_version, "method": "POST"}
    scope |= {"path": "/", "headers": headers, "query_string": b"", "root_path": ""}
    await BodySizeLimit(_body_reader, limit=10)(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("http_version", "headers"),
    [("2", []), ("1.1", [(b"transfer-encoding", b"chunked")])],
)
async def test_a_body_of_unannounced_length_is_counted(
    http_version: str, headers: list[tuple[bytes, bytes]]
) -> None:
    sent = await _through_limit(http_version, headers)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["status"] == 413


async def test_paths_under_users_me_are_no_user_ids(admin_client: httpx.AsyncClient) -> None:
    """`/users/me/groups` is no route (it was 422: `me` is not a UUID); an id that is no
    UUID is still 422 everywhere else."""
    assert_problem(await admin_client.get(f"{USERS}/me/groups"), 404)
    assert_problem(await admin_client.delete(f"{USERS}/me/mfa"), 404)
    assert_problem(await admin_client.get(f"{USERS}/mine/groups"), 422)
    assert_problem(await admin_client.patch(f"{USERS}/meh", json={}), 422)
