"""argon2id with OWASP parameters, rehash on login, the password policy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, register
from tests.conftest import asgi_client, login
from users_api.app import create_app
from users_api.config import Settings
from users_api.security import strength
from users_api.security.passwords import Passwords, policy_violation

# What `users_api/security/passwords.py` documents, written out here rather than read from
# its constants: a change of parameters must show up as a failing test.
ARGON2ID_PARAMETERS = {"m": 7168, "t": 5, "p": 1}


def _phc_parts(encoded: str) -> tuple[str, str, dict[str, int]]:
    """The variant, version and parameters of a PHC-format hash, read from its text:
    `$argon2id$v=19$m=7168,t=5,p=1$<salt>$<digest>`."""
    empty, variant, version, parameters, salt, digest = encoded.split("$")
    assert empty == ""
    assert salt
    assert digest
    values = dict(pair.split("=") for pair in parameters.split(","))
    return variant, version, {name: int(value) for name, value in values.items()}


def assert_documented_argon2id(encoded: str) -> None:
    variant, version, parameters = _phc_parts(encoded)
    assert variant == "argon2id", encoded
    assert version == "v=19", encoded
    assert parameters == ARGON2ID_PARAMETERS, encoded


async def _stored_hash(engine: AsyncEngine, username: str) -> str:
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT password_hash FROM users WHERE username = :u"), {"u": username}
        )
    assert isinstance(stored, str)
    return stored


@pytest.fixture
async def production_client(
    production_argon2: None, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own that hashes at the production cost (the session's does not:
    tests/conftest.py)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


async def test_hash_is_argon2id_with_owasp_parameters(
    production_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    client = production_client
    await register(client, "ada")
    stored = await _stored_hash(engine, "ada")
    assert_documented_argon2id(stored)
    assert PASSWORD not in stored


async def test_login_rehashes_old_parameters(
    production_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    client = production_client
    await register(client, "ada")
    # The parameters of earlier releases (OWASP's 19 MiB row), as stored hashes have them.
    earlier = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)
    old_hash = earlier.hash(PASSWORD)
    assert _phc_parts(old_hash)[2] == {"m": 19_456, "t": 2, "p": 1}
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET password_hash = :h WHERE username = 'ada'"),
            {"h": old_hash},
        )
    version_before = await _version(engine, "ada")
    await login(client, "ada", PASSWORD)
    rehashed = await _stored_hash(engine, "ada")
    assert rehashed != old_hash
    assert_documented_argon2id(rehashed)
    # The same password under new parameters is not a change of the user.
    assert await _version(engine, "ada") == version_before
    await login(client, "ada", PASSWORD)


async def _version(engine: AsyncEngine, username: str) -> int:
    async with engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT version FROM users WHERE username = :u"), {"u": username}
        )
    assert isinstance(value, int)
    return value


@pytest.mark.usefixtures("production_argon2")
async def test_hash_and_verify_round_trip_in_threads() -> None:
    passwords = Passwords(concurrency=2)
    hashed = await passwords.hash("ünïcödé pässwörd 🔑")
    assert_documented_argon2id(hashed)
    assert (await passwords.verify_and_update("ünïcödé pässwörd 🔑", hashed))[0] is True
    assert (await passwords.verify_and_update("ünïcödé pässwörd 🔑 ", hashed))[0] is False


def test_policy() -> None:
    def check(password: str, *, min_length: int = 12) -> str | None:
        violation = policy_violation(
            password, email="ada@example.com", username="ada_lovelace", min_length=min_length
        )
        return None if violation is None else str(violation)

    same = "must not be the same as the email or the username"
    assert check("a fine long password") is None
    assert check("short") == "must be at least 12 characters long"
    assert check("x" * 129) == "must be at most 128 characters long"
    assert check("a fine long password", min_length=30) == "must be at least 30 characters long"
    assert check("Ada@Example.com") == same
    assert check("ADA_LOVELACE") == same  # the username, in another case
    assert check("123456789abc") == "is one of the most common passwords"
    assert check("123456789ABC") == "is one of the most common passwords"
    assert check("  spaces count  ") is None
    assert check("aaaaaaaaaaaa") == (
        "is too easy to guess (zxcvbn rates it 0 of 4, and 3 is needed): "
        'Repeats like "aaa" are easy to guess. Add another word or two. Uncommon words are '
        "better. Avoid repeated words and characters."
    )


async def test_common_password_is_refused(client: httpx.AsyncClient) -> None:
    common = "1qaz2wsx3edc"  # number 1,000 of zxcvbn's common passwords
    assert strength.is_common(common)
    response = await client.post(
        "/api/v1/users",
        json={"email": "eve@example.com", "username": "eve", "password": common},
    )
    assert response.status_code == 422
    assert "common" in response.json()["errors"][0]["msg"]
