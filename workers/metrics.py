"""Worker metrics and job log context.

`measured(fn)` wraps a job function: it sets the job's log context (job id, video id, and
the id of the HTTP request that caused the job, carried in its arguments), counts the
execution by function and outcome, and times it. `start_metrics_server` serves this
process's metrics on WORKER_METRICS_PORT (0: not served) from the worker's own event loop.
Several workers on one host need one port each; a worker whose port is taken logs an error
and runs on without serving metrics.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, get_args

from aiohttp import web

from config import Settings
from service.metrics import (
    CONTENT_TYPE,
    JOB_SECONDS,
    JOBS,
    TRANSCRIPTION_REAL_TIME_FACTOR,
    exposition,
    scrape_allowed,
)
from service.observability.context import REQUEST_ID_ARG, bound
from workers.outcome import Outcome, outcome_of_exception, outcome_of_result

log = logging.getLogger("capvid.jobs")

JobFn = Callable[..., Awaitable[Any]]
# What arq's `func` accepts: a coroutine function `(ctx, *args, **kwargs)`.
JobCoroutine = Callable[..., Coroutine[Any, Any, Any]]
_QUIET: set[Outcome] = {"complete", "skipped", "retry", "cancelled"}


def measured(fn: JobFn, name: str | None = None) -> JobCoroutine:
    """Wrap a job function `fn(ctx, video_id, args)`: log context, outcome counter, duration histogram."""
    function = name or fn.__name__
    # Every series exists from the start (at 0), so rates and alerts work before the first failure; looked
    # up once here, not on every job.
    seconds = JOB_SECONDS.labels(function)
    counted = {outcome: JOBS.labels(function, outcome) for outcome in get_args(Outcome)}

    @functools.wraps(fn)
    async def job(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        with bound(**job_context(ctx, args)):
            # DEBUG: arq logs every start already; the end line below carries the ids and the outcome.
            log.debug("job %s started", function, extra={"function": function, "try": ctx.get("job_try")})
            started = time.perf_counter()
            outcome: Outcome = "failed"
            try:
                result = await fn(ctx, *args, **kwargs)
                outcome = outcome_of_result(result)
                return result
            except BaseException as exc:
                outcome = outcome_of_exception(exc)
                raise
            finally:
                elapsed = time.perf_counter() - started
                counted[outcome].inc()
                seconds.observe(elapsed)
                log.log(
                    logging.INFO if outcome in _QUIET else logging.WARNING,
                    "job %s ended: %s", function, outcome,
                    extra={"function": function, "outcome": outcome, "duration_ms": round(elapsed * 1000, 2)},
                )

    return job


def job_context(ctx: dict[str, Any], args: tuple[Any, ...]) -> dict[str, str | None]:
    """The ids of a call `(ctx, video_id, {..., "_request_id": ...})`, as far as they are known."""
    video_id = args[0] if args and isinstance(args[0], str) else None
    extra = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    request_id = extra.get(REQUEST_ID_ARG)
    job_id = ctx.get("job_id")
    return {
        "job_id": str(job_id) if job_id is not None else None,
        "video_id": video_id,
        "request_id": request_id if isinstance(request_id, str) else None,
    }


def observe_real_time_factor(elapsed_seconds: float, media_seconds: float | None) -> None:
    """A transcription took `elapsed_seconds` for `media_seconds` of media (unknown or 0: not observed)."""
    if media_seconds:
        TRANSCRIPTION_REAL_TIME_FACTOR.observe(elapsed_seconds / media_seconds)


async def start_metrics_server(settings: Settings) -> web.AppRunner | None:
    """Serve GET /metrics on WORKER_METRICS_HOST:WORKER_METRICS_PORT; None when disabled or the port is taken."""
    if settings.worker_metrics_port == 0:
        return None
    app = web.Application()
    app.router.add_get("/metrics", _metrics_handler(settings))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.worker_metrics_host, settings.worker_metrics_port).start()
    except OSError as exc:
        log.error(
            "worker metrics not served: %s:%d: %s (give each worker on a host its own WORKER_METRICS_PORT)",
            settings.worker_metrics_host, settings.worker_metrics_port, exc,
        )
        await runner.cleanup()
        return None
    log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port)
    return runner


async def stop_metrics_server(runner: web.AppRunner | None) -> None:
    if runner is not None:
        await runner.cleanup()


def _metrics_handler(settings: Settings) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def metrics(request: web.Request) -> web.StreamResponse:
        if not scrape_allowed(request.headers.get("Authorization"), settings.metrics_token):
            return web.json_response({"error": "Unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})

    return metrics
