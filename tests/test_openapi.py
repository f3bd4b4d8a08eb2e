"""The OpenAPI document, as client generators and people read it.

One `Problem` schema that every problem response refers to, response headers, examples
that are valid against their schemas, short unique camelCase operation ids; and a Python
client generated from `/openapi.json` that does a round trip against the app.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI
from openapi_python_client import generate
from openapi_python_client.config import Config, ConfigFile, MetaType

from tests.conftest import BASE_URL
from tests.test_operations import resolve
from users_api.app import create_app
from users_api.auth import examples as auth_examples
from users_api.auth.schemas import LoginForm, RefreshRequest, TokenResponse
from users_api.config import Settings
from users_api.errors import PROBLEM_MEDIA_TYPE, Problem
from users_api.security.passwords import policy_violation
from users_api.users import examples as user_examples
from users_api.users.schemas import UserCreate, UserOut, UserPage, UserUpdate

USERS = "/api/v1/users"
PROBLEM_REF = "#/components/schemas/Problem"
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


def _settings() -> Settings:
    return Settings(secret_key="only-for-the-openapi-document-" * 2, _env_file=None)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document of an app built without a database, as the fuzzer's."""
    return create_app(_settings()).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def responses(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Each response of each operation, references followed."""
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            yield path, method, status, resolve(document, response)


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator for a schema of the document, formats checked:
    its references point at `components.schemas`, which go in `$defs`."""
    text = json.dumps({"$defs": document["components"]["schemas"], **schema})
    return jsonschema_rs.validator_for(
        json.loads(text.replace('"#/components/schemas/', '"#/$defs/')), validate_formats=True
    )


def assert_valid(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    errors = [error.message for error in validator(document, schema).iter_errors(value)]
    assert not errors, (where, value, errors)


# --- operation ids -----------------------------------------------------------------


def test_every_operation_has_a_unique_camel_case_id(document: dict[str, Any]) -> None:
    ids: list[str] = []
    for path, method, operation in operations(document):
        assert isinstance(operation.get("operationId"), str), (method, path)
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)), ids
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", operation_id), operation_id
    assert {
        "createUser",
        "listUsers",
        "getCurrentUser",
        "getUser",
        "updateUser",
        "deleteUser",
        "logIn",
        "refreshTokens",
        "logOut",
        "logOutEverywhere",
    } <= set(ids)


# --- one Problem schema ------------------------------------------------------------


def test_one_problem_schema_is_referenced_by_every_problem_response(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    problem = schemas["Problem"]
    assert set(problem["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "code",
        "request_id",
        "field",
        "errors",
        "mfa_token",
    }
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "request_id"}
    # Members that do not apply are left out, never null.
    for name in ("code", "request_id", "field", "errors", "mfa_token"):
        assert "anyOf" not in problem["properties"][name], name
    assert problem["properties"]["errors"]["items"] == {
        "$ref": "#/components/schemas/ValidationItem"
    }
    assert set(schemas["ValidationItem"]["required"]) == {"loc", "msg", "type"}

    problem_responses = 0
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            problem_responses += 1
            assert set(response) == {"$ref"}, (path, method, status)
            assert response["$ref"].startswith("#/components/responses/"), response
            content = resolve(document, response)["content"]
            assert set(content) == {PROBLEM_MEDIA_TYPE}
            assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": PROBLEM_REF}
    assert problem_responses > 50

    def titled_problem(node: Any) -> int:
        if isinstance(node, dict):
            found = int(node.get("title") == "Problem" and "properties" in node)
            return found + sum(titled_problem(value) for value in node.values())
        if isinstance(node, list):
            return sum(titled_problem(value) for value in node)
        return 0

    assert titled_problem(document) == 1  # no copy of the schema inlined anywhere


def test_every_problem_status_shows_examples_of_that_status(document: dict[str, Any]) -> None:
    statuses_of: dict[str, set[int]] = {}
    for _, _, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                statuses_of.setdefault(response["$ref"], set()).add(int(status))
    for ref, statuses in statuses_of.items():
        assert len(statuses) == 1, (ref, statuses)  # one response component per status
        (status,) = statuses
        examples = resolve(document, {"$ref": ref})["content"][PROBLEM_MEDIA_TYPE]["examples"]
        assert examples, ref
        for name, example in examples.items():
            body = example["value"]
            assert example["summary"], name
            assert body["status"] == status, (ref, name)
            assert body["type"] == f"urn:users-api:problem:{body['code']}", (ref, name)
            assert_valid(document, {"$ref": PROBLEM_REF}, body, f"{ref} {name}")
            Problem.model_validate(body)


# --- examples ----------------------------------------------------------------------


def test_users_and_auth_bodies_have_examples(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if not path.startswith(("/api/v1/users", "/api/v1/auth")):
            continue
        for media in operation.get("requestBody", {}).get("content", {}).values():
            assert "example" in media, (path, method)
        for status, response in operation["responses"].items():
            if int(status) < 300:
                for media in response.get("content", {}).values():
                    assert "example" in media, (path, method, status)


def _medias(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each media type of each request and response body, and where it is."""
    for path, method, operation in operations(document):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            yield f"{method} {path} request", media
    for path, method, status, response in responses(document):
        for media in response.get("content", {}).values():
            yield f"{method} {path} {status}", media


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for where, media in _medias(document):
        values = [example["value"] for example in media.get("examples", {}).values()]
        values += [media["example"]] if "example" in media else []
        for value in values:
            assert_valid(document, media["schema"], value, where)
            checked += 1
    for name, header in document["components"]["headers"].items():
        if "example" in header:
            assert_valid(document, header["schema"], header["example"], name)
            checked += 1
    assert checked > 20


def test_examples_are_what_the_service_takes_and_gives() -> None:
    """The models the service parses and answers with take the examples as they are."""
    new_user = UserCreate.model_validate(user_examples.NEW_USER)
    assert new_user.model_dump(exclude_unset=True) == user_examples.NEW_USER
    assert (
        policy_violation(
            user_examples.PASSWORD,
            email=new_user.email,
            username=new_user.username,
            min_length=_settings().password_min_length,
        )
        is None
    )
    UserUpdate.model_validate(user_examples.CHANGE)
    LoginForm.model_validate(auth_examples.LOGIN)
    RefreshRequest.model_validate(auth_examples.REFRESH)
    for user in (user_examples.USER, user_examples.CHANGED_USER):
        assert UserOut.model_validate(user).model_dump(mode="json") == user
    assert UserPage.model_validate(user_examples.PAGE).model_dump(mode="json") == (
        user_examples.PAGE
    )
    assert TokenResponse.model_validate(auth_examples.TOKENS).model_dump() == (auth_examples.TOKENS)


# --- headers -----------------------------------------------------------------------


def _headers(document: dict[str, Any], path: str, method: str, status: str) -> set[str]:
    response = resolve(document, document["paths"][path][method]["responses"][status])
    return set(response.get("headers", {}))


def test_documented_response_headers(document: dict[str, Any]) -> None:
    user = f"{USERS}/{{user_id}}"
    assert "ETag" in _headers(document, user, "get", "200")
    assert "ETag" in _headers(document, user, "get", "304")
    assert "ETag" in _headers(document, f"{USERS}/me", "get", "200")
    assert "ETag" in _headers(document, user, "patch", "200")
    assert {"ETag", "Location"} <= _headers(document, USERS, "post", "201")
    assert "Link" in _headers(document, USERS, "get", "200")
    assert "WWW-Authenticate" in _headers(document, user, "get", "401")
    assert "Retry-After" in _headers(document, "/api/v1/auth/token", "post", "429")
    assert "Retry-After" in _headers(document, user, "get", "503")
    assert "Retry-After" in _headers(document, "/readyz", "get", "503")
    for path, method, status, response in responses(document):
        assert "X-Request-ID" in response.get("headers", {}), (path, method, status)
        # Read-your-writes: every success of a write says where its commit is.
        if method in ("post", "put", "patch", "delete") and status[0] in "23":
            assert "X-Consistency-Token" in response["headers"], (path, method, status)
    listed = document["paths"][USERS]["get"]["parameters"]
    assert ("header", "X-Consistency-Token") in {(p["in"], p["name"]) for p in listed}
    headers = document["components"]["headers"]
    # Required where the service always sends them; `Link` only with a next page.
    for name in ("ETag", "Location", "Retry-After", "WWW-Authenticate"):
        assert headers[name]["required"] is True, name
    assert not headers["Link"].get("required", False)


# --- generated once, the same for every app ----------------------------------------


def test_document_is_generated_once_and_the_same_for_every_app(
    document: dict[str, Any],
) -> None:
    app = create_app(_settings())
    assert app.openapi() is app.openapi()
    assert json.dumps(app.openapi()) == json.dumps(document)


# --- a generated client ------------------------------------------------------------

CLIENT_PACKAGE = "generated_users_api_client"


@pytest.fixture
async def client_package(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A client package generated from the app's `/openapi.json`, importable by the
    name this returns; forgotten afterwards."""
    served = await client.get("/openapi.json")
    assert served.status_code == 200
    source = tmp_path / "openapi.json"
    source.write_bytes(served.content)
    config = Config.from_sources(
        config_file=ConfigFile(package_name_override=CLIENT_PACKAGE, post_hooks=[]),
        meta_type=MetaType.NONE,
        document_source=source,
        file_encoding="utf-8",
        overwrite=False,
        output_path=tmp_path / CLIENT_PACKAGE,
    )
    # Warnings too: an operation or response the generator cannot read is left out.
    problems = generate(config=config)
    assert not problems, [(problem.header, problem.detail) for problem in problems]
    monkeypatch.syspath_prepend(str(tmp_path))
    yield CLIENT_PACKAGE
    for name in list(sys.modules):
        if name == CLIENT_PACKAGE or name.startswith(f"{CLIENT_PACKAGE}."):
            del sys.modules[name]


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


async def test_a_generated_client_registers_logs_in_and_reads_back(
    app: FastAPI, client_package: str
) -> None:
    """The round trip a client application starts with, through the generated async
    client over the app in process: its requests, its models, its auth header."""
    client_module = _module(client_package, "client")
    models = _module(client_package, "models")
    create_user = _module(client_package, "api.users.create_user")
    get_user = _module(client_package, "api.users.get_user")
    get_current_user = _module(client_package, "api.users.get_current_user")
    log_in = _module(client_package, "api.auth.log_in")

    def in_process() -> dict[str, Any]:
        return {"transport": httpx.ASGITransport(app=app)}

    async with client_module.Client(base_url=BASE_URL, httpx_args=in_process()) as anonymous:
        created = await create_user.asyncio_detailed(
            client=anonymous, body=models.UserCreate.from_dict(user_examples.NEW_USER)
        )
        assert created.status_code == 201, created.content
        user = created.parsed
        assert isinstance(user, models.UserOut)
        assert created.headers["location"] == f"{USERS}/{user.id}"
        assert created.headers["etag"] == f'"{user.version}"'
        tokens = await log_in.asyncio(
            client=anonymous, body=models.LoginForm.from_dict(auth_examples.LOGIN)
        )
        assert isinstance(tokens, models.TokenResponse), tokens

    async with client_module.AuthenticatedClient(
        base_url=BASE_URL, token=tokens.access_token, httpx_args=in_process()
    ) as signed_in:
        read = await get_user.asyncio(user_id=user.id, client=signed_in)
        assert isinstance(read, models.UserOut)
        assert read.to_dict() == user.to_dict()
        assert (await get_current_user.asyncio(client=signed_in)).to_dict() == user.to_dict()
        missing = await get_user.asyncio(user_id=uuid.uuid4(), client=signed_in)
        assert isinstance(missing, models.Problem)
        assert missing.status == 404

    # The examples show what the service answers: the same members, the same values
    # where they are not the server's to choose.
    shown = dict(user_examples.USER)
    answered = user.to_dict()
    assert set(answered) == set(shown)
    for chosen_by_the_server in ("id", "created_at", "updated_at"):
        del answered[chosen_by_the_server], shown[chosen_by_the_server]
    assert answered == shown
