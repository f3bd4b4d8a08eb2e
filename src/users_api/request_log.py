"""The line a request leaves in the log: for every answer at debug; else only for the
answers the server failed to give (5xx, or none at all). `middleware.Edge` writes it,
outside every other layer, so it sees every answer. The path is logged without its query
string.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from users_api.logs import get_logger

LOGGER_NAME = "users_api.requests"
log = get_logger(LOGGER_NAME)


def logs_every_request() -> bool:
    return logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)


def log_request(scope: Scope, status: int, seconds: float) -> None:
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
