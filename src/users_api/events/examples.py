"""Examples of the audit bodies for the OpenAPI document."""

from __future__ import annotations

from typing import Any

EVENT: dict[str, Any] = {
    "id": "0193a1b2-7c4d-7e5f-8a6b-9c0d1e2f3a4b",
    "type": "user.updated",
    "occurred_at": "2026-11-23T09:30:00Z",
    "actor": {"type": "user", "id": "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e"},
    "subject": {"type": "user", "id": "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e"},
    "request_id": "5f0c6f0e2d1b4a39b8a7c6d5e4f3a2b1",
    "ip_address": "203.0.113.7",
    "data": {"fields": ["full_name"]},
}

PAGE: dict[str, Any] = {
    "items": [EVENT],
    # What the service makes for the page after `EVENT`.
    "next_cursor": (
        "eyJ0IjoiMjAyNi0xMS0yM1QwOTozMDowMCswMDowMCIsImkiOiIwMTkzYTFiMi03YzRkLTdlNWYtOGE2Yi05YzBkMWUyZjNhNGIifQ"
    ),
}
