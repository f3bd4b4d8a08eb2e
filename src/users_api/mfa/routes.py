"""HTTP for the second factor: enrol, confirm, turn off, new recovery codes, and an
admin's reset. (The second step of a sign-in is a login: `auth/routes.py`.)"""

from __future__ import annotations

from fastapi import Request, Response, status

from users_api.http import parse
from users_api.http.openapi import Body, PathId, Reply, doc
from users_api.http.routing import USER_SEGMENT, api_router
from users_api.mfa import examples
from users_api.mfa.schemas import (
    CodeRequest,
    Enrolment,
    PasswordAndCodeRequest,
    PasswordRequest,
    RecoveryCodesOut,
)
from users_api.mfa.service import MfaService
from users_api.responses import json_response

router = api_router("/api/v1/auth/mfa", "mfa")
admin_router = api_router("/api/v1/users", "mfa")

# A secret and recovery codes are for the user's eyes once: no cache keeps them.
_NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CODES = Reply(200, "Ten single-use recovery codes, shown this once.", examples.RECOVERY_CODES)


def _mfa(request: Request) -> MfaService:
    service: MfaService = request.app.state.mfa
    return service


def _codes(codes: list[str]) -> Response:
    body = RecoveryCodesOut(recovery_codes=codes).model_dump()
    return json_response(body, headers=_NOT_STORED)


@router.post(
    "/totp",
    **doc(
        "enrolTotp",
        "Start TOTP enrolment: a new secret and its otpauth:// URI, not active until confirmed",
        Enrolment,
        (400, 401, 403, 409, 429),
        Body(PasswordRequest, examples.CURRENT_PASSWORD),
        reply=Reply(200, "The pending secret.", examples.ENROLMENT),
    ),
)
async def enrol(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, PasswordRequest)
    address = parse.client_address(request)
    enrolment = await _mfa(request).enrol(caller, body.current_password, address=address)
    content = Enrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri).model_dump()
    return json_response(content, headers=_NOT_STORED)


@router.post(
    "/totp/confirm",
    **doc(
        "confirmTotp",
        "Confirm TOTP enrolment with a code: MFA is on, and the caller's other sessions end",
        RecoveryCodesOut,
        (400, 401, 409, 429),
        Body(CodeRequest, examples.CODE),
        reply=CODES,
    ),
)
async def confirm(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, CodeRequest)
    address = parse.client_address(request)
    return _codes(await _mfa(request).confirm(caller, body.code, address=address))


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "disableMfa",
        "Turn MFA off (current password and a code; a recovery code may stand for it)",
        None,
        (400, 401, 403, 409, 429),
        Body(PasswordAndCodeRequest, examples.PASSWORD_AND_CODE),
    ),
)
async def disable(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, PasswordAndCodeRequest)
    address = parse.client_address(request)
    await _mfa(request).disable(caller, body.current_password, body.code, address=address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/recovery-codes",
    **doc(
        "regenerateRecoveryCodes",
        "Ten new recovery codes (current password and a code); the old ones die",
        RecoveryCodesOut,
        (400, 401, 403, 409, 429),
        Body(PasswordAndCodeRequest, examples.PASSWORD_AND_CODE),
        reply=CODES,
    ),
)
async def regenerate(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, PasswordAndCodeRequest)
    address = parse.client_address(request)
    codes = await _mfa(request).regenerate(
        caller, body.current_password, body.code, address=address
    )
    return _codes(codes)


@admin_router.delete(
    f"/{USER_SEGMENT}/mfa",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "resetUserMfa",
        "An admin turns a user's MFA off (a lost device): every session of theirs ends",
        None,
        (401, 403, 404),
        PathId("user_id"),
    ),
)
async def reset(request: Request) -> Response:
    caller = parse.caller(request)
    user_id = parse.path_id(request)
    await _mfa(request).reset(user_id, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
