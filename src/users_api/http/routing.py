"""Routes whose handler is the endpoint itself, and the table that finds them.

FastAPI's dependency solving and body handling cost more per request than a cached
read's whole work (bench/README.md has the figures). Every API route here is a
FastAPI `APIRoute`, registered where FastAPI and the OpenAPI document see it, but of
this class: its endpoint takes only the request, reads what it needs through
`parse.py`, and returns the response, so FastAPI calls it directly (the documented
`get_route_handler` hook). What FastAPI would have read from a richer signature is
documented with `openapi.py` from the same models `parse.py` validates with.

`Dispatch` finds these routes for the app (`app.build_stack`): the same routes, tried
in the same order with the same test as FastAPI's router, indexed by method and by the
literal start of their path; whatever it does not find (the documentation, unknown
paths, wrong methods) goes to FastAPI's router, which answers as it always does.
A `HEAD` is answered by the path's `GET` route, headers only (RFC 9110 §9.3.2), as
Starlette answers it for its own routes; the OpenAPI document names only the `GET`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from re import Pattern
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.http.client import CLIENT_SCOPE

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class RequestRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        # Only a route that may change state records its client (`http.client`), decided
        # here, once: reads pay nothing for it.
        writes = bool((self.methods or set()) - _READS)
        self.app = _serve(self.get_route_handler(), records_client=writes)

    def get_route_handler(self) -> Handler:
        parameters = list(inspect.signature(self.endpoint).parameters)
        if parameters != ["request"]:
            raise TypeError(f"{self.endpoint.__name__} must take only the request")
        handler: Handler = self.endpoint
        return handler


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class _UserSegment(Convertor[str]):
    """A user's id in a path under `/api/v1/users`: any segment but `me`, the caller's own
    path (`GET /users/me`). Without it `PATCH /users/me` reached the id route (422: not a
    UUID), and a 405 on `/users/me` listed that route's methods in `Allow`."""

    regex = "(?!me(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("user", _UserSegment())
# The `{user_id}` of every path under `/api/v1/users` (OpenAPI shows it as `{user_id}`).
USER_SEGMENT = "{user_id:user}"


def _serve(handler: Handler, *, records_client: bool = False) -> ASGIApp:
    """The route's ASGI app: the handler's response, or its error's, sent.

    An error is answered here by the app's handlers (`errors.py`), as Starlette's
    ExceptionMiddleware would answer it, but with no wrapper around every request's
    `send`: FastAPI's own route wrapper adds two exit stacks for dependencies with
    `yield` and a second round of exception handling, which these routes do not need.
    What no handler takes (a bug) goes on up to the app's edge: a 500.
    `records_client`: the scope is set in `http.client.CLIENT_SCOPE` for the request, for
    the audit events it writes.
    """
    if records_client:
        return _recording_client(_serve(handler))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:
            response = await _answer(request, exc)
        await response(scope, receive, send)

    return app


def _recording_client(app: ASGIApp) -> ASGIApp:
    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        token = CLIENT_SCOPE.set(scope)
        try:
            await app(scope, receive, send)
        finally:
            CLIENT_SCOPE.reset(token)

    return recording


async def _answer(request: Request, exc: Exception) -> Response:
    handlers: Mapping[Any, ErrorHandler] = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind is Exception:
            break  # the edge's: answered once, outside everything (`middleware.Edge`)
        handler = handlers.get(kind)
        if handler is not None:
            return await handler(request, exc)
    raise exc


_Entry = tuple[str, Pattern[str], dict[str, Convertor[Any]], RequestRoute]


class Dispatch:
    """The innermost layer: this app's `RequestRoute`s by table, the rest by `fallback`.

    Only the routes ahead of any other kind in the router's list are indexed (`add_routes`
    puts them first), so the first route that matches here is the one FastAPI's router
    would have chosen. A route is tried only when the path starts with its literal part.
    """

    def __init__(self, routes: Sequence[BaseRoute], fallback: ASGIApp) -> None:
        self.fallback = fallback
        self.table: dict[str, list[_Entry]] = {}
        for route in routes:
            if not isinstance(route, RequestRoute):
                break
            literal = route.path_format.partition("{")[0]
            for method in route.methods or ():
                self.table.setdefault(method, []).append(
                    (literal, route.path_regex, route.param_convertors, route)
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "HEAD":
                method, send = "GET", _headers_only(send)
            path = get_route_path(scope)
            for literal, regex, convertors, route in self.table.get(method, ()):
                if not path.startswith(literal):
                    continue
                match = regex.match(path)
                if match is None:
                    continue
                params = dict(scope.get("path_params", ()))
                for name, value in match.groupdict().items():
                    params[name] = convertors[name].convert(value)
                scope["endpoint"] = route.endpoint
                scope["path_params"] = params
                scope["route"] = route
                await route.app(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


def _headers_only(send: Send) -> Send:
    """`send` for a HEAD answered by its GET: the same status and headers (the length of
    the body it would have had included), no body."""

    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_headers


def path_of(request: Request, path: str) -> str:
    """`path`, as the routes spell it, as this app is reached: behind a `root_path` too.
    For `Location` and `Link`: what `request.url_for(...).path` gives, without its search
    of every route (6 % of a registration's event-loop time, measured)."""
    return f"{request.scope.get('root_path', '').rstrip('/')}{path}"


def api_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=RequestRoute)


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes first in the app's own list, in their order.

    Not `include_router`: FastAPI (0.165) keeps an included router as one more level
    that matches every request twice, 9 µs a request, measured; and routes are tried in
    order, so the API's come before the documentation's.
    """
    app.router.routes[:0] = [route for router in routers for route in router.routes]
