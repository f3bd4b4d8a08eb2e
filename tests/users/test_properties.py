"""Hypothesis properties: usernames against the rule, free text round-trips or is a 422."""

from __future__ import annotations

import string

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN_EMAIL, ADMIN_USERNAME
from tests.users.helpers import PASSWORD, USERS, assert_problem, insert_users, user_url
from users_api.users.schemas import UserCreate

USERNAME_ALPHABET = string.ascii_letters + string.digits + "_.-@+"
PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

usernames = (
    st.text(alphabet=USERNAME_ALPHABET, max_size=140)
    | st.text(alphabet=USERNAME_ALPHABET + " \n\t#/äİ\x00", max_size=140)
    | st.text(max_size=140)
)


def follows_the_rule(username: str) -> bool:
    """The contract's rule, written independently of the schema's regex."""
    return 3 <= len(username) <= 128 and all(char in USERNAME_ALPHABET for char in username)


@settings(max_examples=300, deadline=None)
@given(username=usernames)
def test_schema_accepts_exactly_the_usernames_of_the_rule(username: str) -> None:
    if follows_the_rule(username):
        user = UserCreate(email="ada@example.com", username=username, password=PASSWORD)
        assert user.username == username
        return
    with pytest.raises(ValidationError) as caught:
        UserCreate(email="ada@example.com", username=username, password=PASSWORD)
    assert [error["loc"] for error in caught.value.errors()] == [("username",)]


@PROPERTY_SETTINGS
@given(username=usernames)
async def test_http_rejects_exactly_the_usernames_breaking_the_rule(
    client: httpx.AsyncClient, username: str
) -> None:
    # A too-short password makes every request a 422, so nothing is ever stored.
    body = {"email": "ada@example.com", "username": username, "password": "short"}
    response = await client.post(USERS, json=body)
    problem = assert_problem(response, 422)
    fields = {error["loc"][-1] for error in problem["errors"]}
    assert ("username" in fields) is not follows_the_rule(username)
    assert "password" in fields


@settings(PROPERTY_SETTINGS, max_examples=25)  # each example hashes a password
@given(full_name=st.text(max_size=210))
async def test_full_name_round_trips_exactly_or_is_422(
    client: httpx.AsyncClient, full_name: str
) -> None:
    body = {
        "email": "ada@example.com",
        "username": "ada",
        "password": PASSWORD,
        "full_name": full_name,
    }
    response = await client.post(USERS, json=body)
    if len(full_name) > 200 or "\x00" in full_name:
        assert_problem(response, 422)
        return
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    try:
        assert response.json()["full_name"] == full_name
        assert (await client.get(user_url(user_id))).json()["full_name"] == full_name
    finally:
        assert (await client.delete(user_url(user_id))).status_code == 204


SEARCHABLE = [
    ("Ada", "ada@example.com", "Ada Lovelace"),
    ("per_cent", "p%c@example.com", "100% sure"),
    ("back.slash", "b@example.com", "a\\b"),
    ("Grace-H", "GRACE@Navy.mil", None),
]
# The admin who makes the calls is a user too, and q searches it like any other.
ADMIN = (ADMIN_USERNAME, ADMIN_EMAIL, None)


@pytest.fixture
async def searchable(engine: AsyncEngine) -> None:
    await insert_users(
        engine,
        (
            {"username": username, "email": email, "full_name": full_name}
            for username, email, full_name in SEARCHABLE
        ),
    )


@PROPERTY_SETTINGS
@given(q=st.text(alphabet=string.printable, min_size=1, max_size=6))
async def test_q_matches_exactly_the_literal_case_insensitive_substrings(
    client: httpx.AsyncClient, searchable: None, q: str
) -> None:
    response = await client.get(USERS, params={"q": q})
    assert response.status_code == 200, response.text
    found = {item["username"] for item in response.json()["items"]}
    expected = {
        username
        for username, email, full_name in [*SEARCHABLE, ADMIN]
        if any(q.lower() in (text or "").lower() for text in (username, email, full_name))
    }
    assert found == expected


@PROPERTY_SETTINGS
@given(q=st.text(min_size=1, max_size=200))
async def test_q_of_any_text_is_never_a_server_error(
    client: httpx.AsyncClient, searchable: None, q: str
) -> None:
    response = await client.get(USERS, params={"q": q})
    if "\x00" in q:
        assert_problem(response, 422)
    else:
        assert response.status_code == 200, response.text
