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
