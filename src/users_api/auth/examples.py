"""Examples of the authentication bodies for the OpenAPI document (see
`users/examples.py`); the tokens are made up, in the shape the service issues."""

from __future__ import annotations

from typing import Any

from users_api.users.examples import PASSWORD

LOGIN: dict[str, Any] = {"username": "ada", "password": PASSWORD}

_REFRESH_TOKEN = "vQ3m8Zq1Xw7LrT5nK0bYc2HdJ9sFgE4aP6uWiO-yRtM"  # noqa: S105  # made up
REFRESH: dict[str, Any] = {"refresh_token": _REFRESH_TOKEN}

TOKENS: dict[str, Any] = {
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIwMTkwZjBjOC03YTNlLTdiNmMtOWQyZS00ZjVhNmI3YzhkOWUifQ."
    "3q2-7wVYp0Rk1eZl8mXn4sCj6TgHbUa9dQfK5oLiNrE",
    "token_type": "bearer",
    "expires_in": 900,
    "refresh_token": "Jd8sP2kL5wQ9nX3vB7mR1tY6cF0hG4aZ-eUiOoNqWbE",
}

SESSIONS: dict[str, Any] = {
    "items": [
        {
            "id": "0193a1f2-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
            "created_at": "2026-12-01T08:00:00Z",
            "last_used_at": "2026-12-04T09:15:00Z",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            "ip_address": "203.0.113.7",
            "current": True,
        }
    ]
}
MFA_VERIFY: dict[str, Any] = {"mfa_token": "mfa_3q2Vx0Yc9rKp7tF1hWdJ8sLbNe4u", "code": "492039"}
