"""Behind proxies: whose X-Forwarded-For and X-Forwarded-Proto are believed, and how."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from tests.conftest import BASE_URL
from users_api.app import create_app
from users_api.config import Settings
from users_api.http import parse

TOKEN = "/api/v1/auth/token"
PROXY = "10.0.0.5"  # the peer the in-process transport presents: our proxy
PROXIES = (ip_network("10.0.0.0/8"), ip_network("192.0.2.1"))


@asynccontextmanager
async def behind_proxy(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app reached from `PROXY`, with a route that shows what it believes."""
    app = create_app(settings.model_copy(update=changes))

    @app.get("/seen")
    async def seen(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "client": parse.client_address(request),
                "scheme": request.url.scheme,
            }
        )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(PROXY, 4711))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        yield client


async def _seen(client: httpx.AsyncClient, *headers: tuple[str, str]) -> dict[str, Any]:
    response = await client.get("/seen", headers=list(headers))
    assert response.status_code == 200, response.text
    seen: dict[str, Any] = response.json()
    return seen


async def _failed_login(client: httpx.AsyncClient, *headers: tuple[str, str]) -> int:
    response = await client.post(
        TOKEN, data={"username": "nobody", "password": "wrong password"}, headers=list(headers)
    )
    return response.status_code


async def test_a_proxys_own_forwarded_for_line_is_read_too(settings: Settings) -> None:
    """A client sends its own X-Forwarded-For line, new each time; the proxy adds another
    line with the address it saw. The lines are one list (RFC 9110 §5.3), read from the
    right: the client's own choice never picks its address, nor its throttle budget."""
    async with behind_proxy(
        settings, trusted_proxies=PROXIES, login_failures_per_address=2
    ) as client:
        for forged in ("203.0.113.1", "203.0.113.2"):
            lines = (("X-Forwarded-For", forged), ("X-Forwarded-For", "198.51.100.7"))
            assert await _failed_login(client, *lines) == 401
        lines = (("X-Forwarded-For", "203.0.113.3"), ("X-Forwarded-For", "198.51.100.7"))
        assert await _failed_login(client, *lines) == 429
        seen = await _seen(client, *lines)
        assert seen["client"] == "198.51.100.7"
        # Another client behind the same proxy keeps its own budget.
        assert await _failed_login(client, ("X-Forwarded-For", "198.51.100.8")) == 401


@pytest.mark.parametrize(
    ("lines", "client"),
    [
        # The right-most address that is not one of our proxies (CIDRs and addresses).
        ([("X-Forwarded-For", "198.51.100.7, 10.1.2.3")], "198.51.100.7"),
        (
            [("X-Forwarded-For", "1.2.3.4, 198.51.100.7"), ("X-Forwarded-For", "192.0.2.1")],
            "198.51.100.7",
        ),
        ([("X-Forwarded-For", "198.51.100.7:5555")], "198.51.100.7"),
        ([("X-Forwarded-For", "[2001:db8::1]:443")], "2001:db8::1"),
        ([("X-Forwarded-For", "2001:DB8:0::1")], "2001:db8::1"),
        # Nothing the client could not forge: only proxies, or nothing usable.
        ([], PROXY),
        ([("X-Forwarded-For", "not an address")], "unknown"),
    ],
)
async def test_the_client_address_behind_trusted_proxies(
    settings: Settings, lines: list[tuple[str, str]], client: str
) -> None:
    async with behind_proxy(settings, trusted_proxies=PROXIES) as proxied:
        assert (await _seen(proxied, *lines))["client"] == client


async def test_forwarded_proto_is_believed_from_a_trusted_proxy_only(settings: Settings) -> None:
    async with behind_proxy(settings, trusted_proxies=PROXIES) as proxied:
        assert (await _seen(proxied, ("X-Forwarded-Proto", "https")))["scheme"] == "https"
        assert (await _seen(proxied))["scheme"] == "http"
    async with behind_proxy(settings) as direct:
        seen = await _seen(
            direct, ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "198.51.100.7")
        )
        assert seen == {"client": PROXY, "scheme": "http"}
