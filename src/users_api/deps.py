"""`Annotated` dependency aliases that keep handler signatures short.

Every dependency is `async def`, even those that never await: FastAPI runs a plain
`def` dependency in a worker thread, a hand-off that cost a fifth of a request's time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from users_api.auth.client_address import client_address
from users_api.auth.login import Login
from users_api.auth.passwords import Passwords
from users_api.auth.service import AuthService, verified_claims
from users_api.auth.tokens import AccessClaims, AccessTokens
from users_api.config import Settings
from users_api.db.session import SessionDep, transaction
from users_api.errors import Unauthorized
from users_api.users.creation import UserCreation
from users_api.users.models import User
from users_api.users.quick_update import QuickUpdate
from users_api.users.reader import UserReader
from users_api.users.service import UserService

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105  # a path, not a secret
# auto_error=False: we answer missing credentials ourselves, as problem+json.
bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def _app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency giving the app's `state.<name>`: the one per-app objects (settings,
    hashing, tokens, the stateless services) built in `create_app` and its lifespan."""

    async def from_state(request: Request) -> Any:
        return getattr(request.app.state, name)

    from_state.__name__ = f"app_state_{name}"
    return from_state


SettingsDep = Annotated[Settings, Depends(_app_state("settings"))]
PasswordsDep = Annotated[Passwords, Depends(_app_state("passwords"))]
TokensDep = Annotated[AccessTokens, Depends(_app_state("tokens"))]
UserReaderDep = Annotated[UserReader, Depends(_app_state("user_reader"))]
QuickUpdateDep = Annotated[QuickUpdate, Depends(_app_state("quick_update"))]
UserCreationDep = Annotated[UserCreation, Depends(_app_state("user_creation"))]
LoginDep = Annotated[Login, Depends(_app_state("login"))]


async def get_auth_service(
    session: SessionDep, tokens: TokensDep, settings: SettingsDep
) -> AuthService:
    return AuthService(
        session,
        tokens=tokens,
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service, scope="function")]


async def current_user(auth: AuthServiceDep, token: Annotated[str | None, Depends(bearer)]) -> User:
    if token is None:
        raise Unauthorized
    return await auth.authenticate(token)


CurrentUser = Annotated[User, Depends(current_user, scope="function")]


def _user_service(session: AsyncSession, passwords: Passwords, settings: Settings) -> UserService:
    return UserService(session, passwords, password_min_length=settings.password_min_length)


async def get_user_service(
    session: SessionDep, passwords: PasswordsDep, settings: SettingsDep
) -> UserService:
    return _user_service(session, passwords, settings)


UserServiceDep = Annotated[UserService, Depends(get_user_service, scope="function")]


class UserServices:
    """A `UserService` in a transaction of its own, opened only if the request needs one:
    a request that one statement may answer (`QuickUpdate`) skips the session's cost."""

    def __init__(self, request: Request) -> None:
        self.state = request.app.state

    @asynccontextmanager
    async def open(self) -> AsyncIterator[UserService]:
        """Committed when the block ends, so before the response is sent."""
        async with transaction(self.state.session_factory) as session:
            yield _user_service(session, self.state.passwords, self.state.settings)


async def get_user_services(request: Request) -> UserServices:
    return UserServices(request)


UserServicesDep = Annotated[UserServices, Depends(get_user_services)]


async def get_client_address(request: Request, settings: SettingsDep) -> str:
    return client_address(request, settings.trusted_proxies)


ClientAddress = Annotated[str, Depends(get_client_address)]


class BearerClaims(OAuth2PasswordBearer):
    """The caller's verified token, for requests that check it against the database in
    the same statement as their data (see `users/reads.py`): no session, no extra round
    trip. Without a token: Unauthorized, or None where `required=False` (routes open to
    anyone); a token that was sent must verify either way.

    One dependency instead of three (header, token checker, claims): FastAPI's resolution
    is a tenth of a cached read's time. Documented as the same bearer scheme.
    """

    def __init__(self, *, required: bool) -> None:
        super().__init__(tokenUrl=TOKEN_URL, auto_error=False, scheme_name=bearer.scheme_name)
        self.required = required

    async def __call__(self, request: Request) -> AccessClaims | None:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            if self.required:
                raise Unauthorized
            return None
        return verified_claims(request.app.state.tokens, token)


Caller = Annotated[AccessClaims, Depends(BearerClaims(required=True))]
OptionalCaller = Annotated[AccessClaims | None, Depends(BearerClaims(required=False))]
