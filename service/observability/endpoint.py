"""`GET /metrics` of a web process, in the Prometheus text format.

Open by default, like `/healthz`; with METRICS_TOKEN set it wants `Authorization: Bearer
<METRICS_TOKEN>`. The queue depth and outbox backlog are read at scrape time with short
timeouts; when Redis or Postgres does not answer they are left out and the scrape still
answers 200 with everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import CollectorRegistry

from service.api import Api
from service.db import fetchone
from service.errors import unauthorized
from service.keys import PG_POOL, REDIS, SETTINGS
from service.metrics import (
    CONTENT_TYPE,
    OUTBOX_BACKLOG,
    OUTBOX_REGISTRY,
    QUEUE_DEPTH,
    QUEUE_REGISTRY,
    exposition,
    scrape_allowed,
)

api = Api()
log = logging.getLogger("capvid.metrics")
REFRESH_TIMEOUT_SECONDS = 1.0
UNSENT_OUTBOX_ROWS = "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"


@api.route(
    "GET", "/metrics", auth=False, tag="health", response_media_type="text/plain",
    summary="Prometheus metrics of this process",
    description="The Prometheus text format. When METRICS_TOKEN is set, "
    "`Authorization: Bearer <METRICS_TOKEN>` is required (401 otherwise).",
)
async def metrics(request: web.Request) -> web.StreamResponse:
    if not scrape_allowed(request.headers.get("Authorization"), request.app[SETTINGS].metrics_token):
        raise unauthorized()
    fresh = await refresh_backlog(request.app)
    return web.Response(body=exposition(*fresh), headers={"Content-Type": CONTENT_TYPE})


async def refresh_backlog(app: web.Application) -> list[CollectorRegistry]:
    """Read queue depth and outbox backlog; the registries of those that answered in time."""
    redis, pool = app[REDIS], app[PG_POOL]
    depth, backlog = await asyncio.gather(
        _within(redis.zcard(app[SETTINGS].arq_queue_name)), _within(fetchone(pool, UNSENT_OUTBOX_ROWS))
    )
    fresh = []
    if isinstance(depth, int):
        QUEUE_DEPTH.set(depth)
        fresh.append(QUEUE_REGISTRY)
    if isinstance(backlog, dict):
        OUTBOX_BACKLOG.set(backlog["n"])
        fresh.append(OUTBOX_REGISTRY)
    return fresh


async def _within(probe: Awaitable[object]) -> object:
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS):
            return await probe
    except Exception as exc:
        log.debug("metrics: a backlog gauge is left out of this scrape: %s", f"{type(exc).__name__}: {exc}")
        return None
