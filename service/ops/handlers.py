"""Ops routes: the queue at a glance, job history, retry and requeue, and the dashboard page.

Admin tokens only. A valid token of a non-admin user gets 404 `{"error": "Not found"}`, as
for a path that does not exist; a missing or bad token gets the usual 401 (the routes are
listed in the public OpenAPI document anyway, and an admin with a revoked token should be
told so rather than sent looking for a missing route).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, get_args

from aiohttp import web
from redis.exceptions import RedisError

from config import Settings
from service.api import Api, json_response, parse_query
from service.auth.caller import User, require_user
from service.db import Row, connection, transaction
from service.errors import conflict, not_found, video_not_found
from service.keys import PG_POOL, REDIS, SETTINGS
from service.ops import queries as q
from service.ops.heartbeats import read_arq_health, read_heartbeats
from service.ops.models import (
    ArqHealth,
    ErroredVideo,
    ErroredVideos,
    FunctionFigures,
    JobPage,
    JobRun,
    JobsQuery,
    OutboxFigures,
    QueueOut,
    QueueQuery,
    RedisFigures,
    RequeueOut,
    RetryOut,
    RetryQuery,
    StuckVideo,
    StuckVideos,
    WorkerOut,
)
from service.ops.page import page_response
from service.ops.queue import QueueCounts, queue_counts
from service.outbox import JobFunction
from workers.recovery import recover

log = logging.getLogger("capvid.ops")
api = Api()
ADMIN_ERRORS = (400, 401, 404)
# Redis slow or away: the queue figures are left out rather than holding the page.
REDIS_TIMEOUT_SECONDS = 3.0
KNOWN_FUNCTIONS: tuple[str, ...] = get_args(JobFunction)


async def require_admin(request: web.Request) -> User:
    user = await require_user(request)
    if not user.is_admin:
        raise not_found()
    return user


@api.route(
    "GET", "/api/ops/queue", query=QueueQuery, response=QueueOut, errors=ADMIN_ERRORS, tag="ops",
    description="Per job function: queued, deferred, running, finished and failed in the last hour; the outbox "
    "backlog; workers and their last heartbeat; stuck videos; videos in ERROR; the latest failures. When Redis "
    "does not answer, its parts are null and `redis.available` is false. Admin tokens only (others: 404).",
)
async def ops_queue(request: web.Request) -> web.StreamResponse:
    """What the queue holds, what is stuck and what failed."""
    await require_admin(request)
    query = parse_query(request, QueueQuery)
    settings = request.app[SETTINGS]
    redis_figures, counts, workers = await _read_redis(request, settings)
    async with connection(request.app[PG_POOL]) as tx:
        outcomes = await q.outcomes_last_hour(tx)
        backlog = await q.outbox_backlog(tx)
        stuck_count, stuck_rows = await q.stuck_videos(tx, settings.unclaimed_requeue_seconds, query.failures)
        errored_count, errored_rows = await q.errored_videos(tx, query.failures)
        failures = await q.job_runs(tx, query.failures, state="failed")
    return json_response(
        QueueOut(
            generated_at=datetime.now(timezone.utc),
            redis=redis_figures,
            functions=_function_figures(counts, outcomes, redis_figures.available),
            outbox=OutboxFigures(
                unsent=sum(r["count"] for r in backlog),
                oldest_seconds=max((r["oldest_seconds"] for r in backlog), default=None),
                by_function={r["function"]: r["count"] for r in backlog},
            ),
            workers=None if workers is None else [WorkerOut.model_validate(w) for w in workers],
            worker_health_seconds=settings.worker_health_seconds,
            stuck=StuckVideos(count=stuck_count, videos=[StuckVideo.model_validate(r) for r in stuck_rows]),
            errored=ErroredVideos(count=errored_count, videos=[ErroredVideo.model_validate(r) for r in errored_rows]),
            failures=[job_run(r) for r in failures],
        )
    )


async def _read_redis(
    request: web.Request, settings: Settings
) -> tuple[RedisFigures, QueueCounts | None, list[dict[str, Any]] | None]:
    redis, queue = request.app[REDIS], settings.arq_queue_name
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            counts = await queue_counts(redis, queue)
            workers = await read_heartbeats(redis, queue, settings.worker_health_seconds)
            health = await read_arq_health(redis, queue)
    except (RedisError, OSError, TimeoutError) as exc:
        log.info("ops: Redis unavailable: %s", exc)
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return RedisFigures(available=False, error=error, queue_name=queue), None, None
    figures = RedisFigures(
        available=True,
        queue_name=queue,
        total=counts.total,
        queued=counts.queued,
        deferred=counts.deferred,
        in_progress=counts.in_progress,
        sampled=counts.sampled,
        health_check=ArqHealth.model_validate(health) if health else None,
    )
    return figures, counts, workers


def _function_figures(counts: QueueCounts | None, outcomes: list[Row], redis_up: bool) -> list[FunctionFigures]:
    finished: dict[str, dict[str, int]] = {}
    for row in outcomes:
        finished.setdefault(row["function"], {})[row["outcome"]] = row["count"]
    names = set(KNOWN_FUNCTIONS) | set(finished) | set(counts.functions if counts else ())
    now_ms = time.time() * 1000
    figures = []
    for name in sorted(names):
        queued = counts.functions.get(name) if counts else None
        done = finished.get(name, {})
        oldest = queued.oldest_due_ms if queued else None
        figures.append(
            FunctionFigures(
                function=name,
                queued=queued.queued if queued else (0 if redis_up else None),
                deferred=queued.deferred if queued else (0 if redis_up else None),
                in_progress=queued.in_progress if queued else (0 if redis_up else None),
                oldest_queued_seconds=None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
                completed_last_hour=done.get("complete", 0) + done.get("skipped", 0),
                failed_last_hour=sum(done.get(o, 0) for o in q.FAILED_OUTCOMES),
                outcomes_last_hour=done,
            )
        )
    return figures


def job_run(row: Row) -> JobRun:
    return JobRun.model_validate({**row, "kind": q.KIND_OF_FUNCTION.get(row["function"])})


@api.route(
    "GET", "/api/ops/jobs", query=JobsQuery, response=JobPage, errors=ADMIN_ERRORS, tag="ops",
    description="Job history (kept JOB_HISTORY_DAYS), newest first. `state=failed`: final failures (outcome error "
    "or failed); `state=running`: started and not finished. Admin tokens only (others: 404).",
)
async def ops_jobs(request: web.Request) -> web.StreamResponse:
    """Job executions with their timings, outcome and reason."""
    await require_admin(request)
    query = parse_query(request, JobsQuery)
    before = int(query.cursor) if query.cursor else None
    async with connection(request.app[PG_POOL]) as tx:
        rows = await q.job_runs(tx, query.limit + 1, before, query.state, query.function, query.video_id)
    page, more = rows[: query.limit], len(rows) > query.limit
    return json_response(JobPage(jobs=[job_run(r) for r in page], next_cursor=str(page[-1]["id"]) if more else None))


@api.route(
    "POST", "/api/ops/retry", query=RetryQuery, response=RetryOut, errors=(*ADMIN_ERRORS, 409), tag="ops",
    description="Starts a new run of a video's transcription or AI generation that is in ERROR (with its job "
    "request, in one transaction). 404: no such video; 409: not in ERROR (or no media, or AI disabled). "
    "Admin tokens only (others: 404).",
)
async def ops_retry(request: web.Request) -> web.StreamResponse:
    """Retry a video's failed transcription or AI generation."""
    user = await require_admin(request)
    query = parse_query(request, RetryQuery)
    try:
        async with transaction(request.app[PG_POOL]) as tx:
            done = await q.retry_video(tx, query.video_id, query.kind, request.app[SETTINGS].ai_enabled)
    except q.NotRetryable as exc:
        raise conflict(f"Cannot retry: {exc}") from None
    if done is None:
        raise video_not_found()
    log.info("ops: %s retried %s of video %s (run %s)", user.email, query.kind, query.video_id, done["run"])
    return json_response(RetryOut.model_validate(done))


@api.route(
    "POST", "/api/ops/requeue-stuck", response=RequeueOut, errors=ADMIN_ERRORS, tag="ops",
    description="Runs one recovery pass now (what the recovery cron does every RECOVERY_INTERVAL_SECONDS): stuck "
    "work is requested again, or set to ERROR when its last attempt died. Admin tokens only (others: 404).",
)
async def ops_requeue_stuck(request: web.Request) -> web.StreamResponse:
    """Requeue stuck transcriptions, AI generations and storage cleanups."""
    user = await require_admin(request)
    counts = await recover(request.app[PG_POOL], request.app[SETTINGS])
    log.info("ops: %s requeued stuck work: %s", user.email, counts)
    # Only the documented counts: a kind of work recovery learns later must not break this answer.
    documented = {field.alias for field in RequeueOut.model_fields.values()}
    return json_response(RequeueOut.model_validate({k: v for k, v in counts.items() if k in documented}))


@api.route(
    "GET", "/ops", auth=False, response_media_type="text/html", tag="ops",
    summary="The ops dashboard (asks for an admin token, kept in the browser session only)",
)
async def ops_page(request: web.Request) -> web.StreamResponse:
    return page_response()
