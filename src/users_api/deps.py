"""`Annotated` dependency aliases that keep handler signatures short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from users_api.auth.passwords import Passwords
from users_api.config import Settings
from users_api.db.session import SessionDep
from users_api.users.service import UserService


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


SettingsDep = Annotated[Settings, Depends(get_settings)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]


def get_user_service(
    session: SessionDep, passwords: PasswordsDep, settings: SettingsDep
) -> UserService:
    return UserService(session, passwords, password_min_length=settings.password_min_length)


UserServiceDep = Annotated[UserService, Depends(get_user_service, scope="function")]
