"""What `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` say, built once.

The schema documents come from scim2-models' RFC 7643 models (`to_schema`), then say
what this service stores where it differs from the RFC's defaults: `emails` is required
(every user has an email), `active` too (a user is active or not, never neither),
`password` is never returned, and a member's `display` is not stored (members are users, by id).
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
    documents = [user, _dump(EnterpriseUser.to_schema())]
    if with_groups:
        group = _dump(Group.to_schema())
        for attribute in group["attributes"]:
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
