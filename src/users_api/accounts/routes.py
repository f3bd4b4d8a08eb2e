"""HTTP for accounts over mail: password reset (and email verification)."""

from __future__ import annotations

from fastapi import Request, Response, status

from users_api.accounts.schemas import (
    EmailVerification,
    PasswordResetConfirm,
    PasswordResetRequest,
)
from users_api.accounts.service import AccountService
from users_api.http import parse
from users_api.http.openapi import Auth, Body, Reply, doc
from users_api.http.routing import api_router

router = api_router("/api/v1/auth", "auth")

# Whether or not the address is known: one body, so the answer tells nothing.
_ACCEPTED = b'{"status":"accepted"}'


def _accounts(request: Request) -> AccountService:
    service: AccountService = request.app.state.accounts
    return service


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    **doc(
        "requestPasswordReset",
        "Mail a password-reset link to this address, if an active user has it (the "
        "answer is the same either way)",
        None,
        (400, 422, 429),
        Body(PasswordResetRequest, {"email": "ada@example.com"}),
        Auth.NONE,
        reply=Reply(202, "Accepted, whether or not the address is known.", {"status": "accepted"}),
    ),
)
async def request_password_reset(request: Request) -> Response:
    body = await parse.json_body(request, PasswordResetRequest)
    await _accounts(request).request_reset(body.email, address=parse.client_address(request))
    return Response(_ACCEPTED, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "confirmPasswordReset",
        "Set a new password with a mailed reset token: every session of the user ends",
        None,
        (400, 422),
        Body(
            PasswordResetConfirm,
            {"token": "mailed-token", "new_password": "correct horse battery staple"},
        ),
        Auth.NONE,
    ),
)
async def confirm_password_reset(request: Request) -> Response:
    body = await parse.json_body(request, PasswordResetConfirm)
    await _accounts(request).confirm_reset(body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "verifyEmail",
        "Prove the email address with a mailed verification token",
        None,
        (400, 422),
        Body(EmailVerification, {"token": "mailed-token"}),
        Auth.NONE,
    ),
)
async def verify_email(request: Request) -> Response:
    body = await parse.json_body(request, EmailVerification)
    await _accounts(request).verify_email(body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    **doc(
        "resendVerificationEmail",
        "Mail a new verification link to the caller's address (older links die)",
        None,
        (401, 409, 429),
        reply=Reply(202, "A new verification mail is on its way.", {"status": "accepted"}),
    ),
)
async def resend_verification(request: Request) -> Response:
    await _accounts(request).resend_verification(parse.caller(request))
    return Response(_ACCEPTED, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")
