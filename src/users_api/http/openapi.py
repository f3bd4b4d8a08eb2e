"""The OpenAPI document of routes that take only the request (`routing.py`).

FastAPI documents what an endpoint's signature declares; these endpoints declare only
the request, so each route lists here what it reads — a path id, a query model,
headers, a JSON or form body model, the bearer token — with the same pydantic models
`parse.py` validates with, and the document cannot drift from the parsing. Body models
go to `components.schemas` under their own names, as FastAPI would put them.

The document is meant for client generators as much as for people: one `Problem` schema
and one response per problem status in `components` (`errors.py`), the response headers
(`ETag`, `Location`, `Link`, `Retry-After`, `WWW-Authenticate`, `X-Request-ID`) in
`components.headers`, an example for each request and success body (`Body`, `Reply`),
and a short camelCase operation id for each route.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from users_api.db.replicas import HEADER as CONSISTENCY_TOKEN
from users_api.errors import (
    EXAMPLE_REQUEST_ID,
    HEADER_REF,
    REQUEST_ID_PATTERN,
    Problem,
    problem_components,
    problem_responses,
)

SECURITY_SCHEME = "OAuth2PasswordBearer"
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105  # a path, not a secret
_REF = "#/components/schemas/{model}"

# Every model a route reads, by name, for the document's components; and `Problem`, the
# body of every error response.
_MODELS: dict[str, type[BaseModel]] = {Problem.__name__: Problem}

REQUEST_ID = "X-Request-ID"
# `components.headers`: every response header the document names, once.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "The resource's (user's, group's) `version` as a strong entity tag: "
        "send it back in "
        "`If-Match` to change or delete only that version, or in `If-None-Match` to "
        "revalidate a read.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
        "example": '"1"',
    },
    "Location": {
        "description": "The path of the new resource (user, group).",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
        "example": "/api/v1/users/0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e",
    },
    "Link": {
        "description": 'The next page, when there is one (RFC 8288): `<…>; rel="next"`, the '
        "list with the same parameters and the next `cursor`.",
        "schema": {"type": "string"},
        "example": "</api/v1/users?limit=1&cursor=eyJzIjoiaWQiLCJrIjoiMDE5MGYwYzgtN2EzZS03YjZj"
        "LTlkMmUtNGY1YTZiN2M4ZDllIiwiaSI6IjAxOTBmMGM4LTdhM2UtN2I2Yy05ZDJlLTRmNWE2YjdjOGQ5ZSJ9>; "
        'rel="next"',
    },
    "Retry-After": {
        "description": "How many seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 2,
    },
    "WWW-Authenticate": {
        "description": "How to authenticate: with a bearer token.",
        "required": True,
        "schema": {"type": "string"},
        "example": "Bearer",
    },
    CONSISTENCY_TOKEN: {
        "description": "The primary's position after this write's commit (opaque): send it "
        "back in `X-Consistency-Token` with a later read, and that read sees this write "
        "even when a read replica answers it. Absent when the primary cannot say.",
        "schema": {"type": "string"},
        "example": "0/16B3748",
    },
    REQUEST_ID: {
        "required": True,
        "description": "The request's id, on every response: the client's own when it sent "
        "a sane one (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a new one. It is in the "
        "service's logs and is a problem's `request_id`: quote it when reporting one.",
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
        "example": EXAMPLE_REQUEST_ID,
    },
}


def _header_refs(names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    for name in names:
        if name not in HEADERS:
            raise KeyError(f"{name} is not in HEADERS")
    return {name: {"$ref": HEADER_REF.format(name=name)} for name in names}


@dataclass(frozen=True)
class PathId:
    """A UUID path parameter."""

    name: str

    def document(self, extra: dict[str, Any]) -> None:
        schema = {"type": "string", "format": "uuid", "title": self.name.replace("_", " ").title()}
        parameter = {"name": self.name, "in": "path", "required": True, "schema": schema}
        extra.setdefault("parameters", []).append(parameter)


@dataclass(frozen=True)
class Header:
    name: str
    description: str

    def document(self, extra: dict[str, Any]) -> None:
        schema = {"type": "string", "title": self.name}
        parameter = {"name": self.name, "in": "header", "required": False, "schema": schema}
        extra.setdefault("parameters", []).append(parameter | {"description": self.description})


@dataclass(frozen=True)
class Query:
    """Query parameters: the fields of a model."""

    model: type[BaseModel]

    def document(self, extra: dict[str, Any]) -> None:
        schema = self.model.model_json_schema(ref_template=_REF)
        _DEFINITIONS.update(schema.pop("$defs", {}))
        required = set(schema.get("required", ()))
        for name, field in schema["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required}
            if "description" in field:
                parameter["description"] = field["description"]
            extra.setdefault("parameters", []).append(parameter | {"schema": field})


@dataclass(frozen=True)
class Body:
    """A request body of `model`, with an example of it."""

    model: type[BaseModel]
    example: dict[str, Any]
    media_type: str = "application/json"

    def document(self, extra: dict[str, Any]) -> None:
        _MODELS[self.model.__name__] = self.model
        schema = {"$ref": _REF.format(model=self.model.__name__)}
        content = {self.media_type: {"schema": schema, "example": self.example}}
        extra["requestBody"] = {"required": True, "content": content}


def Form(model: type[BaseModel], example: dict[str, Any]) -> Body:  # noqa: N802  # reads as the kind it is
    return Body(model, example, "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Reply:
    """The success response: its status, what it is, an example body, the headers it
    always or sometimes sends."""

    status: int = 200
    description: str | None = None
    example: dict[str, Any] | None = None
    headers: tuple[str, ...] = ()

    def document(self, extra: dict[str, Any]) -> None:
        # Merged by FastAPI into the response it documents from `response_model`.
        response = extra.setdefault("responses", {}).setdefault(str(self.status), {})
        if self.description is not None:
            response["description"] = self.description
        if self.headers:
            response["headers"] = _header_refs(self.headers)
        if self.example is not None:
            response["content"] = {"application/json": {"example": self.example}}


class Auth(Enum):
    """Whether the route wants the bearer token (required by default)."""

    OPTIONAL = "optional"
    NONE = "none"

    def document(self, extra: dict[str, Any]) -> None:
        if self is Auth.NONE:
            extra.pop("security", None)
        else:
            extra["security"] = [{SECURITY_SCHEME: []}, {}]


Read = PathId | Header | Query | Body | Auth
_DEFINITIONS: dict[str, Any] = {}


def doc(
    operation_id: str,
    summary: str,
    model: type[BaseModel] | None = None,
    problems: tuple[int, ...] = (),
    *reads: Read,
    reply: Reply | None = None,
) -> dict[str, Any]:
    """Everything a route decorator says of an operation: its id for generated clients,
    its summary, the success body's model, the problems it may answer, what it reads,
    and what its success response holds."""
    extra: dict[str, Any] = {"security": [{SECURITY_SCHEME: []}]}
    for read in reads:
        read.document(extra)
    if reply is not None:
        reply.document(extra)
    # Here, not in FastAPI's `responses=`: FastAPI would write a description beside each
    # `$ref`, and a description there overrides the referenced response's own.
    extra.setdefault("responses", {}).update(problem_responses(*problems))
    return {
        "operation_id": operation_id,
        "summary": summary,
        "response_model": model,
        "openapi_extra": extra,
    }


def install(app: FastAPI) -> None:
    """Generate the document once, with the body models and the bearer scheme added."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _MODELS.items():
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            schemas.update(_DEFINITIONS)
            components = document["components"]
            components["schemas"] = dict(sorted(schemas.items()))
            # Copies: the document is the app's to change, the module's tables are not.
            components["responses"] = copy.deepcopy(problem_components())
            components["headers"] = copy.deepcopy(HEADERS)
            _add_request_id(document)
            _add_consistency_token(document)
            document["components"]["securitySchemes"] = {
                SECURITY_SCHEME: {
                    "type": "oauth2",
                    "flows": {"password": {"scopes": {}, "tokenUrl": TOKEN_URL}},
                }
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _add_request_id(document: dict[str, Any]) -> None:
    """Every response sends `X-Request-ID`: each response the document writes out (in
    an operation or in `components.responses`) says so; references inherit it."""
    responses = [
        response
        for path_item in document["paths"].values()
        for operation in path_item.values()
        for response in operation.get("responses", {}).values()
    ]
    responses += document["components"]["responses"].values()
    for response in responses:
        if "$ref" not in response:
            response.setdefault("headers", {}).update(_header_refs((REQUEST_ID,)))


_WRITES = ("post", "put", "patch", "delete")


def _add_consistency_token(document: dict[str, Any]) -> None:
    """Read-your-writes (`db.replicas.ConsistencyTokens`): every success of a write sends
    `X-Consistency-Token`, and every read of the API may send it back."""
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            if method in _WRITES:
                for status, response in operation.get("responses", {}).items():
                    if status.startswith(("2", "3")) and "$ref" not in response:
                        headers = response.setdefault("headers", {})
                        headers.update(_header_refs((CONSISTENCY_TOKEN,)))
            elif method == "get" and path.startswith("/api/"):
                Header(
                    CONSISTENCY_TOKEN,
                    "A write's `X-Consistency-Token`: this read then sees that write.",
                ).document(operation)
