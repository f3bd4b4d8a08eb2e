"""TOTP MFA over HTTP: enrolment, the two-step sign-in, replayed codes, recovery codes,
turning it off, an admin's reset, the shared throttle, and the secret at rest."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, app_with, bearer, register_and_login
from tests.conftest import login
from users_api.config import Settings

TOKEN = "/api/v1/auth/token"
VERIFY = "/api/v1/auth/mfa/verify"
ENROL = "/api/v1/auth/mfa/totp"
CONFIRM = "/api/v1/auth/mfa/totp/confirm"
MFA = "/api/v1/auth/mfa"
RECOVERY = "/api/v1/auth/mfa/recovery-codes"
ME = "/api/v1/users/me"


class Codes:
    """Codes of a secret by time step, counted from a moment not near a step's end (so
    that "now" stays the same step, or the next, for the few seconds a test takes)."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.start = time.time()

    def at(self, steps: int = 0) -> str:
        return self.totp.at(self.start + 30 * steps)


async def _steady() -> None:
    """Wait out the last seconds of a time step."""
    left = 30 - time.time() % 30
    if left < 4:
        await asyncio.sleep(left + 0.1)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _enrol(client: httpx.AsyncClient, tokens: dict[str, Any]) -> Codes:
    response = await client.post(
        ENROL, json={"current_password": PASSWORD}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200, response.text
    await _steady()
    return Codes(response.json()["secret"])


async def _mfa_user(
    client: httpx.AsyncClient, name: str = "ada"
) -> tuple[dict[str, Any], dict[str, Any], Codes, list[str]]:
    """A user with MFA on (confirmed with the code of step 0), still signed in."""
    user, tokens = await register_and_login(client, name)
    codes = await _enrol(client, tokens)
    response = await client.post(
        CONFIRM, json={"code": codes.at(0)}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200, response.text
    return user, tokens, codes, response.json()["recovery_codes"]


async def _mfa_token(client: httpx.AsyncClient, name: str = "ada") -> str:
    response = await client.post(TOKEN, data={"username": name, "password": PASSWORD})
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == "mfa-required"
    assert body["detail"] == (
        "The password is right; the second factor is next: send `mfa_token` and a code "
        "to POST /api/v1/auth/mfa/verify."
    )
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert response.headers["content-type"] == "application/problem+json"
    token: str = body["mfa_token"]
    return token


async def _verify(client: httpx.AsyncClient, mfa_token: str, code: str) -> httpx.Response:
    return await client.post(VERIFY, json={"mfa_token": mfa_token, "code": code})


async def test_enrol_confirm_and_sign_in_in_two_steps(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    user, tokens = await register_and_login(client, "ada")
    as_ada = bearer(tokens["access_token"])
    wrong = await client.post(ENROL, json={"current_password": "not it at all"}, headers=as_ada)
    assert wrong.status_code == 403, wrong.text
    response = await client.post(ENROL, json={"current_password": PASSWORD}, headers=as_ada)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    enrolment = response.json()
    secret = enrolment["secret"]
    uri = enrolment["otpauth_uri"]
    assert uri.startswith("otpauth://totp/")
    assert f"secret={secret}" in uri
    assert "issuer=users-api" in uri
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.digits, parsed.interval) == (6, 30)
    # Pending: not on yet, and a login still gives tokens at once.
    assert (await client.get(ME, headers=as_ada)).json()["mfa_enabled"] is False
    await login(client, "ada", PASSWORD)
    async with engine.connect() as connection:
        stored = await connection.scalar(text("SELECT secret FROM mfa_totp"))
    assert secret.encode() not in stored  # encrypted at rest

    await _steady()
    codes = Codes(secret)
    refused = await client.post(CONFIRM, json={"code": _wrong(codes.at(0))}, headers=as_ada)
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid-code"
    spaced = f"{codes.at(0)[:3]} {codes.at(0)[3:]}"  # as authenticator apps show it
    confirmed = await client.post(CONFIRM, json={"code": spaced}, headers=as_ada)
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(recovery) == 10 == len(set(recovery))
    me = (await client.get(ME, headers=as_ada)).json()
    assert me["mfa_enabled"] is True
    assert me["version"] == user["version"] + 1
    # The contract's order: ... is_admin, email_verified, mfa_enabled, created_at ...
    assert list(me).index("mfa_enabled") == list(me).index("is_admin") + 2
    assert list(me).index("email_verified") == list(me).index("is_admin") + 1
    again = await client.post(ENROL, json={"current_password": PASSWORD}, headers=as_ada)
    assert again.status_code == 409

    mfa_token = await _mfa_token(client)
    replayed = await _verify(client, mfa_token, codes.at(0))  # the confirm used that step
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "invalid-code"
    assert replayed.headers["www-authenticate"] == "Bearer"
    # A form works as well as JSON; the mfa_token survived the wrong code.
    signed_in = await client.post(VERIFY, data={"mfa_token": mfa_token, "code": codes.at(1)})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.headers["cache-control"] == "no-store"
    pair = signed_in.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200

    used = await _verify(client, mfa_token, codes.at(1))  # the mfa_token is used up
    assert used.status_code == 401
    assert used.json()["code"] == "invalid-mfa-token"
    fresh = await _mfa_token(client)
    # At or before the last accepted step (the fifth failure of the account: no more).
    for old in (codes.at(1), codes.at(0)):
        response = await _verify(client, fresh, old)
        assert response.status_code == 401, old
        assert response.json()["code"] == "invalid-code"


async def test_confirming_ends_the_users_other_sessions(client: httpx.AsyncClient) -> None:
    _, here = await register_and_login(client, "ada")
    elsewhere = await login(client, "ada", PASSWORD)
    _, bob = await register_and_login(client, "bob")
    codes = await _enrol(client, here)
    response = await client.post(
        CONFIRM, json={"code": codes.at(0)}, headers=bearer(here["access_token"])
    )
    assert response.status_code == 200, response.text
    assert (await client.get(ME, headers=bearer(here["access_token"]))).status_code == 200
    assert (await client.get(ME, headers=bearer(elsewhere["access_token"]))).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (await client.get(ME, headers=bearer(bob["access_token"]))).status_code == 200


async def test_a_recovery_code_works_once(client: httpx.AsyncClient) -> None:
    _, _, _, recovery = await _mfa_user(client)
    first = await _verify(client, await _mfa_token(client), recovery[0].upper())
    assert first.status_code == 200, first.text
    second = await _verify(client, await _mfa_token(client), recovery[0])
    assert second.status_code == 401
    assert second.json()["code"] == "invalid-code"
    other = await _verify(client, await _mfa_token(client), recovery[1])
    assert other.status_code == 200


async def test_unknown_and_expired_mfa_tokens_are_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    _, _, codes, recovery = await _mfa_user(client)
    unknown = await _verify(client, "no-such-token", recovery[0])
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "invalid-mfa-token"
    mfa_token = await _mfa_token(client)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE mfa_challenges SET expires_at = now() - interval '1 second'")
        )
    expired = await _verify(client, mfa_token, codes.at(1))
    assert expired.status_code == 401
    assert expired.json()["code"] == "invalid-mfa-token"
    # The code was not spent on the expired token.
    assert (await _verify(client, await _mfa_token(client), codes.at(1))).status_code == 200
    bad = await client.post(VERIFY, json={"mfa_token": mfa_token})
    assert bad.status_code == 422


async def test_wrong_codes_count_as_failed_logins(client: httpx.AsyncClient) -> None:
    _, _, codes, recovery = await _mfa_user(client)
    mfa_token = await _mfa_token(client)
    for _ in range(5):  # LOGIN_FAILURES_PER_ACCOUNT
        response = await _verify(client, mfa_token, _wrong(codes.at(1)))
        assert response.status_code == 401
    throttled = await _verify(client, mfa_token, recovery[0])  # even the right one
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    blocked = await client.post(TOKEN, data={"username": "ada", "password": PASSWORD})
    assert blocked.status_code == 429  # one account, one throttle


async def test_wrong_current_passwords_count_as_failed_logins(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    as_ada = bearer(tokens["access_token"])
    for _ in range(5):
        response = await client.post(ENROL, json={"current_password": "wrong!"}, headers=as_ada)
        assert response.status_code == 403
    throttled = await client.post(ENROL, json={"current_password": PASSWORD}, headers=as_ada)
    assert throttled.status_code == 429
    blocked = await client.post(TOKEN, data={"username": "ada", "password": PASSWORD})
    assert blocked.status_code == 429


async def test_new_recovery_codes_and_turning_mfa_off(client: httpx.AsyncClient) -> None:
    _, tokens, codes, recovery = await _mfa_user(client)
    as_ada = bearer(tokens["access_token"])

    fresh = await client.post(
        RECOVERY, json={"current_password": PASSWORD, "code": codes.at(1)}, headers=as_ada
    )
    assert fresh.status_code == 200, fresh.text
    new_codes = fresh.json()["recovery_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(recovery)
    old = await _verify(client, await _mfa_token(client), recovery[0])  # the old ones died
    assert old.status_code == 401

    off = {"current_password": PASSWORD, "code": new_codes[0]}
    wrong_password = await client.request(
        "DELETE", MFA, json=off | {"current_password": "not the password"}, headers=as_ada
    )
    assert wrong_password.status_code == 403
    wrong_code = await client.request(
        "DELETE", MFA, json=off | {"code": _wrong(codes.at(1))}, headers=as_ada
    )
    assert wrong_code.status_code == 400
    assert wrong_code.json()["code"] == "invalid-code"
    response = await client.request("DELETE", MFA, json=off, headers=as_ada)
    assert response.status_code == 204, response.text
    assert (await client.get(ME, headers=as_ada)).json()["mfa_enabled"] is False
    await login(client, "ada", PASSWORD)  # one step again
    again = await client.request("DELETE", MFA, json=off, headers=as_ada)
    assert again.status_code == 409


async def test_an_admin_resets_a_users_mfa(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    ada, tokens, _, _ = await _mfa_user(client)
    _, bob = await register_and_login(client, "bob")
    url = f"/api/v1/users/{ada['id']}/mfa"
    assert (await client.delete(url)).status_code == 401
    assert (await client.delete(url, headers=bearer(bob["access_token"]))).status_code == 403
    # Ada herself is pointed to her own road, which asks for her password and a code.
    own = await client.delete(url, headers=bearer(tokens["access_token"]))
    assert own.status_code == 403
    assert "DELETE /api/v1/auth/mfa" in own.json()["detail"]
    missing = await admin_client.delete("/api/v1/users/0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e/mfa")
    assert missing.status_code == 404

    response = await admin_client.delete(url)

    assert response.status_code == 204, response.text
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
    signed_in = await login(client, "ada", PASSWORD)  # no second step any more
    me = await client.get(ME, headers=bearer(signed_in["access_token"]))
    assert me.json()["mfa_enabled"] is False
    assert (await admin_client.delete(url)).status_code == 204  # already off: still off


async def test_mfa_enabled_is_read_only(client: httpx.AsyncClient) -> None:
    ada, tokens = await register_and_login(client, "ada")
    response = await client.patch(
        f"/api/v1/users/{ada['id']}",
        json={"mfa_enabled": True},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code in (403, 422), response.text
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).json()[
        "mfa_enabled"
    ] is False


@pytest.mark.parametrize("previous", [True, False])
async def test_a_rotated_secret_key(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, previous: bool
) -> None:
    """With the old key as MFA_PREVIOUS_SECRET_KEY, TOTP secrets still open and are
    sealed again under the new key; without it, only recovery codes are left."""
    _, _, codes, recovery = await _mfa_user(client)
    assert settings.secret_key is not None
    old = settings.secret_key.get_secret_value()
    changes: dict[str, Any] = {
        "secret_key": SecretStr("a brand new secret key of at least 32 bytes")
    }
    if previous:
        changes["mfa_previous_secret_key"] = SecretStr(old)
    query = text("SELECT secret FROM mfa_totp")
    async with engine.connect() as connection:
        sealed = await connection.scalar(query)
    async with app_with(settings, **changes) as rotated:
        response = await _verify(rotated, await _mfa_token(rotated), codes.at(1))
        assert response.status_code == (200 if previous else 401), response.text
        if not previous:
            rescued = await _verify(rotated, await _mfa_token(rotated), recovery[0])
            assert rescued.status_code == 200
    async with engine.connect() as connection:
        assert (await connection.scalar(query) != sealed) is previous


async def test_one_code_raced_on_two_sign_ins_signs_in_once(client: httpx.AsyncClient) -> None:
    """A code seen over a shoulder and sent at once from elsewhere: one of the two wins."""
    _, _, codes, _ = await _mfa_user(client)
    first, second = await _mfa_token(client), await _mfa_token(client)
    answers = await asyncio.gather(
        _verify(client, first, codes.at(1)), _verify(client, second, codes.at(1))
    )
    assert sorted(answer.status_code for answer in answers) == [200, 401]
