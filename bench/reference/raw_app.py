"""Reference server for the benchmark: the practical ceiling for Python. Never shipped.

A bare ASGI callable (no framework), an asyncpg pool, hand-written SQL and orjson, doing
the work users-api does on the routes the benchmark drives, with the same JSON:

    GET   /api/v1/users/{id}      one user, ETag; the caller must be an admin or the user
    GET   /api/v1/users?limit=N   {"items": [...], "next_cursor": ...} (first page, sort=id),
                                  Link header; the caller must be an admin
    PATCH /api/v1/users/{id}      full_name / email / username: one UPDATE ... FROM users
                                  AS caller ... RETURNING; an admin or the user themself;
                                  its audit event and webhook fan-out in the same
                                  statement; X-Consistency-Token (the WAL position after)
    POST  /api/v1/users           argon2id hash in a thread pool, INSERT ... RETURNING
    POST  /api/v1/auth/token      look the user up, verify argon2id in a thread pool,
                                  issue a signed access token
    GET   /healthz

Authentication as users-api does it (`users_api.security.tokens`, `users_api.users.queries`):
the Bearer token is an HS256 JWT signed with SECRET_KEY (the harness gives raw and
users-api the same key, so each accepts the other's tokens), checked for algorithm,
signature, audience and issuer `users-api`, the required claims sub/iat/exp/aud/iss/jti/
ver/sid, expiry and a not-future iat; a checked token's claims are kept in an LRU cache
(4096) and only its expiry is checked again. A token that does not verify is a 401.
Whether the token is still honoured (its user exists, is active and has the token's
`auth_version`, its session has not ended) and whether the caller may do what it asks is
checked in the same one statement as the data, as users-api does; only a statement that
found nothing asks again (is the caller still signed in, an admin?) to tell 401 from 403
from 404. Each login writes a session row (users-api's `sessions` table), whose id is the
token's `sid`. Every answer carries the headers users-api's carry: `X-Request-ID` (the
client's when sane, else a new one), `X-Content-Type-Options: nosniff`,
`Cache-Control: no-store`. And every request leaves users-api's log line (its contract's
"Operations"): one JSON line with the same keys, orjson, one `write` to standard error,
as `users_api.logs.json_line_writer` writes it (RAW_REQUEST_LOG=false leaves it out).

What raw still does not do (none of it on a measured success path, except the login's
throttle and stored refresh token): no login throttle, no dummy hash for unknown names,
the refresh token is random and not stored; no If-Match / If-None-Match; no identity lock
for email / username changes; email syntax is not checked beyond an `@`; no password
strength estimate (users-api's zxcvbn, ~5 ms a sign-up).
POST /users checks no caller (users-api checks the token when one is sent: the harness
signs its registrations in as the admin, one more round trip there).
Errors are minimal problem+json documents.

Run: DATABASE_URL=postgresql://... SECRET_KEY=... uvicorn raw_app:app --no-access-log
Settings: SECRET_KEY (required: users-api's), ACCESS_TOKEN_TTL_SECONDS (default 900, as
users-api), RAW_POOL_SIZE (default 20, as users-api's DB_POOL_SIZE), RAW_HASH_THREADS
(default: as users-api).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import hmac
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache
from random import getrandbits
from time import perf_counter
from typing import Any
from urllib.parse import parse_qs, quote_plus

import asyncpg
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

try:  # the service's own argon2 parameters, so a hash costs the same everywhere
    from users_api.security.passwords import (
        ARGON2_MEMORY_KIB,
        ARGON2_PARALLELISM,
        ARGON2_TIME_COST,
        default_hash_concurrency,
    )
except ImportError:  # pragma: no cover - the OWASP values users-api uses
    ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM = 2, 19_456, 1

    def default_hash_concurrency() -> int:
        return max(2, os.cpu_count() or 2)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PUBLIC = (
    "id",
    "email",
    "username",
    "full_name",
    "is_active",
    "is_admin",
    "email_verified",
    "mfa_enabled",
    "created_at",
    "updated_at",
    "version",
)
COLUMNS = ", ".join(f"users.{name}" for name in PUBLIC)
VERSION = PUBLIC.index("version")
# The caller ($2 its id, $3 the token's auth_version) is checked in the statement itself:
# their row exists, is active, has the token's auth_version, and may see the target.
# The token's session ($4 its `sid`) must not have ended: a primary-key probe, as users-api.
SESSION_ALIVE = (
    "EXISTS (SELECT 1 FROM sessions WHERE sessions.id = {sid} AND sessions.user_id = {caller}"
    " AND sessions.ended_at IS NULL)"
)
GET_SQL = (
    f"SELECT {COLUMNS} FROM users WHERE users.id = $1 AND EXISTS ("
    "SELECT 1 FROM users AS caller WHERE caller.id = $2 AND caller.auth_version = $3"
    f" AND caller.is_active AND {SESSION_ALIVE.format(sid='$4', caller='$2')}"
    " AND (caller.is_admin OR caller.id = $1))"
)
# Only an active admin with a current token lists: a scalar subquery, evaluated once.
LIST_SQL = (
    f"SELECT {COLUMNS} FROM users WHERE (SELECT caller.is_admin FROM users AS caller"
    " WHERE caller.id = $2 AND caller.auth_version = $3 AND caller.is_active"
    f" AND {SESSION_ALIVE.format(sid='$4', caller='$2')})"
    " ORDER BY users.id LIMIT $1"
)
# Asked only when one of those found nothing, to tell 401 from 403 / 404.
CALLER_SQL = (
    "SELECT is_admin FROM users WHERE id = $1 AND auth_version = $2 AND is_active"
    f" AND {SESSION_ALIVE.format(sid='$3', caller='$1')}"
)
# Each login is a session (users-api's `sessions` table), so its token's `sid` is live.
SESSION_SQL = (
    "INSERT INTO sessions (id, user_id, user_agent, ip_address, expires_at)"
    " VALUES ($1, $2, $3, $4, now() + interval '14 days')"
)
INSERT_SQL = (
    "INSERT INTO users (id, email, username, full_name, password_hash, is_active, is_admin,"
    f" version) VALUES ($1, $2, $3, $4, $5, true, false, 1) RETURNING {COLUMNS}"
)
# By email when the name has an `@` (usernames cannot), else by username, as users-api.
LOGIN_COLUMNS = "SELECT id, password_hash, is_active, auth_version FROM users"
LOGIN_BY_EMAIL = f"{LOGIN_COLUMNS} WHERE lower(email) = $1"
LOGIN_BY_USERNAME = f"{LOGIN_COLUMNS} WHERE lower(username) = $1"
USER_PATH = re.compile(r"^/api/v1/users/([^/]+)$")
USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
JSON = orjson.OPT_UTC_Z
LOG_LINE = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
# users-api logs a JSON line for every request (its contract's "Operations"), so raw does
# too; RAW_REQUEST_LOG=false leaves it out, to see what the line costs.
LOG_REQUESTS = os.environ.get("RAW_REQUEST_LOG", "true").lower() != "false"

# Access tokens, as users_api.security.tokens signs and checks them.
ALGORITHM = "HS256"
AUDIENCE = ISSUER = "users-api"
REQUIRED_CLAIMS = ("sub", "iat", "exp", "aud", "iss", "jti", "ver", "sid")


class App:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        secret = os.environ.get("SECRET_KEY")
        if not secret:
            raise RuntimeError("raw_app needs SECRET_KEY: the key users-api signs tokens with")
        ttl = int(os.environ.get("ACCESS_TOKEN_TTL_SECONDS", "900"))
        self.tokens = AccessTokens(secret.encode(), ttl)
        self.hasher = PasswordHasher(
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
        )
        threads = int(os.environ.get("RAW_HASH_THREADS", default_hash_concurrency()))
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    # --- lifecycle -----------------------------------------------------------------

    async def startup(self) -> None:
        size = int(os.environ.get("RAW_POOL_SIZE", "20"))  # as users-api's DB_POOL_SIZE
        url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        self.pool = await asyncpg.create_pool(
            url,
            min_size=size,
            max_size=size,
            init=_init_connection,
            reset=_keep_session,
            # No idle timer armed on every release (users-api's watchdog does its recycling).
            max_inactive_connection_lifetime=0,
            server_settings={"application_name": "bench-raw"},
        )
        # As users-api does after start-up (app.py): what start-up built is not walked
        # again by every full collection (p99), and the young generation is collected
        # every 20,000 allocations, not every 700.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    async def shutdown(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        self.executor.shutdown(wait=False)

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        # The headers users-api's every answer carries (`middleware.Edge`): the request id
        # (the client's when sane, else 128 random bits), nosniff, no-store.
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value if SANE_REQUEST_ID.fullmatch(value) else None
                break
        if request_id is None:
            request_id = getrandbits(128).to_bytes(16).hex().encode()
        stamp = (b"x-request-id", request_id)
        scope["request_id"] = request_id.decode()  # an event records it
        plain_send = send
        started = perf_counter()
        status = 0

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"]  # respond() builds a new list every time
                if any(name == b"cache-control" for name, _ in headers):
                    headers += (stamp, NOSNIFF)
                else:
                    headers += (stamp, NOSNIFF, NO_STORE)
            await plain_send(message)

        path: str = scope["path"]
        method: str = scope["method"]
        route = None
        try:
            if path == "/api/v1/users":
                route = path
                if method == "GET":
                    await self.list_users(scope, send)
                elif method == "POST":
                    await self.create_user(scope, receive, send)
                else:
                    await problem(send, 405)
            elif path == "/api/v1/auth/token" and method == "POST":
                route = path
                await self.token(scope, receive, send)
            elif path == "/healthz":
                route = path
                await respond(send, 200, b'{"status":"ok"}')
            elif (match := USER_PATH.match(path)) is not None:
                route = "/api/v1/users/{user_id}"
                if method == "GET":
                    await self.get_user(scope, send, match.group(1))
                elif method == "PATCH":
                    await self.update_user(scope, receive, send, match.group(1))
                else:
                    await problem(send, 405)
            else:
                await problem(send, 404)
        except Unauthorized:
            await problem(send, 401, [(b"www-authenticate", b"Bearer")])
        except BadRequest:
            await problem(send, 422)
        if LOG_REQUESTS:
            # users-api's line for every answered request (`request_log.py`, written by
            # `logs.json_line_writer`): the same keys, orjson, one write to standard error.
            user_id = scope.get("user_id")
            os.write(
                2,
                orjson.dumps(
                    {
                        "timestamp": datetime.now(UTC),
                        "level": "info",
                        "event": "request",
                        "logger": "users_api.requests",
                        "method": method,
                        "route": route,
                        "path": path,
                        "status": status,
                        "duration_ms": round((perf_counter() - started) * 1000, 1),
                        "request_id": scope["request_id"],
                        "user_id": user_id,
                    },
                    option=LOG_LINE,
                ),
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- handlers ------------------------------------------------------------------

    async def get_user(self, scope: Scope, send: Send, raw_id: str) -> None:
        caller_id, auth_version, session_id = self.caller(scope)
        user_id = parse_uuid(raw_id)
        if user_id is None:
            await problem(send, 404)
            return
        assert self.pool is not None
        row = await self.pool.fetchrow(GET_SQL, user_id, caller_id, auth_version, session_id)
        if row is None:  # no such user, not the caller's to see, or the token not honoured
            await self.caller_is_admin(caller_id, auth_version, session_id)  # 401 if not
            await problem(send, 404)
            return
        await respond(send, 200, user_json(row), etag=row[VERSION])

    async def list_users(self, scope: Scope, send: Send) -> None:
        caller_id, auth_version, session_id = self.caller(scope)
        params = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            given = params["limit"][0] if "limit" in params else None
            limit = int(given or "50")
        except ValueError:
            raise BadRequest from None
        if not 1 <= limit <= 200:
            raise BadRequest
        assert self.pool is not None
        rows = await self.pool.fetch(LIST_SQL, limit + 1, caller_id, auth_version, session_id)
        # No rows: not an admin, or not signed in (an admin's page holds at least them)
        if not rows and not await self.caller_is_admin(caller_id, auth_version, session_id):
            await problem(send, 403)
            return
        items = [dict(zip(PUBLIC, row, strict=True)) for row in rows[:limit]]
        next_cursor = None
        extra = None
        if len(rows) > limit:
            last = items[-1]["id"]
            # The service's cursor: its list (`l`), sort, key and id (users_api.users.cursor).
            payload = orjson.dumps({"l": "users", "s": "id", "k": last, "i": last})
            next_cursor = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
            linked_limit = None if given is None else str(limit)
            link = f'<{next_page_url(scope, linked_limit, next_cursor)}>; rel="next"'
            extra = [(b"link", link.encode())]
        body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=JSON)
        await respond(send, 200, body, extra=extra)

    async def update_user(self, scope: Scope, receive: Receive, send: Send, raw_id: str) -> None:
        body = await read_json(receive)
        caller_id, auth_version, session_id = self.caller(scope)
        user_id = parse_uuid(raw_id)
        if user_id is None:
            await problem(send, 404)
            return
        if not isinstance(body, dict) or not body or not valid_patch(body):
            raise BadRequest
        if "email" in body:
            local, _, domain = body["email"].rpartition("@")
            body["email"] = f"{local}@{domain.lower()}"
        fields = tuple(sorted(body))
        assert self.pool is not None
        # users-api's event of the change (`user.updated`, its actor, request id and
        # client address) and its fan-out to the webhook endpoints that want it, in the
        # same statement; then the primary's WAL position for X-Consistency-Token.
        event_id, now = uuid7(), datetime.now(UTC)
        address = scope["client"][0] if scope.get("client") else None
        data = {"fields": list(fields)}
        event = {
            "id": str(event_id),
            "type": "user.updated",
            "occurred_at": now,
            "actor": {"type": "user", "id": caller_id},
            "subject": {"type": "user", "id": user_id},
            "request_id": scope["request_id"],
            "ip_address": address,
            "data": data,
        }
        try:
            async with self.pool.acquire() as connection:
                row = await connection.fetchrow(
                    update_sql(fields),
                    user_id,
                    caller_id,
                    auth_version,
                    session_id,
                    *(body[name] for name in fields),
                    event_id,
                    now,
                    scope["request_id"],
                    address,
                    orjson.dumps(data).decode(),
                    orjson.dumps(event).decode(),
                    UPDATED_PATTERNS,
                )
                position = await connection.fetchval(WAL_POSITION_SQL)
        except asyncpg.UniqueViolationError:
            await problem(send, 409)
            return
        if row is None:  # nothing changed, or not the caller's: the read says which
            row = await self.pool.fetchrow(GET_SQL, user_id, caller_id, auth_version, session_id)
            if row is None:
                await self.caller_is_admin(caller_id, auth_version, session_id)  # 401
                await problem(send, 404)
                return
        token = [(b"x-consistency-token", position.encode())]
        await respond(send, 200, user_json(row), etag=row[VERSION], extra=token)

    async def create_user(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_json(receive)
        if not isinstance(body, dict):
            raise BadRequest
        email, username, password = body.get("email"), body.get("username"), body.get("password")
        if (
            not isinstance(email, str)
            or "@" not in email
            or not isinstance(username, str)
            or not USERNAME.match(username)
            or not isinstance(password, str)
            or not 12 <= len(password) <= 128
        ):
            raise BadRequest
        local, _, domain = email.rpartition("@")
        email = f"{local}@{domain.lower()}"
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(self.executor, self.hasher.hash, password)
        assert self.pool is not None
        try:
            row = await self.pool.fetchrow(
                INSERT_SQL, str(uuid7()), email, username, body.get("full_name"), hashed
            )
        except asyncpg.UniqueViolationError:
            await problem(send, 409)
            return
        assert row is not None
        location = f"/api/v1/users/{row['id']}".encode()
        await respond(
            send,
            201,
            user_json(row),
            etag=row["version"],
            extra=[(b"location", location)],
        )

    async def token(self, scope: Scope, receive: Receive, send: Send) -> None:
        form = parse_qs((await read_body(receive)).decode())
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        if not 1 <= len(username) <= 320 or "\x00" in username or not 1 <= len(password) <= 1024:
            raise BadRequest
        assert self.pool is not None
        sql = LOGIN_BY_EMAIL if "@" in username else LOGIN_BY_USERNAME
        row = await self.pool.fetchrow(sql, username.lower())
        loop = asyncio.get_running_loop()
        ok = False
        if row is not None and row["is_active"]:
            ok = await loop.run_in_executor(
                self.executor, _verify, self.hasher, row["password_hash"], password
            )
        if not ok:
            await problem(send, 401, [(b"www-authenticate", b"Bearer")])
            return
        assert row is not None
        session_id = str(uuid7())
        agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        client = scope.get("client")
        await self.pool.execute(
            SESSION_SQL,
            session_id,
            row["id"],
            agent.decode("latin-1")[:512] or None,
            client[0] if client else None,
        )
        body = {
            "access_token": self.tokens.issue(row["id"], row["auth_version"], session_id),
            "token_type": "bearer",
            "expires_in": self.tokens.ttl,
            "refresh_token": secrets.token_urlsafe(32),
        }
        await respond(send, 200, orjson.dumps(body), extra=NOT_STORED)

    def caller(self, scope: Scope) -> tuple[str, int, str]:
        """The verified token's user id, auth_version and session; Unauthorized (401)."""
        caller = self.tokens.verify(bearer(scope))
        scope["user_id"] = caller[0]  # for the request's log line, as users-api
        return caller

    async def caller_is_admin(self, caller_id: str, auth_version: int, session_id: str) -> bool:
        """Only when a statement found nothing, as users-api: whether the caller is an
        admin; Unauthorized (401) when their token is no longer honoured."""
        assert self.pool is not None
        is_admin: bool | None = await self.pool.fetchval(
            CALLER_SQL, caller_id, auth_version, session_id
        )
        if is_admin is None:
            raise Unauthorized
        return is_admin


# --- access tokens -----------------------------------------------------------------


class AccessTokens:
    """HS256 access tokens as users-api signs and checks them (`users_api.security.tokens`).

    A checked token's claims are cached (LRU, failures are not cached) and only its expiry
    is checked again, as users-api does; whether the token is still honoured is asked of
    the database by every statement.
    """

    def __init__(self, secret: bytes, ttl: int, *, cache_size: int = 4096) -> None:
        self.secret = secret
        self.ttl = ttl
        self._checked = lru_cache(maxsize=cache_size)(self._check)

    def issue(self, user_id: str, auth_version: int, session_id: str) -> str:
        """The claims users-api puts in a token, in its order; PyJWT's header and JSON."""
        now = int(time.time())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + self.ttl,
            "aud": AUDIENCE,
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
            "ver": auth_version,
            "sid": session_id,
        }
        signing_input = _JWT_HEADER + b"." + _b64encode(orjson.dumps(claims))
        signature = hmac.digest(self.secret, signing_input, "sha256")
        return (signing_input + b"." + _b64encode(signature)).decode("ascii")

    def verify(self, token: str) -> tuple[str, int, str]:
        user_id, auth_version, session_id, expires_at = self._checked(token)
        if time.time() >= expires_at:
            raise Unauthorized
        return user_id, auth_version, session_id

    def _check(self, token: str) -> tuple[str, int, str, float]:
        """What `jwt.decode(token, key, algorithms=["HS256"], audience=..., issuer=...,
        options={"require": [...]})` checks, then users-api's own checks of `ver` and
        `sub`. Stricter than PyJWT only on headers users-api never writes (`b64`, `crit`).
        """
        try:
            signing_input, _, crypto = token.encode().rpartition(b".")
            header_segment, dot, payload_segment = signing_input.partition(b".")
            if not dot:
                raise Unauthorized  # not enough segments
            header = orjson.loads(_b64decode(header_segment))
            if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
                raise Unauthorized  # only HS256: never `none`, never another algorithm
            if "b64" in header or "crit" in header:
                raise Unauthorized
            if "kid" in header and not isinstance(header["kid"], str):
                raise Unauthorized
            expected = hmac.digest(self.secret, signing_input, "sha256")
            if not hmac.compare_digest(_b64decode(crypto), expected):
                raise Unauthorized
            claims = orjson.loads(_b64decode(payload_segment))
            if not isinstance(claims, dict):
                raise Unauthorized
            for name in REQUIRED_CLAIMS:
                if claims.get(name) is None:
                    raise Unauthorized
            now = time.time()
            if int(claims["iat"]) > now:
                raise Unauthorized  # issued in the future
            if "nbf" in claims and int(claims["nbf"]) > now:
                raise Unauthorized
            if int(claims["exp"]) <= now:
                raise Unauthorized
            if claims["iss"] != ISSUER:
                raise Unauthorized
            audience = claims["aud"]
            if isinstance(audience, str):
                audience = [audience]
            if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
                raise Unauthorized
            if AUDIENCE not in audience:
                raise Unauthorized
            subject, version = claims["sub"], claims["ver"]
            if not isinstance(subject, str) or not isinstance(claims["jti"], str):
                raise Unauthorized
            if not isinstance(version, int) or isinstance(version, bool):
                raise Unauthorized
            if not isinstance(claims["sid"], str):
                raise Unauthorized
            session_id = str(uuid.UUID(claims["sid"]))
            return str(uuid.UUID(subject)), version, session_id, float(claims["exp"])
        except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
            # orjson.JSONDecodeError and UnicodeError are ValueErrors
            raise Unauthorized from exc


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


# PyJWT's header for HS256, as users-api's tokens carry it.
_JWT_HEADER = _b64encode(b'{"alg":"HS256","typ":"JWT"}')
NOT_STORED = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


# --- SQL and bodies ------------------------------------------------------------------


@lru_cache(maxsize=16)
def update_sql(fields: tuple[str, ...]) -> str:
    """users-api's PATCH of a name: one UPDATE that checks the caller (their row, active,
    the token's auth_version, an admin or the user) and that something really changes,
    writes the change's event when it does, and queues that event for every enabled
    webhook endpoint that wants it (users-api's `events.queries.recording`)."""
    values = {name: f"${i}" for i, name in enumerate(fields, start=5)}
    sets = ", ".join(f"{name} = {value}" for name, value in values.items())
    changes = " OR ".join(
        f"users.{name} IS DISTINCT FROM {value}" for name, value in values.items()
    )
    n = 5 + len(fields)
    return (
        "WITH changed AS ("
        f"UPDATE users SET {sets}, version = users.version + 1, updated_at = now()"
        " FROM users AS caller"
        " WHERE caller.id = $2 AND caller.auth_version = $3 AND caller.is_active"
        f" AND {SESSION_ALIVE.format(sid='$4', caller='$2')}"
        " AND users.id = $1 AND (caller.is_admin OR caller.id = users.id)"
        f" AND ({changes}) RETURNING {COLUMNS}),"
        " event AS (INSERT INTO events (id, type, occurred_at, actor_type, actor_id,"
        " subject_type, subject_id, request_id, ip_address, data)"
        f" SELECT ${n}, 'user.updated', ${n + 1}, 'user', $2, 'user', $1, ${n + 2},"
        f" ${n + 3}, ${n + 4}::jsonb WHERE EXISTS (SELECT FROM changed) RETURNING id),"
        " fan_out AS (INSERT INTO outbox (kind, payload, sequence_key)"
        f" SELECT 'webhook', jsonb_build_object('endpoint_id', e.id, 'event', ${n + 5}::jsonb),"
        " 'webhook:' || e.id FROM webhook_endpoints AS e"
        f" WHERE e.enabled AND e.event_types && ${n + 6}::varchar[]"
        " AND EXISTS (SELECT FROM event))"
        " SELECT * FROM changed"
    )


UPDATED_PATTERNS = ["user.updated", "user.*", "*"]
WAL_POSITION_SQL = "SELECT pg_current_wal_insert_lsn()::text"


def valid_patch(body: dict[str, Any]) -> bool:
    """The field rules of users-api's UserUpdate, but for the email's syntax."""
    for name, value in body.items():
        if name == "full_name":
            ok = value is None or (isinstance(value, str) and len(value) <= 200)
        elif name == "username":
            ok = isinstance(value, str) and USERNAME.match(value) is not None
        elif name == "email":
            ok = isinstance(value, str) and "@" in value and len(value) <= 254
        else:
            return False
        if not ok or (isinstance(value, str) and "\x00" in value):
            return False
    return True


def user_json(row: asyncpg.Record) -> bytes:
    return orjson.dumps(dict(zip(PUBLIC, row, strict=True)), option=JSON)


def next_page_url(scope: Scope, limit: str | None, cursor: str) -> str:
    """users-api's Link: a relative reference from the parameters the route read (here
    `limit`, when given) and the next cursor; never the Host header or the raw query."""
    path = f"{scope.get('root_path', '')}{scope['path']}"
    given = f"limit={limit}&" if limit is not None else ""
    return f"{path}?{given}cursor={quote_plus(cursor)}"


# --- helpers ---------------------------------------------------------------------


class Unauthorized(Exception):
    pass


class BadRequest(Exception):
    pass


async def _init_connection(connection: asyncpg.Connection) -> None:
    # uuids travel as text: no uuid.UUID objects to build and serialize back.
    await connection.set_type_codec(
        "uuid", encoder=str, decoder=str, schema="pg_catalog", format="text"
    )


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (a round trip a request), as users-api does:
    the statements here leave nothing in the session to undo."""


def _verify(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except VerificationError:
        return False


def uuid7() -> uuid.UUID:
    from uuid_utils.compat import uuid7 as make

    return make()


def parse_uuid(raw: str) -> str | None:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def bearer(scope: Scope) -> str:
    """The token of the `Authorization: Bearer` header (401 without one)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthorized


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def read_json(receive: Receive) -> Any:
    try:
        return orjson.loads(await read_body(receive))
    except orjson.JSONDecodeError:
        raise BadRequest from None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    etag: int | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if etag is not None:
        headers.append((b"etag", f'"{etag}"'.encode()))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def problem(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps({"type": "about:blank", "title": str(status), "status": status})
    await respond(send, status, body, extra=extra, content_type=b"application/problem+json")


app = App()
