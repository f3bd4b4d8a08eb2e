"""Bodies that are JSON merge patches (RFC 7396): the one rule for a field that may be
left out but never sent as null, for every resource's patch (users, groups, webhooks).

In Python such a field's type is `X | None`, None standing for "absent", which keeps
validation errors on the field itself. A null sent is refused (`refuse_null`), and the
OpenAPI document drops the null alternative (`document_absent_not_null`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def document_absent_not_null(*names: str) -> Callable[[dict[str, Any]], None]:
    """A model's `json_schema_extra`: the fields `names` may be left out but never sent as
    null, so the document gives them no default and no null alternative."""

    def document(schema: dict[str, Any]) -> None:
        for name in names:
            field = schema["properties"][name]
            field.pop("default", None)
            alternatives = [alt for alt in field.pop("anyOf", []) if alt.get("type") != "null"]
            if len(alternatives) == 1:
                field.update(alternatives[0])

    return document


def refuse_null(value: Any) -> Any:
    """A `mode="before"` field validator for those fields: null is refused, not read as
    "absent" (`field_validator(*names, mode="before")(refuse_null)`)."""
    if value is None:
        raise ValueError("may not be null")
    return value
