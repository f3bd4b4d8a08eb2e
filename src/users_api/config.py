"""Settings: one pydantic-settings class, read once at start-up and passed in."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_ASYNC_DRIVER = "postgresql+asyncpg"
_ACCEPTED_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}


def normalize_database_url(raw: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and pin the asyncpg driver."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ValueError("is not a valid database URL") from exc
    if url.drivername not in _ACCEPTED_SCHEMES:
        raise ValueError(f"must be a postgresql+asyncpg:// URL, not {url.drivername}://")
    if not url.database:
        raise ValueError("must name a database")
    return url.set(drivername=_ASYNC_DRIVER).render_as_string(hide_password=False)


# An origin as browsers send it (RFC 6454): scheme, host, optional port; nothing else.
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")


def _origin(raw: str) -> str:
    """`raw` as browsers spell it in `Origin` (lower case, no trailing slash), or `*`."""
    origin = raw.strip().lower().removesuffix("/")
    if origin != "*" and not _ORIGIN.fullmatch(origin):
        raise ValueError(f"{raw!r} is not an origin such as https://app.example.com")
    return origin


class Settings(BaseSettings):
    """Every knob of the service; environment variables win over `.env`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    database_url: str | None = None
    secret_key: SecretStr | None = None
    data_dir: Path = Path(".data")

    access_token_ttl_seconds: Annotated[int, Field(ge=30, le=86_400)] = 900
    refresh_token_ttl_seconds: Annotated[int, Field(ge=60, le=31_536_000)] = 1_209_600
    allow_registration: bool = True
    password_min_length: Annotated[int, Field(ge=12, le=128)] = 12
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] | None = None

    login_failures_per_account: Annotated[int, Field(ge=1)] = 5
    login_failures_per_address: Annotated[int, Field(ge=1)] = 100
    login_failure_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    # Proxies whose X-Forwarded-For is believed (addresses or CIDRs, comma-separated).
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # Browser origins answered with CORS (comma-separated `scheme://host[:port]`, or `*`).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    first_admin_email: str | None = None
    first_admin_username: str | None = None
    first_admin_password: SecretStr | None = None

    # A fixed pool: overflow connections are opened under load and closed after, a new
    # PostgreSQL backend (a fork and an authentication) per burst. Requests beyond the
    # pool wait for a connection instead, at most DB_POOL_TIMEOUT (db/database.py).
    db_pool_size: Annotated[int, Field(ge=1, le=1000)] = 20
    db_max_overflow: Annotated[int, Field(ge=0, le=1000)] = 0
    db_pool_timeout: Annotated[float, Field(gt=0, le=300)] = 5.0
    db_pool_recycle: Annotated[int, Field(ge=-1)] = 1800
    # A ping costs a round trip per checkout; connections the server closed are dropped
    # for free on checkout without it (see db/database.py).
    db_pool_pre_ping: bool = False
    db_echo: bool = False
    db_statement_timeout_ms: Annotated[int, Field(ge=0)] = 5_000
    db_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0

    max_body_bytes: Annotated[int, Field(ge=1024)] = 65_536
    # One log line per request, from uvicorn: a tenth of a cached read's time. Off by
    # default, as in gunicorn and granian: the proxy in front usually logs requests.
    access_log: bool = False

    @field_validator("database_url", mode="before")
    @classmethod
    def _validate_database_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return normalize_database_url(value.strip())

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return tuple(ip_network(part, strict=False) for part in parts)
            except ValueError as exc:
                raise ValueError(f"not an address or network: {exc}") from exc
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(_origin(str(part)) for part in value)
        return value

    @field_validator("secret_key", mode="after")
    @classmethod
    def _validate_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes long")
        return value

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("no DATABASE_URL: start the embedded database first")
        return self.database_url


def describe_error(exc: ValidationError) -> str:
    """One line per broken setting, naming the environment variable."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"invalid setting {name}: {message}")
    return "; ".join(lines)
