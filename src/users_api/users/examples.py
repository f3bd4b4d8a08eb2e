"""Examples of the users bodies for the OpenAPI document: short, realistic, and valid
against their schemas and models (`tests/test_openapi.py` checks each)."""

from __future__ import annotations

from typing import Any

USER_ID = "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e"
# Strong enough for the password policy, and not one a real user would choose.
PASSWORD = "velvet-harbor-quill-42"  # noqa: S105  # an example in the documentation

NEW_USER: dict[str, Any] = {
    "email": "ada@example.com",
    "username": "ada",
    "password": PASSWORD,
    "full_name": "Ada Lovelace",
}

USER: dict[str, Any] = {
    "id": USER_ID,
    "email": "ada@example.com",
    "username": "ada",
    "full_name": "Ada Lovelace",
    "is_active": True,
    "is_admin": False,
    "email_verified": False,
    "mfa_enabled": False,
    "created_at": "2026-11-22T10:00:00Z",
    "updated_at": "2026-11-22T10:00:00Z",
    "version": 1,
}

CHANGE: dict[str, Any] = {"full_name": "Augusta Ada King"}

CHANGED_USER: dict[str, Any] = USER | {
    "full_name": "Augusta Ada King",
    "updated_at": "2026-11-23T09:30:00Z",
    "version": 2,
}

PAGE: dict[str, Any] = {
    "items": [USER],
    # What the service makes for the page after `USER` in the default sort (`id`).
    "next_cursor": "eyJzIjoiaWQiLCJrIjoiMDE5MGYwYzgtN2EzZS03YjZjLTlkMmUtNGY1YTZiN2M4ZDllIiwiaSI6"
    "IjAxOTBmMGM4LTdhM2UtN2I2Yy05ZDJlLTRmNWE2YjdjOGQ5ZSJ9",
}
