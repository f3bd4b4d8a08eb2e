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

from collections.abc import Mapping
from functools import cache
from typing import Any

from scim2_models import EnterpriseUser, Group, ResourceType, User

from users_api.scim.errors import invalid_value

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
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


# --- what a kept attribute may hold -------------------------------------------------

# The JSON a value of each SCIM type is (RFC 7643 2.3); a boolean is no integer.
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "reference": str,
    "binary": str,
    "dateTime": str,
    "boolean": bool,
    "integer": int,
    "decimal": (int, float),
    "complex": dict,
}


@cache
def _described() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The User's and the enterprise extension's attributes as `/Schemas` gives them, by
    lower-cased name."""
    user, enterprise = _schemas(False)[:2]
    return (
        {attribute["name"].lower(): attribute for attribute in user["attributes"]},
        {attribute["name"].lower(): attribute for attribute in enterprise["attributes"]},
    )


def check_kept(kept: Mapping[str, Any]) -> None:
    """Refuse (400 invalidValue) a kept attribute that `/Schemas` does not describe: a
    sub-attribute it does not list (`name.bogus`), or a value of another type (`title`
    as an object). What is stored is then what `/Schemas` says is."""
    core, extension = _described()
    for name, value in kept.items():
        if name == ENTERPRISE_SCHEMA:
            if not isinstance(value, dict):
                raise invalid_value(f"{ENTERPRISE_SCHEMA} must be an object.")
            for key, sub_value in value.items():
                attribute = extension.get(key.lower())
                if attribute is None:
                    raise invalid_value(f"{key} is not an attribute of {ENTERPRISE_SCHEMA}.")
                _check(attribute, sub_value, key)
        else:
            _check(core[name.lower()], value, name)


def _check(attribute: dict[str, Any], value: Any, where: str) -> None:
    if attribute.get("multiValued"):
        if value is None:
            return
        if not isinstance(value, list):
            raise invalid_value(f"{where} is multi-valued: a list.")
        for item in value:
            _check_one(attribute, item, where)
    else:
        _check_one(attribute, value, where)


def _check_one(attribute: dict[str, Any], value: Any, where: str) -> None:
    if value is None:
        return
    kind = attribute["type"]
    expected = _JSON_TYPES.get(kind, object)
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        raise invalid_value(f"{where} must be a {kind}.")
    if isinstance(value, dict):  # a complex value
        subs = {sub["name"].lower(): sub for sub in attribute.get("subAttributes", [])}
        for key, sub_value in value.items():
            sub = subs.get(key.lower())
            if sub is None:
                raise invalid_value(f"{key} is not a sub-attribute of {where}.")
            _check_one(sub, sub_value, f"{where}.{sub['name']}")
