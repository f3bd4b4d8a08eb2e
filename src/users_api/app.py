"""The application factory: one app per settings object, nothing global."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.responses import Response
from starlette.datastructures import State
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from users_api import __version__, metrics
from users_api.accounts.routes import router as accounts_router
from users_api.accounts.service import AccountService, VerificationMail
from users_api.auth.routes import router as auth_router
from users_api.auth.service import AuthService
from users_api.cluster.jobs import Lease
from users_api.cluster.retention import Pruner, Retention
from users_api.config import Settings
from users_api.db.database import Database, Unit
from users_api.db.metadata import UNIQUE_FIELDS
from users_api.db.replicas import ConsistencyTokens, written_position
from users_api.docs import add_docs_routes
from users_api.errors import DomainError, Unauthorized, install_error_handlers, problem
from users_api.events.routes import router as audit_router
from users_api.events.service import AuditService, audit_retention
from users_api.events.writer import build_writer
from users_api.groups.routes import router as groups_router
from users_api.groups.routes import user_groups_router
from users_api.groups.service import GroupService
from users_api.http import openapi, parse
from users_api.http.openapi import Auth, doc
from users_api.http.routing import Dispatch, RequestRoute, add_routes
from users_api.mail.messages import KIND as MAIL
from users_api.mail.messages import Mailer
from users_api.mfa.routes import admin_router as mfa_admin_router
from users_api.mfa.routes import router as mfa_router
from users_api.mfa.service import MfaService, SecondFactor
from users_api.middleware import BodyArea, BodySizeLimit, Cors, Edge
from users_api.outbox import queries as outbox_q
from users_api.outbox.sender import Sender
from users_api.scim import errors as scim_errors
from users_api.scim.mount import ScimMount
from users_api.scim.tokens import ScimTokens
from users_api.security import strength
from users_api.security.mfa import SecretBox
from users_api.security.passwords import Passwords, default_hash_concurrency
from users_api.security.secret import resolve_secret_key
from users_api.security.tokens import AccessTokens
from users_api.throttle.service import LoginThrottle
from users_api.users.routes import router as users_router
from users_api.users.service import UserService
from users_api.webhooks import queries as webhook_q
from users_api.webhooks.delivery import WebhookSender
from users_api.webhooks.queries import KIND as WEBHOOK
from users_api.webhooks.routes import router as webhooks_router
from users_api.webhooks.service import BOX_INFO, WebhookService

READY_TIMEOUT_SECONDS = 1.0
# The outbox sender runs on one worker of the cluster; if that worker dies, another takes
# over once this has run out (cluster/jobs.py).
OUTBOX_LEASE_SECONDS = 15.0
log = logging.getLogger(__name__)

DESCRIPTION = """
User management over HTTP. Every error is an RFC 9457 `application/problem+json`
document. A user's `version` is its ETag: send it back in `If-Match` to make a change
conditional (412 when stale), or in `If-None-Match` to revalidate a read (304).

When the database cannot serve a request right now, the answer is 503 with
`Retry-After`, never a 500: its problem type ends in `database-unavailable` (unreachable,
starting up, shutting down, or no pooled connection free within `DB_POOL_TIMEOUT`) or
`database-timeout` (the statement ran past `DB_STATEMENT_TIMEOUT_MS`, or waited too long
for a lock). Nothing of such a request is stored: each request is one transaction.
"""


def create_app(settings: Settings, *, on_started: Callable[[], None] | None = None) -> FastAPI:
    """`on_started` runs once the app is ready to serve (`serving.py` tunes the process)."""
    passwords = Passwords(
        concurrency=settings.password_hash_concurrency or default_hash_concurrency()
    )
    secret_key = resolve_secret_key(settings)
    mailer = Mailer.from_settings(settings)
    tokens = AccessTokens(
        secret=secret_key,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    # One writer for every service: its subscribers (webhooks) see every event.
    events = build_writer()
    previous = settings.mfa_previous_secret_key
    previous_keys = [previous.get_secret_value().encode()] if previous else []
    factor = SecondFactor(SecretBox(secret_key, previous_keys))
    webhook_box = SecretBox(secret_key, previous_keys, info=BOX_INFO)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await Database.open(settings, unique_fields=UNIQUE_FIELDS)
        throttle = LoginThrottle.from_settings(settings)
        app.state.db = db
        webhooks = WebhookSender(
            db,
            webhook_box,
            schedule=settings.webhook_retry_schedule,
            max_attempts=settings.webhook_max_attempts,
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout_seconds,
            events=events,
        )
        sender = Sender(
            db,
            {MAIL: mailer.deliver, WEBHOOK: webhooks.deliver},
            poll_seconds=settings.outbox_poll_seconds,
            retry_seconds=settings.outbox_retry_seconds,
            lease=Lease(db, "outbox-sender", OUTBOX_LEASE_SECONDS),
        )
        app.state.outbox = sender
        verification = VerificationMail(
            mailer, timedelta(seconds=settings.email_verification_ttl_seconds)
        )
        groups = GroupService(db, events)
        app.state.users = UserService(
            db,
            passwords,
            password_min_length=settings.password_min_length,
            allow_registration=settings.allow_registration,
            throttle=throttle,
            events=events,
            leave_groups=groups.leave_all,
            registrations_per_address=settings.registrations_per_address,
            mailer=mailer,
            outbox=sender,
            verification=verification,
        )
        app.state.accounts = AccountService(
            db,
            app.state.users,
            mailer,
            reset_ttl=timedelta(seconds=settings.password_reset_ttl_seconds),
            resets_per_address=settings.password_resets_per_address,
            verification=verification,
        )
        app.state.auth = AuthService(
            db,
            passwords=passwords,
            tokens=tokens,
            refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
            throttle=throttle,
            factor=factor,
            events=events,
            require_verified_email=settings.require_verified_email,
        )
        app.state.groups = groups
        app.state.mfa = MfaService(
            db, passwords=passwords, throttle=throttle, factor=factor, events=events
        )
        app.state.scim_tokens = ScimTokens(db, events)
        app.state.webhooks = WebhookService(
            db, webhook_box, events, allow_private=settings.webhook_allow_private, outbox=sender
        )
        app.state.audit = AuditService(db)
        pruner = Pruner(db, _retentions(settings))
        await _ensure_first_admin(app.state.users, settings)
        sender.start()
        pruner.start()
        sampler = asyncio.create_task(
            metrics.sample_forever(db, app.state.request_metrics), name="metrics"
        )
        strength.load()  # now, not on the loop during the first registration
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            sampler.cancel()
            app.state.request_metrics.flush()
            await pruner.stop()
            await sender.stop()
            await webhooks.close()
            await db.close()
            passwords.close()
            metrics.worker_stopped()

    app = _App(
        title="users-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # `/api/v1/users/` is no second spelling of `/api/v1/users`: Starlette's redirect
        # to the other one names the request's Host header, which the client chose.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry hooks cost a few µs a request even with nothing
        # configured; tracing, when it comes, is configured explicitly.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.request_metrics = metrics.RequestMetrics()
    app.state.metrics_token = (
        settings.metrics_token.get_secret_value() if settings.metrics_token else None
    )
    app.state.events = events  # subscribers attach here (webhooks)
    install_error_handlers(app, caller_check=_refused_caller)
    scim_bodies = BodyArea(
        "/scim/v2/", max(settings.max_body_bytes, scim_errors.MAX_BODY_BYTES), scim_errors.too_large
    )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, areas=[scim_bodies])
    if settings.trusted_proxies:
        # Outermost of ours: every layer sees the client and scheme the proxy saw.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=_hosts(settings.trusted_proxies))
    if settings.cors_origins:
        app.add_middleware(Cors, origins=settings.cors_origins)
    # Read-your-writes (db/replicas.py): every write's answer carries its position, also
    # with no replica configured here, so a client behaves the same against any deployment.
    app.add_middleware(ConsistencyTokens, position=lambda: written_position(app.state.db))
    # The most asked first.
    add_routes(
        app,
        users_router,
        auth_router,
        mfa_router,
        mfa_admin_router,
        accounts_router,
        groups_router,
        user_groups_router,
        webhooks_router,
        audit_router,
        _operations,
    )
    # SCIM is its own protocol (media type, errors, tokens): its own app under the API's,
    # loaded by its first request (scim/mount.py).
    app.mount("/scim/v2", ScimMount(app.state))
    openapi.install(app)
    add_docs_routes(app)  # /docs with its assets served from here: no CDN
    return app


async def _refused_caller(request: Request) -> DomainError | None:
    """401 for a request whose verified token is no longer honoured (signed out,
    deactivated, deleted), asked before it is told its parts are bad (`CallerCheck`)."""
    claims = parse.sent_caller(request)
    if claims is None:
        return None
    users: UserService = request.app.state.users
    try:
        await users.require_honoured(claims)
    except Unauthorized as refused:
        return refused
    except DomainError:  # the database cannot tell now: the request's own fault stands
        return None
    return None


class _App(FastAPI):
    """FastAPI with a shorter road in front of the API's routes.

    FastAPI's own stack puts eight layers in front of every request: Starlette's
    ServerErrorMiddleware and ExceptionMiddleware, FastAPI's telemetry, body-limit and
    exit-stack layers, and a router that asks every route in turn for its scope
    context. Here: `Edge` (standard headers, request id, log line, the last answer to a
    bug), the middleware added with `add_middleware` (body limit, proxies, CORS), then
    `Dispatch`, which finds an API route by its table and answers its errors with the
    app's handlers (`routing.py`). Anything else (the documentation, unknown paths and
    methods) goes on through FastAPI's own layers and router, unchanged.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.state = _Services()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette's own call for HTTP: FastAPI's adds only its telemetry (off here)."""
        if scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        handlers = dict(self.exception_handlers)
        on_error = handlers.pop(Exception, None) or handlers.pop(500, None)
        standard = ExceptionMiddleware(AsyncExitStackMiddleware(self.router), handlers=handlers)
        app: ASGIApp = Dispatch(self.router.routes, fallback=standard)
        for middleware in reversed(self.user_middleware):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        settings: Settings = self.state.settings
        edge = Edge(app, on_error=on_error, metrics=self.state.request_metrics)
        if settings.otel_exporter_otlp_endpoint:
            from users_api import tracing  # only now: untraced, nothing of it is loaded

            return tracing.traced(edge, settings.otel_exporter_otlp_endpoint)
        return edge


class _Services(State):
    """`app.state` with its values as plain attributes. Starlette's `State` finds each
    one through `__getattr__`, 0.7 µs a lookup against 0.06, and every request looks up
    two (the token checker and a service)."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)


def _retentions(settings: Settings) -> tuple[Retention, ...]:
    """What the service removes itself once it is old enough (`cluster.retention`)."""
    kept = settings.delivery_retention_days
    return (
        audit_retention(settings.audit_retention_days),
        Retention("delivery-retention", webhook_q.PRUNE_DELIVERIES, kept),
        Retention("outbox-retention", outbox_q.PRUNE_DELIVERED, kept),
    )


def _hosts(proxies: tuple[IPv4Network | IPv6Network, ...]) -> list[str]:
    """TRUSTED_PROXIES as uvicorn's `trusted_hosts`: single addresses as addresses (a set
    lookup there), networks as CIDRs (a membership test each)."""
    return [
        str(network.network_address if network.num_addresses == 1 else network)
        for network in proxies
    ]


async def _ensure_first_admin(users: UserService, settings: Settings) -> None:
    """FIRST_ADMIN_*: create that admin at start-up unless a user has the email."""
    email, username = settings.first_admin_email, settings.first_admin_username
    password = settings.first_admin_password
    if not (email and username and password):
        return
    created = await users.ensure_admin(
        email=email, username=username, password=password.get_secret_value()
    )
    if created is not None:
        log.info("created the first admin %s", created["username"])


_operations = APIRouter(tags=["operations"], route_class=RequestRoute)


@_operations.get("/healthz", summary="Liveness", operation_id="getHealth")
async def healthz(request: Request) -> Response:
    return Response(content=b'{"status":"ok"}', media_type="application/json")


@_operations.get(
    "/readyz",
    **doc("getReadiness", "Readiness: the database answers within one second", None, (), Auth.NONE),
)
async def readyz(request: Request) -> Response:
    db: Database = request.app.state.db
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await db.run(_ping, transaction=False)
    except Exception:  # any failure at all means "not ready"
        return problem(
            503,
            detail="The database did not answer within one second.",
            code="not-ready",
            headers={"Retry-After": "1"},
        )
    return Response(content=b'{"status":"ready"}', media_type="application/json")


@_operations.get(
    "/metrics",
    **doc(
        "getMetrics",
        "Prometheus metrics of every worker (text format); with METRICS_TOKEN set, send it "
        "as a bearer token",
        None,
        (401,),
        Auth.OPTIONAL,
    ),
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "The metrics."}},
)
async def get_metrics(request: Request) -> Response:
    token: str | None = request.app.state.metrics_token
    if not metrics.authorized(request.headers.get("authorization"), token):
        return problem(
            401,
            detail="Send METRICS_TOKEN as a bearer token.",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    db: Database | None = getattr(request.app.state, "db", None)
    text = await metrics.render(db, request.app.state.request_metrics)
    return Response(content=text, media_type=metrics.CONTENT_TYPE)


async def _ping(unit: Unit) -> None:
    await unit.connection.execute("SELECT 1")
