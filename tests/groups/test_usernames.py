"""v2 usernames (API.md "The user"): 3-128 of `A-Z a-z 0-9 _ . - @ +`; a username may
equal its own user's email, never another user's, and an email never another user's
username — also when requests race; a login looks for the username, then the email."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer
from tests.conftest import login
from tests.users.helpers import (
    USERS,
    assert_conflict,
    assert_validation_problem,
    insert_users,
    user_url,
)
from users_api.users.service import UserService

TOKEN = "/api/v1/auth/token"


async def _create(client: httpx.AsyncClient, email: str, username: str) -> httpx.Response:
    body = {"email": email, "username": username, "password": PASSWORD}
    return await client.post(USERS, json=body)


async def _created(client: httpx.AsyncClient, email: str, username: str) -> dict[str, str]:
    response = await _create(client, email, username)
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


async def _me(client: httpx.AsyncClient, name: str) -> str:
    tokens = await login(client, name, PASSWORD)
    me = await client.get(f"{USERS}/me", headers=bearer(tokens["access_token"]))
    user_id: str = me.json()["id"]
    return user_id


@pytest.mark.parametrize(
    "username", ["ada.lovelace@contoso.com", "ada+work", "a" * 128, "@+.", "A-b_C.d@E+f"]
)
async def test_identity_provider_login_names_are_usernames(
    admin_client: httpx.AsyncClient, username: str
) -> None:
    created = await _created(admin_client, "ada@example.com", username)
    assert created["username"] == username  # its case as given is kept
    assert await _me(admin_client, username) == created["id"]
    assert await _me(admin_client, username.upper()) == created["id"]
    assert await _me(admin_client, "ada@example.com") == created["id"]


@pytest.mark.parametrize("username", ["a" * 129, "ab", "ada lovelace", "ada#1", "ada%40x"])
async def test_other_usernames_are_422(admin_client: httpx.AsyncClient, username: str) -> None:
    assert_validation_problem(await _create(admin_client, "ada@example.com", username), "username")


async def test_a_username_may_be_its_own_users_email(admin_client: httpx.AsyncClient) -> None:
    created = await _created(admin_client, "Ada@Example.com", "ada@example.com")
    assert await _me(admin_client, "ADA@EXAMPLE.COM") == created["id"]
    renamed = await admin_client.patch(user_url(created["id"]), json={"username": "ada"})
    assert renamed.status_code == 200
    back = await admin_client.patch(user_url(created["id"]), json={"username": "ADA@example.com"})
    assert back.status_code == 200, back.text


async def test_never_another_users_email_at_creation(admin_client: httpx.AsyncClient) -> None:
    await _created(admin_client, "ada@example.com", "ada")
    assert_conflict(await _create(admin_client, "bob@example.com", "ADA@example.com"), "username")
    await _created(admin_client, "carol@example.com", "boss@example.com")
    assert_conflict(await _create(admin_client, "Boss@example.com", "dave"), "email")


async def test_never_another_users_email_on_a_change(admin_client: httpx.AsyncClient) -> None:
    await _created(admin_client, "ada@example.com", "ada+idp@example.com")
    bob = await _created(admin_client, "bob@example.com", "bob")
    url = user_url(bob["id"])
    assert_conflict(await admin_client.patch(url, json={"username": "ada@example.com"}), "username")
    assert_conflict(await admin_client.patch(url, json={"email": "ADA+idp@example.com"}), "email")
    # Through the row-locked road too (an admin field with it), and nothing is stored.
    both = await admin_client.patch(
        url, json={"username": "ada@example.com", "email_verified": True}
    )
    assert_conflict(both, "username")
    shown = (await admin_client.get(url)).json()
    assert shown["username"] == "bob"
    assert shown["email"] == "bob@example.com"
    assert shown["email_verified"] is False


async def test_a_user_changing_their_own_names_is_refused_the_same(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    await _created(admin_client, "ada@example.com", "ada")
    bob = await _created(client, "bob@example.com", "bob")
    tokens = await login(client, "bob", PASSWORD)
    headers = bearer(tokens["access_token"])
    refused = await client.patch(
        user_url(bob["id"]), json={"username": "ada@example.com"}, headers=headers
    )
    assert_conflict(refused, "username")
    mine = await client.patch(
        user_url(bob["id"]), json={"username": "bob@example.com"}, headers=headers
    )
    assert mine.status_code == 200, mine.text


async def test_racing_claims_of_one_name_as_email_and_username(
    admin_client: httpx.AsyncClient,
) -> None:
    """Each round, one request takes a name as its email and another as its username:
    both pass the check before the hash, only one may pass the one after it."""
    outcomes: Counter[int] = Counter()
    for round_ in range(6):
        name = f"shared{round_}@example.com"
        responses = await asyncio.gather(
            _create(admin_client, name, f"first{round_}"),
            _create(admin_client, f"second{round_}@example.com", name),
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 409], [response.text for response in responses]
        outcomes.update(statuses)
    assert outcomes == {201: 6, 409: 6}


async def test_racing_change_and_creation_of_one_name(admin_client: httpx.AsyncClient) -> None:
    """A rename and a sign-up race for one name: exactly one wins, whichever comes first
    (the sign-up usually loses, as it hashes first; on a loaded machine it may not)."""
    for round_ in range(6):
        name = f"taken{round_}@example.com"
        bob = await _created(admin_client, f"bob{round_}@example.com", f"bob{round_}")
        responses = await asyncio.gather(
            admin_client.patch(user_url(bob["id"]), json={"username": name}),
            _create(admin_client, name, f"carol{round_}"),
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses in ([200, 409], [201, 409]), [response.text for response in responses]


async def test_a_login_looks_for_the_username_first(
    admin_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Only rows written around the rule (v1 data, a manual fix) can hold a username that
    is another user's email; the username's user is the one the name finds."""
    owner = await _created(admin_client, "owner@example.com", "clash@example.com")
    await insert_users(engine, [{"username": "other", "email": "clash@example.com"}])
    assert await _me(admin_client, "clash@example.com") == owner["id"]


async def test_the_cli_finds_a_user_by_either_name(
    app: FastAPI, admin_client: httpx.AsyncClient
) -> None:
    created = await _created(admin_client, "ada@example.com", "ada+ops@contoso.com")
    users: UserService = app.state.users
    promoted = await users.set_admin("ADA+OPS@contoso.com", admin=True)
    assert str(promoted["id"]) == created["id"]
    assert promoted["is_admin"] is True
    demoted = await users.set_admin("ada@example.com", admin=False)
    assert demoted["is_admin"] is False
