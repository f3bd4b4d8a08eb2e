"""`Annotated` dependency aliases that keep handler signatures short.

Every dependency is `async def`, even those that never await: FastAPI runs a plain
`def` dependency in a worker thread, a hand-off that cost a fifth of a request's time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

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


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def get_tokens(request: Request) -> AccessTokens:
    tokens: AccessTokens = request.app.state.tokens
    return tokens


SettingsDep = Annotated[Settings, Depends(get_settings)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
TokensDep = Annotated[AccessTokens, Depends(get_tokens)]


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
    """The caller's verified token, for reads that check it against the database in the
    same statement as the data (see `users/reads.py`): no session, no extra round trip.

    One dependency instead of three (header, token checker, claims): FastAPI's resolution
    is a tenth of a cached read's time. Documented as the same bearer scheme.
    """

    async def __call__(self, request: Request) -> AccessClaims:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            raise Unauthorized
        return verified_claims(request.app.state.tokens, token)


class OptionalBearerClaims(OAuth2PasswordBearer):
    """As `BearerClaims`, for routes open to anyone: None when no token was sent (one
    that was sent must still verify)."""

    async def __call__(self, request: Request) -> AccessClaims | None:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            return None
        return verified_claims(request.app.state.tokens, token)


Caller = Annotated[
    AccessClaims,
    Depends(BearerClaims(tokenUrl=TOKEN_URL, auto_error=False, scheme_name=bearer.scheme_name)),
]
OptionalCaller = Annotated[
    AccessClaims | None,
    Depends(
        OptionalBearerClaims(tokenUrl=TOKEN_URL, auto_error=False, scheme_name=bearer.scheme_name)
    ),
]


async def get_user_reader(request: Request) -> UserReader:
    reader: UserReader = request.app.state.user_reader
    return reader


UserReaderDep = Annotated[UserReader, Depends(get_user_reader)]


async def get_quick_update(request: Request) -> QuickUpdate:
    quick: QuickUpdate = request.app.state.quick_update
    return quick


QuickUpdateDep = Annotated[QuickUpdate, Depends(get_quick_update)]


async def get_user_creation(request: Request) -> UserCreation:
    creation: UserCreation = request.app.state.user_creation
    return creation


UserCreationDep = Annotated[UserCreation, Depends(get_user_creation)]


async def get_login(request: Request) -> Login:
    login: Login = request.app.state.login
    return login


LoginDep = Annotated[Login, Depends(get_login)]
