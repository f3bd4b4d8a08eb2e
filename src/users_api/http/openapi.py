"""The OpenAPI document of routes that take only the request (`routing.py`).

FastAPI documents what an endpoint's signature declares; these endpoints declare only
the request, so each route says here what it reads — path ids, query model, headers,
JSON or form body model, bearer token — from the same pydantic models `parse.py`
validates with, and the document cannot drift from the parsing. Body models go to
`components.schemas` under their own names, as FastAPI would put them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

SECURITY_SCHEME = "OAuth2PasswordBearer"
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105  # a path, not a secret
_REF = "#/components/schemas/{model}"

# Every body model a route reads, by name, for the document's components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}

Auth = Literal["required", "optional", "none"]


def operation(
    *,
    path_ids: Sequence[str] = (),
    query: type[BaseModel] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    auth: Auth = "required",
) -> dict[str, Any]:
    """`openapi_extra` for a route: what it reads, as FastAPI would document it."""
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid", "title": name.replace("_", " ").title()},
        }
        for name in path_ids
    ]
    if query is not None:
        parameters += _query_parameters(query)
    parameters += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string", "title": name},
        }
        for name, description in headers
    ]
    extra: dict[str, Any] = {}
    if parameters:
        extra["parameters"] = parameters
    if body is not None or form is not None:
        model = body or form
        assert model is not None
        media_type = "application/json" if body else "application/x-www-form-urlencoded"
        _BODY_MODELS[model.__name__] = model
        extra["requestBody"] = {
            "required": True,
            "content": {media_type: {"schema": {"$ref": _REF.format(model=model.__name__)}}},
        }
    if auth != "none":
        extra["security"] = [{SECURITY_SCHEME: []}] + ([{}] if auth == "optional" else [])
    return extra


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    _add_components(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameters.append(parameter)
    return parameters


_DEFS: dict[str, Any] = {}


def _add_components(defs: dict[str, Any]) -> None:
    _DEFS.update(defs)


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
            for name, model in sorted(_BODY_MODELS.items()):
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            schemas.update(_DEFS)
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
