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


class RequestRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parameters = list(inspect.signature(self.endpoint).parameters)
        if parameters != ["request"]:
            raise TypeError(f"{self.endpoint.__name__} must take only the request")
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


def api_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=RequestRoute)


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes first in the app's own list, in their order.

    Not `include_router`: FastAPI (0.165) keeps an included router as one more level
    that matches every request twice, 9 µs a request, measured; and routes are tried in
    order, so the API's come before the documentation's.
    """
    app.router.routes[:0] = [route for router in routers for route in router.routes]
