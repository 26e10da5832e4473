"""How a worker takes a job off the queue (CapvidWorker.start_jobs: arq's check-and-set as one script;
CapvidWorker._poll_iteration: the ids one read returned are taken as slots free)."""

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
        # Every slot given back (arq's bounded semaphore counts max_jobs + 1).
        assert worker.job_counter == 0 and worker.sem._value == worker.max_jobs + 1
        assert await redis.zscore(queue, "later") is not None  # still waiting for its time
        assert await redis.get(in_progress_key_prefix + "elsewhere") == b"1"
        assert await redis.pttl(in_progress_key_prefix + "now") == -2  # released when it ended
    finally:
        await worker.close()
        await redis.aclose()


class Gate:
    """Jobs that each wait for their own release, recording the order they started in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.released: dict[str, asyncio.Event] = {}

    async def job(self, ctx: dict[str, Any], name: str) -> None:
        self.started.append(name)
        await self.released.setdefault(name, asyncio.Event()).wait()

    def release(self, name: str) -> None:
        self.released.setdefault(name, asyncio.Event()).set()


def gated_worker(settings: Settings, redis: ArqRedis, gate: Gate, poll_delay: float) -> tuple[CapvidWorker, list[int]]:
    """One slot; and how many ids each read of the queue returned."""
    worker = CapvidWorker(functions=[func(gate.job, name="gated")], redis_pool=redis,
                          queue_name=settings.arq_queue_name, handle_signals=False, keep_result=60, max_jobs=1,
                          poll_delay=poll_delay)
    reads: list[int] = []
    read_queue = redis.zrangebyscore

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        ids = await read_queue(*args, **kwargs)
        reads.append(len(ids))
        return ids

    redis.zrangebyscore = counted_read  # type: ignore[method-assign]
    return worker, reads


async def enqueue(redis: ArqRedis, queue: str, *names: str) -> None:
    for name in names:
        await redis.enqueue_job("gated", name, _job_id=name, _queue_name=queue)


async def test_one_read_of_the_queue_feeds_each_slot_as_it_frees(settings: Settings):
    redis = ArqRedis.from_url(settings.redis_url)
    gate = Gate()
    worker, reads = gated_worker(settings, redis, gate, poll_delay=10)
    try:
        await enqueue(redis, settings.arq_queue_name, "a", "b", "c")
        polling = asyncio.ensure_future(worker._poll_iteration())
        for name in ("a", "b", "c"):
            await until(lambda: name in gate.started)
            assert worker.job_counter == 1
            gate.release(name)
        # All three ran through the one slot well inside poll_delay, from the ids of one read; the
        # iteration reads again once they are used up, and ends: the queue is empty.
        await asyncio.wait_for(polling, 5)
        assert gate.started == ["a", "b", "c"]
        assert reads == [3, 0]
    finally:
        await worker.close()
        await redis.aclose()


async def test_a_stopping_worker_takes_no_more_of_the_ids_it_read(settings: Settings):
    redis = ArqRedis.from_url(settings.redis_url)
    gate = Gate()
    worker, _ = gated_worker(settings, redis, gate, poll_delay=10)
    try:
        await enqueue(redis, settings.arq_queue_name, "a", "b")
        polling = asyncio.ensure_future(worker._poll_iteration())
        await until(lambda: gate.started == ["a"])
        worker.allow_pick_jobs = False  # what SIGTERM does (handle_sig_wait_for_completion)
        gate.release("a")
        await asyncio.wait_for(polling, 5)
        assert gate.started == ["a"]
        assert await redis.zscore(settings.arq_queue_name, "b") is not None  # left for another worker
    finally:
        gate.release("b")
        await worker.close()
        await redis.aclose()


async def test_ids_are_taken_for_poll_delay_at_most_then_the_queue_is_read_again(settings: Settings):
    redis = ArqRedis.from_url(settings.redis_url)
    gate = Gate()
    worker, reads = gated_worker(settings, redis, gate, poll_delay=0.2)
    try:
        await enqueue(redis, settings.arq_queue_name, "a", "b")
        await asyncio.wait_for(worker._poll_iteration(), 5)  # "a" holds the slot past poll_delay
        assert gate.started == ["a"] and reads == [2]
        gate.release("a")
        await until(lambda: worker.job_counter == 0)
        await asyncio.wait_for(worker._poll_iteration(), 5)
        assert gate.started == ["a", "b"] and reads == [2, 1]
        gate.release("b")
        await until(lambda: worker.job_counter == 0)
    finally:
        gate.release("b")
        await worker.close()
        await redis.aclose()


async def until(condition: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
