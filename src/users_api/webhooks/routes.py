"""HTTP for webhook endpoints (admins only): parse, call one service method, shape."""

from __future__ import annotations

from fastapi import Request, Response, status

from users_api.db.database import Record
from users_api.http import parse
from users_api.http.openapi import Body, PathId, Query, Reply, doc
from users_api.http.routing import api_router, path_of
from users_api.responses import json_response
from users_api.webhooks import examples
from users_api.webhooks.schemas import (
    DeliveryList,
    DeliveryQuery,
    RetryAccepted,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
)
from users_api.webhooks.service import WebhookService

router = api_router("/api/v1/webhooks", "webhooks")

WEBHOOK_ID = PathId("webhook_id")
EVENT_ID = PathId("event_id")
AN_ENDPOINT = Reply(200, "The endpoint (never its secret).", examples.ENDPOINT)
# The secret is for the admin's eyes once: no cache keeps it.
_NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _webhooks(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


def _endpoint(record: Record) -> dict[str, object]:
    return dict(record)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    **doc(
        "createWebhook",
        "Register a webhook endpoint; its signing secret is in the answer, this once",
        WebhookCreated,
        (400, 401, 403),
        Body(WebhookCreate, examples.CREATE),
        reply=Reply(201, "The new endpoint and its secret.", examples.CREATED, ("Location",)),
    ),
)
async def create_webhook(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, WebhookCreate)
    record, secret = await _webhooks(request).create(body, caller=caller)
    content = _endpoint(record) | {"secret": secret}
    headers = {"Location": path_of(request, f"{router.prefix}/{record['id']}"), **_NOT_STORED}
    return json_response(content, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get(
    "",
    **doc(
        "listWebhooks",
        "Every webhook endpoint, oldest first",
        WebhookList,
        (401, 403),
        reply=Reply(200, "The endpoints.", examples.LIST),
    ),
)
async def list_webhooks(request: Request) -> Response:
    caller = parse.caller(request)
    records = await _webhooks(request).endpoints(caller=caller)
    return json_response({"items": [_endpoint(record) for record in records]})


@router.get(
    "/{webhook_id}",
    **doc("getWebhook", "Get a webhook endpoint", WebhookOut, (401, 403, 404), WEBHOOK_ID),
)
async def get_webhook(request: Request) -> Response:
    caller = parse.caller(request)
    webhook_id = parse.path_id(request, "webhook_id")
    return json_response(_endpoint(await _webhooks(request).get(webhook_id, caller=caller)))


@router.patch(
    "/{webhook_id}",
    **doc(
        "updateWebhook",
        "Change a webhook endpoint (merge patch: `url`, `events`, `description`, `enabled`)",
        WebhookOut,
        (400, 401, 403, 404),
        WEBHOOK_ID,
        Body(WebhookUpdate, examples.CHANGE),
        reply=AN_ENDPOINT,
    ),
)
async def update_webhook(request: Request) -> Response:
    caller = parse.caller(request)
    webhook_id = parse.path_id(request, "webhook_id")
    patch = await parse.json_body(request, WebhookUpdate)
    record = await _webhooks(request).update(webhook_id, patch, caller=caller)
    return json_response(_endpoint(record))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "deleteWebhook",
        "Delete a webhook endpoint, its delivery log and what it has still to receive",
        None,
        (401, 403, 404),
        WEBHOOK_ID,
    ),
)
async def delete_webhook(request: Request) -> Response:
    caller = parse.caller(request)
    webhook_id = parse.path_id(request, "webhook_id")
    await _webhooks(request).delete(webhook_id, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    **doc(
        "listWebhookDeliveries",
        "An endpoint's recent delivery attempts, newest first",
        DeliveryList,
        (401, 403, 404),
        WEBHOOK_ID,
        Query(DeliveryQuery),
        reply=Reply(200, "The attempts.", examples.DELIVERIES),
    ),
)
async def list_deliveries(request: Request) -> Response:
    caller = parse.caller(request)
    webhook_id = parse.path_id(request, "webhook_id")
    query = parse.query(request, DeliveryQuery)
    records = await _webhooks(request).deliveries(webhook_id, limit=query.limit, caller=caller)
    return json_response({"items": [dict(record) for record in records]})


@router.post(
    "/{webhook_id}/deliveries/{event_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    **doc(
        "retryWebhookDelivery",
        "Send an event the endpoint was sent once again (same `webhook-id`)",
        RetryAccepted,
        (401, 403, 404, 409),
        WEBHOOK_ID,
        EVENT_ID,
        reply=Reply(
            202, "Queued: it goes out after the endpoint's earlier events.", examples.RETRY
        ),
    ),
)
async def retry_delivery(request: Request) -> Response:
    caller = parse.caller(request)
    webhook_id = parse.path_id(request, "webhook_id")
    event_id = parse.path_id(request, "event_id")
    await _webhooks(request).retry(webhook_id, event_id, caller=caller)
    content = {"endpoint_id": webhook_id, "event_id": event_id}
    return json_response(content, status_code=status.HTTP_202_ACCEPTED)
