"""SCIM's own error bodies (RFC 7644 3.12), not problem+json: SCIM is its own protocol."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from users_api.errors import (
    Conflict,
    DatabaseUnavailable,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)

MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """An answer other than success; `scim_type` as RFC 7644 3.12 names them."""

    def __init__(
        self,
        status: int,
        detail: str,
        scim_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = dict(headers or {})


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def mutability(detail: str) -> ScimError:
    return ScimError(400, detail, "mutability")


def not_found() -> ScimError:
    return ScimError(404, "No resource with this id.")


# The SCIM names of the users and groups tables' fields, for `uniqueness` errors.
_FIELD_NAMES = {
    "email": "email address",
    "username": "userName",
    "external_id": "externalId",
    "display_name": "displayName",
}


def from_domain(exc: DomainError) -> ScimError:
    """The service's errors, said in SCIM: the rules stay the service's."""
    detail = exc.detail
    if isinstance(exc, Conflict):
        if exc.field is not None:
            name = _FIELD_NAMES.get(exc.field, exc.field)
            return ScimError(409, f"This {name} is already taken.", "uniqueness")
        return ScimError(409, detail)
    if isinstance(exc, NotFound):
        return not_found()
    if isinstance(exc, PreconditionFailed):
        return ScimError(412, "The resource has changed since the given version (If-Match).")
    if isinstance(exc, InvalidInput):
        return invalid_value(detail)
    if isinstance(exc, Forbidden):
        return ScimError(403, detail)
    if isinstance(exc, Unauthorized):
        return ScimError(401, detail)
    if isinstance(exc, DatabaseUnavailable):
        return ScimError(503, detail, headers={"Retry-After": "1"})
    return ScimError(exc.status, detail)


def scim_response(
    content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_UTC_Z)
    return Response(body, status_code, dict(headers or {}), media_type=MEDIA_TYPE)


def error_response(exc: ScimError) -> Response:
    body: dict[str, Any] = {
        "schemas": [ERROR_SCHEMA],
        "status": str(exc.status),
        "detail": exc.detail,
    }
    if exc.scim_type is not None:
        body["scimType"] = exc.scim_type
    headers = dict(exc.headers)
    if exc.status == HTTPStatus.UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="scim"')
    return scim_response(body, status_code=exc.status, headers=headers)


# A PUT of a group names every member: ~45 bytes each, so 1 MiB holds ~20,000 of them
# (the API's own bodies are held to MAX_BODY_BYTES, 64 KiB by default).
MAX_BODY_BYTES = 1_048_576


def too_large(limit: int) -> Response:
    """The 413 of a SCIM path, in SCIM's form (`middleware.BodySizeLimit`)."""
    detail = f"The request body is over {limit} bytes."
    return error_response(ScimError(413, detail, headers={"Connection": "close"}))
