"""`GET /metrics`: the contract's series, parsed as Prometheus parses them."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from tests.conftest import ADMIN_PASSWORD, Admin, asgi_client, http_scope
from tests.users.helpers import PROBLEM, USERS
from users_api.app import create_app
from users_api.config import Settings

USER_ROUTE = "/api/v1/users/{user_id}"


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for sample in samples(text)
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template_never_by_id(
    admin_client: httpx.AsyncClient, admin: Admin
) -> None:
    before = await scrape(admin_client)
    for _ in range(3):
        assert (await admin_client.get(f"{USERS}/{admin.id}")).status_code == 200
    missing = await admin_client.get(f"{USERS}/{uuid.uuid4()}")
    assert missing.status_code == 404
    after = await scrape(admin_client)

    labels = {"method": "GET", "route": USER_ROUTE}
    moved = value(after, "http_requests_total", **labels, status="200") - value(
        before, "http_requests_total", **labels, status="200"
    )
    assert moved == 3
    assert value(after, "http_requests_total", **labels, status="404") >= 1
    count = "http_request_duration_seconds_count"
    assert (
        value(after, count, **labels, status="200") - value(before, count, **labels, status="200")
        == 3
    )
    assert (
        value(after, "http_request_duration_seconds_bucket", **labels, status="200", le="+Inf") >= 3
    )
    # No label anywhere holds an id: only templates.
    for sample in samples(after):
        assert str(admin.id) not in str(sample.labels), sample
    routes = {s.labels["route"] for s in samples(after) if s.name == "http_requests_total"}
    assert all(route.startswith("/") or route == "unmatched" for route in routes), routes


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    await client.get("/no/such/path/123")
    await client.request("BREW", "/no/such/other")
    text = await scrape(client)
    routes = {s.labels["route"] for s in samples(text) if s.name == "http_requests_total"}
    assert not any("/no/such" in route for route in routes)
    assert value(text, "http_requests_total", route="unmatched", status="404") >= 1
    methods = {s.labels["method"] for s in samples(text) if s.name == "http_requests_total"}
    assert "BREW" not in methods


async def test_logins_hashes_pool_and_outbox_are_series(
    client: httpx.AsyncClient, admin: Admin
) -> None:
    before = await scrape(client)
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": admin.username, "password": "not it at all"}
    )
    assert wrong.status_code == 401
    right = await client.post(
        "/api/v1/auth/token", data={"username": admin.username, "password": ADMIN_PASSWORD}
    )
    assert right.status_code == 200
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("users_api_logins_total", outcome="success") == 1
    assert moved("users_api_logins_total", outcome="invalid-credentials") == 1
    assert moved("users_api_password_hash_seconds_count") >= 2
    assert value(after, "users_api_password_hash_queue") == 0
    assert value(after, "users_api_db_pool_connections", state="in_use") >= 0
    assert value(after, "users_api_db_pool_connections", state="idle") >= 1
    assert value(after, "users_api_db_pool_connections", state="waiting") == 0
    names = {sample.name for sample in samples(after)}
    for name in (
        "users_api_outbox_backlog",
        "users_api_outbox_oldest_age_seconds",
    ):
        assert name in names, name


async def test_outbox_backlog_is_read_at_scrape_time(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # The app's sender delivers a sign-up's mail as soon as it is woken, racing the
    # scrape; a message written a minute ago and due in an hour stays put for it.
    async with engine.begin() as connection:
        await connection.execute(
            sql(
                "INSERT INTO outbox (kind, payload, created_at, next_attempt_at) "
                "VALUES ('mail', '{}', now() - interval '60 seconds', now() + interval '1 hour')"
            )
        )
    scraped = await scrape(client)
    assert value(scraped, "users_api_outbox_backlog") == 1
    assert value(scraped, "users_api_outbox_oldest_age_seconds") >= 60

    async with engine.begin() as connection:
        await connection.execute(sql("UPDATE outbox SET delivered_at = now()"))
    scraped = await scrape(client)
    assert value(scraped, "users_api_outbox_backlog") == 0
    assert value(scraped, "users_api_outbox_oldest_age_seconds") == 0


async def test_metrics_token_is_a_bearer_token(settings: Settings) -> None:
    guarded = create_app(
        settings.model_copy(update={"metrics_token": SecretStr("scrape-me-please")})
    )
    async with asgi_client(guarded) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "scrape-me-please"},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["code"] == "unauthorized"
            assert refused.json()["request_id"] == refused.headers["x-request-id"]
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert allowed.status_code == 200
        assert "http_requests_total" in allowed.text


async def test_metrics_is_documented_like_healthz(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/metrics"]["get"]
    assert operation["operationId"] == "getMetrics"
    assert "401" in operation["responses"]


async def test_a_client_gone_mid_body_is_a_499_not_a_server_error(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen from outside: an upload aborted by its client was logged as an unhandled
    error with a traceback and counted as a 500."""
    before = await scrape(client)
    scope = http_scope(
        "POST",
        USERS,
        headers=[(b"content-type", b"application/json"), (b"content-length", b"100")],
    )
    arriving: list[Message] = [
        {"type": "http.request", "body": b'{"email":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return arriving.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)  # raises nothing: the server logs no traceback
    assert sent == []
    assert "unhandled error" not in caplog.text
    after = await scrape(client)
    labels = {"route": USERS, "method": "POST"}
    assert (
        value(after, "http_requests_total", **labels, status="499")
        - value(before, "http_requests_total", **labels, status="499")
        == 1
    )
    assert value(after, "http_requests_total", **labels, status="500") == value(
        before, "http_requests_total", **labels, status="500"
    )
