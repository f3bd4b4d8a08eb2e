"""Routes whose handler is the endpoint itself: `(Request) -> Response`.

FastAPI's dependency solving and body handling cost more per request than a cached
read's whole work (bench/README.md has the figures). Every API route here is a
FastAPI `APIRoute`, registered where FastAPI and the OpenAPI document see it, but of
this class: its endpoint takes only the request, reads what it needs through
`parse.py`, and returns the response, so FastAPI calls it directly (the documented
`get_route_handler` hook). What FastAPI would have read from a richer signature is
documented with `openapi.py` from the same models `parse.py` validates with.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RequestRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = _serve(self.get_route_handler())

    def get_route_handler(self) -> Handler:
        parameters = list(inspect.signature(self.endpoint).parameters)
        if parameters != ["request"]:
            raise TypeError(f"{self.endpoint.__name__} must take only the request")
        handler: Handler = self.endpoint
        return handler


def _serve(handler: Handler) -> ASGIApp:
    """The route's ASGI app: the handler's response, sent. FastAPI's own wrapper adds
    two exit stacks for dependencies with `yield` and a second round of exception
    handling, which these routes do not need: what they raise goes to the app's
    handlers (`errors.py`) through Starlette's ExceptionMiddleware all the same."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def api_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=RequestRoute)


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes first in the app's own list, in their order.

    Not `include_router`: FastAPI (0.165) keeps an included router as one more level
    that matches every request twice, 9 µs a request, measured; and routes are tried in
    order, so the API's come before the documentation's.
    """
    app.router.routes[:0] = [route for router in routers for route in router.routes]
