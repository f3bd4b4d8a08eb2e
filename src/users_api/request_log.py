"""A log line for every answer the server failed to give (5xx); for every answer at debug.

Pure ASGI and outermost, so it also sees the answers of the hot paths, which render their
503s themselves. The path is logged without its query string.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.logs import get_logger

LOGGER_NAME = "users_api.requests"
log = get_logger(LOGGER_NAME)


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Decided once, when the app is built (after logging is configured): a request
        # that is answered below 500 costs two clock reads and a closure, no logging call.
        self.every = logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            if status >= 500 or status == 0 or self.every:
                _log_request(scope, status, time.perf_counter() - started)


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status or None,
        "duration_ms": round(seconds * 1000, 1),
    }
    if status == 0:  # an exception, or the client went away, before any answer
        log.warning("request ended without an answer", **fields)
    elif status >= 500:
        (log.warning if status == 503 else log.error)("request failed", **fields)
    else:
        log.debug("request", **fields)
