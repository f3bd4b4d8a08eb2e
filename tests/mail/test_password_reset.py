"""Password reset over HTTP and a real SMTP server: request, mail, confirm."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register_and_login
from tests.conftest import asgi_client, login
from tests.mail.conftest import mail_settings
from tests.mail.helpers import arrived, to, token_in
from tests.mail.smtp import SmtpServer
from users_api.app import create_app
from users_api.config import Settings

RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
SUBJECT = "Reset your password"
NEW_PASSWORD = "a brand new passphrase for ada"
ADA = "ada@example.com"


async def _reset_token(client: httpx.AsyncClient, smtp: SmtpServer, email: str = ADA) -> str:
    before = len(to(smtp.messages(), email, SUBJECT))
    response = await client.post(RESET, json={"email": email})
    assert response.status_code == 202, response.text
    for _ in range(500):
        mails = to(smtp.messages(), email, SUBJECT)
        if len(mails) > before:
            return token_in(mails[-1], "reset-password")
        await asyncio.sleep(0.02)
    raise AssertionError("no reset mail came")


async def test_known_and_unknown_addresses_get_the_same_answer(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await register_and_login(mail_client, "ada")
    started = time.perf_counter()
    known = await mail_client.post(RESET, json={"email": "Ada@Example.com"})
    known_time = time.perf_counter() - started
    started = time.perf_counter()
    unknown = await mail_client.post(RESET, json={"email": "nobody@example.com"})
    unknown_time = time.perf_counter() - started
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert known.headers["content-type"] == unknown.headers["content-type"]
    assert abs(known_time - unknown_time) < 0.25  # no hash, a few statements either way
    [mail] = await arrived(smtp, ADA, SUBJECT)
    assert token_in(mail, "reset-password")
    await asyncio.sleep(0.2)
    assert len(to(smtp.messages(), ADA, SUBJECT)) == 1
    assert [m for m in smtp.messages() if m["To"] == "nobody@example.com"] == []


async def test_confirm_sets_the_password_and_ends_every_session(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    _, tokens = await register_and_login(mail_client, "ada")
    token = await _reset_token(mail_client, smtp)

    response = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 204, response.text

    me = await mail_client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    refreshed = await mail_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    old = await mail_client.post(
        "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
    )
    assert old.status_code == 401
    await login(mail_client, "ada", NEW_PASSWORD)
    # The address hears of it.
    assert await arrived(smtp, ADA, "Your password was changed")


async def test_a_token_works_once(mail_client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    await register_and_login(mail_client, "ada")
    token = await _reset_token(mail_client, smtp)
    body = {"token": token, "new_password": NEW_PASSWORD}
    assert (await mail_client.post(CONFIRM, json=body)).status_code == 204
    again = await mail_client.post(
        CONFIRM, json=body | {"new_password": "yet another fine passphrase"}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "invalid-token"
    await login(mail_client, "ada", NEW_PASSWORD)


async def test_unknown_and_expired_tokens_are_refused(
    mail_client: httpx.AsyncClient, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    await register_and_login(mail_client, "ada")
    unknown = await mail_client.post(
        CONFIRM, json={"token": "not-a-token-we-mailed", "new_password": NEW_PASSWORD}
    )
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "invalid-token"

    token = await _reset_token(mail_client, smtp)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE mail_tokens SET expires_at = now() - interval '1 s'"))
    expired = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert expired.status_code == 400
    assert expired.json()["code"] == "invalid-token"
    await login(mail_client, "ada", PASSWORD)


async def test_a_foreign_token_cannot_reset_another_user(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """A token is its user's: Bob's token sets Bob's password, never Ada's."""
    await register_and_login(mail_client, "ada")
    await register_and_login(mail_client, "bob")
    bobs = await _reset_token(mail_client, smtp, "bob@example.com")
    response = await mail_client.post(CONFIRM, json={"token": bobs, "new_password": NEW_PASSWORD})
    assert response.status_code == 204
    await login(mail_client, "ada", PASSWORD)
    await login(mail_client, "bob", NEW_PASSWORD)


async def test_a_new_request_kills_the_older_token(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await register_and_login(mail_client, "ada")
    first = await _reset_token(mail_client, smtp)
    second = await _reset_token(mail_client, smtp)
    old = await mail_client.post(CONFIRM, json={"token": first, "new_password": NEW_PASSWORD})
    assert old.status_code == 400
    assert old.json()["code"] == "invalid-token"
    new = await mail_client.post(CONFIRM, json={"token": second, "new_password": NEW_PASSWORD})
    assert new.status_code == 204


async def test_a_password_the_policy_refuses_does_not_use_the_token_up(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await register_and_login(mail_client, "ada")
    token = await _reset_token(mail_client, smtp)
    weak = await mail_client.post(CONFIRM, json={"token": token, "new_password": "password1234"})
    assert weak.status_code == 422
    [error] = weak.json()["errors"]
    assert error["loc"] == ["body", "new_password"]  # the field the client sent
    short = await mail_client.post(CONFIRM, json={"token": token, "new_password": "short"})
    assert short.status_code == 422
    good = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert good.status_code == 204


async def test_an_inactive_user_gets_no_mail(
    mail_client: httpx.AsyncClient, admin_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user, _ = await register_and_login(mail_client, "ada")
    token = await _reset_token(mail_client, smtp)
    deactivated = await admin_client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False})
    assert deactivated.status_code == 200
    assert (await mail_client.post(RESET, json={"email": ADA})).status_code == 202
    # The token mailed while active is no good any more either.
    late = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert late.status_code == 400
    await asyncio.sleep(0.2)
    assert len(to(smtp.messages(), ADA, SUBJECT)) == 1


@pytest.mark.parametrize("by", ["self", "admin"])
async def test_a_password_change_kills_the_open_reset_token(
    by: str, mail_client: httpx.AsyncClient, admin_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """A reset mailed before the password changed (say, to a thief who then lost the
    account) sets nothing after it."""
    user, tokens = await register_and_login(mail_client, "ada")
    token = await _reset_token(mail_client, smtp)
    chosen = "the password ada chose herself"
    url = f"/api/v1/users/{user['id']}"
    if by == "self":
        changed = await mail_client.patch(
            url,
            json={"password": chosen, "current_password": PASSWORD},
            headers=bearer(tokens["access_token"]),
        )
    else:
        changed = await admin_client.patch(url, json={"password": chosen})
    assert changed.status_code == 200, changed.text
    late = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert late.status_code == 400
    assert late.json()["code"] == "invalid-token"
    await login(mail_client, "ada", chosen)
    # A reset mailed after the change works as ever.
    fresh = await _reset_token(mail_client, smtp)
    done = await mail_client.post(CONFIRM, json={"token": fresh, "new_password": NEW_PASSWORD})
    assert done.status_code == 204


async def test_a_deactivation_kills_the_mailed_tokens_for_good(
    mail_client: httpx.AsyncClient, admin_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """Reset and verification tokens mailed before a deactivation stay dead after the
    user is active again."""
    user, _ = await register_and_login(mail_client, "ada")
    [verification] = await arrived(smtp, ADA, "Confirm your email address")
    reset = await _reset_token(mail_client, smtp)
    url = f"/api/v1/users/{user['id']}"
    for active in (False, True):
        response = await admin_client.patch(url, json={"is_active": active})
        assert response.status_code == 200, response.text
    late = await mail_client.post(CONFIRM, json={"token": reset, "new_password": NEW_PASSWORD})
    assert late.status_code == 400
    assert late.json()["code"] == "invalid-token"
    unverified = await mail_client.post(
        "/api/v1/auth/verify-email", json={"token": token_in(verification, "verify-email")}
    )
    assert unverified.status_code == 400
    assert unverified.json()["code"] == "invalid-token"
    await login(mail_client, "ada", PASSWORD)


async def test_an_account_gets_at_most_five_reset_mails_an_hour(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await register_and_login(mail_client, "ada")
    for _ in range(7):
        response = await mail_client.post(RESET, json={"email": ADA})
        assert response.status_code == 202  # silently
    await arrived(smtp, ADA, SUBJECT, 5)
    await asyncio.sleep(0.3)
    assert len(to(smtp.messages(), ADA, SUBJECT)) == 5


async def test_too_many_requests_from_one_address_get_429(
    settings: Settings, smtp: SmtpServer
) -> None:
    app = create_app(mail_settings(settings, smtp, password_resets_per_address=3))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        for number in range(3):
            response = await client.post(RESET, json={"email": f"n{number}@example.com"})
            assert response.status_code == 202
        refused = await client.post(RESET, json={"email": "n9@example.com"})
        assert refused.status_code == 429
        assert refused.json()["code"] == "too-many-resets"
        assert 3500 <= int(refused.headers["Retry-After"]) <= 3600


async def test_a_reset_requested_while_the_mail_server_is_down_arrives_later(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await register_and_login(mail_client, "ada")
    smtp.stop()
    response = await mail_client.post(RESET, json={"email": ADA})
    assert response.status_code == 202
    await asyncio.sleep(0.3)  # a few failed attempts
    smtp.start()
    [mail] = await arrived(smtp, ADA, SUBJECT)
    token = token_in(mail, "reset-password")
    confirmed = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert confirmed.status_code == 204


async def test_an_unreadable_address_is_422(mail_client: httpx.AsyncClient) -> None:
    response = await mail_client.post(RESET, json={"email": "not an address"})
    assert response.status_code == 422
