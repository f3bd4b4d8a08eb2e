"""HTTP for authentication: the OAuth2 password and refresh grants, refresh, logout."""

from __future__ import annotations

from fastapi import Request, Response, status

from users_api.auth import examples
from users_api.auth.schemas import (
    LoginForm,
    RefreshGrantForm,
    RefreshRequest,
    TokenForm,
    TokenResponse,
)
from users_api.auth.service import AuthService, Client, TokenPair
from users_api.errors import DomainError, UnsupportedGrantType, to_response
from users_api.http import parse
from users_api.http.openapi import Auth, Body, Form, Reply, doc
from users_api.http.routing import api_router

router = api_router("/api/v1/auth", "auth")

# RFC 6749 §5.1: a response that carries tokens must not be stored by any cache.
_NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TOKENS = Reply(200, "A new access token and refresh token.", examples.TOKENS)


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
    client = Client(
        address=parse.client_address(request),
        user_agent=parse.header(request, "user-agent"),
    )
    return token_response(await _auth(request).login(form.username, form.password, client=client))


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
