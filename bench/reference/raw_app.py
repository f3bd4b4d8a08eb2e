"""Reference server for the benchmark: the practical ceiling for Python. Never shipped.

A bare ASGI callable (no framework), an asyncpg pool, hand-written SQL and orjson, serving
the routes the benchmark drives with the same JSON as users-api:

    GET   /api/v1/users/{id}      one user, ETag
    GET   /api/v1/users?limit=N   {"items": [...], "next_cursor": ...} (first page, sort=id)
    PATCH /api/v1/users/{id}      full_name / email / username (one UPDATE ... RETURNING)
    POST  /api/v1/users           argon2id hash in a thread pool, INSERT ... RETURNING
    POST  /api/v1/auth/token      look the user up, verify argon2id in a thread pool
    GET   /healthz

Authentication is modelled only where it is cheap: protected routes require an
`Authorization: Bearer <token>` header and parse it (401 without one), but the token is
not verified. Errors are minimal problem+json documents; only success paths are measured.

Run: DATABASE_URL=postgresql://... uvicorn bench.reference.raw_app:app --no-access-log
Settings: RAW_POOL_SIZE (default 10), RAW_HASH_THREADS (default: as users-api).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

try:  # the service's own argon2 parameters, so a hash costs the same everywhere
    from users_api.auth.passwords import (
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

COLUMNS = "id, email, username, full_name, is_active, is_admin, created_at, updated_at, version"
GET_SQL = f"SELECT {COLUMNS} FROM users WHERE id = $1"
LIST_SQL = f"SELECT {COLUMNS} FROM users ORDER BY id LIMIT $1"
INSERT_SQL = (
    "INSERT INTO users (id, email, username, full_name, password_hash, is_active, is_admin,"
    f" version) VALUES ($1, $2, $3, $4, $5, true, false, 1) RETURNING {COLUMNS}"
)
LOGIN_SQL = (
    "SELECT id, password_hash, is_active FROM users"
    " WHERE lower(username) = lower($1) OR lower(email) = lower($1)"
)
PATCHABLE = ("email", "username", "full_name")
USER_PATH = re.compile(r"^/api/v1/users/([^/]+)$")
USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
JSON = orjson.OPT_UTC_Z


class App:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.hasher = PasswordHasher(
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
        )
        threads = int(os.environ.get("RAW_HASH_THREADS", default_hash_concurrency()))
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    # --- lifecycle -----------------------------------------------------------------

    async def startup(self) -> None:
        size = int(os.environ.get("RAW_POOL_SIZE", "10"))
        url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        self.pool = await asyncpg.create_pool(
            url,
            min_size=size,
            max_size=size,
            init=_init_connection,
            reset=_keep_session,
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
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == "/api/v1/users":
                if method == "GET":
                    await self.list_users(scope, send)
                elif method == "POST":
                    await self.create_user(scope, receive, send)
                else:
                    await problem(send, 405)
            elif path == "/api/v1/auth/token" and method == "POST":
                await self.token(receive, send)
            elif path == "/healthz":
                await respond(send, 200, b'{"status":"ok"}')
            elif (match := USER_PATH.match(path)) is not None:
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
        bearer(scope)
        user_id = parse_uuid(raw_id)
        if user_id is None:
            await problem(send, 404)
            return
        assert self.pool is not None
        row = await self.pool.fetchrow(GET_SQL, user_id)
        if row is None:
            await problem(send, 404)
            return
        await respond(send, 200, orjson.dumps(dict(row), option=JSON), etag=row["version"])

    async def list_users(self, scope: Scope, send: Send) -> None:
        bearer(scope)
        params = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            limit = int(params.get("limit", ["50"])[0])
        except ValueError:
            raise BadRequest from None
        if not 1 <= limit <= 200:
            raise BadRequest
        assert self.pool is not None
        rows = await self.pool.fetch(LIST_SQL, limit + 1)
        items = [dict(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]["id"]
            payload = orjson.dumps({"s": "id", "k": last, "i": last})
            next_cursor = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
        body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=JSON)
        await respond(send, 200, body)

    async def update_user(self, scope: Scope, receive: Receive, send: Send, raw_id: str) -> None:
        bearer(scope)
        user_id = parse_uuid(raw_id)
        body = await read_json(receive)
        if user_id is None:
            await problem(send, 404)
            return
        if not isinstance(body, dict) or not body or not set(body) <= set(PATCHABLE):
            raise BadRequest
        fields = list(body)
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
        sql = (
            f"UPDATE users SET {sets}, version = version + 1, updated_at = now()"
            f" WHERE id = $1 RETURNING {COLUMNS}"
        )
        assert self.pool is not None
        try:
            row = await self.pool.fetchrow(sql, user_id, *(body[name] for name in fields))
        except asyncpg.UniqueViolationError:
            await problem(send, 409)
            return
        if row is None:
            await problem(send, 404)
            return
        await respond(send, 200, orjson.dumps(dict(row), option=JSON), etag=row["version"])

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
            orjson.dumps(dict(row), option=JSON),
            etag=row["version"],
            extra=[(b"location", location)],
        )

    async def token(self, receive: Receive, send: Send) -> None:
        form = parse_qs((await read_body(receive)).decode())
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        assert self.pool is not None
        row = await self.pool.fetchrow(LOGIN_SQL, username)
        loop = asyncio.get_running_loop()
        ok = False
        if row is not None and row["is_active"]:
            ok = await loop.run_in_executor(
                self.executor, _verify, self.hasher, row["password_hash"], password
            )
        if not ok:
            await problem(send, 401, [(b"www-authenticate", b"Bearer")])
            return
        body = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "bearer",
            "expires_in": 900,
            "refresh_token": secrets.token_urlsafe(32),
        }
        await respond(send, 200, orjson.dumps(body))


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
    """The cheap part of authentication: find and parse the header; no verification."""
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
