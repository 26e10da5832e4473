"""Webhooks: an owner's endpoints that hear about the state transitions of the owner's videos."""

from __future__ import annotations

from datetime import timezone

from aiohttp import web

from service.api import Api, json_response, parse_json_body, parse_query
from service.auth.caller import require_user
from service.db import Row
from service.errors import bad_request, conflict, not_found
from service.keys import PG_POOL, SETTINGS
from service.webhooks import queries as q
from service.webhooks.models import (
    DeliveriesQuery,
    Delivery,
    DeliveryPage,
    NewWebhook,
    Webhook,
    WebhookBody,
    WebhookIdQuery,
    WebhookList,
)
from service.webhooks.signing import new_secret
from service.webhooks.urls import RefusedUrl, check_url

api = Api()
WEBHOOK_NOT_FOUND = "Webhook not found"


def webhook_from_row(row: Row) -> Webhook:
    return Webhook(
        id=str(row["id"]),
        url=row["url"],
        events=row["events"],
        created_at=row["created_at"].astimezone(timezone.utc),
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
    )


def delivery_from_row(row: Row) -> Delivery:
    return Delivery.model_validate({**row, "id": str(row["id"]), "webhook_id": str(row["webhook_id"])})


@api.route(
    "POST",
    "/api/webhooks",
    body=WebhookBody,
    response=NewWebhook,
    status=201,
    errors=(400, 401, 409),
    tag="webhooks",
    description="Deliveries are POSTed as JSON, signed `Capvid-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "
    '"t.body">` with the secret, which this response alone shows. 409: the caller has the most webhooks allowed.',
)
async def create_webhook(request: web.Request) -> web.StreamResponse:
    """Add a webhook for your videos' events."""
    user = await require_user(request)
    body = await parse_json_body(request, WebhookBody)
    try:
        await check_url(body.url, request.app[SETTINGS].webhook_allow_private_urls)
    except RefusedUrl as exc:
        raise bad_request(f"url: {exc}") from None
    secret = new_secret()
    row = await q.insert_webhook(request.app[PG_POOL], user.id, body.url, list(body.events), secret)
    if row is None:
        raise conflict(f"at most {q.MAX_WEBHOOKS_PER_USER} webhooks per user; delete one first")
    created = webhook_from_row(row)
    return json_response(NewWebhook(**created.model_dump(), secret=secret), status=201)


@api.route("GET", "/api/webhooks", response=WebhookList, errors=(400, 401), tag="webhooks")
async def list_webhooks(request: web.Request) -> web.StreamResponse:
    """Your webhooks (their secrets are not shown again)."""
    user = await require_user(request)
    rows = await q.owner_webhooks(request.app[PG_POOL], user.id)
    return json_response(WebhookList(webhooks=[webhook_from_row(r) for r in rows]))


@api.route(
    "DELETE", "/api/webhooks", query=WebhookIdQuery, status=204, errors=(400, 401, 404), tag="webhooks",
    description="Deletes the webhook and its delivery log; pending deliveries are not sent.",
)
async def remove_webhook(request: web.Request) -> web.StreamResponse:
    """Delete one of your webhooks."""
    user = await require_user(request)
    query = parse_query(request, WebhookIdQuery)
    if not await q.delete_webhook(request.app[PG_POOL], query.webhook_id, user.id):
        raise not_found(WEBHOOK_NOT_FOUND)
    return web.Response(status=204)


@api.route(
    "GET", "/api/webhooks/deliveries", query=DeliveriesQuery, response=DeliveryPage, errors=(400, 401, 404),
    tag="webhooks",
)
async def list_deliveries(request: web.Request) -> web.StreamResponse:
    """The delivery log of your webhooks, newest first."""
    user = await require_user(request)
    query = parse_query(request, DeliveriesQuery)
    before = int(query.cursor) if query.cursor else None
    rows = await q.owner_deliveries(request.app[PG_POOL], user.id, query.webhook_id, query.limit + 1, before)
    if rows is None:
        raise not_found(WEBHOOK_NOT_FOUND)
    page, more = rows[: query.limit], len(rows) > query.limit
    next_cursor = str(page[-1]["id"]) if more else None
    return json_response(DeliveryPage(deliveries=[delivery_from_row(r) for r in page], next_cursor=next_cursor))
