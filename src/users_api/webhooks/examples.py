"""Examples for the OpenAPI document of the webhook endpoints."""

from __future__ import annotations

from typing import Any

ENDPOINT_ID = "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9f"
EVENT_ID = "0190f0c8-8b1f-7c2d-8e3f-5a6b7c8d9e0f"

CREATE: dict[str, Any] = {
    "url": "https://hooks.example.com/users-api",
    "events": ["user.created", "user.deleted", "group.*"],
    "description": "The CRM",
}
ENDPOINT: dict[str, Any] = {
    "id": ENDPOINT_ID,
    "url": "https://hooks.example.com/users-api",
    "events": ["user.created", "user.deleted", "group.*"],
    "description": "The CRM",
    "enabled": True,
    "created_at": "2026-12-04T10:00:00Z",
    "updated_at": "2026-12-04T10:00:00Z",
    "version": 1,
}
CREATED: dict[str, Any] = ENDPOINT | {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
LIST: dict[str, Any] = {"items": [ENDPOINT]}
CHANGE: dict[str, Any] = {"enabled": False}
DELIVERIES: dict[str, Any] = {
    "items": [
        {
            "id": 2,
            "event_id": EVENT_ID,
            "attempt": 2,
            "status_code": 200,
            "error": None,
            "attempted_at": "2026-12-04T10:00:06Z",
            "next_retry_at": None,
        },
        {
            "id": 1,
            "event_id": EVENT_ID,
            "attempt": 1,
            "status_code": 503,
            "error": "HTTP 503",
            "attempted_at": "2026-12-04T10:00:01Z",
            "next_retry_at": "2026-12-04T10:00:06Z",
        },
    ]
}
RETRY: dict[str, Any] = {"endpoint_id": ENDPOINT_ID, "event_id": EVENT_ID}
