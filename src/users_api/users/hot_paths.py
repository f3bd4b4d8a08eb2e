"""A shorter way to the answers of the requests every client repeats: a user, `/me`, a
page, a PATCH of a name, email or username, and a login.

FastAPI's routing, middleware and dependency solving cost more per request than the
work itself (bench/README.md has the profile; for a login, 0.4 ms of event-loop CPU on
the CPU its hash needs). For a well-formed request of these kinds, this middleware
calls the same services (`UserReader`, `QuickUpdate`, `Login`) and the same response
functions as the routes in `router.py` and `auth/router.py`, so the answer is the
same, byte for byte. Anything it does not recognise as exactly that (another path or
method, an id not in canonical form, a query or form field given twice or empty or
not valid, a body that is not a valid JSON object, no Bearer token, a token that does
not verify, a PATCH the one statement does not settle) passes on to FastAPI, with the
body it read handed on unchanged, and the route says what is wrong or does the rest.
The routes stay the contract and the OpenAPI document; this is only a shortcut.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable
from urllib.parse import parse_qsl

from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.auth.client_address import client_address
from users_api.auth.login import Login
from users_api.auth.router import router as auth_router
from users_api.auth.router import token_response
from users_api.auth.schemas import LoginForm
from users_api.auth.tokens import AccessClaims, AccessTokens, InvalidToken
from users_api.errors import DomainError, database_error, to_response
from users_api.etags import parse_if_match
from users_api.users.quick_update import QuickUpdate
from users_api.users.reader import UserReader
from users_api.users.router import page_response, router, user_row_response
from users_api.users.schemas import UserListQuery, UserUpdate

_LIST = router.prefix
_ONE = f"{router.prefix}/"
_LOGIN = f"{auth_router.prefix}/token"
# What `str(uuid.UUID(...))` gives: other spellings go the long way, to the route.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class HotPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = None
        if scope["type"] == "http" and scope["method"] == "GET":
            response = await _rendered(self._read(scope), scope)
        elif scope["type"] == "http" and scope["method"] == "PATCH" and _target(scope):
            body = await _read_body(receive)
            receive = _replaying(body, receive)  # the route may need to read it again
            response = await _rendered(self._patch(scope, body), scope)
        elif scope["type"] == "http" and scope["method"] == "POST" and _is_login(scope):
            body = await _read_body(receive)
            receive = _replaying(body, receive)
            response = await _rendered(self._login(scope, body), scope)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def _read(self, scope: Scope) -> Response | None:
        """The route's answer to a GET, or None to let the route give it."""
        if scope["path"] == _LIST:
            query = _list_query(scope["query_string"])
            caller = _caller(scope)
            if query is None or caller is None:
                return None
            page = await _reader(scope).list(query, caller=caller)
            return page_response(page, URL(scope=scope))
        target = _target(scope)
        caller = _caller(scope)
        if target is None or caller is None:
            return None
        user_id = caller.user_id if target == "me" else uuid.UUID(target)
        row = await _reader(scope).get(user_id, caller=caller)
        return user_row_response(row, _header(scope, b"if-none-match"))

    async def _patch(self, scope: Scope, body: bytes) -> Response | None:
        """The route's answer to a PATCH the one statement settles, or None."""
        target = _target(scope)
        json_body = _header(scope, b"content-type") == "application/json"
        if target is None or target == "me" or not json_body:
            return None
        patch = _update(body)
        caller = _caller(scope)
        quick: QuickUpdate = scope["app"].state.quick_update
        if patch is None or caller is None or not quick.covers(patch):
            return None
        if_match = parse_if_match(_header(scope, b"if-match"))
        row = await quick.apply(uuid.UUID(target), patch, caller=caller, if_match=if_match)
        return user_row_response(row) if row is not None else None

    async def _login(self, scope: Scope, body: bytes) -> Response | None:
        """The route's answer to a password grant whose form is plainly valid, or None."""
        form = _login_form(body)
        if form is None:
            return None
        app = scope["app"]
        login: Login = app.state.login
        address = client_address(Request(scope), app.state.settings.trusted_proxies)
        return token_response(await login(form.username, form.password, address=address))


async def _rendered(answer: Awaitable[Response | None], scope: Scope) -> Response | None:
    """Domain errors (400-409, 503) and pool timeouts as the app's handlers render them."""
    try:
        return await answer
    except DomainError as exc:
        return to_response(exc)
    except PoolTimeoutError as exc:
        return await database_error(Request(scope), exc)


def _reader(scope: Scope) -> UserReader:
    reader: UserReader = scope["app"].state.user_reader
    return reader


def _target(scope: Scope) -> str | None:
    """`me` or a canonical id from `/api/v1/users/{...}`; None for any other path."""
    path: str = scope["path"]
    if not path.startswith(_ONE):
        return None
    target = path[len(_ONE) :]
    return target if target == "me" or _CANONICAL_UUID.fullmatch(target) else None


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value, as Starlette reads headers."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _caller(scope: Scope) -> AccessClaims | None:
    """The claims of a well-formed, verified Bearer token (None: the route answers)."""
    scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    tokens: AccessTokens = scope["app"].state.tokens
    try:
        return tokens.verify(token)
    except InvalidToken:
        return None


def _list_query(query_string: bytes) -> UserListQuery | None:
    """The query, if valid with every parameter given once and not empty."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs) or not all(params.values()):
        return None
    try:
        return UserListQuery.model_validate(params)
    except ValidationError:
        return None


def _is_login(scope: Scope) -> bool:
    form = _header(scope, b"content-type") == "application/x-www-form-urlencoded"
    return form and scope["path"] == _LOGIN


def _login_form(body: bytes) -> LoginForm | None:
    """The form, if it is plain: ASCII (non-ASCII percent-encoded as UTF-8), fields
    separated by `&` only (python-multipart also splits on `;`), each given once."""
    if b";" in body:
        return None
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
        fields = dict(pairs)
        if len(fields) != len(pairs):
            return None
        return LoginForm.model_validate(fields)
    except (ValueError, ValidationError):  # UnicodeDecodeError is a ValueError
        return None


def _update(body: bytes) -> UserUpdate | None:
    """The patch, read as FastAPI reads a JSON body; None if it is not a valid one."""
    try:
        return UserUpdate.model_validate(json.loads(body))
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; nesting too deep recurses.
    except (ValueError, RecursionError, ValidationError):
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: nothing more will come
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once more, then whatever comes next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
