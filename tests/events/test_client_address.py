"""An event's address is the client's as the service sees it: behind a trusted proxy,
the one it forwarded (read when the event is written, after the proxy layer)."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.auth.helpers import PASSWORD
from tests.conftest import BASE_URL
from tests.events.helpers import one_event
from users_api.app import create_app
from users_api.config import Settings


async def test_the_forwarded_address_of_a_trusted_proxy(
    settings: Settings, engine: AsyncEngine
) -> None:
    app = create_app(settings.model_copy(update={"trusted_proxies": (ip_network("10.0.0.0/8"),)}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=("10.1.2.3", 4321)
        )
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            response = await client.post(
                "/api/v1/users",
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
                headers={"X-Forwarded-For": "2001:DB8::0:1", "X-Request-ID": "via-proxy"},
            )
    assert response.status_code == 201, response.text
    event = await one_event(engine, "user.created")
    assert event["ip_address"] == "2001:db8::1"  # written canonically
    assert event["request_id"] == "via-proxy"
