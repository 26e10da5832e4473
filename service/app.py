"""`create_app(settings)`: the one factory of the aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from arq.connections import ArqRedis

from config import Settings
from service import health
from service.ai import handlers as ai
from service.analytics import handlers as analytics
from service.analytics.viewers import VIEWS, ViewState
from service.api import Api
from service.comments import handlers as comments
from service.db import create_pool
from service.deletion import handlers as deletion
from service.errors import error_middleware
from service.events import stream as events
from service.events.hub import end_event_streams, events_ctx
from service.keys import PG_POOL, REDIS, SETTINGS, STORAGES
from service.observability import web as observability
from service.openapi import docs_api
from service.ops import handlers as ops
from service.outbox import run_relay
from service.storage import Storages
from service.tasks import stop_task
from service.transcription import handlers as transcription
from service.uploads import handlers as uploads
from service.videos import handlers as videos
from service.webhooks import handlers as webhooks

# Room for long tokens and ids, so they get a JSON 401/400 instead of aiohttp's plain-text 400.
MAX_LINE_AND_FIELD = 64 * 1024
FEATURE_APIS: list[Api] = [
    videos.api, uploads.api, transcription.api, ai.api, deletion.api, analytics.api, comments.api, health.api,
    observability.api, webhooks.api, ops.api, events.api,
]


def package_version() -> str:
    try:
        return version("capvid")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        # Outermost first: request id, access log and metrics see every answer, rate limit before any work.
        middlewares=[*observability.middlewares(settings), error_middleware],
        client_max_size=1024 * 1024,
        handler_args={"max_line_size": MAX_LINE_AND_FIELD, "max_field_size": MAX_LINE_AND_FIELD},
    )
    app[SETTINGS] = settings
    app[VIEWS] = ViewState(settings)
    observability.install(app, settings)
    operations = [op for api in FEATURE_APIS for op in api.operations]
    for api in [*FEATURE_APIS, docs_api(operations, package_version())]:
        api.add_to(app)
    app.cleanup_ctx.extend([postgres_ctx, redis_ctx, storage_ctx, relay_ctx, events_ctx])
    app.on_shutdown.append(end_event_streams)
    return app


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PG_POOL] = await create_pool(app[SETTINGS])
    yield
    app[PG_POOL].close()
    await app[PG_POOL].wait_closed()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    # Not arq's create_pool: it pings at start, and the API must start and take uploads while
    # Redis is down (the outbox keeps the job requests until it is back).
    app[REDIS] = ArqRedis.from_url(str(app[SETTINGS].redis_url), socket_connect_timeout=2, socket_timeout=5)
    yield
    await app[REDIS].aclose()


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    app[STORAGES] = Storages(app[SETTINGS])
    yield
    await app[STORAGES].aclose()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    task = asyncio.create_task(
        run_relay(
            app[PG_POOL], str(settings.database_url), app[REDIS], settings.arq_queue_name, settings.outbox_poll_seconds
        )
    )
    yield
    await stop_task(task)
