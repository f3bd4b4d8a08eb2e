"""The line a request leaves in the log: one per request, at info (a 5xx at error, a 503
at warning, no answer at all at warning), with its method, route template, path (without
the query string), status, duration, request id and, when it sent a valid token, user id.
`middleware.Edge` writes it, outside every other layer, so it sees every answer.

Every request pays for it, so in JSON (the default off a terminal) an answered request's
line is written by `logs.json_line_writer`: the same keys as structlog's, in a tenth of
the time (measured). On a terminal, and for failures, it goes through structlog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

from users_api.logs import get_logger, json_line_writer

LOGGER_NAME = "users_api.requests"
log = get_logger(LOGGER_NAME)
USER_ID = "users_api.user_id"  # the scope key the token check leaves the caller's id under

RequestLog = Callable[[Scope, int, float, str], None]


def route_template(route: object) -> str | None:
    """The template of the route that answered (`/api/v1/users/{user_id}`), as logs,
    metrics and traces label a request: never its ids, nor a path convertor's name."""
    template: str | None = getattr(route, "path_format", None)
    return template


def request_logger() -> RequestLog | None:
    """What logs each request, as logging is configured now; None below info (then only
    `log_failure` logs, for the 5xx and the unanswered)."""
    if not logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO):
        return None
    write = json_line_writer()
    if write is None:
        return log_request

    def log_json(scope: Scope, status: int, seconds: float, request_id: str) -> None:
        if status == 0 or status >= 500:
            log_request(scope, status, seconds, request_id)
            return
        user_id = scope.get(USER_ID)
        write(
            {
                "timestamp": datetime.now(UTC),
                "level": "info",
                "event": "request",
                "logger": LOGGER_NAME,
                "method": scope["method"],
                "route": route_template(scope.get("route")),
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                "request_id": request_id,
                "user_id": None if user_id is None else str(user_id),
            }
        )

    return log_json


def log_request(scope: Scope, status: int, seconds: float, request_id: str) -> None:
    user_id = scope.get(USER_ID)
    fields: dict[str, Any] = {
        "method": scope["method"],
        "route": route_template(scope.get("route")),
        "path": scope["path"],
        "status": status or None,
        "duration_ms": round(seconds * 1000, 1),
        "request_id": request_id,
        "user_id": None if user_id is None else str(user_id),
    }
    if status == 0:  # an exception, or the client went away, before any answer
        log.warning("request ended without an answer", **fields)
    elif status >= 500:
        (log.warning if status == 503 else log.error)("request failed", **fields)
    else:
        log.info("request", **fields)
