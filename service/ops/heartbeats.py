"""Worker heartbeats in Redis: written by every worker, read by the ops API and `capvid worker --check`.

arq's own health-check key is one key per queue (the last worker to write wins), so it
cannot tell two workers apart. Each worker also reports itself: a JSON value under
`capvid:worker:<queue>:<hostname:pid>` that expires after three intervals, and its id in the
sorted set `capvid:workers:<queue>` (score: the time of its last report), so readers find
every worker without scanning the keyspace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix
from redis.exceptions import RedisError

from config import Settings

log = logging.getLogger("capvid.ops")

# A report older than the interval plus this is late (arq gives its own key interval + 1 s).
GRACE_SECONDS = 1.0
# Workers that stopped reporting are dropped from the set after an hour.
FORGET_SECONDS = 3600
# What readers get of a report, besides its id and times.
REPORTED = ("hostname", "pid", "version", "jobsRunning", "jobsComplete", "jobsFailed", "jobsRetried")


def workers_key(queue_name: str) -> str:
    return f"capvid:workers:{queue_name}"


def worker_key(queue_name: str, worker_id: str) -> str:
    return f"capvid:worker:{queue_name}:{worker_id}"


def arq_health_key(queue_name: str) -> str:
    return queue_name + health_check_key_suffix


def this_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def package_version() -> str:
    try:
        return version("capvid")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass
class HeartbeatReporter:
    """Reports one worker process every `interval` seconds (called from arq's poll loop)."""

    queue_name: str
    interval: float
    worker_id: str = field(default_factory=this_worker_id)
    started_at: float = field(default_factory=time.time)
    last_report: float = 0.0

    async def maybe_report(self, redis: ArqRedis, counters: dict[str, int]) -> None:
        now = time.time()
        if now - self.last_report < self.interval:
            return
        self.last_report = now
        hostname, _, pid = self.worker_id.rpartition(":")
        value = {
            "id": self.worker_id,
            "hostname": hostname,
            "pid": int(pid),
            "startedAt": self.started_at,
            "at": now,
            "interval": self.interval,
            "version": package_version(),
            **counters,
        }
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.set(worker_key(self.queue_name, self.worker_id), json.dumps(value), px=int(self.interval * 3000))
                pipe.zadd(workers_key(self.queue_name), {self.worker_id: now})
                pipe.zremrangebyscore(workers_key(self.queue_name), "-inf", now - FORGET_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # arq's own loop notices a lost Redis; a heartbeat never stops the worker.
            log.warning("worker heartbeat not written: %s", exc)

    async def withdraw(self, redis: ArqRedis) -> None:
        """A worker shutting down cleanly leaves the list at once."""
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(worker_key(self.queue_name, self.worker_id))
            pipe.zrem(workers_key(self.queue_name), self.worker_id)
            await pipe.execute()


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), timezone.utc) if isinstance(value, (int, float)) else None


async def read_heartbeats(redis: ArqRedis, queue_name: str, interval: float) -> list[dict[str, Any]]:
    """Every worker that reported recently, newest report first, with its age and whether it is late."""
    now = time.time()
    ids = await redis.zrevrangebyscore(workers_key(queue_name), "+inf", now - FORGET_SECONDS)
    if not ids:
        return []
    values = await redis.mget([worker_key(queue_name, i.decode()) for i in ids])
    workers = []
    for raw_id, raw in zip(ids, values):
        if raw is None:
            continue  # stopped reporting three intervals ago: its key expired
        beat = json.loads(raw)
        age = max(0.0, now - float(beat.get("at", 0)))
        beat_interval = float(beat.get("interval") or interval)
        workers.append(
            {
                **{key: beat.get(key) for key in REPORTED},
                "id": raw_id.decode(),
                "startedAt": _timestamp(beat.get("startedAt")),
                "lastSeenAt": _timestamp(beat.get("at")),
                "ageSeconds": round(age, 3),
                "healthy": age <= beat_interval + GRACE_SECONDS,
            }
        )
    return workers


async def read_arq_health(redis: ArqRedis, queue_name: str) -> dict[str, Any] | None:
    """arq's own health-check value (`j_complete=… queued=…`), None when no worker wrote it lately."""
    key = arq_health_key(queue_name)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        value, ttl = await pipe.execute()
    if value is None:
        return None
    return {"key": key, "value": value.decode(errors="replace"), "ttlSeconds": ttl / 1000 if ttl > 0 else None}


async def check_workers(redis: ArqRedis, queue_name: str, interval: float) -> tuple[bool, str]:
    """(healthy, message): healthy when a worker reported within its interval."""
    workers = [w for w in await read_heartbeats(redis, queue_name, interval) if w["healthy"]]
    if workers:
        listed = ", ".join(f"{w['id']} ({w['ageSeconds']:.1f}s ago)" for w in workers)
        return True, f"{len(workers)} worker(s) reported within {interval:g}s: {listed}"
    arq_health = await read_arq_health(redis, queue_name)
    if arq_health is not None:
        # A worker that predates capvid's own heartbeat (or plain `arq`): arq's key expires
        # one second after its interval, so its presence means a recent report.
        return True, f"arq health check: {arq_health['value']}"
    return False, f"no worker has reported within {interval:g}s on queue {queue_name!r}"


async def _check(redis_url: str, queue_name: str, interval: float) -> tuple[bool, str]:
    redis = ArqRedis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        return await check_workers(redis, queue_name, interval)
    except (RedisError, OSError) as exc:
        return False, f"Redis unreachable: {exc}"
    finally:
        await redis.aclose()


def run_check(settings: Settings) -> int:
    """`capvid worker --check`: 0 when a worker reported within its interval, else 1 (with why)."""
    healthy, message = asyncio.run(
        _check(settings.redis_url, settings.arq_queue_name, settings.worker_health_seconds)
    )
    print(f"capvid worker check: {message}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
