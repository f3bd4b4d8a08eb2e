"""Email verification over HTTP and a real SMTP server: registration, change of email,
resend, the admin's say, and REQUIRE_VERIFIED_EMAIL."""

from __future__ import annotations

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login
from tests.conftest import ADMIN_PASSWORD, Admin, asgi_client, login
from tests.mail.conftest import mail_settings
from tests.mail.helpers import arrived, token_in
from tests.mail.smtp import SmtpServer
from users_api.app import create_app
from users_api.config import Settings

VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/verify-email/resend"
SUBJECT = "Confirm your email address"
ADA = "ada@example.com"


async def _me(client: httpx.AsyncClient, access: str) -> dict[str, object]:
    response = await client.get("/api/v1/users/me", headers=bearer(access))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_registration_mails_a_token_that_verifies_once(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user, tokens = await register_and_login(mail_client, "ada")
    assert user["email_verified"] is False
    assert list(user)[5:9] == ["is_admin", "email_verified", "mfa_enabled", "created_at"]
    [mail] = await arrived(smtp, ADA, SUBJECT)
    token = token_in(mail, "verify-email")
    assert (await mail_client.post(VERIFY, json={"token": token})).status_code == 204
    me = await _me(mail_client, tokens["access_token"])
    assert me["email_verified"] is True
    assert me["version"] == 2
    again = await mail_client.post(VERIFY, json={"token": token})
    assert again.status_code == 400
    assert again.json()["code"] == "invalid-token"


async def test_unknown_expired_and_reset_tokens_do_not_verify(
    mail_client: httpx.AsyncClient, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    await register_and_login(mail_client, "ada")
    [mail] = await arrived(smtp, ADA, SUBJECT)
    unknown = await mail_client.post(VERIFY, json={"token": "nothing-we-mailed"})
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "invalid-token"
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE mail_tokens SET expires_at = now() - interval '1 s'"))
    expired = await mail_client.post(VERIFY, json={"token": token_in(mail, "verify-email")})
    assert expired.status_code == 400
    # A reset token is no verification token.
    await mail_client.post("/api/v1/auth/password-reset", json={"email": ADA})
    [reset] = await arrived(smtp, ADA, "Reset your password")
    wrong = await mail_client.post(VERIFY, json={"token": token_in(reset, "reset-password")})
    assert wrong.status_code == 400


async def test_a_change_of_email_unverifies_mails_both_and_kills_the_old_token(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user, tokens = await register_and_login(mail_client, "ada")
    [first] = await arrived(smtp, ADA, SUBJECT)
    assert (
        await mail_client.post(VERIFY, json={"token": token_in(first, "verify-email")})
    ).status_code == 204
    changed = await mail_client.patch(
        f"/api/v1/users/{user['id']}",
        json={"email": "augusta@example.com"},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["email_verified"] is False
    assert await arrived(smtp, ADA, "Your email address was changed")
    [new] = await arrived(smtp, "augusta@example.com", SUBJECT)
    assert (
        await mail_client.post(VERIFY, json={"token": token_in(new, "verify-email")})
    ).status_code == 204
    assert (await _me(mail_client, tokens["access_token"]))["email_verified"] is True


async def test_a_new_spelling_of_the_same_address_keeps_it_verified_and_mails_nothing(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """Emails are one address whatever their case (the unique index says so): `Ada@` for
    `ada@` moves the user to no new mailbox, so nothing is to be proved or told."""
    user, tokens = await register_and_login(mail_client, "ada")
    [first] = await arrived(smtp, ADA, SUBJECT)
    verified = await mail_client.post(VERIFY, json={"token": token_in(first, "verify-email")})
    assert verified.status_code == 204
    changed = await mail_client.patch(
        f"/api/v1/users/{user['id']}",
        json={"email": "Ada@example.com"},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "Ada@example.com"
    assert changed.json()["email_verified"] is True
    # A real change after it is mailed: every mail so far has come when its notice has.
    moved = await mail_client.patch(
        f"/api/v1/users/{user['id']}",
        json={"email": "augusta@example.com"},
        headers=bearer(tokens["access_token"]),
    )
    assert moved.status_code == 200, moved.text
    await arrived(smtp, "augusta@example.com", SUBJECT)
    await arrived(smtp, "Ada@example.com", "Your email address was changed")
    subjects = [(m["To"].lower(), m["Subject"]) for m in smtp.messages()]
    assert subjects.count((ADA, SUBJECT)) == 1
    assert subjects.count((ADA, "Your email address was changed")) == 1


async def test_a_token_for_an_address_the_user_left_is_refused(
    mail_client: httpx.AsyncClient, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    await register_and_login(mail_client, "ada")
    [mail] = await arrived(smtp, ADA, SUBJECT)
    async with engine.begin() as connection:  # changed without a new token
        await connection.execute(text("UPDATE users SET email = 'other@example.com'"))
    stale = await mail_client.post(VERIFY, json={"token": token_in(mail, "verify-email")})
    assert stale.status_code == 400
    assert stale.json()["code"] == "invalid-token"


async def test_resend_mails_a_new_token_and_kills_the_old(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    _, tokens = await register_and_login(mail_client, "ada")
    [first] = await arrived(smtp, ADA, SUBJECT)
    resent = await mail_client.post(RESEND, headers=bearer(tokens["access_token"]))
    assert resent.status_code == 202
    second = (await arrived(smtp, ADA, SUBJECT, 2))[-1]
    old = await mail_client.post(VERIFY, json={"token": token_in(first, "verify-email")})
    assert old.status_code == 400
    new = await mail_client.post(VERIFY, json={"token": token_in(second, "verify-email")})
    assert new.status_code == 204
    verified = await mail_client.post(RESEND, headers=bearer(tokens["access_token"]))
    assert verified.status_code == 409
    assert verified.json()["code"] == "already-verified"
    assert (await mail_client.post(RESEND)).status_code == 401


async def test_resend_is_limited_to_five_mails_an_hour(
    mail_client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    _, tokens = await register_and_login(mail_client, "ada")  # the first of five
    for _ in range(4):
        resent = await mail_client.post(RESEND, headers=bearer(tokens["access_token"]))
        assert resent.status_code == 202
    refused = await mail_client.post(RESEND, headers=bearer(tokens["access_token"]))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 3000
    await arrived(smtp, ADA, SUBJECT, 5)


async def test_an_admin_may_set_email_verified_and_no_one_else(
    mail_client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    user, tokens = await register_and_login(mail_client, "ada")
    url = f"/api/v1/users/{user['id']}"
    own = await mail_client.patch(
        url, json={"email_verified": True}, headers=bearer(tokens["access_token"])
    )
    assert own.status_code == 403
    by_admin = await admin_client.patch(url, json={"email_verified": True})
    assert by_admin.status_code == 200
    assert by_admin.json()["email_verified"] is True


async def test_require_verified_email_refuses_only_after_the_right_password(
    settings: Settings, smtp: SmtpServer
) -> None:
    app = create_app(mail_settings(settings, smtp, require_verified_email=True))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        await register(client, "ada")
        wrong = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": "not the password"}
        )
        assert wrong.status_code == 401
        right = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
        )
        assert right.status_code == 403
        assert right.json()["code"] == "email-not-verified"
        [mail] = await arrived(smtp, ADA, SUBJECT)
        verified = await client.post(VERIFY, json={"token": token_in(mail, "verify-email")})
        assert verified.status_code == 204
        after = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
        )
        assert after.status_code == 200


async def test_with_verified_email_required_the_settings_first_admin_signs_in(
    settings: Settings, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    """The admin of FIRST_ADMIN_* (as `create-admin`'s) is verified: the operator vouched
    for the address. It was unverified and mailed nothing, so no admin could sign in."""
    first = {
        "first_admin_email": "boss@example.com",
        "first_admin_username": "boss",
        "first_admin_password": SecretStr("the boss password is long"),
    }
    app = create_app(mail_settings(settings, smtp, require_verified_email=True, **first))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        signed_in = await client.post(
            "/api/v1/auth/token", data={"username": "boss", "password": "the boss password is long"}
        )
        assert signed_in.status_code == 200, signed_in.text
        me = await _me(client, signed_in.json()["access_token"])
        assert me["email_verified"] is True
    async with engine.connect() as connection:
        mailed = await connection.scalar(text("SELECT count(*) FROM mail_tokens"))
    assert mailed == 0


async def test_a_password_reset_verifies_the_address_it_was_mailed_to(
    settings: Settings, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    """A user whose verification mail was lost (or expired) could never sign in under
    REQUIRE_VERIFIED_EMAIL: resending needs a sign-in. The reset token proves the
    mailbox as the verification token does, so confirming one verifies the address."""
    strict = create_app(mail_settings(settings, smtp, require_verified_email=True))
    async with strict.router.lifespan_context(strict), asgi_client(strict) as client:
        await register(client, "ada")
        await client.post("/api/v1/auth/password-reset", json={"email": ADA})
        [reset] = await arrived(smtp, ADA, "Reset your password")
        new_password = "a brand new passphrase for ada"
        confirmed = await client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token_in(reset, "reset-password"), "new_password": new_password},
        )
        assert confirmed.status_code == 204, confirmed.text
        signed_in = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": new_password}
        )
        assert signed_in.status_code == 200, signed_in.text
        me = await _me(client, signed_in.json()["access_token"])
        assert me["email_verified"] is True
    async with engine.connect() as connection:
        types = await connection.scalars(
            text("SELECT type FROM events WHERE subject_id = :id ORDER BY id"), {"id": me["id"]}
        )
        assert "user.email_verified" in list(types)


async def test_an_admin_may_create_a_user_verified_and_no_one_else(
    mail_client: httpx.AsyncClient, admin: Admin, engine: AsyncEngine
) -> None:
    """`email_verified` is an admin's to set at creation too (it was 422, an unknown
    field); such a user is mailed no token. A sign-up sending it is 403."""
    tokens = await login(mail_client, admin.username, ADMIN_PASSWORD)
    body = {"email": ADA, "username": "ada", "password": PASSWORD, "email_verified": True}
    created = await mail_client.post(
        "/api/v1/users", json=body, headers=bearer(tokens["access_token"])
    )
    assert created.status_code == 201, created.text
    assert created.json()["email_verified"] is True
    async with engine.connect() as connection:
        mailed = await connection.scalar(text("SELECT count(*) FROM mail_tokens"))
    assert mailed == 0
    own = {**body, "email": "bob@example.com", "username": "bob"}
    refused = await mail_client.post("/api/v1/users", json=own)
    assert refused.status_code == 403, refused.text
