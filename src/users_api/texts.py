"""Text PostgreSQL can store: its `text` and `jsonb` cannot hold a NUL character, and a
value that holds one failed in the database as a 500. Every front refuses it first: the
REST bodies with `NO_NUL` and `NO_NUL_PATTERN` (a 422 that the OpenAPI document shows as a
pattern), SCIM documents with `holds_nul` (a 400)."""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, Field


def refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NO_NUL = AfterValidator(refuse_nul)
NO_NUL_PATTERN = Field(json_schema_extra={"pattern": "^[^\\x00]*$"})


def holds_nul(document: Any) -> bool:
    """Whether a string anywhere in a JSON document (a key or a value) holds a NUL."""
    if isinstance(document, str):
        return "\x00" in document
    if isinstance(document, dict):
        return any(holds_nul(key) or holds_nul(value) for key, value in document.items())
    if isinstance(document, list):
        return any(holds_nul(item) for item in document)
    return False
