"""GET /api/v1/users: the page shape, limits, every sort across pages, filters, Link."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from tests.conftest import ADMIN_USERNAME, http_scope
from tests.users.helpers import (
    BASE_TIME,
    SORTS,
    USER_KEYS,
    USERS,
    assert_no_secrets,
    assert_problem,
    assert_validation_problem,
    create_user,
    expected_order,
    ids,
    insert_users,
    make_rows,
    walk,
    without_admin,
)

# A plain list holds the population and the admin who makes the calls: 30 rows.
POPULATION = 29
LISTED = POPULATION + 1


@pytest.fixture
async def population(engine: AsyncEngine) -> list[dict[str, Any]]:
    rows = make_rows(POPULATION)
    for row, row_id in zip(rows, await insert_users(engine, rows), strict=True):
        row["id"] = row_id
    return rows


async def test_empty_list(client: httpx.AsyncClient) -> None:
    # The admin who asks is the only user, so only a filter that excludes it lists nothing.
    response = await client.get(USERS, params={"is_admin": "false"})
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}
    assert "link" not in response.headers


async def test_a_list_of_only_the_admin(client: httpx.AsyncClient) -> None:
    me = (await client.get(f"{USERS}/me")).json()
    response = await client.get(USERS)
    assert response.status_code == 200
    assert response.json() == {"items": [me], "next_cursor": None}
    assert "link" not in response.headers


async def test_page_shape(client: httpx.AsyncClient) -> None:
    created = await create_user(client, full_name="Ada Lovelace")
    response = await client.get(USERS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert without_admin(body["items"]) == [created]
    for item in body["items"]:
        assert set(item) == USER_KEYS
    assert body["next_cursor"] is None
    assert_no_secrets(body)


async def test_default_limit_is_50(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    # 50 users and the admin who lists them: 51 rows.
    await insert_users(engine, ({"username": f"user{n:03}"} for n in range(50)))
    response = await client.get(USERS)
    body = response.json()
    assert len(body["items"]) == 50
    assert body["next_cursor"] is not None
    rest = await client.get(USERS, params={"cursor": body["next_cursor"]})
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize("limit", [1, 200])
async def test_limit_bounds_are_accepted(
    client: httpx.AsyncClient, population: list[dict[str, Any]], limit: int
) -> None:
    response = await client.get(USERS, params={"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["items"]) == min(limit, LISTED)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "1000000000000", "ten", "1.5", ""])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get(USERS, params={"limit": limit})
    assert_validation_problem(response, "limit")


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "name"},
        {"sort": "+id"},
        {"sort": "password_hash"},
        {"is_active": "maybe"},
        {"is_admin": "2"},
        {"created_after": "yesterday"},
        {"created_before": "2026-13-01T00:00:00Z"},
        {"created_before": "0.0"},
        {"created_after": "1700000000"},
        {"q": ""},
        {"q": "x" * 201},
        {"q": "nul\x00byte"},
        {"email": ""},
        {"cursor": "x" * 1025},
    ],
)
async def test_bad_parameters_are_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get(USERS, params=params)
    assert_validation_problem(response, *params)


@pytest.mark.parametrize("sort", SORTS)
async def test_every_sort_orders_across_pages(
    client: httpx.AsyncClient, population: list[dict[str, Any]], sort: str
) -> None:
    items, pages = await walk(client, {"sort": sort, "limit": 7})
    assert ids(without_admin(items)) == expected_order(population, sort)
    assert pages == math.ceil(LISTED / 7)


@pytest.mark.parametrize("sort", SORTS)
async def test_a_page_per_user(
    client: httpx.AsyncClient, population: list[dict[str, Any]], sort: str
) -> None:
    items, pages = await walk(client, {"sort": sort, "limit": 1})
    assert ids(without_admin(items)) == expected_order(population, sort)
    assert pages == LISTED


@pytest.mark.parametrize("limit", [10, 15, 30])
async def test_an_exactly_full_last_page_has_no_next_cursor(
    client: httpx.AsyncClient, population: list[dict[str, Any]], limit: int
) -> None:
    items, pages = await walk(client, {"limit": limit})
    assert len(without_admin(items)) == POPULATION
    assert pages == LISTED // limit


async def test_default_sort_is_id(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    items, _ = await walk(client, {"limit": 200})
    assert ids(without_admin(items)) == expected_order(population, "id")


async def test_sorting_by_id_is_creation_order_for_api_users(client: httpx.AsyncClient) -> None:
    created = [await create_user(client, name) for name in ("zed", "amy", "Mia")]
    items, _ = await walk(client, {"limit": 2})
    assert ids(without_admin(items)) == [user["id"] for user in created]
    by_name, _ = await walk(client, {"limit": 2, "sort": "username"})
    assert [user["username"] for user in without_admin(by_name)] == ["amy", "Mia", "zed"]


async def test_link_header_is_sent_exactly_when_there_is_a_next_page(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    params: dict[str, Any] = {"sort": "-username", "limit": 12, "is_active": "true"}
    expected = expected_order([row for row in population if row["is_active"]], "-username")
    seen: list[dict[str, Any]] = []
    response = await client.get(USERS, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["items"])
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            break
        link = response.headers["link"]
        assert link.startswith("<")
        assert link.endswith('>; rel="next"')
        target = httpx.URL(link[1 : -len('>; rel="next"')])
        assert target.path == USERS
        assert target.params["cursor"] == body["next_cursor"]
        assert target.params["sort"] == "-username"
        assert target.params["limit"] == "12"
        assert target.params["is_active"] == "true"
        response = await client.get(str(target))
    assert ids(without_admin(seen)) == expected  # the admin is active too


async def test_following_link_equals_passing_the_cursor(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    first = await client.get(USERS, params={"limit": 5, "sort": "email"})
    link = first.headers["link"]
    by_link = await client.get(link[1 : link.index(">")])
    by_cursor = await client.get(
        USERS, params={"limit": 5, "sort": "email", "cursor": first.json()["next_cursor"]}
    )
    assert by_link.json() == by_cursor.json()
    everyone = (await client.get(USERS, params={"limit": 200, "sort": "email"})).json()["items"]
    assert ids(without_admin(everyone)) == expected_order(population, "email")
    assert ids(by_link.json()["items"]) == ids(everyone)[5:10]


async def test_link_keeps_encoded_parameters_and_replaces_the_cursor(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    """The other parameters go on as the client sent them (`%40` stays `%40`); the
    cursor is replaced, never repeated, however its name was spelled."""
    first = await client.get(f"{USERS}?limit=2&q=%40example&sort=email")
    second_link = first.headers["link"]
    assert "q=%40example" in second_link
    second = await client.get(second_link[1 : second_link.index(">")])
    third_link = second.headers["link"]
    target = httpx.URL(third_link[1 : third_link.index(">")])
    assert target.params.get_list("cursor") == [second.json()["next_cursor"]]
    assert target.params["q"] == "@example"
    spelled = await client.get(f"{USERS}?limit=2&q=%40example&sort=email&cur%73or=x")
    assert spelled.status_code == 400  # the route read `cur%73or` as the cursor
    respelled = await client.get(
        f"{USERS}?limit=2&q=%40example&sort=email&cur%73or={first.json()['next_cursor']}"
    )
    respelled_link = httpx.URL(respelled.headers["link"][1 : respelled.headers["link"].index(">")])
    assert respelled_link.params.get_list("cursor") == [respelled.json()["next_cursor"]]


async def _raw_get(
    app: FastAPI, path: str, query: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str]]:
    """GET with a query string exactly as given: httpx would percent-encode `<`, `>` and
    `"`, which a server (uvicorn's httptools) passes on as they came."""
    scope = http_scope("GET", path, query=query, headers=headers)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def _links(header: str) -> list[str]:
    """The targets of a `Link` header: each `<...>` it holds."""
    return [part.partition(">")[0] for part in header.split("<")[1:]]


async def test_link_is_built_from_the_parsed_parameters_never_the_raw_query(
    app: FastAPI, client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    """A raw query cannot add a link of its own (here a script to preload)."""
    injected = b'limit=2&sort=email&x=>;rel="preload";as="script",<https://evil.example/x.js'
    authorization = client.headers["Authorization"].encode()
    status, headers = await _raw_get(app, USERS, injected, [(b"authorization", authorization)])
    assert status == 200
    link = headers["link"]
    assert _links(link) == [link[1 : link.index(">")]], link
    assert link.endswith('>; rel="next"')
    assert "evil" not in link
    assert "preload" not in link
    target = httpx.URL(_links(link)[0])
    assert target.path == USERS
    assert not target.is_absolute_url
    assert set(target.params) == {"limit", "sort", "cursor"}


async def test_link_is_relative_whatever_the_host_header(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    response = await client.get(
        USERS,
        params={"limit": 3, "is_active": "1", "created_after": "2000-01-01T00:00:00Z", "x": "y"},
        headers={"Host": "evil.example"},
    )
    link = response.headers["link"]
    assert "evil" not in link
    target = httpx.URL(_links(link)[0])
    assert str(target).startswith(f"{USERS}?")
    # What the route read, written as it reads it; an unknown parameter is dropped.
    assert target.params["is_active"] == "true"
    assert target.params["created_after"] == "2000-01-01T00:00:00+00:00"
    assert "x" not in target.params
    following = await client.get(str(target))
    assert following.status_code == 200
    assert len(following.json()["items"]) == 3


@pytest.mark.parametrize("path", [f"{USERS}/", "/healthz/"])
async def test_a_trailing_slash_does_not_redirect_to_the_host_header(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"Host": "evil.example"})
    assert "location" not in response.headers
    assert "evil" not in response.text
    assert_problem(response, 404)


# --- filters ---------------------------------------------------------------------


async def test_filter_is_active_and_is_admin(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    for flag in ("is_active", "is_admin"):
        for value in (True, False):
            items, _ = await walk(client, {flag: str(value).lower(), "limit": 4})
            expected = [row for row in population if row[flag] is value]
            # The admin who lists is active and an admin: listed exactly when value is true.
            others = without_admin(items, listed=value)
            assert ids(others) == expected_order(expected, "id"), (flag, value)
            assert all(item[flag] is value for item in items)
    both, _ = await walk(client, {"is_active": "true", "is_admin": "true"})
    expected = [row for row in population if row["is_active"] and row["is_admin"]]
    assert ids(without_admin(both)) == expected_order(expected, "id")


@pytest.mark.parametrize(
    ("after", "before", "minutes"),
    [
        ("2026-01-01T00:02:30Z", None, range(3, 10)),
        (None, "2026-01-01T00:02:30Z", range(3)),
        ("2026-01-01T00:02:30Z", "2026-01-01T00:06:30Z", range(3, 7)),
        # The same instants with an offset, and without one (read as UTC).
        ("2026-01-01T01:02:30+01:00", "2025-12-31T23:06:30-01:00", range(3, 7)),
        ("2026-01-01T00:02:30", "2026-01-01T00:06:30", range(3, 7)),
        ("2026-01-01T00:06:30Z", "2026-01-01T00:02:30Z", range(0)),
    ],
)
async def test_filter_created_after_and_before(
    client: httpx.AsyncClient,
    population: list[dict[str, Any]],
    after: str | None,
    before: str | None,
    minutes: range,
) -> None:
    params: dict[str, Any] = {"sort": "-created_at", "limit": 5}
    if after:
        params["created_after"] = after
    if before:
        params["created_before"] = before
    items, _ = await walk(client, params)
    # The admin was created just now, after every bound here: only an upper one excludes it.
    items = without_admin(items, listed=before is None)
    instants = {BASE_TIME + timedelta(minutes=minute) for minute in minutes}
    expected = [row for row in population if row["created_at"] in instants]
    assert ids(items) == expected_order(expected, "-created_at")
    for item in items:
        moment = datetime.fromisoformat(item["created_at"])
        assert min(instants) <= moment <= max(instants)


@pytest.fixture
async def searchable(engine: AsyncEngine) -> dict[str, uuid.UUID]:
    rows: list[dict[str, Any]] = [
        {"username": "Ada", "email": "ada@example.com", "full_name": "Ada Lovelace"},
        {"username": "grace", "email": "Grace.Hopper@Navy.mil", "full_name": "Grace Hopper"},
        {"username": "percent", "email": "p@example.com", "full_name": "100% sure"},
        {"username": "under_score", "email": "u@example.com", "full_name": None},
        {"username": "plain", "email": "plain@example.com", "full_name": "back\\slash"},
        {"username": "LOVELACE2", "email": "l2@example.org", "full_name": None},
    ]
    inserted = await insert_users(engine, rows)
    return {row["username"]: row_id for row, row_id in zip(rows, inserted, strict=True)}


@pytest.mark.parametrize(
    ("q", "names"),
    [
        ("lovelace", {"Ada", "LOVELACE2"}),  # full name and username
        ("LoVeLaCe", {"Ada", "LOVELACE2"}),
        ("navy.MIL", {"grace"}),  # email
        ("ADA@", {"Ada"}),
        ("example.org", {"LOVELACE2"}),
        ("%", {"percent"}),  # taken literally, not as a wildcard
        ("0%", {"percent"}),
        ("_", {"under_score"}),
        ("r_s", {"under_score"}),
        ("\\", {"plain"}),
        ("k\\s", {"plain"}),
        # ... and the admin who makes the calls, as root@example.com
        ("e", {"Ada", "grace", "percent", "under_score", "plain", "LOVELACE2", ADMIN_USERNAME}),
        ("nobody", set()),
        ("'; DROP TABLE users; --", set()),
    ],
)
async def test_filter_q_is_a_literal_case_insensitive_substring(
    client: httpx.AsyncClient, searchable: dict[str, uuid.UUID], q: str, names: set[str]
) -> None:
    items, _ = await walk(client, {"q": q, "limit": 2})
    assert {item["username"] for item in items} == names
    assert sorted(ids(items)) == ids(items)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"email": "ADA@EXAMPLE.COM"}, {"Ada"}),
        ({"email": "grace.hopper@navy.mil"}, {"grace"}),
        ({"email": "ada@example"}, set()),  # exact, not a substring
        ({"email": "%@example.com"}, set()),
        ({"username": "ada"}, {"Ada"}),
        ({"username": "lovelace2"}, {"LOVELACE2"}),
        ({"username": "under_scor"}, set()),
        ({"username": "under%"}, set()),
        ({"username": "grace", "email": "ada@example.com"}, set()),
        ({"username": "grace", "q": "hopper"}, {"grace"}),
    ],
)
async def test_filter_email_and_username_are_exact_and_case_insensitive(
    client: httpx.AsyncClient,
    searchable: dict[str, uuid.UUID],
    params: dict[str, str],
    names: set[str],
) -> None:
    response = await client.get(USERS, params=params)
    assert response.status_code == 200
    assert {item["username"] for item in response.json()["items"]} == names


async def test_filters_and_sort_combine_across_pages(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    params = {"q": "person", "is_admin": "false", "sort": "-email", "limit": 3}
    items, _ = await walk(client, params)
    expected = [
        row
        for row in population
        if row["full_name"] and "person" in row["full_name"].lower() and not row["is_admin"]
    ]
    assert expected
    assert ids(items) == expected_order(expected, "-email")


# --- cursors ---------------------------------------------------------------------


async def first_cursor(client: httpx.AsyncClient, sort: str) -> str:
    response = await client.get(USERS, params={"sort": sort, "limit": 2})
    cursor: str = response.json()["next_cursor"]
    assert cursor
    return cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "not a cursor",
        "!!!!",
        "====",
        "eyJ",  # the start of a JSON object, cut short
        "e30",  # {}
        "W10",  # []
        "bnVsbA",  # null
        "\u00e9\u00e9\u00e9\u00e9",
        "%00%00",
    ],
)
async def test_garbage_cursor_is_400(
    client: httpx.AsyncClient, population: list[dict[str, Any]], cursor: str
) -> None:
    response = await client.get(USERS, params={"cursor": cursor})
    assert_problem(response, 400)


@pytest.mark.parametrize("sort", SORTS)
async def test_truncated_or_tampered_cursor_is_400(
    client: httpx.AsyncClient, population: list[dict[str, Any]], sort: str
) -> None:
    cursor = await first_cursor(client, sort)
    for bad in (cursor[:-3], cursor[: len(cursor) // 2], cursor[1:], cursor + "AAAA"):
        response = await client.get(USERS, params={"sort": sort, "cursor": bad})
        assert_problem(response, 400)


@pytest.mark.parametrize("sort", SORTS)
async def test_cursor_from_another_sort_is_400(
    client: httpx.AsyncClient, population: list[dict[str, Any]], sort: str
) -> None:
    cursor = await first_cursor(client, sort)
    for other in SORTS:
        if other == sort:
            continue
        response = await client.get(USERS, params={"sort": other, "cursor": cursor})
        assert_problem(response, 400)


async def test_a_cursor_survives_the_deletion_of_its_row(
    client: httpx.AsyncClient, population: list[dict[str, Any]]
) -> None:
    page = (await client.get(USERS, params={"limit": 4, "sort": "username"})).json()
    deleted = await client.delete(f"{USERS}/{page['items'][-1]['id']}")
    assert deleted.status_code == 204, deleted.text
    rest, _ = await walk(client, {"sort": "username", "limit": 100, "cursor": page["next_cursor"]})
    # The first page and the rest together are the whole order, the admin in it once.
    assert ids(without_admin(page["items"] + rest)) == expected_order(population, "username")


@pytest.mark.parametrize(
    "params",
    [
        {"created_after": "0001-01-01T00:00:00Z"},
        {"created_after": "0001-01-01T00:00:00-14:00"},
        {"created_before": "9999-12-31T23:59:59Z"},
        {"created_before": "9999-12-31T23:59:59+14:00"},
    ],
)
async def test_created_bounds_at_the_ends_of_time_are_accepted(
    client: httpx.AsyncClient, population: list[dict[str, Any]], params: dict[str, str]
) -> None:
    response = await client.get(USERS, params={**params, "limit": 200})
    assert response.status_code == 200, response.text
    assert len(without_admin(response.json()["items"])) == POPULATION


# Local parts whose lower case differs between Python and PostgreSQL (İ becomes "i" plus
# a combining dot in Python, plain "i" in PostgreSQL), next to plain neighbours.
UNICODE_EMAILS = [
    "İa@example.com",
    "ie@example.com",
    "ıb@example.com",  # noqa: RUF001  # a dotless i, on purpose
    "ẞc@example.com",
    "Ωδ@example.com",  # all Greek: Ω with a Latin letter would mix scripts (422)
    "ǅf@example.com",
    "ia@example.com.au",
]


@pytest.fixture
async def unicode_users(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return [
        await create_user(client, f"user{n}", email=email) for n, email in enumerate(UNICODE_EMAILS)
    ]


async def test_email_filter_finds_unicode_addresses_as_stored(
    client: httpx.AsyncClient, unicode_users: list[dict[str, Any]]
) -> None:
    for user in unicode_users:
        response = await client.get(USERS, params={"email": user["email"]})
        assert ids(response.json()["items"]) == [user["id"]], user["email"]


@pytest.mark.parametrize("sort", ["email", "-email"])
async def test_paging_by_email_is_exact_for_unicode_addresses(
    client: httpx.AsyncClient, unicode_users: list[dict[str, Any]], sort: str
) -> None:
    one_page = (await client.get(USERS, params={"sort": sort})).json()["items"]
    assert len(without_admin(one_page)) == len(UNICODE_EMAILS)
    for limit in (1, 2, 3):
        items, _ = await walk(client, {"sort": sort, "limit": limit})
        assert ids(items) == ids(one_page), limit
