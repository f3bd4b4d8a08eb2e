"""A shorter way to the answers of the reads every client repeats: a user, `/me`, a page.

FastAPI's routing, middleware and dependency solving cost more per request than the
read itself (bench/README.md has the profile). For a well-formed signed-in `GET` of
these, this middleware calls the same `UserReader` and the same response functions as
the routes in `router.py`, so the answer is the same, byte for byte. Anything it does
not recognise as exactly that (another path or method, an id not in canonical form, a
query parameter given twice or empty or not valid, no Bearer token, a token that does
not verify) passes on untouched to FastAPI, whose route says what is wrong with it.
The routes stay the contract and the OpenAPI document; this is only a shortcut.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl

from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.auth.tokens import AccessClaims, AccessTokens, InvalidToken
from users_api.errors import DomainError, database_error, to_response
from users_api.users.reader import UserReader
from users_api.users.router import page_response, router, user_row_response
from users_api.users.schemas import UserListQuery

_LIST = router.prefix
_ONE = f"{router.prefix}/"
# What `str(uuid.UUID(...))` gives: other spellings go the long way, to the route.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class HotReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                response = await self._answer(scope)
            except DomainError as exc:  # 400, 401, 403, 404, 503: as the routes render them
                response = to_response(exc)
            except PoolTimeoutError as exc:
                response = await database_error(Request(scope), exc)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        """The route's answer, or None to let the route give it."""
        path: str = scope["path"]
        if path == _LIST:
            query = _list_query(scope["query_string"])
            caller = _caller(scope)
            if query is None or caller is None:
                return None
            page = await _reader(scope).list(query, caller=caller)
            return page_response(page, URL(scope=scope))
        if not path.startswith(_ONE):
            return None
        target = path[len(_ONE) :]
        if target != "me" and not _CANONICAL_UUID.fullmatch(target):
            return None
        caller = _caller(scope)
        if caller is None:
            return None
        user_id = caller.user_id if target == "me" else uuid.UUID(target)
        row = await _reader(scope).get(user_id, caller=caller)
        return user_row_response(row, _header(scope, b"if-none-match"))


def _reader(scope: Scope) -> UserReader:
    reader: UserReader = scope["app"].state.user_reader
    return reader


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
