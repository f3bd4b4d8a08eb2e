"""HTTP for authentication: the OAuth2 password grant, refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response, status

from users_api.auth.schemas import LoginForm, RefreshRequest, TokenResponse
from users_api.auth.service import TokenPair
from users_api.deps import AuthServiceDep, ClientAddress, CurrentUser, LoginDep
from users_api.errors import DomainError, problem_responses, to_response

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# RFC 6749 §5.1: a response that carries tokens must not be stored by any cache.
_NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 429),
    summary="Log in (OAuth2 password grant): username or email, and password",
)
async def login(
    form: Annotated[LoginForm, Form()], login: LoginDep, address: ClientAddress
) -> Response:
    return token_response(await login(form.username, form.password, address=address))


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses=problem_responses(400, 401),
    summary="Trade a refresh token for a new pair (the old one is used up)",
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep) -> Response:
    return token_response(await auth.refresh(body.refresh_token))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400),
    summary="End one login: its refresh tokens die",
)
async def logout(body: RefreshRequest, auth: AuthServiceDep) -> None:
    await auth.logout(body.refresh_token)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
    summary="End every login of the caller: all access and refresh tokens die",
)
async def logout_all(user: CurrentUser, auth: AuthServiceDep) -> None:
    await auth.logout_all(user)
