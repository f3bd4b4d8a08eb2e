"""/healthz, /readyz, /openapi.json and /docs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.test_errors import UNREACHABLE, client_for
from tests.users.helpers import PROBLEM, USERS, assert_problem
from users_api.app import create_app
from users_api.config import Settings


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_a_live_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_without_a_database_is_503_but_healthz_stays_200(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE}))
    async with app.router.lifespan_context(app), client_for(app) as client:
        ready = await client.get("/readyz")
        assert_problem(ready, 503)
        assert "retry-after" in ready.headers
        assert "127.0.0.1" not in ready.text
        assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


EXPECTED_STATUSES = {
    (USERS, "post"): {"201", "409", "413", "422"},
    (USERS, "get"): {"200", "400", "422"},
    (f"{USERS}/{{user_id}}", "get"): {"200", "304", "404", "422"},
    (f"{USERS}/{{user_id}}", "patch"): {"200", "404", "409", "412", "422"},
    (f"{USERS}/{{user_id}}", "delete"): {"204", "404", "412", "422"},
}


@pytest.mark.parametrize(("path", "method"), list(EXPECTED_STATUSES))
async def test_openapi_documents_each_users_operation_with_problem_bodies(
    openapi: dict[str, Any], path: str, method: str
) -> None:
    responses = openapi["paths"][path][method]["responses"]
    assert EXPECTED_STATUSES[path, method] <= set(responses)
    for status, response in responses.items():
        if int(status) >= 400:
            assert PROBLEM in resolve(openapi, response)["content"], (status, response)


async def test_openapi_user_schema_has_no_password(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert not [name for name in schemas["UserOut"]["properties"] if "password" in name]
    assert set(schemas["UserOut"]["properties"]) >= {"id", "email", "username", "version"}


async def test_openapi_problem_body_lists_the_problem_fields(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"][USERS]["post"]["responses"]
    invalid = resolve(openapi, responses["422"])["content"][PROBLEM]["schema"]
    schema = resolve(openapi, invalid)
    assert {"type", "title", "status", "detail", "errors"} <= set(schema["properties"])
    conflict = resolve(openapi, responses["409"])["content"][PROBLEM]["schema"]
    assert set(resolve(openapi, conflict)["properties"]) >= {"field"}


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (of a schema, a response, a header) from the root of the
    OpenAPI document, as tools do."""
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            assert isinstance(target, dict), schema["$ref"]
            assert part in target, schema["$ref"]
            target = target[part]
        schema = target
    return schema


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


async def test_openapi_references_all_resolve(openapi: dict[str, Any]) -> None:
    found = refs(openapi)
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        resolve(openapi, {"$ref": ref})


async def test_openapi_documents_operations(openapi: dict[str, Any]) -> None:
    assert {"/healthz", "/readyz"} <= set(openapi["paths"])
    assert "503" in openapi["paths"]["/readyz"]["get"]["responses"]


async def test_docs_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text
