"""Look-alike emails (issue 13, item 7): mixed scripts are refused, compatibility forms
fold into the address they stand for, and single-script addresses stay valid."""

from __future__ import annotations

import httpx
import pytest

from tests.users.helpers import (
    USERS,
    assert_conflict,
    assert_validation_problem,
    create_user,
    user_url,
)
from users_api.security.scripts import mixed_scripts

CYRILLIC_A = "\u0430"
CYRILLIC_IE = "\u0435"


@pytest.mark.parametrize(
    "email",
    [
        f"{CYRILLIC_A}dmin@example.com",  # a Cyrillic a in a Latin local part
        f"admin@{CYRILLIC_IE}xample.com",  # a Cyrillic e in a Latin domain label
        "admin@xn--xample-2of.com",  # the same, spelled in punycode
        f"ADMIN@{CYRILLIC_IE.upper()}XAMPLE.COM",
        "\u0391\u03b4a@example.com",  # Greek alpha and delta with a Latin a
        f"admin@mail.{CYRILLIC_IE}xample.com",  # any label of the domain
    ],
)
async def test_an_address_that_mixes_scripts_is_422(client: httpx.AsyncClient, email: str) -> None:
    await create_user(client, "admin", email="admin@example.com")
    response = await client.post(
        USERS, json={"email": email, "username": "eve", "password": "look alike of the admin"}
    )
    errors = assert_validation_problem(response, "email")
    assert "mixes scripts" in errors[0]["msg"], errors


async def test_a_change_to_an_address_that_mixes_scripts_is_422(
    client: httpx.AsyncClient,
) -> None:
    user = await create_user(client, "ada")
    response = await client.patch(
        user_url(user["id"]), json={"email": f"{CYRILLIC_A}da@example.com"}
    )
    assert_validation_problem(response, "email")


@pytest.mark.parametrize(
    "email",
    [
        "\uff41dmin@example.com",  # a fullwidth a
        "\uff41\uff44\uff4d\uff49\uff4e@example.com",  # all fullwidth
        "ADMIN\uff20EXAMPLE.COM",  # a fullwidth @
        "admin@\uff45xample.com",  # a fullwidth e in the domain
        "\U0001d41admin@example.com",  # a mathematical bold a
    ],
)
async def test_compatibility_forms_are_the_address_they_stand_for(
    client: httpx.AsyncClient, email: str
) -> None:
    """NFKC before validation: a fullwidth `admin@` is `admin@`, and so taken."""
    await create_user(client, "admin", email="admin@example.com")
    response = await client.post(
        USERS, json={"email": email, "username": "eve", "password": "look alike of the admin"}
    )
    assert_conflict(response, "email")


async def test_a_fullwidth_address_is_stored_in_its_plain_form(client: httpx.AsyncClient) -> None:
    created = await create_user(client, "ada", email="\uff21da@\uff25xample.com")
    assert created["email"] == "Ada@example.com"


@pytest.mark.parametrize(
    "email",
    [
        # ivan@primer.rf, all Cyrillic
        "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.com",  # a Cyrillic label
        "ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",  # Latin local, Cyrillic domain
        "\u5c71\u7530\u305f\u308d\u3046@example.jp",  # 山田たろう: Han and Hiragana, Japanese
        "\ud55c\uad6d\u6f22\u5b57@example.kr",  # Hangul and Han, Korean
        "\u03b1\u03b8\u03b7\u03bd\u03ac@example.gr",  # Greek with a tonos
        "jos\u00e9.2026@example.com",  # Latin with digits and punctuation
        "jose\u0301@example.com",  # a combining accent (composed to é)
    ],
)
async def test_single_script_addresses_stay_valid(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post(
        USERS, json={"email": email, "username": "intl", "password": "a perfectly fine password"}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("text", "mixed"),
    [
        ("admin", []),
        ("", []),
        ("1234.-_+", []),
        ("\u0430dmin", ["Cyrillic", "Latin"]),
        ("s\u0441hool", ["Latin", "Cyrillic"]),
        ("\u5c71\u7530\u30bf\u30ed\u30a6", []),  # Han and Katakana: Japanese
        ("\u5c71\u7530\u0430", ["Han", "Cyrillic"]),
        ("\u30ab\u30fc\u3072", []),  # ー belongs to both kana scripts
        ("a\u30fcb", ["Latin", "Hiragana", "Katakana"]),
        ("\u0430\u0301", []),  # a Cyrillic a with a combining accent
    ],
)
def test_mixed_scripts_follows_uts_39(text: str, mixed: list[str]) -> None:
    assert mixed_scripts(text) == mixed
