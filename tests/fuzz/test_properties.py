"""Hypothesis properties of the validation rules and of the keyset cursors."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

import httpx
import orjson
import pytest
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.auth.helpers import register
from tests.conftest import login
from users_api.errors import InvalidCursor
from users_api.users import cursor
from users_api.users.schemas import UserCreate, UserSort, UserUpdate

USERS = "/api/v1/users"
USERNAME = re.compile(r"[A-Za-z0-9_.\-@+]{3,128}")
PASSWORD = "a perfectly fine password"
BASE = {"email": "ada@example.com", "username": "ada", "password": PASSWORD}
# Pure properties are cheap; those that go through HTTP and PostgreSQL get fewer examples.
PURE = settings(max_examples=300, deadline=None)
HTTP = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _valid(model: type[UserCreate] | type[UserUpdate], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


# --- usernames ---------------------------------------------------------------


@PURE
@given(
    st.one_of(
        st.text(),
        st.from_regex(USERNAME, fullmatch=True),
        st.from_regex(USERNAME, fullmatch=True).map(lambda name: name + "\n"),
        st.text(alphabet="Aa0_.-@+\n\x00é ", max_size=140),
    )
)
@example("abc\n")
@example("ab")
@example("a" * 129)
@example("a" * 128)
@example("ada.lovelace+x@contoso.com")
@example("\uff41\uff42\uff43")  # fullwidth "abc": letters, but not A-Z
@example("\u0661\u0662\u0663")  # Arabic-Indic digits: digits, but not 0-9
def test_username_is_exactly_the_documented_regex(name: str) -> None:
    expected = USERNAME.fullmatch(name) is not None
    assert _valid(UserCreate, BASE | {"username": name}) is expected
    assert _valid(UserUpdate, {"username": name}) is expected


# --- emails ------------------------------------------------------------------

_SPECIAL = (".test", ".local", ".localhost", ".invalid", ".onion", ".arpa", ".example")


def test_role_mailboxes_are_stored_in_lower_case() -> None:
    """RFC 2142 mailboxes are case-insensitive; email-validator writes them lower-case
    (found by the property below as `WWW@A.AS`). Other local parts keep their case."""
    assert UserCreate.model_validate(BASE | {"email": "WWW@A.AS"}).email == "www@a.as"
    assert UserCreate.model_validate(BASE | {"email": "Ada@A.AS"}).email == "Ada@a.as"


@PURE
@given(st.emails().filter(lambda e: not e.lower().endswith(_SPECIAL)), st.data())
def test_email_domain_is_lower_cased_and_the_local_part_kept(email: str, data: Any) -> None:
    local, _, domain = email.rpartition("@")
    shouted = (
        local + "@" + "".join(data.draw(st.sampled_from([c.lower(), c.upper()])) for c in domain)
    )
    stored = UserCreate.model_validate(BASE | {"email": email}).email
    # The case of the domain never matters; the local part is kept exactly, except the
    # role mailboxes RFC 2142 declares case-insensitive (postmaster, www...), which
    # email-validator writes in lower case.
    assert UserCreate.model_validate(BASE | {"email": shouted}).email == stored
    stored_local, _, stored_domain = stored.rpartition("@")
    role_mailbox = local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES
    assert stored_local == (local.lower() if role_mailbox else local)
    assert stored_domain == stored_domain.lower()  # xn-- domains come back as Unicode
    # Idempotent: the stored form validates to itself.
    assert UserCreate.model_validate(BASE | {"email": stored}).email == stored


@PURE
@given(st.text(max_size=300))
@example("ada@@example.com")
@example("ada@example.com\x00")
@example("ada@localhost")
@example("a" * 250 + "@example.com")
def test_email_is_refused_or_normalised_never_an_error(text: str) -> None:
    try:
        model = UserCreate.model_validate(BASE | {"email": text})
    except ValidationError:
        return
    assert "@" in model.email
    assert "\x00" not in model.email
    assert len(model.email) <= 254
    assert model.email.rpartition("@")[2] == model.email.rpartition("@")[2].lower()


# --- passwords -----------------------------------------------------------------

# Letters of 1 to 4 UTF-8 bytes: ASCII, Latin-1, CJK and astral (emoji, Gothic).
_CHARS = st.sampled_from(["a", "é", "漢", "😀", "𐌰", " ", "\u0301"])


@PURE
@given(st.lists(_CHARS, min_size=0, max_size=140).map("".join))
def test_password_length_counts_characters_not_bytes(password: str) -> None:
    expected = 12 <= len(password) <= 128
    assert _valid(UserCreate, BASE | {"password": password}) is expected
    assert _valid(UserUpdate, {"password": password}) is expected


@HTTP
@given(
    length=st.sampled_from([11, 12, 128, 129]),
    char=st.sampled_from(["é", "漢", "😀", "𐌰"]),
)
async def test_multibyte_passwords_over_http(
    client: httpx.AsyncClient, length: int, char: str
) -> None:
    """Kept exactly as given: the same characters log in, one fewer does not.

    Characters near `char`, not `char` repeated: a repeat is too easy to guess (zxcvbn).
    """
    password = "".join(chr(ord(char) + (7 * n) % 31) for n in range(length - 1)) + "x"
    name = f"pw{length}-{ord(char):x}"
    response = await client.post(
        USERS,
        content=orjson.dumps(
            {"email": f"{name}@example.com", "username": name, "password": password}
        ),
        headers={"content-type": "application/json"},
    )
    if not 12 <= length <= 128:
        assert response.status_code == 422, response.text
        return
    assert response.status_code in {201, 409}, response.text  # 409: drawn before
    await login(client, name, password)
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": name, "password": password[:-1]}
    )
    assert wrong.status_code == 401


# --- full_name -----------------------------------------------------------------


@PURE
@given(st.text(max_size=210) | st.lists(_CHARS, max_size=210).map("".join))
def test_full_name_is_at_most_200_characters(name: str) -> None:
    expected = len(name) <= 200 and "\x00" not in name
    assert _valid(UserCreate, BASE | {"full_name": name}) is expected
    assert _valid(UserUpdate, {"full_name": name}) is expected


# --- cursors -------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_KEYS = st.one_of(
    st.text(max_size=400),
    st.integers(),
    st.none(),
    st.floats(allow_nan=False),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.uuids().map(str),
    st.lists(st.integers(), max_size=3),
)
_PAYLOADS = st.one_of(
    st.fixed_dictionaries(
        {
            "l": st.sampled_from([cursor.USERS, cursor.GROUPS]) | st.text(max_size=10),
            "s": st.sampled_from([s.value for s in UserSort]) | st.text(max_size=10),
            "k": _KEYS,
            "i": st.uuids().map(str) | st.text(max_size=40),
        }
    ),
    st.dictionaries(st.text(max_size=3), _KEYS, max_size=4),
    _KEYS,
)


@PURE
@given(payload=_PAYLOADS, sort=st.sampled_from(list(UserSort)))
def test_decode_refuses_or_returns_a_position(payload: object, sort: UserSort) -> None:
    try:
        position = cursor.decode(_b64(json.dumps(payload).encode()), sort, scope=cursor.USERS)
    except InvalidCursor:
        return
    assert (position.scope, position.sort) == (cursor.USERS, sort)
    # What decodes must survive a round trip unchanged.
    assert cursor.decode(cursor.encode(position), sort, scope=cursor.USERS) == position


@PURE
@given(text=st.text(max_size=1024), sort=st.sampled_from(list(UserSort)))
def test_decode_of_arbitrary_text_never_raises_anything_else(text: str, sort: UserSort) -> None:
    with contextlib.suppress(InvalidCursor):
        cursor.decode(text, sort, scope=cursor.USERS)


@pytest.fixture
async def walk(admin_client: httpx.AsyncClient) -> dict[str, str]:
    """A few users and a real next-page cursor for each sort."""
    for name in ("bea", "Cid", "dee"):
        await register(admin_client, name)
    cursors = {}
    for sort in UserSort:
        page = (await admin_client.get(USERS, params={"sort": sort.value, "limit": 1})).json()
        cursors[sort.value] = page["next_cursor"]
    return cursors


@pytest.fixture
async def orders(admin_client: httpx.AsyncClient, walk: dict[str, str]) -> dict[str, list[str]]:
    """The ids of all the users (those of `walk` and the admin) in each sort's order."""
    found = {}
    for sort in UserSort:
        page = (await admin_client.get(USERS, params={"sort": sort.value})).json()
        assert page["next_cursor"] is None  # all on one page
        found[sort.value] = [item["id"] for item in page["items"]]
    return found


def _assert_a_page_past_some_position(response: httpx.Response, order: list[str]) -> None:
    """A cursor's page holds the rows past its position: a tail of the whole order."""
    page = response.json()
    assert set(page) == {"items", "next_cursor"}, page
    ids = [item["id"] for item in page["items"]]
    assert ids == order[len(order) - len(ids) :], (ids, order)
    assert page["next_cursor"] is None  # what is left of 4 users fits the default limit


@HTTP
@given(sort=st.sampled_from([s.value for s in UserSort]), payload=_PAYLOADS)
async def test_forged_cursors_are_400_or_a_page(
    admin_client: httpx.AsyncClient, orders: dict[str, list[str]], sort: str, payload: object
) -> None:
    response = await admin_client.get(
        USERS, params={"sort": sort, "cursor": _b64(json.dumps(payload).encode())}
    )
    assert response.status_code in {200, 400}, response.text
    if response.status_code == 400:
        assert response.json()["type"].endswith("invalid-cursor")
    else:
        _assert_a_page_past_some_position(response, orders[sort])


@HTTP
@given(
    sort=st.sampled_from([s.value for s in UserSort]),
    cut=st.integers(min_value=0, max_value=200),
    flip=st.integers(min_value=0, max_value=200),
    char=st.characters(codec="utf-8"),
)
async def test_truncated_or_tampered_cursors_are_400_or_a_page(
    admin_client: httpx.AsyncClient,
    walk: dict[str, str],
    orders: dict[str, list[str]],
    sort: str,
    cut: int,
    flip: int,
    char: str,
) -> None:
    real = walk[sort]
    assume(flip < len(real))
    for tampered in (real[:cut], real[:flip] + char + real[flip + 1 :], real + char):
        response = await admin_client.get(USERS, params={"sort": sort, "cursor": tampered})
        assert response.status_code in {200, 400, 422}, (tampered, response.text)
        if response.status_code == 422:  # only the documented bound
            assert len(tampered) > 1024 or tampered == ""
        elif response.status_code == 200:
            _assert_a_page_past_some_position(response, orders[sort])


@HTTP
@given(text=st.text(max_size=300))
async def test_arbitrary_cursor_text_is_400(admin_client: httpx.AsyncClient, text: str) -> None:
    assume(text)
    response = await admin_client.get(USERS, params={"cursor": text})
    assert response.status_code == 400, (text, response.text)
