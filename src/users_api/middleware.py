"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from time import perf_counter

from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api import request_log
from users_api.errors import problem
from users_api.http.request_id import REQUEST_ID, new_request_id, sane
from users_api.metrics import RequestMetrics

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
# What a request that its client left before the answer counts as (nginx's 499): no
# answer can be sent, and no server error happened.
CLIENT_CLOSED_REQUEST = 499

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class Edge:
    """The outermost layer: what every answer gets, whoever gives it.

    - `X-Request-ID` (the client's when sane, else a new one), set in
      `request_id.REQUEST_ID` for the whole request, so problem bodies carry it too;
      `X-Content-Type-Options: nosniff`; `Cache-Control: no-store` unless the response
      chose its own caching (nearly every answer holds user data or a token, and one
      rule that needs no list of routes cannot miss a new one); no `Content-Type` on a
      204.
    - The last answer to an error nothing else took (a bug): `on_error` renders the
      500, sent if nothing was sent yet, and the error goes on to the server, which
      logs it, as Starlette's ServerErrorMiddleware does.
    - The request's log line (`request_log.py`): one for every request at info, else
      for a 5xx or no answer at all; and its metrics (`metrics.RequestMetrics`). A
      client that went away while its body was read is a 499, not an error.

    One layer and one wrapper of `send` for all of it: each layer in front of every
    request costs a coroutine and a closure (bench/README.md).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_error: ErrorHandler | None,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.app = app
        self.on_error = on_error
        self.record = metrics.record if metrics is not None else None
        # Decided once, when the app is built (after logging is configured): below info,
        # a request answered below 500 costs two clock reads and no logging call.
        self.log = request_log.request_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value if sane(value) else None
                break
        if request_id is None:
            request_id = new_request_id()
        stamp = (b"x-request-id", request_id)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                status = message["status"]
                own_caching = False
                for name, _ in headers:
                    if name == b"cache-control":
                        own_caching = True
                        break
                if status == 204:
                    headers = [header for header in headers if header[0] != b"content-type"]
                extra = (stamp, _NOSNIFF) if own_caching else (stamp, _NOSNIFF, _NO_STORE)
                # A new list: the response's own may be sent again (a shared constant).
                message["headers"] = [*headers, *extra]
            await send(message)

        request_text = request_id.decode("ascii")
        token = REQUEST_ID.set(request_text)
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:  # gone while its body was read: nothing to answer
            if status == 0:
                status = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            if self.on_error is not None:
                response = await self.on_error(Request(scope), exc)
                if status == 0:
                    await response(scope, receive, send_with_headers)
            raise
        finally:
            seconds = perf_counter() - started
            if self.record is not None:
                self.record(scope, status, seconds)
            if self.log is not None:
                self.log(scope, status, seconds, request_text)
            elif status >= 500 or status == 0:
                request_log.log_request(scope, status, seconds, request_text)
            REQUEST_ID.reset(token)


class Cors(CORSMiddleware):
    """Starlette's CORS for `CORS_ORIGINS`: what a browser application may send, and
    read back; a refused preflight is a problem, like every other error, instead of
    Starlette's plain-text 400. No credentials mode: the API takes bearer tokens, never
    cookies."""

    METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
    REQUEST_HEADERS = (
        "Authorization",
        "Content-Type",
        "If-Match",
        "If-None-Match",
        "X-Consistency-Token",
        "X-Request-ID",
    )
    RESPONSE_HEADERS = (
        "ETag",
        "Link",
        "Location",
        "Retry-After",
        "WWW-Authenticate",
        "X-Consistency-Token",
        "X-Request-ID",
    )

    def __init__(self, app: ASGIApp, *, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=self.METHODS,
            allow_headers=self.REQUEST_HEADERS,
            expose_headers=self.RESPONSE_HEADERS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        return problem(
            response.status_code,
            detail=f"{refused}: see CORS_ORIGINS and the allowed methods and headers.",
            code="cors-refused",
            headers={"Vary": "Origin"},
        )


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The request body is over {limit} bytes."
        )


@dataclass(frozen=True, slots=True)
class BodyArea:
    """Paths under `prefix` take bodies up to `limit` bytes, and `refuse(limit)` answers
    a larger one in their own protocol's form (SCIM's error, not problem+json)."""

    prefix: str
    limit: int
    refuse: Callable[[int], Response]


class BodySizeLimit:
    """Refuse bodies over `limit` bytes with 413 before anything parses them.

    A declared `Content-Length` over the limit is answered at once; a chunked body is
    counted as it streams in and cut off at the limit (the handler then sees a 413). A
    request whose length is known in advance (declared, or none at all: RFC 9112 §6.3)
    passes straight through, so reads pay nothing for the limit. `areas` set another
    limit, and another form of the 413, under their paths.
    """

    def __init__(self, app: ASGIApp, *, limit: int, areas: Sequence[BodyArea] = ()) -> None:
        self.app = app
        self.limit = limit
        self.areas = tuple(areas)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is None and not (chunked or _frames_bodies(scope)):
            await self.app(scope, receive, send)  # no body: a read pays nothing more
            return
        limit: int = self.limit
        refuse: Callable[[int], Response] = _too_large
        for area in self.areas:
            if get_route_path(scope).startswith(area.prefix):
                limit, refuse = area.limit, area.refuse
                break
        if declared is not None and declared > limit:
            await refuse(limit)(scope, receive, send)
            return
        if declared is not None:  # within the limit, as announced
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await refuse(limit)(scope, receive, send)


def _too_large(limit: int) -> Response:
    return problem(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        detail=f"The request body is over {limit} bytes.",
        code="too-large",
        headers={"Connection": "close"},
    )


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared `Content-Length` (None when absent or unreadable), and whether a
    `Transfer-Encoding` was sent: one pass over the headers."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


def _frames_bodies(scope: Scope) -> bool:
    """HTTP/2 and 3 frame bodies without announcing their length; HTTP/1.x says so with
    `Transfer-Encoding` (RFC 9112 §6.3)."""
    return scope.get("http_version", "1.1") not in ("1.0", "1.1")
