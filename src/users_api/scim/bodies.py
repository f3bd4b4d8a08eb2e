"""A resource body's core attributes, wherever a client put them.

RFC 7644 3.10 lets a client name an attribute with its schema's URN in front
(`urn:ietf:params:scim:schemas:core:2.0:User:userName`), and some clients and testers
send the core attributes as one object under the core schema's URN, the way extension
attributes are sent. Both are brought to the top level before the body is read, so they
are not dropped as an unknown extension (which made a present `userName` "required").
"""

from __future__ import annotations

from typing import Any


def lifted(resource: dict[str, Any], schema: str) -> dict[str, Any]:
    """`resource` with the core `schema`'s attributes at the top level; an attribute sent
    at the top level too wins over its qualified or nested copy."""
    prefix = schema.lower() + ":"
    nested: dict[str, Any] = {}
    qualified: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    for key, value in resource.items():
        lowered = key.lower()
        if lowered == schema.lower() and isinstance(value, dict):
            nested.update(value)
        elif lowered.startswith(prefix) and len(key) > len(prefix):
            qualified[key[len(prefix) :]] = value
        else:
            plain[key] = value
    if not nested and not qualified:
        return resource
    return {**nested, **qualified, **plain}
