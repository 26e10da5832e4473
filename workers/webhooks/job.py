"""The arq job `deliver_webhook`: one attempt of one delivery.

Idempotent: an attempt is claimed in Postgres first, so a delivery already delivered (or given
up, cancelled, or in flight in another job) is not sent again. A failed attempt requests the
next one through the outbox, deferred by exponential backoff, until WEBHOOK_RETRY_WINDOW_SECONDS
after the first; each retry is a job of its own, so arq's max_tries never cuts the window short.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiopg
from pydantic import BaseModel, Field

from config import Settings
from service.db import transaction
from service.outbox import request_job
from workers.deps import deps
from workers.webhooks import queries as q
from workers.webhooks.sender import Answer, delivery_headers, post

log = logging.getLogger("capvid.webhooks")
# The lease outlives the HTTP call's deadline by this much (database round trips, a slow loop).
LEASE_MARGIN_SECONDS = 30.0


class DeliverArgs(BaseModel):
    delivery_id: int = Field(alias="deliveryId")


async def deliver_webhook(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
    d = deps(ctx)
    return await deliver(d.pool, d.settings, DeliverArgs.model_validate(args).delivery_id)


def retry_delay(settings: Settings, attempt: int) -> float:
    return min(settings.webhook_retry_max_seconds, settings.webhook_retry_base_seconds * 2 ** min(attempt - 1, 60))


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def deliver(pool: aiopg.Pool, settings: Settings, delivery_id: int) -> str:
    async with transaction(pool) as tx:
        claimed = await q.claim(tx, delivery_id, settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    if claimed is None:
        return "not claimable: already delivered, given up, cancelled, not yet due or in flight"
    attempt = int(claimed["attempts"])
    body = encode(claimed["payload"])
    headers = delivery_headers(claimed["secret"], claimed["event_id"], claimed["event_type"], body)
    try:
        answer = await post(
            claimed["url"], body, headers, settings.webhook_timeout_seconds, settings.webhook_allow_private_urls
        )
    except asyncio.CancelledError:
        # The worker is stopping: hand the attempt back so the job's re-run can claim it at once.
        await asyncio.shield(_release(pool, delivery_id, attempt))
        raise
    return await _record(pool, settings, claimed, attempt, answer)


async def _release(pool: aiopg.Pool, delivery_id: int, attempt: int) -> None:
    async with transaction(pool) as tx:
        await q.release(tx, delivery_id, attempt)


async def _record(pool: aiopg.Pool, settings: Settings, claimed: dict[str, Any], attempt: int, answer: Answer) -> str:
    delivery_id = int(claimed["id"])
    async with transaction(pool) as tx:
        if answer.delivered:
            assert answer.status is not None
            if await q.delivered(tx, delivery_id, attempt, answer.status):
                return f"delivered on attempt {attempt} (HTTP {answer.status})"
            return "lease lost: delivered, but another attempt holds the delivery"
        if answer.status == 410:
            reason = f"the receiver answered 410 Gone to delivery {delivery_id}"
            if await q.gone(tx, delivery_id, attempt, claimed["webhook_id"], reason):
                log.info("webhook %s disabled: %s", claimed["webhook_id"], reason)
                return f"ERROR: {reason}; webhook disabled"
            return "lease lost: answered 410, but another attempt holds the delivery"
        delay = retry_delay(settings, attempt)
        status = await q.failed_attempt(
            tx, delivery_id, attempt, answer.status, answer.error, delay, settings.webhook_retry_window_seconds
        )
        if status == "pending":
            await request_job(tx, "deliver_webhook", claimed["video_id"], {"deliveryId": delivery_id}, delay)
            return f"retry: attempt {attempt} failed ({answer.error}); next in {delay:g} s"
    if status == "failed":
        return f"ERROR: attempt {attempt} failed ({answer.error}); gave up"
    return "lease lost: failed, but another attempt holds the delivery"
