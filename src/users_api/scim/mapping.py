"""A SCIM User (RFC 7643 4.1) and the users table, both ways.

`userName` is `username`, `name.formatted` is `full_name` (made from `givenName` and
`familyName` when absent), the primary email (or the first `work` one, or the first) is
`email`, `active` is `is_active`, `externalId` is `external_id`. Every other core
attribute the schema lists (and the enterprise extension) is kept as sent in the `scim`
column and returned as sent. `password` is hashed by the service, never returned.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from users_api.scim.bodies import lifted
from users_api.scim.discovery import ENTERPRISE_SCHEMA, USER_SCHEMA, check_kept
from users_api.scim.errors import ScimError, invalid_value, mutability
from users_api.scim.patch import Shape
from users_api.timestamps import rfc3339
from users_api.users.schemas import ProvisionedUpdate, ProvisionedUser

# Multi-valued core attributes kept as sent: lists of objects, each maybe `primary`.
MULTI_VALUED = (
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
)
# Single-valued string core attributes kept as sent (filters compare them as text).
KEPT_STRINGS = (
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
)
# Core attributes kept as sent (their canonical spelling; SCIM names are case-insensitive).
KEPT = (
    "name",
    *KEPT_STRINGS,
    *MULTI_VALUED,
    ENTERPRISE_SCHEMA,
)
# In `users.scim` beside the kept attributes (no SCIM name starts with `$` but `$ref`):
# the kept emails' values, lower-cased, indexed (`ix_users_scim_email_values`).
EMAIL_VALUES = "$emails"
MAPPED = ("userName", "active", "externalId", "password")
READ_ONLY = ("id", "meta", "groups", "schemas")
CANONICAL = {name.lower(): name for name in (*KEPT, *MAPPED, *READ_ONLY)}
NAME_PARTS = (
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
)
_NAME_CANONICAL = {part.lower(): part for part in NAME_PARTS}
# The sub-attributes of the multi-valued ones (RFC 7643 4.1.2; `addresses` has its own).
_SUB_CANONICAL = {
    sub.lower(): sub
    for sub in (
        "value",
        "display",
        "type",
        "primary",
        "$ref",
        "formatted",
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
    )
}


def canonical(name: str) -> str | None:
    """The schema's spelling of a top-level attribute name, or None (not in the schema)."""
    return CANONICAL.get(name.lower())


def as_bool(value: Any, attribute: str) -> bool:
    """A SCIM boolean; the string forms some clients send (`"False"`) too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_value(f"{attribute} must be a boolean.")


def normalize(resource: Any) -> dict[str, Any]:
    """The attributes of a User body under their canonical names; unknown ones refused."""
    if not isinstance(resource, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    result: dict[str, Any] = {}
    for key, value in lifted(resource, USER_SCHEMA).items():
        name = canonical(key)
        if name is None:
            if key.lower().startswith("urn:"):  # an extension schema the service keeps none of
                continue
            raise invalid_value(f"{key} is not an attribute of {USER_SCHEMA}.")
        if name == "name" and isinstance(value, dict):
            value = {_NAME_CANONICAL.get(part.lower(), part): sub for part, sub in value.items()}
        elif name in MULTI_VALUED and isinstance(value, list):
            value = [_canonical_subs(item) for item in value]
        result[name] = value
    return result


def _canonical_subs(item: Any) -> Any:
    """An element of a multi-valued attribute with its sub-attributes under the schema's
    names: `{"Value": …, "Type": "work"}` is `{"value": …, "type": "work"}` (RFC 7643 2.1)."""
    if not isinstance(item, dict):
        return item
    return {_SUB_CANONICAL.get(key.lower(), key): sub for key, sub in item.items()}


def formatted_follows_parts(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`after` (a patched User) with a `name.formatted` the service had made from the
    name's parts made again from its new parts: a PATCH of `name.givenName` alone left
    the old full name in place."""
    old, new = before.get("name"), after.get("name")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return after
    made = old.get("formatted") == _joined_parts(old)
    if (
        made
        and new.get("formatted") == old.get("formatted")
        and _joined_parts(new) != _joined_parts(old)
    ):
        return {**after, "name": {k: v for k, v in new.items() if k != "formatted"}}
    return after


def _joined_parts(name: dict[str, Any]) -> str | None:
    parts = [name.get("givenName"), name.get("familyName")]
    return " ".join(part for part in parts if isinstance(part, str) and part) or None


def _primary_email(emails: Any) -> str | None:
    """The email the users table keeps: the primary, or the first `work` one, or the first."""
    if emails is None:
        return None
    if not isinstance(emails, list) or not all(isinstance(email, dict) for email in emails):
        raise invalid_value("emails must be a list of objects.")
    with_value = [email for email in emails if isinstance(email.get("value"), str)]
    primary = [email for email in with_value if email.get("primary") in (True, "true", "True")]
    work = [email for email in with_value if str(email.get("type", "")).lower() == "work"]
    for candidates in (primary, work, with_value):
        if candidates:
            value: str = candidates[0]["value"]
            return value
    return None


def _full_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, dict):
        raise invalid_value("name must be an object.")
    formatted = name.get("formatted")
    if isinstance(formatted, str) and formatted:
        return formatted
    return _joined_parts(name)


def _kept(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes kept as sent, with the forms clients send made the schema's: a
    `primary` sent as `"True"` is a boolean, and true on the first such value only (RFC
    7643 2.4); Entra's manager (`"value": "<id>"`, or a list of one) is `{"value": id}`."""
    kept = {name: resource[name] for name in KEPT if resource.get(name) not in (None, {}, [])}
    for name in MULTI_VALUED:
        values = kept.get(name)
        if isinstance(values, list):
            kept[name] = _primaries(values)
    enterprise = kept.get(ENTERPRISE_SCHEMA)
    if isinstance(enterprise, dict):
        # A client built on scim2-models writes the extension's own `schemas` inside it.
        enterprise = _with_manager({k: v for k, v in enterprise.items() if k.lower() != "schemas"})
        if enterprise:
            kept[ENTERPRISE_SCHEMA] = enterprise
        else:
            del kept[ENTERPRISE_SCHEMA]
    check_kept(kept)
    return kept or None


def _primaries(values: list[Any]) -> list[Any]:
    seen = False
    result = []
    for value in values:
        if isinstance(value, dict):
            key = next((k for k in value if k.lower() == "primary"), None)
            if key is not None:
                flag = as_bool(value[key], "primary") and not seen
                seen = seen or flag
                value = {**value, key: flag}
        result.append(value)
    return result


def _with_manager(enterprise: dict[str, Any]) -> dict[str, Any]:
    key = next((k for k in enterprise if k.lower() == "manager"), None)
    if key is None:
        return enterprise
    manager = enterprise[key]
    if isinstance(manager, list):
        manager = manager[0] if manager else None
    if isinstance(manager, str):
        manager = {"value": manager} if manager else None
    if manager is None or (isinstance(manager, dict) and not manager.get("value")):
        return {k: v for k, v in enterprise.items() if k != key}  # no manager
    if not isinstance(manager, dict):
        raise invalid_value("manager must be an object with a value.")
    # `displayName` is read-only (RFC 7643 4.3): what a client sends of it is ignored.
    manager = {k: v for k, v in manager.items() if k.lower() != "displayname"}
    return {**enterprise, key: manager}


def _fields(resource: dict[str, Any]) -> dict[str, Any]:
    """The service's fields of a normalized User body (what PUT and POST send)."""
    user_name = resource.get("userName")
    if not isinstance(user_name, str) or not user_name:
        raise invalid_value("userName is required.")
    email = _primary_email(resource.get("emails"))
    if email is None:
        raise invalid_value("emails is required: every user has an email.")
    external_id = resource.get("externalId")
    if external_id is not None and not isinstance(external_id, str):
        raise invalid_value("externalId must be a string.")
    fields: dict[str, Any] = {
        "email": email,
        "username": user_name,
        "full_name": _full_name(resource.get("name")),
        "external_id": external_id or None,
        "scim": _kept(resource),
    }
    if fields["scim"] is not None and isinstance(fields["scim"].get("emails"), list):
        # Every kept address, lower-cased: what the index of Entra's email filter holds.
        values = {str(e.get("value")).lower() for e in fields["scim"]["emails"] if e.get("value")}
        fields["scim"][EMAIL_VALUES] = sorted(values)
    if "active" in resource and resource["active"] is not None:
        fields["is_active"] = as_bool(resource["active"], "active")
    password = resource.get("password")
    if password is not None:
        if not isinstance(password, str):
            raise invalid_value("password must be a string.")
        fields["password"] = password
    return fields


def _validated(
    model: type[ProvisionedUser] | type[ProvisionedUpdate], fields: dict[str, Any]
) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = {"username": "userName", "email": "emails", "full_name": "name.formatted"}
        field = str(first["loc"][0]) if first["loc"] else "the user"
        name = where.get(field, field)
        raise invalid_value(f"{name}: {first['msg']}") from None


def to_new_user(resource: Any) -> ProvisionedUser:
    """A POSTed User, as the service creates it."""
    fields = _fields(normalize(resource))
    created: ProvisionedUser = _validated(ProvisionedUser, fields)
    return created


def to_replacement(resource: Any, current: dict[str, Any]) -> ProvisionedUpdate:
    """A PUT User (or a patched one), as the service changes it: every attribute is
    replaced; `id` and `meta` are read-only and may only be sent unchanged."""
    normalized = normalize(resource)
    sent_id = normalized.get("id")
    if sent_id is not None and str(sent_id) != str(current["id"]):
        raise mutability("id is read-only.")
    fields = _fields(normalized)
    changed: ProvisionedUpdate = _validated(ProvisionedUpdate, fields)
    return changed


def to_resource(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A user row (public fields, `external_id`, `scim`) as a SCIM User."""
    kept: dict[str, Any] = dict(row.get("scim") or {})
    kept.pop(EMAIL_VALUES, None)
    resource: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": str(row["id"])}
    if ENTERPRISE_SCHEMA in kept:
        resource["schemas"].append(ENTERPRISE_SCHEMA)
    if row.get("external_id") is not None:
        resource["externalId"] = row["external_id"]
    resource["userName"] = row["username"]
    name = dict(kept.pop("name", None) or {})
    if row["full_name"] is not None:
        name["formatted"] = row["full_name"]
    else:
        name.pop("formatted", None)
    if name:
        resource["name"] = name
    emails = [dict(email) for email in kept.pop("emails", None) or []]
    chosen = _chosen_index(emails)
    if chosen is None:
        emails = [{"value": row["email"], "type": "work", "primary": True}]
    else:
        emails[chosen]["value"] = row["email"]
    resource["emails"] = emails
    resource["active"] = row["is_active"]
    resource.update(kept)
    if row.get("groups"):
        resource["groups"] = [
            {
                "value": str(group_id),
                "display": display_name,
                "type": "direct",
                "$ref": f"{base_url}/Groups/{group_id}",
            }
            for group_id, display_name in row["groups"]
        ]
    resource["meta"] = {
        "resourceType": "User",
        "created": rfc3339(row["created_at"]),
        "lastModified": rfc3339(row["updated_at"]),
        "location": f"{base_url}/Users/{row['id']}",
        "version": etag(row["tag"]),  # the user's with its groups (`scim.users.tag`)
    }
    return resource


def _chosen_index(emails: list[dict[str, Any]]) -> int | None:
    """Which kept email is the users table's (`_primary_email`'s choice), by position."""
    chosen = _primary_email(emails) if emails else None
    if chosen is None:
        return None
    return next(index for index, email in enumerate(emails) if email.get("value") == chosen)


def etag(version: int) -> str:
    return f'W/"{version}"'


# What a User PATCH may touch.
USER_SHAPE = Shape(
    canonical=canonical,
    read_only=frozenset({"id", "meta", "groups", "schemas"}),
    core_schema=USER_SCHEMA,
    extensions=(ENTERPRISE_SCHEMA,),
)
