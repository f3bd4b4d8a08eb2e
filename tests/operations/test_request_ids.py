"""The request id in every log line of its request, and the request's own line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests.conftest import asgi_client
from tests.test_errors import UNREACHABLE
from users_api import logs
from users_api.app import create_app
from users_api.config import Settings


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Logging as a served worker sets it up (JSON at info), into a buffer; put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = structlog.get_config()
    stream = io.StringIO()
    logs.configure_logging("info", "json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers, root.level = handlers, level
        structlog.configure(**saved)
        logs._json_handler = None


def _events(stream: io.StringIO) -> list[dict[str, Any]]:
    """The service's lines (not the test client's own, logged after each answer)."""
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [event for event in events if event["logger"] != "httpx"]


async def test_every_line_of_a_request_carries_its_id(
    settings: Settings, log_lines: io.StringIO
) -> None:
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE}))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        log_lines.truncate(0)
        log_lines.seek(0)
        response = await client.post(
            "/api/v1/auth/token",
            data={"username": "ada", "password": "whatever it is"},
            headers={"X-Request-ID": "trace-me.1"},
        )
        assert response.status_code == 503
        assert response.json()["request_id"] == "trace-me.1"
        events = _events(log_lines)
    assert len(events) >= 2, events  # the database's complaint, then the request's line
    assert all(event.get("request_id") == "trace-me.1" for event in events), events
    (line,) = [event for event in events if event["logger"] == "users_api.requests"]
    assert line["event"] == "request failed"
    assert line["route"] == "/api/v1/auth/token"
    assert line["status"] == 503


async def test_each_request_is_one_line_at_info(settings: Settings, log_lines: io.StringIO) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        log_lines.truncate(0)
        log_lines.seek(0)
        await client.get("/healthz?secret=query-never-logged", headers={"X-Request-ID": "one"})
        await client.get("/no/such/thing")
        events = _events(log_lines)
    first, second = events
    assert first == {
        "timestamp": first["timestamp"],
        "level": "info",
        "event": "request",
        "logger": "users_api.requests",
        "method": "GET",
        "route": "/healthz",
        "path": "/healthz",
        "status": 200,
        "duration_ms": first["duration_ms"],
        "request_id": "one",
        "user_id": None,
    }
    assert first["timestamp"].endswith("Z")
    assert "query-never-logged" not in str(events)
    assert second["route"] is None
    assert second["status"] == 404
    assert second["request_id"] != "one"
    # Outside a request, no id.
    logs.get_logger("test").info("outside")
    assert "request_id" not in _events(log_lines)[-1]
