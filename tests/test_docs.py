"""`/docs` and `/redoc` work without internet: every asset they load is served here."""

from __future__ import annotations

import re

import httpx
import pytest

_REFERENCE = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']"""
)
_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}


def _references(html: str) -> list[str]:
    return [src or url for src, url in _REFERENCE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_nothing_from_elsewhere(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"(?:https?:)?//[\w.-]+\.\w", html), html  # no other host at all

    references = _references(html)
    assert "/openapi.json" in references
    assets = [reference for reference in references if reference.startswith("/docs/assets/")]
    assert any(asset.endswith(".js") for asset in assets), references
    for reference in references:
        assert reference.startswith("/"), reference
        loaded = await client.get(reference)
        assert loaded.status_code == 200, reference
        suffix = reference[reference.rfind(".") :]
        assert _TYPES[suffix] in loaded.headers["content-type"], (reference, loaded.headers)
        assert len(loaded.content) > 1000


async def test_swagger_ui_is_a_version_that_reads_openapi_3_1(client: httpx.AsyncClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on (4.x shows
    "does not specify a valid version field")."""
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "isOAS31" in bundle  # Swagger UI 5's check for an OpenAPI 3.1 document


async def test_an_unknown_asset_is_a_problem_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/nothing-here.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
