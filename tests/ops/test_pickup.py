"""How a worker takes a job off the queue (CapvidWorker.start_jobs: arq's check-and-set as one script;
CapvidWorker._poll_iteration: the ids one read returned are taken as slots free)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
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


@dataclass
class Gated:
    worker: CapvidWorker
    gate: Gate
    redis: ArqRedis
    reads: list[int]  # how many ids each read of the queue returned

    async def enqueue(self, *names: str) -> None:
        for name in names:
            await self.redis.enqueue_job("gated", name, _job_id=name, _queue_name=self.worker.queue_name)


@asynccontextmanager
async def gated_worker(settings: Settings, poll_delay: float) -> AsyncIterator[Gated]:
    """A worker with one slot, running gated jobs; the jobs it started are released and have ended before
    it closes (only the tests' own polls start jobs)."""
    redis = ArqRedis.from_url(settings.redis_url)
    gate = Gate()
    worker = CapvidWorker(functions=[func(gate.job, name="gated")], redis_pool=redis,
                          queue_name=settings.arq_queue_name, handle_signals=False, keep_result=60, max_jobs=1,
                          poll_delay=poll_delay)
    gated = Gated(worker, gate, redis, [])
    read_queue = redis.zrangebyscore

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        ids = await read_queue(*args, **kwargs)
        gated.reads.append(len(ids))
        return ids

    redis.zrangebyscore = counted_read  # type: ignore[method-assign]
    try:
        yield gated
    finally:
        for name in gate.started:
            gate.release(name)
        await until(lambda: worker.job_counter == 0)
        await worker.close()
        await redis.aclose()


async def test_one_read_of_the_queue_feeds_each_slot_as_it_frees(settings: Settings):
    async with gated_worker(settings, poll_delay=10) as gated:
        await gated.enqueue("a", "b", "c")
        polling = asyncio.ensure_future(gated.worker._poll_iteration())
        for name in ("a", "b", "c"):
            await until(lambda: name in gated.gate.started)
            assert gated.worker.job_counter == 1
            gated.gate.release(name)
        # All three ran through the one slot well inside poll_delay, from the ids of one read; the
        # iteration reads again once they are used up, and ends: the queue is empty.
        await asyncio.wait_for(polling, 5)
        assert gated.gate.started == ["a", "b", "c"]
        assert gated.reads == [3, 0]


async def test_a_stopping_worker_takes_no_more_of_the_ids_it_read(settings: Settings):
    async with gated_worker(settings, poll_delay=10) as gated:
        await gated.enqueue("a", "b")
        polling = asyncio.ensure_future(gated.worker._poll_iteration())
        await until(lambda: gated.gate.started == ["a"])
        gated.worker.allow_pick_jobs = False  # what SIGTERM does (handle_sig_wait_for_completion)
        gated.gate.release("a")
        await asyncio.wait_for(polling, 5)
        assert gated.gate.started == ["a"]
        assert await gated.redis.zscore(settings.arq_queue_name, "b") is not None  # left for another worker


async def test_ids_are_taken_for_poll_delay_at_most_then_the_queue_is_read_again(settings: Settings):
    async with gated_worker(settings, poll_delay=0.2) as gated:
        await gated.enqueue("a", "b")
        await asyncio.wait_for(gated.worker._poll_iteration(), 5)  # "a" holds the slot past poll_delay
        assert gated.gate.started == ["a"] and gated.reads == [2]
        gated.gate.release("a")
        await until(lambda: gated.worker.job_counter == 0)
        await asyncio.wait_for(gated.worker._poll_iteration(), 5)
        assert gated.gate.started == ["a", "b"] and gated.reads == [2, 1]


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
