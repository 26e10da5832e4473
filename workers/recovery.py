"""The periodic recovery job: no video stays PROCESSING forever, no cleanup is forgotten.

A claim whose lease ran out (its worker was killed or lost) is handed to a new job, or
ends in ERROR once its attempts are used up. Work that no job ever claimed for a long
time (Redis lost the queue) is requested again, and so is a webhook delivery whose job was
lost. Re-requests go through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiopg

from config import Settings
from service.db import Tx, transaction
from service.outbox import JobFunction, request_job
from workers.ai import queries as ai_q
from workers.deps import deps
from workers.history import purge_history
from workers.transcription import queries as transcription_q
from workers.webhooks import queries as webhooks_q

FailFn = Callable[[Tx, str, int, "int | None", str], Awaitable[bool]]


@dataclass(frozen=True)
class Machine:
    """One state machine's columns (`{prefix}_run`, `{prefix}_lease_until`, ...) and its job."""

    prefix: str
    active: str  # SQL condition on the status column for "work in progress"
    function: JobFunction
    fail: FailFn


TRANSCRIPTION = Machine("transcription", "transcription_status = 'PROCESSING'", "transcribe", transcription_q.fail)
AI = Machine("ai", "ai_status IN ('QUEUED', 'PROCESSING')", "generate_ai", ai_q.fail)

STALE_CLEANUPS = """
UPDATE storage_cleanups SET heartbeat_at = now()
WHERE id IN (SELECT id FROM storage_cleanups
             WHERE finished_at IS NULL AND heartbeat_at < now() - %(unclaimed)s * interval '1 second'
             ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id, video_id
"""


async def recover_stuck(ctx: dict[str, Any]) -> dict[str, int]:
    d = deps(ctx)
    counts = await recover(d.pool, d.settings)
    counts["jobRuns"] = await purge_history(d.pool, d.settings.job_history_days)
    return counts


async def recover(pool: aiopg.Pool, s: Settings) -> dict[str, int]:
    """One recovery pass (the cron, and the ops API's requeue-stuck): how many were handed on."""
    async with transaction(pool) as tx:
        transcriptions = await _recover(tx, TRANSCRIPTION, s.unclaimed_requeue_seconds, s.transcription_max_attempts)
        ai = await _recover(tx, AI, s.unclaimed_requeue_seconds, s.ai_max_attempts)
        cleanups = await tx.fetchall(STALE_CLEANUPS, {"unclaimed": s.unclaimed_requeue_seconds})
        for row in cleanups:
            await request_job(tx, "cleanup_storage", row["video_id"], {"cleanupId": row["id"]})
        deliveries = await webhooks_q.stale_deliveries(tx, s.unclaimed_requeue_seconds)
        for row in deliveries:
            await request_job(tx, "deliver_webhook", row["video_id"], {"deliveryId": row["id"]})
    return {"transcriptions": transcriptions, "ai": ai, "cleanups": len(cleanups), "webhookDeliveries": len(deliveries)}


def stuck(machine: Machine) -> str:
    """SQL condition on `videos`: this machine's work is stuck (its claim's lease ran out, or no job
    claimed it for %(unclaimed)s seconds). Also what the ops dashboard lists as stuck."""
    p = machine.prefix
    return f"""{machine.active}
          AND ({p}_lease_until < now()
               OR ({p}_lease_until IS NULL AND {p}_heartbeat_at < now() - %(unclaimed)s * interval '1 second'))"""


async def _recover(tx: Tx, machine: Machine, unclaimed: float, max_attempts: int) -> int:
    p = machine.prefix
    rows = await tx.fetchall(
        f"""
        SELECT id, {p}_run AS run, {p}_attempt AS attempt, {p}_attempt - {p}_handbacks AS counted,
               {p}_lease_until IS NOT NULL AS died
        FROM videos
        WHERE {stuck(machine)}
        ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED
        """,
        {"unclaimed": unclaimed},
    )
    for row in rows:
        reason = f"worker stopped responding during attempt {row['attempt']}"
        if row["died"] and row["counted"] >= max_attempts:
            await machine.fail(tx, row["id"], row["run"], None, f"{reason}; gave up after {max_attempts} attempts")
            continue
        await tx.execute(
            f"""
            UPDATE videos SET {p}_lease_until = NULL, {p}_heartbeat_at = now(),
                   {p}_error = CASE WHEN %(died)s THEN %(reason)s ELSE {p}_error END
            WHERE id = %(id)s
            """,
            {"id": row["id"], "died": row["died"], "reason": reason},
        )
        await request_job(tx, machine.function, row["id"], {"run": row["run"]})
    return len(rows)
