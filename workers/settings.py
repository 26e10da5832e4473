"""arq worker settings: the job functions, the recovery cron, and `startup(ctx)` with the Settings."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.typing import WorkerSettingsBase
from arq.utils import timestamp_ms
from arq.worker import Function, Worker, func
from redis.commands.core import AsyncScript

from config import Settings, load_settings
from service.db import create_pool
from service.ops.heartbeats import HeartbeatReporter
from service.outbox import run_relay
from service.storage import Storages
from service.tasks import stop_task
from workers.ai.engines import build_ai_engine
from workers.ai.job import generate_ai
from workers.cleanup.job import cleanup_storage
from workers.deps import Deps
from workers.history import recorded
from workers.metrics import measured, start_metrics_server, stop_metrics_server
from workers.recovery import recover_stuck
from workers.transcription.engines import build_engine
from workers.transcription.job import transcribe
from workers.webhooks.job import deliver_webhook

log = logging.getLogger("capvid.worker")


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or load_settings()
    pool = await create_pool(settings)
    ctx["deps"] = Deps(
        settings=settings,
        pool=pool,
        redis=ctx["redis"],
        storages=Storages(settings),
        engine=build_engine(settings),
        ai_engine=build_ai_engine(settings),
    )
    # The speech model loads once per worker process, before the first job is taken.
    load = getattr(ctx["deps"].engine, "load", None)
    if load is not None:
        await load()
    ctx["relay"] = asyncio.create_task(
        run_relay(pool, settings.database_url, ctx["redis"], settings.arq_queue_name, settings.outbox_poll_seconds)
    )
    ctx["metrics_server"] = await start_metrics_server(settings)


async def shutdown(ctx: dict[str, Any]) -> None:
    await stop_metrics_server(ctx.get("metrics_server"))
    relay = ctx.get("relay")
    if relay is not None:
        await stop_task(relay)
    d: Deps | None = ctx.get("deps")
    if d is None:
        return
    await d.engine.aclose()
    await d.ai_engine.aclose()
    await d.storages.aclose()
    d.pool.close()
    await d.pool.wait_closed()


def functions(settings: Settings) -> list[Function]:
    # arq's own try limit only backs up ours (kept in Postgres): crashes also count as tries there.
    # measured outermost: the job's log context (job, video and request ids) covers its history writes too.
    return [
        func(measured(recorded(transcribe)), name="transcribe", timeout=settings.transcription_timeout_seconds,
             max_tries=settings.transcription_max_attempts + 3),
        func(measured(recorded(generate_ai)), name="generate_ai", timeout=900, max_tries=settings.ai_max_attempts + 3),
        func(measured(recorded(cleanup_storage)), name="cleanup_storage", timeout=3600, max_tries=1000),
        # Each webhook retry is a job of its own (a new outbox row): max_tries only covers crashes.
        func(measured(recorded(deliver_webhook)), name="deliver_webhook",
             timeout=int(settings.webhook_timeout_seconds) + 30, max_tries=5),
    ]


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `arq.Worker` for these settings (also the WorkerSettings class body)."""
    interval = settings.recovery_interval_seconds
    return {
        "functions": functions(settings),
        "cron_jobs": [
            cron(recover_stuck, name="recover_stuck", second=set(range(0, 60, interval)), run_at_startup=True,
                 timeout=120, keep_result=60)
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.arq_queue_name,
        # Ops read liveness from it (and from each worker's own heartbeat, see CapvidWorker).
        "health_check_interval": settings.worker_health_seconds,
        # The relay enqueues within milliseconds of a commit; polling often keeps pickup latency small.
        "poll_delay": 0.1,
        "keep_result": 3600,
        "max_jobs": 4,
        # SIGTERM/SIGINT: take no new job, let running ones finish this long, then cancel them
        # (a cancelled job hands its claim back and arq re-queues it). 0: cancel at once.
        "job_completion_wait": settings.worker_grace_seconds,
        "ctx": {"settings": settings},
    }


def build_worker_settings(settings: Settings) -> type[WorkerSettingsBase]:
    """A `WorkerSettings` class, as `arq` expects, bound to these settings."""
    return type("WorkerSettings", (), worker_settings(settings))


# KEYS: the job's in-progress key, the queue; ARGV: job id, now (ms), in-progress timeout (ms).
# The job's score when this worker now holds it, else nil: arq's start_jobs check, atomically.
TAKE_JOB = """
if redis.call('exists', KEYS[1]) == 1 then return nil end
local score = redis.call('zscore', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
redis.call('psetex', KEYS[1], ARGV[3], '1')
return score
"""


class CapvidWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat = HeartbeatReporter(self.queue_name, self.health_check_interval)
        self._slot_freed = asyncio.Event()
        self._poll_deadline = 0.0  # loop time: a poll takes ids it read until then

    async def record_health(self) -> None:
        # Called from every poll iteration: a worker whose loop is stuck stops reporting.
        await super().record_health()
        await self.heartbeat.maybe_report(
            self.pool,
            {
                "jobsRunning": sum(not t.done() for t in self.tasks.values()),
                "jobsComplete": self.jobs_complete,
                "jobsFailed": self.jobs_failed,
                "jobsRetried": self.jobs_retried,
            },
        )

    async def _poll_iteration(self) -> None:
        # arq 0.28 reads up to queue_read_limit ready ids, starts jobs until every slot is busy, then
        # sleeps poll_delay even if a slot frees a millisecond later: jobs shorter than poll_delay ran at
        # max_jobs / poll_delay a second. Here the ids one read returned are taken as slots free (see
        # start_jobs) until poll_delay has passed, and the queue is read again as soon as they are used up.
        self._poll_deadline = asyncio.get_running_loop().time() + self.poll_delay_s
        while True:
            await super()._poll_iteration()
            if self.job_counter < self.max_jobs or not self.allow_pick_jobs or not await self._slot_frees():
                return

    async def _slot_frees(self) -> bool:
        """Wait for a free job slot until this poll's deadline; whether there is one."""
        loop = asyncio.get_running_loop()
        while self.job_counter >= self.max_jobs:
            remaining = self._poll_deadline - loop.time()
            if remaining <= 0:
                return False
            self._slot_freed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._slot_freed.wait()
            except TimeoutError:
                return False
        return True

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq's own start_jobs takes a job with WATCH, EXISTS, ZSCORE and MULTI/EXEC: four round
        # trips to Redis per job, one after the other in the loop that starts every job. TAKE_JOB
        # makes the same check-and-set in one atomic script. Ids read up to poll_delay ago are safe to
        # take: the script skips a job that is running, finished, or re-queued for later meanwhile, and
        # reading the queue again for every freed slot cost a round trip a job.
        for job_id_b in job_ids:
            if self.job_counter >= self.max_jobs and not await self._slot_frees():
                return
            if not self.allow_pick_jobs:  # stopping (SIGTERM) while this waited for a slot
                return
            # arq's semaphore has max_jobs + 1 permits and job_counter < max_jobs: this never waits.
            await self.sem.acquire()
            self.job_counter += 1
            job_id = job_id_b.decode()
            score = await self._take_job(
                keys=[in_progress_key_prefix + job_id, self.queue_name],
                args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
            )
            if score is None:
                # Running elsewhere, finished, or re-queued for later by another worker.
                self._release_sem_dec_counter_on_complete()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    @functools.cached_property
    def _take_job(self) -> AsyncScript:
        return self.pool.register_script(TAKE_JOB)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    def handle_sig(self, signum: signal.Signals) -> None:
        self._mark_stopping()
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._mark_stopping()
        super().handle_sig_wait_for_completion(signum)

    def _mark_stopping(self) -> None:
        # Jobs cancelled from now on were stopped by us, not by their own timeout: see Deps.stopping.
        d = self.ctx.get("deps")
        if isinstance(d, Deps):
            d.stopping = True

    async def close(self) -> None:
        # arq 0.28 closes its pool with redis' deprecated close(); same steps, with aclose().
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        # handle_sig cancelled the running jobs: ending cancelled is their expected end here, and
        # must not skip the shutdown below (the relay and pools would outlive the worker).
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_check_key)
        await self.heartbeat.withdraw(self.pool)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def create_worker(settings: Settings, **overrides: Any) -> CapvidWorker:
    return CapvidWorker(**{**worker_settings(settings), **overrides})


def run_worker(settings: Settings, burst: bool = False) -> None:
    # arq runs on the loop current when the worker is built.
    asyncio.set_event_loop(new_event_loop())
    worker = create_worker(settings, burst=burst)
    worker.run()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux and macOS): the same asyncio API, with a loop and socket
    I/O written in C. A job is mostly round trips to Postgres and Redis, and on a small machine
    the loop's own work per round trip is a good part of a worker's CPU (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
