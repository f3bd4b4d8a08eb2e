"""HTTP for authentication: the OAuth2 password grant, refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response, status

from users_api.auth.schemas import RefreshRequest, TokenResponse
from users_api.auth.service import TokenPair
from users_api.deps import AuthServiceDep, ClientAddress, CurrentUser, LoginDep
from users_api.errors import DomainError, problem_responses, to_response

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# Form fields of the OAuth2 password grant; bounded so a huge form is refused early.
# No username or email holds a NUL, and PostgreSQL cannot even compare text with one.
LoginName = Annotated[str, Form(min_length=1, max_length=320, pattern=r"^[^\x00]*$")]
LoginPassword = Annotated[str, Form(min_length=1, max_length=1024)]


def _answer(result: TokenPair | DomainError) -> TokenResponse | Response:
    # Failures are rendered, not raised: the transaction must commit what they recorded.
    if isinstance(result, DomainError):
        return to_response(result)
    return TokenResponse(
        access_token=result.access_token,
        refresh_token=result.refresh_token,
        expires_in=result.expires_in,
    )


@router.post(
    "/token",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 429),
    summary="Log in (OAuth2 password grant): username or email, and password",
)
async def login(
    username: LoginName, password: LoginPassword, login: LoginDep, address: ClientAddress
) -> TokenResponse | Response:
    return _answer(await login(username, password, address=address))


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses=problem_responses(400, 401),
    summary="Trade a refresh token for a new pair (the old one is used up)",
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep) -> TokenResponse | Response:
    return _answer(await auth.refresh(body.refresh_token))


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
