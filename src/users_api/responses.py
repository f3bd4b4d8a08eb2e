"""JSON responses serialized straight to bytes, for handlers that already hold plain data.

FastAPI validates a returned model against `response_model` and encodes it in two passes;
the hot reads return rows the database shaped exactly as `UserOut` (see
`users/queries.py`), so orjson writes them in one pass. `response_model` still documents
the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

_JSON = (b"content-type", b"application/json")


def _default(value: object) -> str:
    """asyncpg's own UUID subclass, which orjson does not take for a UUID."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JSONBytes(Response):
    """A JSON body already encoded, with its headers written straight in their wire form:
    Starlette's `Response` would look each header up again and re-encode it (`init_headers`),
    ~2 µs of every read."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int, headers: Mapping[str, str]) -> None:
        self.body = body
        self.status_code = status_code
        self.background = None
        self.raw_headers = [
            _JSON,
            (b"content-length", b"%d" % len(body)),
            *(
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ),
        ]


def json_response(
    content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    # OPT_UTC_Z: timestamps end in "Z", as pydantic writes them elsewhere in the API.
    body = orjson.dumps(content, default=_default, option=orjson.OPT_UTC_Z)
    return JSONBytes(body, status_code, headers or {})
