"""OpenTelemetry traces of requests and their SQL, sent over OTLP/HTTP.

Imported only when OTEL_EXPORTER_OTLP_ENDPOINT is set (`app._App.build_middleware_stack`):
otherwise neither the SDK, the exporter nor an instrumentation is loaded, and a request
pays nothing for tracing. (FastAPI itself imports the OpenTelemetry API, for telemetry of
its own that this app turns off.)

A request's span is opened outside every other layer, named `METHOD /route/{template}`
once the route is known (never a raw id); its SQL statements are asyncpg's spans, its
children, as the service talks to PostgreSQL through asyncpg directly.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api import __version__
from users_api.request_log import route_template

_provider: TracerProvider | None = None


def provider(endpoint: str) -> TracerProvider:
    """One provider a process, exporting in batches to `endpoint`/v1/traces; it flushes
    what it holds when the process exits."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: "users-api", SERVICE_VERSION: __version__})
        )
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        _provider.add_span_processor(BatchSpanProcessor(exporter))
        AsyncPGInstrumentor().instrument(tracer_provider=_provider)  # type: ignore[no-untyped-call]
    return _provider


def traced(app: ASGIApp, endpoint: str) -> ASGIApp:
    """`app` with a span for each request and for each SQL statement it runs."""
    middleware: ASGIApp = OpenTelemetryMiddleware(
        _NamedByRoute(app),
        default_span_details=_method_only,
        tracer_provider=provider(endpoint),
        exclude_spans=["receive", "send"],
    )
    return middleware


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's first name: the route, and so its template, is not known yet."""
    return scope.get("method", "HTTP"), {}


class _NamedByRoute:
    """Names the request's span by its route template, once routing has found it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()

        async def naming_send(message: Message) -> None:
            # At the answer's start: the span ends with its last byte.
            if message["type"] == "http.response.start":
                template = route_template(scope.get("route"))
                if template is not None:
                    span.update_name(f"{scope['method']} {template}")
                    span.set_attribute("http.route", template)
            await send(message)

        await self.app(scope, receive, naming_send)
