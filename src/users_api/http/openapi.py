"""The OpenAPI document of routes that take only the request (`routing.py`).

FastAPI documents what an endpoint's signature declares; these endpoints declare only
the request, so each route lists here what it reads — a path id, a query model,
headers, a JSON or form body model, the bearer token — with the same pydantic models
`parse.py` validates with, and the document cannot drift from the parsing. Body models
go to `components.schemas` under their own names, as FastAPI would put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from users_api.errors import problem_responses

SECURITY_SCHEME = "OAuth2PasswordBearer"
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105  # a path, not a secret
_REF = "#/components/schemas/{model}"

# Every model a route reads, by name, for the document's components.
_MODELS: dict[str, type[BaseModel]] = {}


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
    model: type[BaseModel]
    media_type: str = "application/json"

    def document(self, extra: dict[str, Any]) -> None:
        _MODELS[self.model.__name__] = self.model
        schema = {"$ref": _REF.format(model=self.model.__name__)}
        extra["requestBody"] = {"required": True, "content": {self.media_type: {"schema": schema}}}


def Form(model: type[BaseModel]) -> Body:  # noqa: N802  # reads as the kind it is
    return Body(model, "application/x-www-form-urlencoded")


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
) -> dict[str, Any]:
    """Everything a route decorator says of an operation: its id for generated clients,
    its summary, the success body's model, the problems it may answer, what it reads."""
    extra: dict[str, Any] = {"security": [{SECURITY_SCHEME: []}]}
    for read in reads:
        read.document(extra)
    return {
        "operation_id": operation_id,
        "summary": summary,
        "response_model": model,
        "responses": problem_responses(*problems),
        "openapi_extra": extra or None,
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
            document["components"]["schemas"] = dict(sorted(schemas.items()))
            document["components"]["securitySchemes"] = {
                SECURITY_SCHEME: {
                    "type": "oauth2",
                    "flows": {"password": {"scopes": {}, "tokenUrl": TOKEN_URL}},
                }
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
