"""`/docs` and `/redoc` served with their assets from the service itself: no internet needed.

FastAPI's own pages load Swagger UI (and ReDoc) from a CDN and a favicon from FastAPI's
site, so behind a firewall, on a plane or in an air-gapped network `/docs` was blank.
The `fastapi-offline` wheel ships those files (Swagger UI 5, which reads the OpenAPI 3.1
that FastAPI writes; swagger-ui-bundle's 4.x cannot); they are mounted at
`/docs/assets`, and the pages are FastAPI's own HTML pointed at them.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

ASSETS_URL = "/docs/assets"


def _assets_folder() -> str:
    return str(files("fastapi_offline") / "static")


def add_docs_routes(app: FastAPI) -> None:
    """Put pages that load nothing from elsewhere in place of FastAPI's `/docs` and
    `/redoc` (its `/docs/oauth2-redirect` is inline HTML and stays)."""
    docs_url, redoc_url = app.docs_url, app.redoc_url
    openapi_url = app.openapi_url
    if openapi_url is None or (docs_url is None and redoc_url is None):
        return
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if not (isinstance(route, Route) and route.path in {docs_url, redoc_url})
    ]
    app.mount(ASSETS_URL, StaticFiles(directory=_assets_folder()), name="docs-assets")

    def _root(request: Request) -> str:
        root: str = request.scope.get("root_path", "")
        return root

    def _asset(request: Request, name: str) -> str:
        return f"{_root(request)}{ASSETS_URL}/{name}"

    if docs_url is not None:
        redirect_url = app.swagger_ui_oauth2_redirect_url

        @app.get(docs_url, include_in_schema=False)
        async def swagger_ui(request: Request) -> HTMLResponse:
            root = _root(request)
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
                swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
                swagger_css_url=_asset(request, "swagger-ui.css"),
                swagger_favicon_url=_asset(request, "favicon.png"),
                swagger_ui_parameters=app.swagger_ui_parameters,
            )

    if redoc_url is not None:

        @app.get(redoc_url, include_in_schema=False)
        async def redoc(request: Request) -> HTMLResponse:
            return get_redoc_html(
                openapi_url=f"{_root(request)}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=_asset(request, "redoc.standalone.js"),
                redoc_favicon_url=_asset(request, "favicon.png"),
                with_google_fonts=False,
            )
