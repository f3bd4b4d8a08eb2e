"""HTTP for authentication: the OAuth2 password and refresh grants, refresh, logout, the
second step of a sign-in with MFA, and the caller's sessions (devices)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response, status

from users_api.auth import examples
from users_api.auth.schemas import (
    LoginForm,
    RefreshGrantForm,
    RefreshRequest,
    SessionList,
    TokenForm,
    TokenResponse,
)
from users_api.auth.service import AuthService, Client, TokenPair
from users_api.errors import DomainError, UnsupportedGrantType, to_response
from users_api.http import parse
from users_api.http.openapi import Auth, Body, Form, PathId, Reply, doc
from users_api.http.routing import api_router
from users_api.mfa.schemas import VerifyRequest
from users_api.responses import json_response

router = api_router("/api/v1/auth", "auth")

# RFC 6749 §5.1: a response that carries tokens must not be stored by any cache.
_NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TOKENS = Reply(200, "A new access token and refresh token.", examples.TOKENS)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _auth(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


def token_response(result: TokenPair | DomainError) -> Response:
    """The `TokenResponse` body, or the failure's problem+json.

    Failures are rendered, not raised: the transaction must commit what they recorded.
    """
    if isinstance(result, DomainError):
        return to_response(result)
    body = TokenResponse(
        access_token=result.access_token,
        refresh_token=result.refresh_token,
        expires_in=result.expires_in,
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_NOT_STORED)


@router.post(
    "/token",
    **doc(
        "logIn",
        "Log in (OAuth2 password grant: username or email, and password), or trade a "
        "refresh token for a new pair (refresh grant)",
        TokenResponse,
        (400, 401, 403, 429),
        Form(TokenForm, examples.LOGIN),
        Auth.NONE,
        reply=TOKENS,
    ),
)
async def login(request: Request) -> Response:
    fields = await parse.form_fields(request)
    grant_type = fields.get("grant_type", "password")
    if grant_type == "refresh_token":  # RFC 6749 §6: the same as POST /auth/refresh
        grant = parse.form_model(fields, RefreshGrantForm)
        return token_response(await _auth(request).refresh(grant.refresh_token))
    if grant_type != "password":
        raise UnsupportedGrantType
    form = parse.form_model(fields, LoginForm)
    client = _client(request)
    return token_response(await _auth(request).login(form.username, form.password, client=client))


def _client(request: Request) -> Client:
    return Client(
        address=parse.client_address(request),
        user_agent=parse.text_header(request, "user-agent"),
    )


def _json_or_form(documented: dict[str, Any]) -> dict[str, Any]:
    """A route's `doc` with its JSON body offered as a form as well (the same model)."""
    content = documented["openapi_extra"]["requestBody"]["content"]
    content[_FORMS[0]] = dict(content["application/json"])
    return documented


@router.post(
    "/mfa/verify",
    **_json_or_form(
        doc(
            "verifyMfa",
            "The second step of a sign-in with MFA on: the `mfa_token` of the password "
            "grant's `mfa-required` answer and a TOTP code or a recovery code (JSON or form)",
            TokenResponse,
            (400, 401, 429),
            Body(VerifyRequest, examples.MFA_VERIFY),
            Auth.NONE,
            reply=TOKENS,
        )
    ),
)
async def verify_mfa(request: Request) -> Response:
    content_type = (parse.header(request, "content-type") or "").lower()
    if content_type.startswith(_FORMS):
        body = await parse.form_body(request, VerifyRequest)
    else:
        body = await parse.json_body(request, VerifyRequest)
    result = await _auth(request).verify_mfa(body.mfa_token, body.code, client=_client(request))
    return token_response(result)


SESSION_ID = PathId("session_id")


@router.get(
    "/sessions",
    **doc(
        "listSessions",
        "The caller's live sessions (devices), newest first",
        SessionList,
        (401,),
        reply=Reply(
            200, "The caller's live sessions; `current` marks this one.", examples.SESSIONS
        ),
    ),
)
async def list_sessions(request: Request) -> Response:
    records = await _auth(request).sessions(parse.caller(request))
    # The records' columns are `SessionOut`'s fields, in its order.
    return json_response({"items": [dict(record) for record in records]}, headers=_NOT_STORED)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "endSession",
        "End one of the caller's sessions: every token of it dies at once",
        None,
        (401, 404),
        SESSION_ID,
    ),
)
async def end_session(request: Request) -> Response:
    caller = parse.caller(request)
    session_id = parse.path_id(request, "session_id")
    await _auth(request).end_session(session_id, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/refresh",
    **doc(
        "refreshTokens",
        "Trade a refresh token for a new pair (the old one is used up)",
        TokenResponse,
        (400, 401),
        Body(RefreshRequest, examples.REFRESH),
        Auth.NONE,
        reply=TOKENS,
    ),
)
async def refresh(request: Request) -> Response:
    body = await parse.json_body(request, RefreshRequest)
    return token_response(await _auth(request).refresh(body.refresh_token))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "logOut",
        "End one login: its refresh tokens die",
        None,
        (400,),
        Body(RefreshRequest, examples.REFRESH),
        Auth.NONE,
    ),
)
async def logout(request: Request) -> Response:
    body = await parse.json_body(request, RefreshRequest)
    await _auth(request).logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "logOutEverywhere",
        "End every login of the caller: all access and refresh tokens die",
        None,
        (401,),
    ),
)
async def logout_all(request: Request) -> Response:
    await _auth(request).logout_all(parse.caller(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
