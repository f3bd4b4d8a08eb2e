"""Reference server for the benchmark: the tutorial implementation. Never shipped.

Written the way the common FastAPI + async SQLAlchemy tutorials write it, on purpose:
`create_async_engine(DATABASE_URL)` with the default pool (5 + 10 overflow), an
`async_sessionmaker`, a `get_db` dependency yielding a session, ORM `select`/`get`,
`commit()` + `refresh()`, pydantic response models with `from_attributes`, an
`OAuth2PasswordBearer` dependency, and pwdlib hashing called straight from `async def`
handlers (it blocks the event loop: that is what the tutorials do). The argon2id
parameters are the service's own, so a hash costs the same as in users-api.

Same routes and JSON as users-api for what the benchmark drives:

    GET   /api/v1/users/{id}, GET /api/v1/users?limit=N, PATCH /api/v1/users/{id},
    POST  /api/v1/users, POST /api/v1/auth/token, GET /healthz

Deviations, all cheap: `OAuth2PasswordBearer` only checks that a Bearer header is there
(tutorials go on to decode a JWT and load the user; not modelled); the login form is
parsed with `urllib.parse` because python-multipart is not installed here; errors are
FastAPI's default `{"detail": ...}` bodies, not problem+json (only success is measured).

Run: DATABASE_URL=postgresql+asyncpg://... uvicorn bench.reference.tutorial_app:app
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.security import OAuth2PasswordBearer
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import Boolean, DateTime, Integer, String, Uuid, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from uuid_utils.compat import uuid7

try:
    from users_api.security.passwords import ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, ARGON2_TIME_COST
except ImportError:  # pragma: no cover
    ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM = 2, 19_456, 1

# --- database.py ---------------------------------------------------------------------

DATABASE_URL = os.environ["DATABASE_URL"]

engine = create_async_engine(DATABASE_URL)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


# --- models.py -----------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(320))
    username: Mapped[str] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


# --- schemas.py ----------------------------------------------------------------------


class UserCreate(BaseModel):
    email: EmailStr
    username: str = Field(pattern=r"^[A-Za-z0-9_.\-]{3,32}$")
    password: str = Field(min_length=12, max_length=128)
    full_name: str | None = Field(default=None, max_length=200)


class UserUpdate(BaseModel):
    email: EmailStr | None = None
    username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{3,32}$")
    full_name: str | None = Field(default=None, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class Token(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


# --- security.py ---------------------------------------------------------------------

password_hash = PasswordHash(
    (
        Argon2Hasher(
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
        ),
    )
)
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="api/v1/auth/token")


def get_password_hash(password: str) -> str:
    return password_hash.hash(password)


def verify_password(plain_password: str, hashed_password: str) -> bool:
    return password_hash.verify(plain_password, hashed_password)


# --- main.py -------------------------------------------------------------------------

app = FastAPI()

DbDep = Annotated[AsyncSession, Depends(get_db)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/auth/token", response_model=Token)
async def login_for_access_token(request: Request, db: DbDep) -> Token:
    form = parse_qs((await request.body()).decode())
    username = form.get("username", [""])[0]
    password = form.get("password", [""])[0]
    result = await db.execute(
        select(User).where(
            or_(
                func.lower(User.username) == username.lower(),
                func.lower(User.email) == username.lower(),
            )
        )
    )
    user = result.scalar_one_or_none()
    if not user or not verify_password(password, user.password_hash):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(
        access_token=secrets.token_urlsafe(32),
        token_type="bearer",
        expires_in=900,
        refresh_token=secrets.token_urlsafe(32),
    )


@app.post("/api/v1/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
async def create_user(user_in: UserCreate, response: Response, db: DbDep) -> User:
    user = User(
        email=user_in.email,
        username=user_in.username,
        full_name=user_in.full_name,
        password_hash=get_password_hash(user_in.password),
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise HTTPException(status_code=409, detail="Email or username already taken") from None
    await db.refresh(user)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    response.headers["ETag"] = f'"{user.version}"'
    return user


@app.get("/api/v1/users", response_model=UserPage)
async def read_users(
    token: TokenDep, db: DbDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> UserPage:
    result = await db.execute(select(User).order_by(User.id).limit(limit + 1))
    users = result.scalars().all()
    next_cursor = None
    if len(users) > limit:
        last = str(users[limit - 1].id)
        # The service's cursor: its list (`l`), sort, key and id (users_api.users.cursor).
        payload = orjson.dumps({"l": "users", "s": "id", "k": last, "i": last})
        next_cursor = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return UserPage(
        items=[UserOut.model_validate(u) for u in users[:limit]], next_cursor=next_cursor
    )


@app.get("/api/v1/users/{user_id}", response_model=UserOut)
async def read_user(user_id: uuid.UUID, response: Response, token: TokenDep, db: DbDep) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    response.headers["ETag"] = f'"{user.version}"'
    return user


@app.patch("/api/v1/users/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID, user_in: UserUpdate, response: Response, token: TokenDep, db: DbDep
) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    for field, value in user_in.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    user.version += 1
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise HTTPException(status_code=409, detail="Email or username already taken") from None
    await db.refresh(user)
    response.headers["ETag"] = f'"{user.version}"'
    return user
