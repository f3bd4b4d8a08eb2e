"""What `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` say, built once.

The schema documents come from scim2-models' RFC 7643 models (`to_schema`), then say
what this service stores where it differs from them: `emails` is required (every user
has an email), `password` is never returned, a group's `displayName` is unique (409), a
member's `display` is not stored (members are users, by id), a manager is kept as sent
(neither of its sub-attributes is required), and `active` is required: a create may
leave it out (the user is then active), but a user is never without it, so it cannot
be removed (scim2-tester checks that a PATCH removes whatever is not required).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scim2_models import EnterpriseUser, Group, ResourceType, User

from users_api.scim.mapping import ENTERPRISE_SCHEMA, USER_SCHEMA

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_RESULTS = 1000


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return dumped


def _location(document: dict[str, Any], base_url: str, kind: str) -> dict[str, Any]:
    return {
        **document,
        "meta": {"resourceType": kind, "location": f"{base_url}/{kind}s/{document['id']}"},
    }


@cache
def _schemas(with_groups: bool) -> tuple[dict[str, Any], ...]:
    user = _dump(User.to_schema())
    for attribute in user["attributes"]:
        if attribute["name"] == "emails":
            attribute["required"] = True
            for sub in attribute.get("subAttributes", []):
                if sub["name"] == "value":
                    sub["required"] = True
        if attribute["name"] == "password":
            attribute["returned"] = "never"
            attribute["mutability"] = "writeOnly"
        if attribute["name"] == "active":
            attribute["required"] = True  # every user is active or not: never absent
    enterprise = _dump(EnterpriseUser.to_schema())
    for attribute in enterprise["attributes"]:
        if attribute["name"] == "manager":
            for sub in attribute.get("subAttributes", []):
                sub["required"] = False
    documents = [user, enterprise]
    if with_groups:
        group = _dump(Group.to_schema())
        for attribute in group["attributes"]:
            if attribute["name"] == "displayName":
                attribute["uniqueness"] = "server"  # a taken one is 409 uniqueness
            for sub in attribute.get("subAttributes", []):
                if attribute["name"] == "members" and sub["name"] == "display":
                    sub["mutability"] = "readOnly"  # not stored: members are users, by id
        documents.append(group)
    return tuple(documents)


def schemas(base_url: str, *, with_groups: bool) -> list[dict[str, Any]]:
    return [_location(document, base_url, "Schema") for document in _schemas(with_groups)]


def resource_types(base_url: str, *, with_groups: bool) -> list[dict[str, Any]]:
    documents = [_dump(ResourceType.from_resource(User[EnterpriseUser]))]
    if with_groups:
        documents.append(_dump(ResourceType.from_resource(Group)))
    return [_location(document, base_url, "ResourceType") for document in documents]


def service_provider_config(base_url: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": True},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Provisioning token",
                "description": "A token made with `users-api scim-token create`, "
                "sent as `Authorization: Bearer <token>`.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        },
    }


__all__ = ["ENTERPRISE_SCHEMA", "GROUP_SCHEMA", "USER_SCHEMA"]
