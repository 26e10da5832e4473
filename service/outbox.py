"""The outbox: job requests written in the transaction that needs them, relayed to arq.

Postgres is the truth and Redis only delivers. A request is a row in `outbox`; it reaches
Redis only after its transaction commits, so nothing is enqueued for a rollback. Every
process runs a relay that hands unsent rows to arq with `_job_id = capvid:<row id>`: a row
sent twice (a relay dying between enqueue and commit) is absorbed by arq's dedup on job id.
An INSERT fires `NOTIFY capvid_outbox` so relays wake at once; a periodic sweep covers a
Redis that was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import aiopg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from service.db import CONNECTION_ERRORS, Json, Tx, transaction
from service.observability.context import with_request_id
from service.tasks import stop_task

log = logging.getLogger("capvid.outbox")

JobFunction = Literal["transcribe", "generate_ai", "cleanup_storage", "deliver_webhook"]
NOTIFY_CHANNEL = "capvid_outbox"
# Redis or Postgres away: logged briefly and retried on the next sweep.
RELAY_ERRORS: tuple[type[BaseException], ...] = (RedisError, *CONNECTION_ERRORS)
BATCH = 200


def job_id(outbox_id: int) -> str:
    return f"capvid:{outbox_id}"


async def request_job(
    tx: Tx, function: JobFunction, video_id: str, args: dict[str, Any], defer_seconds: float = 0
) -> int:
    """Write a job request in the caller's transaction; it is relayed once that commits."""
    row_id = await tx.fetchval(
        """
        INSERT INTO outbox (function, video_id, args, defer_until)
        VALUES (%s, %s, %s, CASE WHEN %s > 0 THEN now() + %s * interval '1 second' END)
        RETURNING id
        """,
        # The request (or job) asking for this one is carried along, to follow it in the logs.
        (function, video_id, Json(with_request_id(args)), defer_seconds, defer_seconds),
    )
    await tx.defer("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return int(row_id)


async def relay_once(pool: aiopg.Pool, redis: ArqRedis, queue_name: str) -> int:
    """Hand every unsent row to arq; returns how many were handed over."""
    total = 0
    while True:
        async with transaction(pool) as tx:
            rows = await tx.fetchall(
                """
                SELECT id, function, video_id, args, defer_until
                FROM outbox WHERE sent_at IS NULL
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
                """,
                (BATCH,),
            )
            for row in rows:
                await redis.enqueue_job(
                    row["function"],
                    row["video_id"],
                    row["args"],
                    _job_id=job_id(row["id"]),
                    _defer_until=row["defer_until"],
                    _queue_name=queue_name,
                )
            if rows:
                await tx.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)", ([r["id"] for r in rows],))
        total += len(rows)
        if len(rows) < BATCH:
            return total


async def run_relay(pool: aiopg.Pool, dsn: str, redis: ArqRedis, queue_name: str, poll_seconds: float) -> None:
    """Relay forever: on every NOTIFY, and every `poll_seconds` in case Redis was down."""
    wake = asyncio.Event()
    listener = asyncio.create_task(_listen(dsn, wake))
    try:
        while True:
            try:
                await relay_once(pool, redis, queue_name)
            except RELAY_ERRORS as exc:
                log.warning("outbox relay: will retry: %s", exc)
            except Exception:
                log.exception("outbox relay failed; will retry")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as its timeout fires, and the relay would then outlive its app.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await wake.wait()
            wake.clear()
    finally:
        await stop_task(listener)


async def _listen(dsn: str, wake: asyncio.Event) -> None:
    # A connection of its own: a pooled one would keep listening after going back to the pool.
    while True:
        try:
            async with aiopg.connect(dsn) as conn:
                async with conn.cursor() as cur:
                    await cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
                while True:
                    await conn.notifies.get()
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbox listener lost its connection: %s", exc)
            await asyncio.sleep(1)
