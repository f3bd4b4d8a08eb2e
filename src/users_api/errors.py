"""Domain errors, and the one place where any error becomes an RFC 9457 problem.

Services raise the `DomainError` subclasses below; they carry no HTTP (database faults
become them in one place, `db/database.py`). The handlers registered by
`install_error_handlers` turn those and framework errors (404 route, 405, 422, 413) into
`application/problem+json`, and anything else into a 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:users-api:problem:"
RETRY_AFTER_SECONDS = 2

log = logging.getLogger(__name__)


# --- domain errors ---------------------------------------------------------------


class DomainError(Exception):
    """A rule of the service was broken. Each kind names its HTTP status and its stable,
    machine-readable `code`; its docstring is the default `detail`."""

    status = HTTPStatus.BAD_REQUEST
    code = "error"

    def __init_subclass__(cls, *, status: HTTPStatus | None = None, code: str = "") -> None:
        super().__init_subclass__()
        cls.status = status or cls.status
        cls.code = code or cls.code

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (type(self).__doc__ or "").strip()
        super().__init__(self.detail)

    def extra(self) -> dict[str, Any]:
        return {}

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(DomainError, status=HTTPStatus.UNAUTHORIZED, code="unauthorized"):
    """Valid bearer credentials are required."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


# One body for every failed login: unknown user, wrong password, inactive user.
class InvalidCredentials(Unauthorized, code="invalid-credentials"):
    """Incorrect username or password."""


class TooManyAttempts(DomainError, status=HTTPStatus.TOO_MANY_REQUESTS, code="too-many-attempts"):
    """Too many failed logins; try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManySignUps(TooManyAttempts, code="too-many-sign-ups"):
    """Too many sign-ups from this address; try again later."""


class NotFound(DomainError, status=HTTPStatus.NOT_FOUND, code="not-found"):
    """No such resource."""


class Conflict(DomainError, status=HTTPStatus.CONFLICT, code="conflict"):
    """The request conflicts with the current state."""

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field

    @classmethod
    def taken(cls, field: str) -> Conflict:
        """The email or username belongs to another user (a unique index says so)."""
        return cls(f"This {field} is already taken.", field=field)

    def extra(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


# The database gave up on this transaction to let a concurrent one finish (twice).
class ConcurrentChange(Conflict, code="concurrent-change"):
    """The request collided with a concurrent change and was not applied; retry it."""


class PreconditionFailed(
    DomainError, status=HTTPStatus.PRECONDITION_FAILED, code="precondition-failed"
):
    """The resource has changed since the given ETag (If-Match)."""


class InvalidInput(DomainError, status=HTTPStatus.UNPROCESSABLE_ENTITY, code="validation"):
    """The request is not valid."""

    def __init__(
        self, *, loc: Sequence[str | int], msg: str, ctx: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(msg)
        error: dict[str, Any] = {"loc": list(loc), "msg": msg, "type": "value_error"}
        if ctx is not None:
            error["ctx"] = dict(ctx)
        self.errors: list[dict[str, Any]] = [error]

    def extra(self) -> dict[str, Any]:
        return {"errors": self.errors}


class Forbidden(DomainError, status=HTTPStatus.FORBIDDEN, code="forbidden"):
    """You may not do that."""


class DatabaseUnavailable(
    DomainError, status=HTTPStatus.SERVICE_UNAVAILABLE, code="database-unavailable"
):
    """The database is unavailable; try again shortly."""

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


# The database gave up on the statement (statement or lock timeout): busy, not broken.
class DatabaseTimeout(DatabaseUnavailable, code="database-timeout"):
    """The database did not answer in time; try again shortly."""


class InvalidCursor(DomainError, code="invalid-cursor"):
    """The cursor is malformed or does not belong to this query."""


# --- documentation ---------------------------------------------------------------


class ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = Field(
        default=None,
        description="More about the error where there is more: for a password too easy "
        "to guess, zxcvbn's `score` (0-4), `warning` and `suggestions`.",
    )


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this service is sent."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[ValidationItem] | None = None


_DESCRIPTIONS = {
    304: "Not modified: `If-None-Match` matched the current ETag.",
    400: "Bad request: a body that cannot be read (not UTF-8, a broken form), or a malformed "
    "or foreign cursor.",
    401: "Missing, malformed, forged, expired or revoked credentials.",
    403: "Forbidden.",
    404: "Not found.",
    409: "Conflict: `field` names the taken email or username; without it, the last active "
    "admin would go, or the request collided with a concurrent change (retry it).",
    412: "Precondition failed: `If-Match` is stale.",
    413: "The request body is over 64 KiB.",
    422: "Validation failed: `errors` lists each problem.",
    429: "Too many requests: see `Retry-After`.",
    503: "The database is unavailable: see `Retry-After`.",
}


def _inline_defs(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_defs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_defs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_defs(value, defs) for value in node]
    return node


def _problem_schema() -> dict[str, Any]:
    """`Problem`'s JSON schema with its nested models inlined.

    Pydantic refers to them as `#/$defs/...`, which OpenAPI tools resolve from the root
    of the whole document, where no `$defs` exist.
    """
    schema = Problem.model_json_schema()
    inlined: dict[str, Any] = _inline_defs(schema, schema.pop("$defs", {}))
    return inlined


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries whose body is a problem document."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in (*statuses, 413, 422, 500, 503):
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase)
        }
        if status != 304:
            entry["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _problem_schema()}}
        documented[status] = entry
    return documented


# --- rendering -------------------------------------------------------------------


def problem(
    status: int,
    *,
    detail: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An `application/problem+json` response."""
    http_status = HTTPStatus(status)
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_PREFIX}{code}" if code else "about:blank",
        "title": http_status.phrase,
        "status": status,
        "detail": detail or http_status.description or http_status.phrase,
        **extra,
    }
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Keep loc, msg and type only: the raw input may be huge or hold a password."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in errors
    ]


# --- handlers --------------------------------------------------------------------


def to_response(exc: DomainError) -> Response:
    """Render a domain error; routers return this when the transaction must still commit."""
    return problem(
        exc.status, detail=exc.detail, code=exc.code, headers=exc.headers(), **exc.extra()
    )


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return to_response(exc)


# The stable codes of what the framework refuses (no route, wrong method, a body that
# cannot be read or is too large), whichever layer refuses it.
_HTTP_CODES = {
    HTTPStatus.BAD_REQUEST: "bad-request",
    HTTPStatus.NOT_FOUND: "not-found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method-not-allowed",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "too-large",
}


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == HTTPStatus.NOT_FOUND and detail == "Not Found":
        detail = "No route matches this path."
    code = _HTTP_CODES.get(HTTPStatus(exc.status_code), "error")
    return problem(exc.status_code, detail=detail, code=code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        detail="The request is not valid.",
        code="validation",
        errors=_validation_errors(exc.errors()),
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        HTTPStatus.INTERNAL_SERVER_ERROR, detail="An unexpected error occurred.", code="internal"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
