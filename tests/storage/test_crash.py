"""A worker dies in the middle of a cleanup: recovery requests it again once it has been
silent for UNCLAIMED_REQUEUE_SECONDS, and the next run removes the rest."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq.connections import ArqRedis

import workers.deps
from config import Settings
from service.app import create_app
from service.storage import Storage, build_storage
from tests.helpers import drain, query, write
from tests.storage.helpers import delete, keys_under, rows_of, seed, uploaded_video
from workers.cleanup.job import cleanup_storage
from workers.recovery import recover_stuck
from workers.settings import shutdown, startup


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "unclaimed_requeue_seconds": 1.0}


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it (it is not an Exception)."""


class DiesAfterFirstBatch:
    def __init__(self, inner: Storage) -> None:
        self.inner, self.backend, self.batches = inner, inner.backend, 0

    async def delete_keys(self, keys: list[str]) -> list[tuple[str, str]]:
        if self.batches == 1:
            raise WorkerKilled()
        self.batches += 1
        return await self.inner.delete_keys(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def worker_context(settings: Settings) -> dict[str, Any]:
    ctx: dict[str, Any] = {"settings": settings, "redis": ArqRedis.from_url(settings.redis_url)}
    await startup(ctx)
    return ctx


async def close_context(ctx: dict[str, Any]) -> None:
    await shutdown(ctx)
    await ctx["redis"].aclose()


async def test_a_cleanup_whose_worker_died_is_requested_again_and_finishes(
    aiohttp_client: Any, settings: Settings, alice: str, backend: str, monkeypatch: pytest.MonkeyPatch
):
    # An app without Redis, so that no relay hands the request to Redis behind the test's back.
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})))
    video = await uploaded_video(client, alice)
    storage = build_storage(settings, backend)
    try:
        await seed(storage, video["prefix"], 2099)
    finally:
        await storage.aclose()
    assert await delete(client, alice, video["id"]) == 200
    [request] = await write(
        settings, "UPDATE outbox SET sent_at = now() WHERE function = 'cleanup_storage' RETURNING video_id, args"
    )  # delivered to the worker that is about to die

    wrapped: dict[str, DiesAfterFirstBatch] = {}
    real_storage_for = workers.deps.Deps.storage_for

    def dying_storage_for(self: workers.deps.Deps, backend: str) -> Any:
        return wrapped.setdefault(backend, DiesAfterFirstBatch(real_storage_for(self, backend)))

    monkeypatch.setattr(workers.deps.Deps, "storage_for", dying_storage_for)
    ctx = await worker_context(settings)
    try:
        with pytest.raises(WorkerKilled):
            await cleanup_storage(ctx, request["video_id"], request["args"])
    finally:
        monkeypatch.undo()
        await close_context(ctx)
    assert len(await keys_under(settings, backend, video["prefix"])) == 2100 - 1000, "died after one batch"
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert not cleanup["finished"]

    await drain(settings, cron_jobs=[])  # workers without the recovery cron
    assert len(await keys_under(settings, backend, video["prefix"])) == 1100, "nothing in Redis will run it"
    await asyncio.sleep(1.2)  # UNCLAIMED_REQUEUE_SECONDS without a heartbeat
    ctx = await worker_context(settings)
    try:
        assert (await recover_stuck(ctx))["cleanups"] == 1
    finally:
        await close_context(ctx)
    await drain(settings)

    assert await keys_under(settings, backend, video["prefix"]) == []
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert cleanup["finished"] and cleanup["last_error"] is None
    attempts = query(settings, "SELECT attempts FROM storage_cleanups WHERE video_id = %s", (video["id"],))
    assert attempts == [{"attempts": 2}]
