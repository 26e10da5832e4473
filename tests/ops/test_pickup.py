"""How a worker takes a job off the queue (CapvidWorker.start_jobs: arq's check-and-set as one script)."""

from __future__ import annotations

import asyncio
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import func

from config import Settings
from workers.settings import CapvidWorker


async def test_a_job_is_taken_once_never_while_held_elsewhere_nor_before_its_time(settings: Settings):
    redis = ArqRedis.from_url(settings.redis_url)
    queue = settings.arq_queue_name
    ran: list[str] = []

    async def record(ctx: dict[str, Any], name: str) -> None:
        ran.append(name)

    worker = CapvidWorker(functions=[func(record, name="record")], redis_pool=redis, queue_name=queue,
                          handle_signals=False, keep_result=60)
    try:
        for name in ("now", "elsewhere"):
            await redis.enqueue_job("record", name, _job_id=name, _queue_name=queue)
        await redis.enqueue_job("record", "later", _job_id="later", _queue_name=queue, _defer_by=60)
        await redis.set(in_progress_key_prefix + "elsewhere", b"1")  # another worker runs it

        await worker.start_jobs([b"now", b"elsewhere", b"later", b"gone"])
        assert set(worker.tasks) == {"now"}
        await asyncio.gather(*worker.tasks.values())
        await worker.start_jobs([b"now"])  # finished: no longer queued
        await asyncio.gather(*worker.tasks.values())

        assert ran == ["now"]
        # Every slot given back (arq's bounded semaphore counts max_jobs + 1: the poll takes one too).
        assert worker.job_counter == 0 and worker.sem._value == worker.max_jobs + 1
        assert await redis.zscore(queue, "later") is not None  # still waiting for its time
        assert await redis.get(in_progress_key_prefix + "elsewhere") == b"1"
        assert await redis.pttl(in_progress_key_prefix + "now") == -2  # released when it ended
    finally:
        await worker.close()
        await redis.aclose()
