"""The one place a request's parts become typed values, for every route.

The routes take only the `Request` (see `routing.py`), and read what they need through
these functions: path ids, query parameters, headers, JSON and form bodies, and the
bearer token. Each answers a bad part as FastAPI would (422 with `errors`, 400 for a
body that cannot be read, 401 for credentials), validates with the same pydantic models
the OpenAPI document is generated from (`openapi.py`), and costs a few microseconds.
"""

from __future__ import annotations

import email.message
import json
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from users_api.errors import Unauthorized
from users_api.http.client import address_of
from users_api.ids import parse_uuid
from users_api.request_log import USER_ID
from users_api.security.tokens import AccessClaims, AccessTokens, InvalidToken

M = TypeVar("M", bound=BaseModel)
# The scope key a verified token's claims are left under (`sent_caller`).
CALLER = "users_api.caller"


def invalid(errors: Sequence[dict[str, Any]]) -> RequestValidationError:
    return RequestValidationError(list(errors))


def _located(exc: ValidationError, *prefix: str | int) -> RequestValidationError:
    return invalid(
        [
            {"loc": (*prefix, *error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
    )


def path_id(request: Request, name: str = "user_id") -> uuid.UUID:
    """A UUID path parameter (any spelling `uuid.UUID` reads); 422 otherwise."""
    raw = request.path_params[name]
    try:
        return parse_uuid(raw)
    except ValueError:
        raise invalid(
            [
                {
                    "loc": ("path", name),
                    "msg": "Input should be a valid UUID",
                    "type": "uuid_parsing",
                }
            ]
        ) from None


def query(request: Request, model: type[M], *, repeated: Sequence[str] = ()) -> M:
    """The query string as `model`: the last value of a repeated parameter, as FastAPI,
    except for those named in `repeated`, read as lists of all their values."""
    values: dict[str, Any] = dict(request.query_params)
    for name in repeated:
        if name in values:
            values[name] = request.query_params.getlist(name)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _located(exc, "query") from None


def client_address(request: Request) -> str:
    """The client's IP address, for throttling and records: the peer, or the address a
    trusted proxy forwarded (`TRUSTED_PROXIES`: uvicorn's `ProxyHeadersMiddleware`, put in
    front of the app by `create_app`, has already put it in the scope).

    Written canonically. A proxy that forwards something else than an address (a name,
    `unknown`, garbage) leaves no address to tell clients apart: they share one budget.
    """
    return address_of(request.scope.get("client"))


def header(request: Request, name: str) -> str | None:
    value: str | None = request.headers.get(name)
    return value


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    if content_type == "application/json":  # the common case, without parsing it
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def json_body(request: Request, model: type[M]) -> M:
    """The body as `model`: a JSON document of media type `application/json` (or
    `*+json`). Unreadable bytes are 400; anything else that is not such a model, 422."""
    raw = await request.body()
    if not raw:
        raise invalid([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    if not _is_json(request.headers.get("content-type")):
        raise invalid(
            [
                {
                    "loc": ("body",),
                    "msg": "Input should be a JSON document (Content-Type: application/json)",
                    "type": "model_attributes_type",
                }
            ]
        )
    try:
        # orjson reads the same documents to the same values ~5x faster; what it refuses
        # (NaN, lone surrogates, huge numbers, bad JSON) is read as before, errors included.
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(_TOO_DEEP):
            raise _unparsable() from None
        document = _stdlib_loads(raw)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise _located(exc, "body") from None


# orjson refuses a document nested deeper than 1,024 levels. The standard library's own
# limit is the interpreter's (5,000 nested objects were refused on 3.11, read on 3.13):
# such a document is refused here, so the answer does not depend on the Python serving it.
_TOO_DEEP = "depth limit exceeded"


def _unparsable() -> HTTPException:
    return HTTPException(400, "There was an error parsing the body")


def _stdlib_loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid(
            [{"loc": ("body", exc.pos), "msg": "JSON decode error", "type": "json_invalid"}]
        ) from None
    except (ValueError, RecursionError):  # not UTF-8 or a number too large
        raise _unparsable() from None


async def form_body(request: Request, model: type[M]) -> M:
    """An `application/x-www-form-urlencoded` (or multipart) body as `model`."""
    return form_model(await form_fields(request), model)


async def form_fields(request: Request) -> dict[str, str]:
    """The text fields of an `application/x-www-form-urlencoded` (or multipart) body, for
    a route that must look at one (a grant type, say) before it knows the model."""
    try:
        async with request.form() as form:
            return {name: value for name, value in form.items() if isinstance(value, str)}
    except HTTPException:
        raise
    except Exception:  # python-multipart refused it
        raise HTTPException(400, "There was an error parsing the body") from None


def form_model(fields: dict[str, str], model: type[M]) -> M:
    """Form fields (`form_fields`) as `model`."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _located(exc, "body") from None


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header; None when there is none."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def caller(request: Request) -> AccessClaims:
    """The claims of the request's well-signed, unexpired token, or Unauthorized.

    Whether they are still honoured (user active, `auth_version` current, session not
    ended) is asked of
    the database by the statement that serves the request (`users/queries.py`).
    """
    found = optional_caller(request)
    if found is None:
        raise Unauthorized
    return found


def optional_caller(request: Request) -> AccessClaims | None:
    """As `caller`, for routes open to anyone: None without a token, but a token that
    was sent must verify."""
    token = bearer_token(request)
    if token is None:
        return None
    tokens: AccessTokens = request.app.state.tokens
    try:
        claims = tokens.verify(token)
    except InvalidToken:
        raise Unauthorized from None
    request.scope[USER_ID] = claims.user_id  # for the request's log line
    request.scope[CALLER] = claims
    return claims


def sent_caller(request: Request) -> AccessClaims | None:
    """The claims of the token the route has verified (`optional_caller`), if it read one:
    whether they are still honoured is asked when the request is refused before its
    statement ran (`errors.CallerCheck`)."""
    claims: AccessClaims | None = request.scope.get(CALLER)
    return claims


def text_header(request: Request, name: str) -> str | None:
    """A header as the text the client meant: its bytes read as UTF-8 when they are
    (what clients send beyond ASCII), else as Latin-1, as Starlette reads every header."""
    value = header(request, name)
    if value is None or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value
