"""What the arq queue holds, read from Redis with a bounded amount of work.

`arq:queue` is a sorted set of job ids scored by the time each is due: queued, deferred and
running jobs alike. Totals (due, deferred) are exact (ZCARD, ZCOUNT). Per-function figures
need each job's data (`arq:job:<id>`, pickled by arq) and whether it runs
(`arq:in-progress:<id>`): those are read for at most SAMPLE due jobs (the earliest due, which
include the running ones) and SAMPLE deferred jobs (the next due), in two MGETs each, and the
answer says when it is a sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import DeserializationError, deserialize_job

SAMPLE = 1000
UNKNOWN_FUNCTION = "(expired)"  # in the queue, but its job data is gone: arq will drop it


@dataclass
class FunctionCounts:
    queued: int = 0
    deferred: int = 0
    in_progress: int = 0
    oldest_due_ms: int | None = None  # the earliest due time of a queued (not running) job


@dataclass
class QueueCounts:
    total: int
    due: int
    deferred: int
    in_progress: int
    sampled: bool
    functions: dict[str, FunctionCounts] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        return max(0, self.due - self.in_progress)


async def queue_counts(redis: ArqRedis, queue_name: str) -> QueueCounts:
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue_name)
        pipe.zcount(queue_name, "-inf", now_ms)
        pipe.zrangebyscore(queue_name, "-inf", now_ms, start=0, num=SAMPLE, withscores=True)
        pipe.zrangebyscore(queue_name, f"({now_ms}", "+inf", start=0, num=SAMPLE, withscores=True)
        total, due_total, due, deferred = await pipe.execute()
    counts = QueueCounts(
        total=total,
        due=due_total,
        deferred=total - due_total,
        in_progress=0,
        sampled=due_total > len(due) or (total - due_total) > len(deferred),
    )
    await _count_functions(redis, counts, due, deferred)
    return counts


async def _count_functions(
    redis: ArqRedis, counts: QueueCounts, due: list[tuple[bytes, float]], deferred: list[tuple[bytes, float]]
) -> None:
    entries = [(job_id.decode(), int(score), False) for job_id, score in due]
    entries += [(job_id.decode(), int(score), True) for job_id, score in deferred]
    if not entries:
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([job_key_prefix + job_id for job_id, _, _ in entries])
        pipe.mget([in_progress_key_prefix + job_id for job_id, _, is_deferred in entries if not is_deferred])
        job_data, running_flags = await pipe.execute()
    running = iter(running_flags)
    for (job_id, score, is_deferred), data in zip(entries, job_data):
        figures = counts.functions.setdefault(_function_of(data), FunctionCounts())
        if is_deferred:
            figures.deferred += 1
        elif next(running) is not None:
            figures.in_progress += 1
            counts.in_progress += 1
        else:
            figures.queued += 1
            if figures.oldest_due_ms is None or score < figures.oldest_due_ms:
                figures.oldest_due_ms = score


def _function_of(data: bytes | None) -> str:
    if data is None:
        return UNKNOWN_FUNCTION
    try:
        return deserialize_job(data).function
    except DeserializationError:
        return UNKNOWN_FUNCTION
