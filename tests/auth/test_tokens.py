"""Access tokens: issued right, and refused whenever they should be."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import orjson
import pytest

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import login
from users_api.config import Settings
from users_api.security.tokens import AUDIENCE, ISSUER, AccessTokens, InvalidToken

ME = "/api/v1/users/me"


async def test_login_by_username_or_email_in_any_case(client: httpx.AsyncClient) -> None:
    await register(client, "ada")
    for name in ("ada", "ADA", "ada@example.com", "Ada@EXAMPLE.com"):
        tokens = await login(client, name, PASSWORD)
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == 900
        assert tokens["refresh_token"]
        me = await client.get(ME, headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json()["username"] == "ada"


async def test_access_token_claims(client: httpx.AsyncClient, settings: Settings) -> None:
    user, tokens = await register_and_login(client, "ada")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds
    assert claims["jti"]
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "HS256"


def _assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


async def test_missing_and_malformed_credentials(client: httpx.AsyncClient) -> None:
    _assert_unauthorized(await client.get(ME))
    _assert_unauthorized(await client.get(ME, headers=bearer("not-a-jwt")))
    _assert_unauthorized(await client.get(ME, headers={"Authorization": "Basic YTpi"}))
    _assert_unauthorized(await client.get(ME, headers=bearer("a.b.c")))


def _forge(claims: dict[str, object], key: bytes, **kwargs: object) -> str:
    return jwt.encode(claims, key, algorithm="HS256", **kwargs)  # type: ignore[arg-type]


async def test_forged_and_foreign_tokens(client: httpx.AsyncClient, settings: Settings) -> None:
    _, tokens = await register_and_login(client, "ada")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert settings.secret_key is not None
    key = settings.secret_key.get_secret_value().encode()

    forged = _forge(claims, b"some-other-key-that-is-32-bytes-long!!")
    _assert_unauthorized(await client.get(ME, headers=bearer(forged)))

    wrong_audience = _forge(claims | {"aud": "someone-else"}, key)
    _assert_unauthorized(await client.get(ME, headers=bearer(wrong_audience)))

    wrong_issuer = _forge(claims | {"iss": "someone-else"}, key)
    _assert_unauthorized(await client.get(ME, headers=bearer(wrong_issuer)))

    no_version = _forge({k: v for k, v in claims.items() if k != "ver"}, key)
    _assert_unauthorized(await client.get(ME, headers=bearer(no_version)))

    someone_else = _forge(claims | {"sub": str(uuid.uuid4())}, key)
    _assert_unauthorized(await client.get(ME, headers=bearer(someone_else)))

    # The same claims with our key do work: the refusals above are about what changed.
    assert (await client.get(ME, headers=bearer(_forge(claims, key)))).status_code == 200


async def test_alg_none_is_refused(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})

    def segment(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    unsigned = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."
    _assert_unauthorized(await client.get(ME, headers=bearer(unsigned)))


async def test_expired_token(client: httpx.AsyncClient, settings: Settings) -> None:
    user, login_tokens = await register_and_login(client, "ada")
    session_id = uuid.UUID(
        jwt.decode(login_tokens["access_token"], options={"verify_signature": False})["sid"]
    )
    assert settings.secret_key is not None
    tokens = AccessTokens(
        secret=settings.secret_key.get_secret_value().encode(), ttl=timedelta(seconds=60)
    )
    user_id = uuid.UUID(user["id"])
    stale = tokens.issue(user_id, 1, session_id, now=datetime.now(UTC) - timedelta(hours=1))
    fresh = tokens.issue(user_id, 1, session_id)
    _assert_unauthorized(await client.get(ME, headers=bearer(stale)))
    assert (await client.get(ME, headers=bearer(fresh))).status_code == 200


def test_a_checked_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked claims are cached; the expiry is checked again on every use."""
    tokens = AccessTokens(secret=b"k" * 32, ttl=timedelta(seconds=60))
    user_id = uuid.uuid4()
    token = tokens.issue(user_id, 3, uuid.uuid4())
    assert tokens.verify(token).user_id == user_id  # checked, and now cached
    now = datetime.now(UTC).timestamp()
    monkeypatch.setattr("users_api.security.tokens.time.time", lambda: now + 61)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_a_token_signed_with_another_key_is_refused_even_if_cached_elsewhere() -> None:
    """The cache belongs to one key: another service's cached token proves nothing here."""
    ours = AccessTokens(secret=b"k" * 32, ttl=timedelta(seconds=60))
    theirs = AccessTokens(secret=b"o" * 32, ttl=timedelta(seconds=60))
    token = theirs.issue(uuid.uuid4(), 1, uuid.uuid4())
    assert theirs.verify(token).auth_version == 1
    with pytest.raises(InvalidToken):
        ours.verify(token)


@pytest.mark.parametrize("how", ["password", "deactivate", "delete", "logout-all"])
async def test_every_token_dies(
    how: str, client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    user, tokens = await register_and_login(client, "ada")
    other_login = await login(client, "ada", PASSWORD)
    access = bearer(tokens["access_token"])
    url = f"/api/v1/users/{user['id']}"
    if how == "password":
        response = await client.patch(
            url,
            headers=access,
            json={"password": "a brand new password", "current_password": PASSWORD},
        )
        assert response.status_code == 200, response.text
    elif how == "deactivate":
        response = await admin_client.patch(url, json={"is_active": False})
        assert response.status_code == 200, response.text
    elif how == "delete":
        assert (await admin_client.delete(url)).status_code == 204
    else:
        assert (await client.post("/api/v1/auth/logout-all", headers=access)).status_code == 204

    for login_tokens in (tokens, other_login):
        dead = bearer(login_tokens["access_token"])
        _assert_unauthorized(await client.get(ME, headers=dead))
        _assert_unauthorized(await client.patch(url, headers=dead, json={"full_name": "Ghost"}))
        body = {"email": "ghost@example.com", "username": "ghost", "password": PASSWORD}
        _assert_unauthorized(await client.post("/api/v1/users", headers=dead, json=body))
        # 401 before anything is said of the request's parts (a 400 or 422 would tell a
        # signed-out caller how the route reads them).
        _assert_unauthorized(await client.patch(url, headers=dead, json={"email": 5}))
        _assert_unauthorized(await client.post("/api/v1/users", headers=dead, json={"x": 1}))
        _assert_unauthorized(await client.get("/api/v1/users/not-a-uuid", headers=dead))
        _assert_unauthorized(await client.get("/api/v1/users?limit=0", headers=dead))
        _assert_unauthorized(await client.post("/api/v1/auth/mfa/totp", headers=dead, json={}))
        _assert_unauthorized(
            await client.post(
                "/api/v1/auth/mfa/totp/confirm", headers=dead, json={"code": ["not", "a code"]}
            )
        )
        _assert_unauthorized(
            await client.request("DELETE", "/api/v1/auth/mfa", headers=dead, json=[])
        )
        unreadable = {**dead, "content-type": "application/json"}
        _assert_unauthorized(await client.patch(url, headers=unreadable, content=b"\xff{"))
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": login_tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401, refreshed.text


async def test_a_live_token_with_a_bad_body_hears_what_is_wrong(
    client: httpx.AsyncClient,
) -> None:
    """The 401-first check lets a live caller through to the 422 and 400 they earned."""
    user, tokens = await register_and_login(client, "ada")
    live = bearer(tokens["access_token"])
    invalid = await client.patch(f"/api/v1/users/{user['id']}", headers=live, json={"email": 5})
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["errors"][0]["loc"] == ["body", "email"]
    unreadable = await client.patch(
        f"/api/v1/users/{user['id']}",
        headers={**live, "content-type": "application/json"},
        content=b"\xff{",
    )
    assert unreadable.status_code == 400, unreadable.text


async def test_new_login_works_after_password_change(client: httpx.AsyncClient) -> None:
    user, tokens = await register_and_login(client, "ada")
    new_password = "a brand new password"
    response = await client.patch(
        f"/api/v1/users/{user['id']}",
        headers=bearer(tokens["access_token"]),
        json={"password": new_password, "current_password": PASSWORD},
    )
    assert response.status_code == 200
    fresh = await login(client, "ada", new_password)
    assert (await client.get(ME, headers=bearer(fresh["access_token"]))).status_code == 200
