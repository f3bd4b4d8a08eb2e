"""The admin API of webhook endpoints: the secret shown once and stored sealed, changes,
deletion, who may ask, bad input, and the SSRF refusals at registration."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import asgi_client, login
from tests.webhooks.conftest import register
from tests.webhooks.receiver import Receiver

WEBHOOKS = "/api/v1/webhooks"


async def test_the_secret_is_shown_once_and_stored_sealed(
    admin_client: httpx.AsyncClient, receiver: Receiver, engine: AsyncEngine
) -> None:
    response = await admin_client.post(
        WEBHOOKS,
        json={"url": receiver.url, "events": ["user.created", "group.*"], "description": "CRM"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert response.headers["cache-control"] == "no-store"
    assert created["events"] == ["user.created", "group.*"]
    assert created["enabled"] is True
    assert created["version"] == 1
    assert response.headers["location"] == f"{WEBHOOKS}/{created['id']}"
    shown = await admin_client.get(response.headers["location"])
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert shown.json() == {key: value for key, value in created.items() if key != "secret"}
    listed = await admin_client.get(WEBHOOKS)
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert "secret" not in listed.json()["items"][0]
    async with engine.connect() as connection:
        stored = (
            await connection.execute(text("SELECT secret FROM webhook_endpoints"))
        ).scalar_one()
    raw = created["secret"].removeprefix("whsec_").encode()
    assert raw not in stored
    assert created["secret"].encode() not in stored


async def test_an_endpoint_changes_and_goes(
    admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    path = f"{WEBHOOKS}/{endpoint_id}"
    changed = await admin_client.patch(path, json={"enabled": False, "events": ["user.*"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["events"] == ["user.*"]
    assert changed.json()["version"] == 2
    assert changed.json()["url"] == receiver.url
    cleared = await admin_client.patch(path, json={"description": None})
    assert cleared.json()["description"] is None
    assert (await admin_client.delete(path)).status_code == 204
    assert (await admin_client.get(path)).status_code == 404
    assert (await admin_client.delete(path)).status_code == 404
    assert (await admin_client.get(f"{path}/deliveries")).status_code == 404


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"url": "https://8.8.8.8/hook", "events": ["user.exploded"]}, ["body", "events", 0]),
        ({"url": "https://8.8.8.8/hook", "events": ["nothing.*"]}, ["body", "events", 0]),
        ({"url": "https://8.8.8.8/hook", "events": []}, ["body", "events"]),
        ({"url": "https://8.8.8.8/hook"}, ["body", "events"]),
        ({"url": "https://8.8.8.8/hook", "events": ["*"], "x": 1}, ["body", "x"]),
        (
            {"url": "https://8.8.8.8/hook", "events": ["*"], "description": 5},
            ["body", "description"],
        ),
        ({"url": 5, "events": ["*"]}, ["body", "url"]),
        # PostgreSQL's text holds no NUL: it was a 500 from the database.
        (
            {"url": "https://8.8.8.8/hook", "events": ["*"], "description": "d\x00"},
            ["body", "description"],
        ),
        ({"url": "https://8.8.8.8/ho\x00ok", "events": ["*"]}, ["body", "url"]),
    ],
)
async def test_bad_input_is_422(
    admin_client: httpx.AsyncClient, body: dict[str, object], where: list[object]
) -> None:
    response = await admin_client.post(WEBHOOKS, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation"
    assert where in [error["loc"] for error in response.json()["errors"]]


async def test_a_patch_cannot_null_what_an_endpoint_needs(
    admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    for name in ("url", "events", "enabled"):
        response = await admin_client.patch(f"{WEBHOOKS}/{endpoint_id}", json={name: None})
        assert response.status_code == 422, name
        assert response.json()["errors"][0]["loc"] == ["body", name]


async def test_only_admins_manage_webhooks(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint_id = await register(admin_client, receiver)
    created = await admin_client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": "a long password here"},
    )
    assert created.status_code == 201, created.text
    async with asgi_client(app) as client:
        assert (await client.get(WEBHOOKS)).status_code == 401
        tokens = await login(client, "ada", "a long password here")
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        for method, path in [
            ("GET", WEBHOOKS),
            ("POST", WEBHOOKS),
            ("GET", f"{WEBHOOKS}/{endpoint_id}"),
            ("PATCH", f"{WEBHOOKS}/{endpoint_id}"),
            ("DELETE", f"{WEBHOOKS}/{endpoint_id}"),
            ("GET", f"{WEBHOOKS}/{endpoint_id}/deliveries"),
            ("POST", f"{WEBHOOKS}/{endpoint_id}/deliveries/{endpoint_id}/retry"),
        ]:
            body = {"url": "http://127.0.0.1/", "events": ["*"]} if method != "GET" else None
            response = await client.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("changes", [{"webhook_allow_private": False}])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://8.8.8.8/hook",
        "http://user:pass@8.8.8.8/hook",
        "https://8.8.8.8/hook#x",
        "hooks.example.com",
        # urlsplit drops CR, LF and tab and strips leading spaces: the URL read would
        # not be the URL stored
        "https://8.8.8.8/hook\r\nX-Injected: 1",
        "https://8.8.8.8/ho\x01ok",
        "https://8.8.8.8/ho ok",
        " https://8.8.8.8/hook",
        "https://8.8.8.8/hook ",
    ],
)
async def test_private_and_odd_targets_are_refused_at_registration(
    admin_client: httpx.AsyncClient, url: str
) -> None:
    response = await admin_client.post(WEBHOOKS, json={"url": url, "events": ["*"]})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation"
    assert response.json()["errors"][0]["loc"] == ["body", "url"]
    endpoint = await admin_client.post(WEBHOOKS, json={"url": "https://8.8.8.8/", "events": ["*"]})
    assert endpoint.status_code == 201  # a public address is fine
    path = f"{WEBHOOKS}/{endpoint.json()['id']}"
    moved = await admin_client.patch(path, json={"url": url})
    assert moved.status_code == 422
    assert moved.json()["errors"][0]["loc"] == ["body", "url"]
    assert [item["url"] for item in (await admin_client.get(WEBHOOKS)).json()["items"]] == [
        "https://8.8.8.8/"
    ]


async def test_a_public_address_is_accepted_without_a_network(
    admin_client: httpx.AsyncClient,
) -> None:
    response = await admin_client.post(
        WEBHOOKS, json={"url": "https://[2606:4700:4700::1111]:8443/h?x=1", "events": ["*"]}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("enabled", ["yes", "true", "false", 1, 0, "1", "on"], ids=repr)
async def test_enabled_must_be_a_json_boolean(
    admin_client: httpx.AsyncClient, receiver: Receiver, enabled: object
) -> None:
    """Strict: `"enabled": "yes"` is a mistake in the body, not a request to enable."""
    endpoint_id = await register(admin_client, receiver)
    path = f"{WEBHOOKS}/{endpoint_id}"
    assert (await admin_client.patch(path, json={"enabled": False})).status_code == 200
    response = await admin_client.patch(path, json={"enabled": enabled})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation"
    assert response.json()["errors"][0]["loc"] == ["body", "enabled"]
    assert (await admin_client.get(path)).json()["enabled"] is False
