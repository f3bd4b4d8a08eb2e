"""Examples of the groups bodies for the OpenAPI document: valid against their schemas
and models (`tests/groups/test_routes.py` checks each)."""

from __future__ import annotations

from typing import Any

from users_api.users import examples as user_examples

GROUP_ID = "0193a8f2-51c4-7d0e-8b3a-2c6f9e1d4a57"

NEW_GROUP: dict[str, Any] = {"display_name": "Engineering", "external_id": "eng-042"}

GROUP: dict[str, Any] = {
    "id": GROUP_ID,
    "display_name": "Engineering",
    "external_id": "eng-042",
    "created_at": "2026-11-22T10:00:00Z",
    "updated_at": "2026-11-22T10:00:00Z",
    "version": 1,
    "member_count": 0,
}

CHANGE: dict[str, Any] = {"display_name": "Platform Engineering"}

CHANGED_GROUP: dict[str, Any] = GROUP | {
    "display_name": "Platform Engineering",
    "updated_at": "2026-11-23T09:30:00Z",
    "version": 2,
}

PAGE: dict[str, Any] = {
    "items": [GROUP],
    # What the service makes for the page after `GROUP`.
    "next_cursor": "eyJzIjoiaWQiLCJrIjoiMDE5M2E4ZjItNTFjNC03ZDBlLThiM2EtMmM2ZjllMWQ0YTU3IiwiaSI6"
    "IjAxOTNhOGYyLTUxYzQtN2QwZS04YjNhLTJjNmY5ZTFkNGE1NyJ9",
}

# A page of users, as the users list shows them (a null would vanish from the document).
MEMBERS: dict[str, Any] = user_examples.PAGE

USER_GROUPS: dict[str, Any] = {"items": [GROUP | {"member_count": 1}]}
