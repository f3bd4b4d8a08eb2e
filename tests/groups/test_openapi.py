"""The Groups operations in the OpenAPI document: ids, examples, headers, problems."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_openapi import _settings, operations
from tests.test_operations import resolve
from users_api.app import create_app
from users_api.groups import examples
from users_api.groups.schemas import GroupCreate, GroupList, GroupOut, GroupPage, GroupUpdate
from users_api.users.schemas import UserPage

GROUP = "/api/v1/groups/{group_id}"
MEMBER = "/api/v1/groups/{group_id}/members/{user_id}"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(_settings()).openapi()


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


def test_operation_ids(document: dict[str, Any]) -> None:
    ids = {
        (path, method): operation["operationId"] for path, method, operation in operations(document)
    }
    assert {
        ("/api/v1/groups", "post"): "createGroup",
        ("/api/v1/groups", "get"): "listGroups",
        (GROUP, "get"): "getGroup",
        (GROUP, "patch"): "updateGroup",
        (GROUP, "delete"): "deleteGroup",
        (f"{GROUP}/members", "get"): "listGroupMembers",
        (MEMBER, "put"): "addGroupMember",
        (MEMBER, "delete"): "removeGroupMember",
        ("/api/v1/users/{user_id}/groups", "get"): "listUserGroups",
    }.items() <= ids.items()


def test_bodies_have_examples_and_responses_are_documented(document: dict[str, Any]) -> None:
    found = 0
    for path, method, operation in operations(document):
        if not (path.startswith("/api/v1/groups") or path.endswith("/groups")):
            continue
        found += 1
        assert operation["tags"] == ["groups"]
        for media in operation.get("requestBody", {}).get("content", {}).values():
            assert "example" in media, (path, method)
        statuses = set(operation["responses"])
        assert {"401", "422", "500", "503"} <= statuses, (path, method)
        if path != "/api/v1/users/{user_id}/groups":
            assert "403" in statuses, (path, method)
        for status, response in operation["responses"].items():
            if int(status) < 300:
                for media in resolve(document, response).get("content", {}).values():
                    assert "example" in media, (path, method, status)
    assert found == 9


def test_headers(document: dict[str, Any]) -> None:
    def headers(path: str, method: str, status: str) -> set[str]:
        response = resolve(document, _operation(document, path, method)["responses"][status])
        return set(response.get("headers", {}))

    assert {"Location", "ETag"} <= headers("/api/v1/groups", "post", "201")
    assert "Link" in headers("/api/v1/groups", "get", "200")
    assert "Link" in headers(f"{GROUP}/members", "get", "200")
    assert "ETag" in headers(GROUP, "get", "200")
    assert "ETag" in headers(GROUP, "get", "304")
    assert "ETag" in headers(GROUP, "patch", "200")
    assert "412" in _operation(document, GROUP, "patch")["responses"]
    assert "409" in _operation(document, GROUP, "patch")["responses"]
    assert "412" in _operation(document, GROUP, "delete")["responses"]


def test_examples_are_what_the_service_takes_and_gives() -> None:
    assert GroupCreate.model_validate(examples.NEW_GROUP).model_dump() == examples.NEW_GROUP
    GroupUpdate.model_validate(examples.CHANGE)
    for group in (examples.GROUP, examples.CHANGED_GROUP):
        assert GroupOut.model_validate(group).model_dump(mode="json") == group
    assert GroupPage.model_validate(examples.PAGE).model_dump(mode="json") == examples.PAGE
    assert UserPage.model_validate(examples.MEMBERS).model_dump(mode="json") == examples.MEMBERS
    listed = GroupList.model_validate(examples.USER_GROUPS).model_dump(mode="json")
    assert listed == examples.USER_GROUPS
