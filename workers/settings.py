"""arq worker settings: the job functions, the recovery cron, and `startup(ctx)` with the Settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.typing import WorkerSettingsBase
from arq.worker import Function, Worker, func

from config import Settings, load_settings
from service.db import create_pool
from service.outbox import run_relay
from service.storage import Storages
from service.tasks import stop_task
from workers.ai.engines import build_ai_engine
from workers.ai.job import generate_ai
from workers.cleanup.job import cleanup_storage
from workers.deps import Deps
from workers.recovery import recover_stuck
from workers.transcription.engines import build_engine
from workers.transcription.job import transcribe

log = logging.getLogger("capvid.worker")
HEALTH_CHECK_SECONDS = 10


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


async def shutdown(ctx: dict[str, Any]) -> None:
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
    return [
        func(transcribe, name="transcribe", timeout=settings.transcription_timeout_seconds,
             max_tries=settings.transcription_max_attempts + 3),
        func(generate_ai, name="generate_ai", timeout=900, max_tries=settings.ai_max_attempts + 3),
        func(cleanup_storage, name="cleanup_storage", timeout=3600, max_tries=1000),
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
        "health_check_interval": HEALTH_CHECK_SECONDS,
        # The relay enqueues within milliseconds of a commit; polling often keeps pickup latency small.
        "poll_delay": 0.1,
        "keep_result": 3600,
        "max_jobs": 4,
        "ctx": {"settings": settings},
    }


def build_worker_settings(settings: Settings) -> type[WorkerSettingsBase]:
    """A `WorkerSettings` class, as `arq` expects, bound to these settings."""
    return type("WorkerSettings", (), worker_settings(settings))


class CapvidWorker(Worker):
    async def close(self) -> None:
        # arq 0.28 closes its pool with redis' deprecated close(); same steps, with aclose().
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values())
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def create_worker(settings: Settings, **overrides: Any) -> CapvidWorker:
    return CapvidWorker(**{**worker_settings(settings), **overrides})


def run_worker(settings: Settings, burst: bool = False) -> None:
    worker = create_worker(settings, burst=burst)
    worker.run()
