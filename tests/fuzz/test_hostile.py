"""Hostile input: every request below gets a clear 4xx problem, and nothing is stored."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, register_and_login

USERS = "/api/v1/users"
TOKEN = "/api/v1/auth/token"
JSON = {"content-type": "application/json"}
GOOD = {"email": "eve@example.com", "username": "eve", "password": PASSWORD}


async def _snapshot(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, email, username, full_name, version, auth_version FROM users")
        )
        tokens = await connection.execute(text("SELECT count(*) FROM refresh_tokens"))
        return [sorted(map(tuple, rows.all())), tokens.scalar_one()]


@pytest.fixture
async def unchanged(engine: AsyncEngine, admin_client: httpx.AsyncClient) -> AsyncIterator[None]:
    """The test's requests must leave users and refresh tokens exactly as they were."""
    before = await _snapshot(engine)
    yield
    assert await _snapshot(engine) == before


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    assert "SELECT" not in response.text
    return body


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


BAD_BODIES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("truncated JSON", b'{"email": "eve@example.com", ', JSON, 422),
    ("not JSON at all", b"email=eve@example.com", JSON, 422),
    ("empty body", b"", JSON, 422),
    ("JSON null", b"null", JSON, 422),
    ("JSON array", b"[1, 2, 3]", JSON, 422),
    ("JSON string", b'"eve"', JSON, 422),
    ("trailing garbage", orjson.dumps(GOOD) + b"}", JSON, 422),
    ("invalid UTF-8", b'{"email": "\xff\xfe@example.com"}', JSON, 400),
    ("lone surrogate", orjson.dumps(GOOD).replace(b'"eve"', b'"\\ud800eve"'), JSON, 422),
    ("10,000 nested arrays", b"[" * 10_000 + b"]" * 10_000, JSON, 400),
    ("nested arrays in a field", b'{"email": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", JSON, 400),
    ("5,000 nested objects", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, JSON, 400),
    ("5,000-digit number", b'{"is_admin": ' + b"9" * 5_000 + b"}", JSON, 400),
    ("text/plain", orjson.dumps(GOOD), {"content-type": "text/plain"}, 422),
    ("no content type", orjson.dumps(GOOD), {"content-type": ""}, 422),
    (
        "form data",
        b"email=eve%40example.com&username=eve",
        {"content-type": "application/x-www-form-urlencoded"},
        422,
    ),
    (
        "multipart",
        b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\neve\r\n--x--\r\n',
        {"content-type": "multipart/form-data; boundary=x"},
        422,
    ),
    ("body over 64 KiB", b'{"full_name": "' + b"a" * 70_000 + b'"}', JSON, 413),
]
BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("NUL in email", GOOD | {"email": "eve\x00@example.com"}),
    ("NUL in username", GOOD | {"username": "ev\x00e"}),
    ("NUL in full_name", GOOD | {"full_name": "Eve\x00"}),
    ("newline after username", GOOD | {"username": "eve\n"}),
    ("SQL in username", GOOD | {"username": "eve'; DROP TABLE users; --"}),
    ("header injection in username", GOOD | {"username": "eve\r\nX-Admin: 1"}),
    ("unknown field", GOOD | {"role": "admin"}),
    ("password_hash smuggled", GOOD | {"password_hash": "x"}),
    ("is_admin as a string", GOOD | {"is_admin": "yes"}),
    ("is_active as a number", GOOD | {"is_active": 0}),
    ("email as a list", GOOD | {"email": ["eve@example.com"]}),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("label", "body", "headers", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_bodies_to_create_and_patch(
    admin_client: httpx.AsyncClient, label: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    me = (await admin_client.get(f"{USERS}/me")).json()
    assert_problem(await admin_client.post(USERS, content=body, headers=headers), status)
    response = await admin_client.patch(f"{USERS}/{me['id']}", content=body, headers=headers)
    assert_problem(response, status)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("label", "body"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS])
async def test_bad_fields(
    admin_client: httpx.AsyncClient, label: str, body: dict[str, Any]
) -> None:
    problem = assert_problem(await admin_client.post(USERS, json=body), 422)
    assert problem["errors"]
    me = (await admin_client.get(f"{USERS}/me")).json()
    patch = {k: v for k, v in body.items() if k != "password"}
    assert_problem(await admin_client.patch(f"{USERS}/{me['id']}", json=patch), 422)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (orjson.dumps({"username": "root", "password": "x"}), "application/json", 422),
        (b"username=root", "application/x-www-form-urlencoded", 422),
        (b"username=ro%00ot&password=x", "application/x-www-form-urlencoded", 422),
        (b"username=" + b"a" * 400 + b"&password=x", "application/x-www-form-urlencoded", 422),
        (b"garbage", "multipart/form-data", 400),
        (b"--x\r\ngarbage", "multipart/form-data; boundary=x", 422),
        (b"username=root&password=" + b"p" * 70_000, "application/x-www-form-urlencoded", 413),
    ],
    ids=[
        "JSON",
        "no password",
        "NUL in username",
        "overlong username",
        "no boundary",
        "broken multipart",
        "over 64 KiB",
    ],
)
async def test_bad_logins(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    response = await client.post(TOKEN, content=content, headers={"content-type": content_type})
    assert_problem(response, status)


async def test_odd_but_harmless_logins_are_plain_401s(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for content in (
        b"username=%FF%FE&password=abc",  # percent-encoded invalid UTF-8
        b"username=\xff\xfe&password=abc",  # raw invalid UTF-8
        b"username=root' OR '1'='1&password=' OR '1'='1",
        b"username=root&password=x%00y",  # a NUL in a password is just a character
    ):
        response = await client.post(TOKEN, content=content, headers=form)
        assert assert_problem(response, 401)["type"].endswith("invalid-credentials")
    assert (await _snapshot(engine))[1] == 0


QUERIES: list[tuple[str, str, int]] = [
    ("NUL in q", "q=a%00b", 422),
    ("NUL in email", "email=a%00b", 422),
    ("NUL in username", "username=a%00", 422),
    ("SQL in sort", "sort=id;DROP TABLE users", 422),
    ("SQL in sort direction", "sort=id desc", 422),
    ("unknown sort column", "sort=password_hash", 422),
    ("overlong q", "q=" + "a" * 60_000, 422),
    ("limit 0", "limit=0", 422),
    ("limit huge", "limit=" + "9" * 50, 422),
    ("limit text", "limit=ten", 422),
    ("is_admin text", "is_admin=maybe", 422),
    ("created_after nonsense", "created_after=yesterday", 422),
    ("cursor SQL", "cursor=' OR 1=1 --", 400),
    ("cursor not base64", "cursor=%%%%", 400),
    ("cursor too long", "cursor=" + "A" * 2000, 422),
    ("cursor with NUL", "cursor=a%00b", 400),
]


@pytest.mark.parametrize(("label", "query", "status"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_bad_list_queries(
    admin_client: httpx.AsyncClient, label: str, query: str, status: int
) -> None:
    assert_problem(await admin_client.get(f"{USERS}?{query}"), status)


@pytest.mark.parametrize(
    "query",
    [
        "created_after=0001-01-01T00:00:00%2B14:00",  # year 0 once in UTC
        "created_before=9999-12-31T23:59:59-14:00",  # year 10000 once in UTC
        "created_after=0001-01-01T00:00:00%2B14:00&created_before=9999-12-31T23:59:59-14:00",
    ],
)
async def test_bounds_beyond_the_calendar_mean_no_bound(
    admin_client: httpx.AsyncClient, query: str
) -> None:
    response = await admin_client.get(f"{USERS}?{query}")
    assert response.status_code == 200, response.text
    assert [user["username"] for user in response.json()["items"]] == ["root"]


@pytest.mark.parametrize(
    "query",
    [
        "q=' OR 1=1 --",
        "q=%25",  # a LIKE wildcard is a literal here
        "q=_",
        "q=\\",
        "email=x' OR '1'='1",
        "username=root'--",
        "q=%FF%FE",  # invalid UTF-8 in the query string
        "q=%ED%A0%80",  # an encoded surrogate
    ],
)
async def test_injection_in_filters_matches_nothing(
    admin_client: httpx.AsyncClient, query: str
) -> None:
    await register_and_login(admin_client, "bystander")
    response = await admin_client.get(f"{USERS}?{query}")
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "payload",
    [
        {
            "l": "users",
            "s": "created_at",
            "k": "0001-01-01T00:00:00+14:00",
            "i": "01a2018c-0456-7485-9d29-d92121005ca5",
        },
        {
            "l": "users",
            "s": "created_at",
            "k": "9999-12-31T23:59:59-14:00",
            "i": "01a2018c-0456-7485-9d29-d92121005ca5",
        },
        {
            "l": "users",
            "s": "created_at",
            "k": "2026-01-01T00:00:00",
            "i": "01a2018c-0456-7485-9d29-d92121005ca5",
        },
        {
            "l": "users",
            "s": "created_at",
            "k": "now(); DROP TABLE users",
            "i": "01a2018c-0456-7485-9d29-d92121005ca5",
        },
        {"l": "users", "s": "username", "k": "x", "i": "' OR 1=1"},
        {"l": "users", "s": "username", "k": 1, "i": "01a2018c-0456-7485-9d29-d92121005ca5"},
        {"l": "users", "s": "username", "k": "a\x00", "i": "01a2018c-0456-7485-9d29-d92121005ca5"},
        {"l": "users", "s": "id", "k": "x", "i": "y"},
        {"l": "users", "s": "email", "k": "x", "i": "01a2018c-0456-7485-9d29-d92121005ca5"},
        [1, 2, 3],
    ],
)
async def test_tampered_cursors(admin_client: httpx.AsyncClient, payload: object) -> None:
    sort = payload["s"] if isinstance(payload, dict) and payload["s"] != "email" else "username"
    response = await admin_client.get(USERS, params={"sort": sort, "cursor": _cursor(payload)})
    assert_problem(response, 400)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "if_match",
    [
        b"garbage",
        b'"1',
        b'W/"1"x',
        b"\xff\xfe",
        b'"' + b"9" * 40 + b'"',
        b'"-1"',
        b'"1.0"',
        b'W/"1"',  # If-Match compares strongly: a weak tag never matches
        b"",
        b" , ,",
    ],
)
async def test_if_match_garbage_is_412(admin_client: httpx.AsyncClient, if_match: bytes) -> None:
    me = (await admin_client.get(f"{USERS}/me")).json()
    url = f"{USERS}/{me['id']}"
    assert_problem(
        await admin_client.patch(url, json={"full_name": "x"}, headers={b"If-Match": if_match}),
        412,
    )
    assert_problem(await admin_client.delete(url, headers={b"If-Match": if_match}), 412)


async def test_hostile_headers(client: httpx.AsyncClient) -> None:
    user, tokens = await register_and_login(client, "ada")
    url = f"{USERS}/{user['id']}"
    for authorization in (b"Bearer \xff\xfe", b"Bearer a.b.c", b"Basic cm9vdDpyb290", b"Bearer"):
        response = await client.get(url, headers={b"Authorization": authorization})
        assert assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    ok = {b"Authorization": f"Bearer {tokens['access_token']}".encode()}
    for if_none_match in (b"\xff\xfe", b'"1"\r\nX-Evil: 1', b"*" * 8000):
        response = await client.get(url, headers=ok | {b"If-None-Match": if_none_match})
        assert response.status_code in {200, 304}
        assert "x-evil" not in response.headers


@pytest.mark.parametrize("path", ["/%00", "/%FF", "/..%2F..%2Fetc", "/1 OR 1=1", "/" + "a" * 5000])
async def test_hostile_ids(admin_client: httpx.AsyncClient, path: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await admin_client.request(method, f"{USERS}{path}", json={"full_name": "x"})
        assert_problem(response, 404, 422)


async def test_refresh_token_garbage(client: httpx.AsyncClient) -> None:
    for token in ("a\x00b", "' OR 1=1 --", "\u202e", "x" * 4096):
        for path in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
            response = await client.post(path, json={"refresh_token": token})
            if path.endswith("refresh"):
                assert_problem(response, 401)
            else:
                assert response.status_code == 204
    assert_problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 4097}), 422
    )
