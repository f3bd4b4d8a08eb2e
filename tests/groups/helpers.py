"""Shared helpers for the Groups tests."""

from __future__ import annotations

from typing import Any

import httpx

GROUPS = "/api/v1/groups"
GROUP_KEYS = {
    "id",
    "display_name",
    "external_id",
    "created_at",
    "updated_at",
    "version",
    "member_count",
}


def group_url(group_id: str, suffix: str = "") -> str:
    return f"{GROUPS}/{group_id}{suffix}"


async def create_group(
    client: httpx.AsyncClient, display_name: str = "Engineering", **fields: Any
) -> dict[str, Any]:
    """POST a valid group and return its body; fails the test unless it is a 201."""
    response = await client.post(GROUPS, json={"display_name": display_name, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
