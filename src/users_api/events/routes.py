"""HTTP for the audit log: parse, call the service, shape the page and its `Link`."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote_plus

from fastapi import Request, Response

from users_api.events import examples
from users_api.events.schemas import AuditEventPage, AuditEventQuery
from users_api.events.service import AuditService, EventPage
from users_api.http import parse
from users_api.http.openapi import Query, Reply, doc
from users_api.http.routing import api_router, path_of
from users_api.responses import json_response

router = api_router("/api/v1/audit-events", "audit")


def _audit(request: Request) -> AuditService:
    service: AuditService = request.app.state.audit
    return service


@router.get(
    "",
    **doc(
        "listAuditEvents",
        "List audit events, newest first (admins)",
        AuditEventPage,
        (400, 401, 403, 422),
        Query(AuditEventQuery),
        reply=Reply(200, "A page of events.", examples.PAGE, ("Link",)),
    ),
)
async def list_audit_events(request: Request) -> Response:
    caller = parse.caller(request)
    query = parse.query(request, AuditEventQuery, repeated=("type",))
    page = await _audit(request).list(query, caller=caller)
    return _page_response(page, path_of(request, router.prefix), query)


def next_page_url(path: str, query: AuditEventQuery, cursor: str) -> str:
    """The next page: this list's path, the parameters as parsed (never the raw query:
    see `users.routes.next_page_url`), and the next cursor."""
    given = query.model_fields_set
    parts: list[str] = []
    if "limit" in given:
        parts.append(f"limit={query.limit}")
    parts += [f"type={quote_plus(pattern)}" for pattern in query.type]
    for name in ("actor_id", "subject_id"):
        value = getattr(query, name)
        if value is not None:
            parts.append(f"{name}={value}")
    for name in ("since", "until"):
        moment: datetime | None = getattr(query, name)
        if moment is not None:
            parts.append(f"{name}={quote_plus(moment.isoformat())}")
    parts.append(f"cursor={quote_plus(cursor)}")
    return f"{path}?{'&'.join(parts)}"


def _page_response(page: EventPage, path: str, query: AuditEventQuery) -> Response:
    headers = {}
    if page.next_cursor is not None:
        headers["Link"] = f'<{next_page_url(path, query, page.next_cursor)}>; rel="next"'
    return json_response({"items": page.items, "next_cursor": page.next_cursor}, headers=headers)
