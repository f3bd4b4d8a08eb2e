"""Domain errors, and the one place where any error becomes an RFC 9457 problem.

Services raise the `DomainError` subclasses below; they carry no HTTP (database faults
become them in one place, `db/database.py`). The handlers registered by
`install_error_handlers` turn those and framework errors (404 route, 405, 422, 413) into
`application/problem+json`, and anything else into a 500 that leaks nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from users_api.http.request_id import current_request_id

if TYPE_CHECKING:
    # Not at run time: importing FastAPI costs a command (`migrate`, `set-admin`) about
    # 0.25 s of its 1.3 s of CPU, and the CLI raises these errors without serving HTTP.
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

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
        # A docstring's lines, indented as code, read as one line of prose.
        self.detail = detail or " ".join((type(self).__doc__ or "").split())
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


class MfaRequired(Unauthorized, code="mfa-required"):
    """The password is right; the second factor is next: send `mfa_token` and a code to
    POST /api/v1/auth/mfa/verify."""

    def __init__(self, mfa_token: str) -> None:
        super().__init__()
        self.mfa_token = mfa_token

    def extra(self) -> dict[str, Any]:
        return {"mfa_token": self.mfa_token}


class InvalidMfaToken(Unauthorized, code="invalid-mfa-token"):
    """The mfa_token is unknown, used or expired: sign in again."""


class InvalidCode(DomainError, code="invalid-code"):
    """The code is not valid (wrong, already used, or too old)."""


# At the second step of a sign-in, a wrong code is a failed login: 401, as a wrong password.
class WrongCode(Unauthorized, code="invalid-code"):
    """The code is not valid (wrong, already used, or too old)."""


class TooManyAttempts(DomainError, status=HTTPStatus.TOO_MANY_REQUESTS, code="too-many-attempts"):
    """Too many failed logins; try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UnsupportedGrantType(DomainError, code="unsupported-grant-type"):
    """The token endpoint takes the `password` and `refresh_token` grants only."""

    def extra(self) -> dict[str, Any]:
        return {"error": "unsupported_grant_type"}  # RFC 6749 §5.2, for OAuth2 clients


class TooManySignUps(TooManyAttempts, code="too-many-sign-ups"):
    """Too many sign-ups from this address; try again later."""


class TooManyResets(TooManyAttempts, code="too-many-resets"):
    """Too many password-reset requests from this address; try again later."""


class TooManyVerificationMails(TooManyAttempts, code="too-many-verification-mails"):
    """Enough verification mails for this account this hour; try again later."""


class EmailNotVerified(DomainError, status=HTTPStatus.FORBIDDEN, code="email-not-verified"):
    """Verify your email address before signing in (REQUIRE_VERIFIED_EMAIL)."""


class InvalidToken(DomainError, code="invalid-token"):
    """The token is unknown, used up or expired."""


class NotFound(DomainError, status=HTTPStatus.NOT_FOUND, code="not-found"):
    """No such resource."""


class UnknownMembers(NotFound):
    """Some of the users named as a group's members do not exist; nothing was stored.

    The REST front answers it as the 404 of a missing user; SCIM as 400 `invalidValue`
    (RFC 7644 §3.12). `user_ids` names them (so does the detail).
    """

    def __init__(self, user_ids: Sequence[Any]) -> None:
        super().__init__("No user with this id: " + ", ".join(str(i) for i in user_ids) + ".")
        self.user_ids = list(user_ids)


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
class AlreadyVerified(Conflict, code="already-verified"):
    """The email address is already verified."""


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
#
# The OpenAPI document holds one `Problem` schema and one response per problem status
# in its `components` (`http/openapi.py` puts them there); each operation refers to the
# statuses it may answer, so a generated client has one `Problem` class, not one per
# operation, and every problem response shows example bodies.

SCHEMA_REF = "#/components/schemas/{name}"
RESPONSE_REF = "#/components/responses/{name}"
HEADER_REF = "#/components/headers/{name}"
# What an `X-Request-ID` may be (a client's is kept when it matches).
REQUEST_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Members that do not apply are left out of a problem, never sent as null: the
    document drops the null alternative (and the default) pydantic writes for them."""
    for member in schema["properties"].values():
        if "anyOf" in member:
            member.pop("default", None)
            alternatives = [alt for alt in member.pop("anyOf") if alt.get("type") != "null"]
            member.update(alternatives[0])


class ValidationItem(BaseModel):
    """One reason a request was refused with 422."""

    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the field or index."
    )
    msg: str = Field(description="What is wrong, for people to read.")
    type: str = Field(description="The kind of error, such as `missing` or `value_error`.")
    ctx: dict[str, Any] | None = Field(
        default=None,
        description="More about the error where there is more: for a password too easy "
        "to guess, zxcvbn's `score` (0-4), `warning` and `suggestions`.",
    )


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this service is sent
    (`application/problem+json`). Clients branch on `code`, never on `detail`."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    type: str = Field(
        description="A URI naming the kind of problem: `urn:users-api:problem:` followed "
        "by its `code`."
    )
    title: str = Field(description="The HTTP status's phrase.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong, for people to read; it may change.")
    code: str = Field(
        description="The problem's stable, kebab-case name, the last part of `type` "
        "(`validation`, `not-found`, `invalid-credentials`, `database-unavailable`, …).",
    )
    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN,
        description="The request's `X-Request-ID`, to quote when reporting a problem.",
    )
    field: str | None = Field(
        None,
        description="409 only: the unique field that is taken (`email`, `username`, "
        "`display_name`).",
    )
    errors: list[ValidationItem] | None = Field(
        None, description="422 only: each reason the request was refused."
    )
    mfa_token: str | None = Field(
        None,
        description="`mfa-required` only: the token to send with a code to "
        "`POST /api/v1/auth/mfa/verify` (single use, 5 minutes).",
    )


# The request id of the examples (a real problem's is its request's `X-Request-ID`).
EXAMPLE_REQUEST_ID = "5f0c3e9a1b7d4c28a6e2f41d9b03c7e5"


def _body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An example problem body, as `problem()` writes one."""
    return {
        "type": f"{PROBLEM_TYPE_PREFIX}{code}",
        "title": HTTPStatus(status).phrase,
        "status": int(status),
        "detail": detail,
        "code": code,
        "request_id": EXAMPLE_REQUEST_ID,
        **extra,
    }


def _of(error: DomainError) -> dict[str, Any]:
    return _body(error.status, error.code, error.detail, **error.extra())


@dataclass(frozen=True)
class _Documented:
    """A status as the document shows it: its response component's name, what it
    means, the headers it always sends, and example problem bodies by summary."""

    name: str
    description: str
    headers: tuple[str, ...] = ()
    examples: Mapping[str, dict[str, Any]] | None = None


_DOCUMENTED: dict[int, _Documented] = {
    304: _Documented(
        "NotModified", "Not modified: `If-None-Match` matched the current ETag.", ("ETag",)
    ),
    400: _Documented(
        "BadRequest",
        "Bad request: a body that cannot be read (not UTF-8, a broken form), a malformed "
        "or foreign cursor, a `grant_type` the token endpoint does not take, or a mailed "
        "token that is unknown, used up or expired.",
        examples={
            "A cursor from another query": _of(
                InvalidCursor("The cursor was made for another sort order.")
            ),
            "An unsupported grant type": _of(UnsupportedGrantType()),
            "A wrong second-factor code": _of(InvalidCode()),
            "A mailed token that is unknown, used up or expired": _of(InvalidToken()),
            "A body that cannot be read": _body(
                400, "bad-request", "There was an error parsing the body"
            ),
        },
    ),
    401: _Documented(
        "Unauthorized",
        "Missing, malformed, forged, expired or revoked credentials; at the token "
        "endpoint, a wrong username or password, or (`mfa-required`) the right password "
        "of a user with MFA on; at the second step, a wrong code or a spent `mfa_token`.",
        ("WWW-Authenticate",),
        examples={
            "No valid bearer token": _of(Unauthorized()),
            "A failed login": _of(InvalidCredentials()),
            "The second factor is next": _of(MfaRequired("mfa_3q2Vx0Yc9rKp7tF1hWdJ8sLbNe4u")),
        },
    ),
    403: _Documented(
        "Forbidden",
        "Forbidden: signed in, but not allowed to do this.",
        examples={"Not an admin": _of(Forbidden("Only an admin may list users."))},
    ),
    404: _Documented(
        "NotFound",
        "Not found (also what a non-admin gets for someone else's user).",
        examples={"No such user": _of(NotFound("No user with this id."))},
    ),
    409: _Documented(
        "Conflict",
        "Conflict: `field` names the taken email or username; without it, the last active "
        "admin would go, or the request collided with a concurrent change (retry it).",
        examples={
            "The email is taken": _of(Conflict("This email is already taken.", field="email")),
            "The last active admin": _of(Conflict("This would leave no active admin.")),
            "A concurrent change": _of(ConcurrentChange()),
        },
    ),
    412: _Documented(
        "PreconditionFailed",
        "Precondition failed: `If-Match` is stale.",
        examples={"A stale ETag": _of(PreconditionFailed())},
    ),
    413: _Documented(
        "ContentTooLarge",
        "The request body is over 64 KiB.",
        examples={"Too large": _body(413, "too-large", "The request body is over 65536 bytes.")},
    ),
    422: _Documented(
        "ValidationFailed",
        "Validation failed: `errors` lists each problem.",
        examples={
            "An invalid email": _body(
                422,
                "validation",
                "The request is not valid.",
                errors=[
                    {
                        "loc": ["body", "email"],
                        "msg": "Value error, An email address must have an @-sign.",
                        "type": "value_error",
                    }
                ],
            ),
            "A refused password": _of(
                InvalidInput(
                    loc=("body", "password"), msg="Password is one of the most common passwords."
                )
            ),
        },
    ),
    429: _Documented(
        "TooManyRequests",
        "Too many requests: try again after `Retry-After` seconds.",
        ("Retry-After",),
        examples={"Too many failed logins": _of(TooManyAttempts(retry_after=900))},
    ),
    500: _Documented(
        "InternalServerError",
        "An unexpected error; the body never holds a stack trace, SQL or a secret.",
        examples={"Unexpected": _body(500, "internal", "An unexpected error occurred.")},
    ),
    503: _Documented(
        "ServiceUnavailable",
        "The database is unavailable or did not answer in time: try again after "
        "`Retry-After` seconds. Nothing of the request was stored.",
        ("Retry-After",),
        examples={
            "The database is unavailable": _of(DatabaseUnavailable()),
            "The database timed out": _of(DatabaseTimeout()),
        },
    ),
}

# What any operation may answer, whatever it reads.
_ALWAYS = (413, 422, 500, 503)


def problem_responses(*statuses: int) -> dict[str, dict[str, str]]:
    """An operation's `responses` entries for the problems it may answer (and 304),
    each a reference to its response in `components` (see `problem_components`)."""
    return {
        str(status): {"$ref": RESPONSE_REF.format(name=_DOCUMENTED[status].name)}
        for status in sorted({*statuses, *_ALWAYS})
    }


def _key(summary: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", summary.lower()).strip("-")


def problem_components() -> dict[str, dict[str, Any]]:
    """`components.responses`: each problem status once, with its headers and examples."""
    components: dict[str, dict[str, Any]] = {}
    for documented in _DOCUMENTED.values():
        response: dict[str, Any] = {"description": documented.description}
        if documented.headers:
            response["headers"] = {
                name: {"$ref": HEADER_REF.format(name=name)} for name in documented.headers
            }
        if documented.examples:
            examples = {
                _key(summary): {"summary": summary, "value": body}
                for summary, body in documented.examples.items()
            }
            schema = {"$ref": SCHEMA_REF.format(name=Problem.__name__)}
            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": schema, "examples": examples}}
        components[documented.name] = response
    return components


# --- rendering -------------------------------------------------------------------

# The stable codes of what the framework refuses (no route, wrong method, a body that
# cannot be read or is too large, validation, a fault), whichever layer refuses it; and
# of any problem rendered without a code of its own.
_HTTP_CODES = {
    HTTPStatus.BAD_REQUEST: "bad-request",
    HTTPStatus.NOT_FOUND: "not-found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method-not-allowed",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "too-large",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "headers-too-large",
    HTTPStatus.REQUEST_TIMEOUT: "request-timeout",
    HTTPStatus.UNPROCESSABLE_ENTITY: "validation",
    HTTPStatus.INTERNAL_SERVER_ERROR: "internal",
}


def problem(
    status: int,
    *,
    detail: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An `application/problem+json` response, with its `code` (by default the status's,
    `_HTTP_CODES`) and the request's id."""
    return Response(
        content=problem_body(
            status, detail=detail, code=code, request_id=current_request_id(), **extra
        ),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def problem_body(
    status: int, *, detail: str | None, code: str | None, request_id: str | None, **extra: Any
) -> bytes:
    """The JSON of a problem: also written by the HTTP protocol itself (`http.protocol`),
    for what it refuses before there is a request."""
    http_status = HTTPStatus(status)
    code = code or _HTTP_CODES.get(http_status, "error")
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_PREFIX}{code}",
        "title": http_status.phrase,
        "status": status,
        "detail": detail or http_status.description or http_status.phrase,
        "code": code,
        "request_id": request_id,
        **extra,
    }
    return orjson.dumps(body)


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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == HTTPStatus.NOT_FOUND and detail == "Not Found":
        detail = "No route matches this path."
    headers = exc.headers
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return problem(exc.status_code, detail=detail, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes. Starlette names only the methods of
    the first route whose path matched (just `POST` for `/users`, though `GET` is there).
    A path that takes `GET` takes `HEAD` too (`http.routing.Dispatch`)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _validation_error(exc: RequestValidationError) -> Response:
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


# Whether the token a request sent is still honoured: the refusal (401), or None. Asked
# before the request hears that its parts are bad (400, 422), so a caller whose token was
# revoked hears 401 first, whatever they sent, as from every route that reads its body.
CallerCheck = Callable[[Request], Awaitable[DomainError | None]]


def install_error_handlers(app: FastAPI, *, caller_check: CallerCheck | None = None) -> None:
    from fastapi.exceptions import RequestValidationError

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == HTTPStatus.BAD_REQUEST and caller_check is not None:
            refused = await caller_check(request)
            if refused is not None:
                return to_response(refused)
        return await _http_error(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if caller_check is not None:
            refused = await caller_check(request)
            if refused is not None:
                return to_response(refused)
        return _validation_error(exc)

    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
