"""Settings: one pydantic-settings class, read once at start-up and passed in."""

from __future__ import annotations

import difflib
import email.policy
import logging
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
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
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"is not a valid database URL: {exc}") from exc
    if url.port is not None and not 0 < url.port < 65_536:
        raise ValueError(f"port {url.port} is not between 1 and 65535")
    if url.drivername not in _ACCEPTED_SCHEMES:
        raise ValueError(f"must be a postgresql+asyncpg:// URL, not {url.drivername}://")
    if not url.database:
        raise ValueError("must name a database")
    if "sslmode" in url.query:  # libpq's spelling, as hosted databases hand URLs out
        mode = url.query["sslmode"]
        url = url.difference_update_query(["sslmode"])
        if "ssl" not in url.query:
            url = url.update_query_dict({"ssl": mode})
    unknown = sorted(set(url.query) - _connect_parameters())
    if unknown:
        raise ValueError(f"the URL parameter {unknown[0]}= is none asyncpg takes")
    return url.set(drivername=_ASYNC_DRIVER).render_as_string(hide_password=False)


def _connect_parameters() -> frozenset[str]:
    """What a URL's query may carry: asyncpg's `connect` arguments (`ssl`, `host` for a
    socket folder or several hosts, `server_settings`...)."""
    import inspect

    import asyncpg

    return frozenset(inspect.signature(asyncpg.connect).parameters) | {"host", "port"}


class _EveryDotEnvKey(PydanticBaseSettingsSource):
    """The `.env` file, every key of it: one that is no setting is kept, so that
    `extra="forbid"` refuses it, even with an empty value (which pydantic-settings'
    own source drops). A typo such as `ACESS_TOKEN_TTL_SECONDS=60` would otherwise be
    ignored without a word while the default applies."""

    def __init__(self, dotenv: DotEnvSettingsSource) -> None:
        super().__init__(dotenv.settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        return self.dotenv.get_field_value(field, field_name)

    def __call__(self) -> dict[str, object]:
        _refuse_unreadable_lines(self.dotenv.env_file)
        values: dict[str, object] = self.dotenv()
        for key, value in self.dotenv.env_vars.items():
            if key not in self.settings_cls.model_fields:
                values.setdefault(key, value or "")
        return values


# python-dotenv's warning about a line it cannot read is ours to give, as the error that
# stops start-up (`_refuse_unreadable_lines`): not a second line beside it.
logging.getLogger("dotenv.main").setLevel(logging.ERROR)


class DotEnvError(ValueError):
    """A `.env` line that is no `KEY=value`: python-dotenv skips it with a warning, and the
    setting it meant would fall back to its default without a word."""


def _refuse_unreadable_lines(env_file: object) -> None:
    from dotenv.parser import parse_stream

    if not isinstance(env_file, str | Path) or not Path(env_file).exists():
        return
    if not Path(env_file).is_file():
        raise DotEnvError(f"{env_file} is not a file")
    try:
        with Path(env_file).open(encoding="utf-8") as stream:
            broken = [binding.original for binding in parse_stream(stream) if binding.error]
    except (OSError, UnicodeError) as exc:
        raise DotEnvError(f"cannot read {env_file}: {exc}") from exc
    if broken:
        first = broken[0]
        raise DotEnvError(
            f"line {first.line} of {env_file} is not KEY=value: {first.string.strip()[:80]!r}"
        )


# An origin as browsers send it (RFC 6454): scheme, host, optional port; nothing else.
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")


def _origin(raw: str) -> str:
    """`raw` as browsers spell it in `Origin` (lower case, no trailing slash), or `*`."""
    origin = raw.strip().lower().removesuffix("/")
    if origin == "*":
        return origin
    match = _ORIGIN.fullmatch(origin)
    if match is None or (match[2] is not None and not 0 < int(match[2][1:]) < 65_536):
        raise ValueError(f"{raw!r} is not an origin such as https://app.example.com")
    return origin


class Settings(BaseSettings):
    """Every knob of the service; environment variables win over `.env`.

    Only the `.env` file is checked for unknown keys: the process's environment holds
    plenty of variables that are none of ours.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        case_sensitive=False,
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        return init_settings, env_settings, _EveryDotEnvKey(dotenv_settings), file_secret_settings

    database_url: str | None = None
    secret_key: SecretStr | None = None
    # The SECRET_KEY before a rotation: TOTP secrets sealed under it still open (and are
    # sealed again under the new key when next used). See the README's Configuration.
    mfa_previous_secret_key: SecretStr | None = None
    data_dir: Path = Path(".data")

    access_token_ttl_seconds: Annotated[int, Field(ge=30, le=86_400)] = 900
    refresh_token_ttl_seconds: Annotated[int, Field(ge=60, le=31_536_000)] = 1_209_600
    allow_registration: bool = True
    password_min_length: Annotated[int, Field(ge=12, le=128)] = 12
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] | None = None

    login_failures_per_account: Annotated[int, Field(ge=1)] = 5
    login_failures_per_address: Annotated[int, Field(ge=1)] = 100
    login_failure_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    # Sign-ups (POST /users by anyone but an admin) per client address per hour.
    registrations_per_address: Annotated[int, Field(ge=1)] = 20
    # Proxies whose X-Forwarded-For is believed (addresses or CIDRs, comma-separated).
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # Browser origins answered with CORS (comma-separated `scheme://host[:port]`, or `*`).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # Mail (mail/): an SMTP server, or none (`.eml` files under DATA_DIR/outbox/).
    smtp_url: SecretStr | None = None
    mail_from: str = "users-api <no-reply@localhost>"
    # The client application's pages that mailed links point at.
    public_url: str = "http://127.0.0.1:8000"
    password_reset_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 1800
    email_verification_ttl_seconds: Annotated[int, Field(ge=60, le=2_592_000)] = 172_800
    require_verified_email: bool = False
    # Password-reset requests per client address per hour.
    password_resets_per_address: Annotated[int, Field(ge=1)] = 20
    # The outbox sender (outbox/): how often it looks for due messages, and the first
    # wait after a failed delivery (doubled after each next one, at most an hour).
    outbox_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    outbox_retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Audit events older than this many days are removed by the service (0: kept for ever).
    audit_retention_days: Annotated[int, Field(ge=0, le=36_500)] = 365
    # Webhook attempts (the deliveries log) and delivered outbox messages older than this
    # many days are removed by the service (0: kept for ever). A manual redelivery finds
    # an event only while its outbox message is kept.
    delivery_retention_days: Annotated[int, Field(ge=0, le=36_500)] = 30

    # Webhooks (webhooks/): the waits in seconds after each failed attempt (comma-separated,
    # ±20 % jitter; the last repeats), how many attempts before the endpoint is disabled,
    # whether loopback and private addresses may be targets, and each attempt's timeout.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        5,
        30,
        120,
        600,
        1800,
        3600,
        7200,
        14_400,
        28_800,
    )
    webhook_max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    webhook_allow_private: bool = False
    # At most 14 s: a sender's batch (20 attempts, one after another) must end within the
    # outbox's 5-minute lease, or another sender could take a row still being sent.
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=14)] = 10.0

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
    # PostgreSQL's own bound for statement_timeout (an int of milliseconds).
    db_statement_timeout_ms: Annotated[int, Field(ge=0, le=2_147_483_647)] = 5_000
    db_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    # DATABASE_URL points at PgBouncer in transaction mode (or another pooler): no
    # prepared statement outlives its statement, every unit of work is a transaction that
    # sets its own statement timeout. `auto`: find out at start-up (db/pooler.py).
    # `prepared`: a pooler that keeps prepared statements across transactions (PgBouncer
    # >= 1.21 with `max_prepared_statements` > 0): the same, but statements stay prepared.
    db_pgbouncer: Literal["true", "false", "auto", "prepared"] = "auto"
    # A direct connection (not through a pooler) for the migrations: DDL, Alembic's
    # session. Unset: DATABASE_URL, unless that is a pooler (then `serve` only checks the
    # schema is at head, and `migrate` refuses).
    migrations_database_url: str | None = None
    # Read replicas (comma-separated URLs) for reads that may be a moment old, and how
    # far behind one may be before it is skipped (db/replicas.py).
    database_replica_urls: Annotated[tuple[str, ...], NoDecode] = ()
    replica_max_lag_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0

    max_body_bytes: Annotated[int, Field(ge=1024)] = 65_536
    # Logs go to standard error: JSON lines, or readable ones (`auto`: readable on a
    # terminal, JSON anywhere else). See logs.py.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "console", "auto"] = "auto"
    # One log line per request, from uvicorn: a tenth of a cached read's time. Off by
    # default, as in gunicorn and granian: the proxy in front usually logs requests.
    access_log: bool = False
    # `GET /metrics` asks for `Authorization: Bearer <METRICS_TOKEN>` when it is set.
    metrics_token: SecretStr | None = None
    # OpenTelemetry traces of requests and their SQL go to this OTLP/HTTP collector
    # (`<endpoint>/v1/traces`); unset, nothing of tracing is loaded (tracing.py).
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("database_url", "migrations_database_url", mode="before")
    @classmethod
    def _validate_database_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return normalize_database_url(value.strip())

    @field_validator(
        "secret_key",
        "mfa_previous_secret_key",
        "smtp_url",
        "password_hash_concurrency",
        "first_admin_email",
        "first_admin_username",
        "first_admin_password",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`SECRET_KEY=` (as .env.example writes it, or as a compose file passes an unset
        variable on) means the default, as for DATABASE_URL."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _first_admin_all_or_none(self) -> Settings:
        given = {
            "FIRST_ADMIN_EMAIL": self.first_admin_email,
            "FIRST_ADMIN_USERNAME": self.first_admin_username,
            "FIRST_ADMIN_PASSWORD": self.first_admin_password,
        }
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            present = [name for name in given if name not in missing]
            raise ValueError(
                f"{' and '.join(present)} {'is' if len(present) == 1 else 'are'} set but "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                "set all three to create the first admin, or none"
            )
        return self

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _parse_replica_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(normalize_database_url(str(part)) for part in value)
        return value

    @field_validator("db_pgbouncer", mode="before")
    @classmethod
    def _boolean_or_auto(cls, value: object) -> object:
        """DB_PGBOUNCER takes what a boolean setting takes (1, yes, on...) and `auto`."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            word = value.strip().lower()
            if word in {"1", "yes", "on", "t", "y"}:
                return "true"
            if word in {"0", "no", "off", "f", "n"}:
                return "false"
            return word
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _validate_otlp_endpoint(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL (http://collector:4318)")
        return value

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

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return tuple(float(part) for part in parts)
            except ValueError:
                raise ValueError("must be seconds separated by commas, e.g. 5,30,120") from None
        return value

    @field_validator("webhook_retry_schedule", mode="after")
    @classmethod
    def _validate_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < seconds <= 604_800 for seconds in value):
            raise ValueError("must list at least one wait, each over 0 and at most a week")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(_origin(str(part)) for part in value)
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _blank_is_the_default_folder(cls, value: object) -> object:
        """`DATA_DIR=` means the default, as every empty setting does: not the working
        folder, which the embedded database and the secret key would fill."""
        return Path(".data") if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key", "mfa_previous_secret_key", mode="after")
    @classmethod
    def _validate_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes long")
        return value

    @field_validator("smtp_url", mode="after")
    @classmethod
    def _validate_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError(
                    "must be smtp://[user:pass@]host:port or smtps://[user:pass@]host:port"
                )
            parts.port  # noqa: B018  # raises ValueError on a bad port
        return value

    @field_validator("mail_from", mode="after")
    @classmethod
    def _validate_mail_from(cls, value: str) -> str:
        """One mailbox, as the From header and the SMTP envelope both need it: a bad one
        would fail every mail in the outbox, long after start-up said nothing. (The email
        package is loaded here, when MAIL_FROM is set, not by every command's import.)"""

        try:
            header = email.policy.default.header_factory("From", value)
            addresses = header.addresses
        except Exception:  # the parser fails in several ways on bad input
            addresses, header = (), None
        valid = (
            header is not None
            and not header.defects
            and len(addresses) == 1
            and addresses[0].username
            and addresses[0].domain
            and addresses[0].addr_spec.isascii()
        )
        if not valid:
            raise ValueError("must be one address, such as `Name <no-reply@example.com>`")
        return value

    @field_validator("public_url", mode="after")
    @classmethod
    def _validate_public_url(cls, value: str) -> str:
        """Links in mail and `Location` are built on it: a query or fragment would end up
        in the middle of every one of them."""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must have no query or fragment (https://users.example.com/base)")
        parts.port  # noqa: B018  # raises ValueError on a bad port
        return value.rstrip("/")

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("no DATABASE_URL: start the embedded database first")
        return self.database_url


def _did_you_mean(name: str) -> str:
    known = [field.upper() for field in Settings.model_fields]
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def describe_error(exc: ValidationError) -> str:
    """One line for every broken setting, naming the environment variable."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":  # only the .env file's keys get here
            lines.append(f"unknown setting {name} in .env{_did_you_mean(name)}")
        elif name:
            lines.append(f"invalid setting {name}: {message}")
        else:  # a rule across settings; its message names them
            lines.append(f"invalid settings: {message}")
    return "; ".join(lines)
