"""The periodic recovery job: no video stays PROCESSING forever, no cleanup is forgotten.

A claim whose lease ran out (its worker was killed or lost) is handed to a new job, or
ends in ERROR once its attempts are used up. Work that no job ever claimed for a long
time (Redis lost the queue) is requested again. Re-requests go through the outbox.
"""

from __future__ import annotations

from typing import Any

from service.db import Tx, transaction
from service.outbox import request_job
from workers.ai import queries as ai_q
from workers.deps import deps
from workers.transcription import queries as transcription_q

STALE_TRANSCRIPTIONS = """
SELECT id, transcription_run AS run, transcription_attempt AS attempt,
       transcription_lease_until IS NOT NULL AS died
FROM videos
WHERE transcription_status = 'PROCESSING'
  AND (transcription_lease_until < now()
       OR (transcription_lease_until IS NULL
           AND transcription_heartbeat_at < now() - %(unclaimed)s * interval '1 second'))
ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED
"""

STALE_AI = """
SELECT id, ai_run AS run, ai_attempt AS attempt, ai_lease_until IS NOT NULL AS died
FROM videos
WHERE ai_status IN ('QUEUED', 'PROCESSING')
  AND (ai_lease_until < now()
       OR (ai_lease_until IS NULL AND ai_heartbeat_at < now() - %(unclaimed)s * interval '1 second'))
ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED
"""

STALE_CLEANUPS = """
UPDATE storage_cleanups SET heartbeat_at = now()
WHERE id IN (SELECT id FROM storage_cleanups
             WHERE finished_at IS NULL AND heartbeat_at < now() - %(unclaimed)s * interval '1 second'
             ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id, video_id
"""


async def recover_stuck(ctx: dict[str, Any]) -> dict[str, int]:
    d = deps(ctx)
    s = d.settings
    async with transaction(d.pool) as tx:
        transcriptions = await _recover_transcriptions(tx, s.unclaimed_requeue_seconds, s.transcription_max_attempts)
        ai = await _recover_ai(tx, s.unclaimed_requeue_seconds, s.ai_max_attempts)
        cleanups = await tx.fetchall(STALE_CLEANUPS, {"unclaimed": s.unclaimed_requeue_seconds})
        for row in cleanups:
            await request_job(tx, "cleanup_storage", row["video_id"], {"cleanupId": row["id"]})
    return {"transcriptions": transcriptions, "ai": ai, "cleanups": len(cleanups)}


async def _recover_transcriptions(tx: Tx, unclaimed: float, max_attempts: int) -> int:
    rows = await tx.fetchall(STALE_TRANSCRIPTIONS, {"unclaimed": unclaimed})
    for row in rows:
        reason = f"worker stopped responding during attempt {row['attempt']}"
        if row["died"] and row["attempt"] >= max_attempts:
            await transcription_q.fail(tx, row["id"], row["run"], None, f"{reason}; gave up after {max_attempts} attempts")
            continue
        await tx.execute(
            """
            UPDATE videos SET transcription_lease_until = NULL, transcription_heartbeat_at = now(),
                   transcription_error = CASE WHEN %(died)s THEN %(reason)s ELSE transcription_error END
            WHERE id = %(id)s
            """,
            {"id": row["id"], "died": row["died"], "reason": reason},
        )
        await request_job(tx, "transcribe", row["id"], {"run": row["run"]})
    return len(rows)


async def _recover_ai(tx: Tx, unclaimed: float, max_attempts: int) -> int:
    rows = await tx.fetchall(STALE_AI, {"unclaimed": unclaimed})
    for row in rows:
        reason = f"worker stopped responding during attempt {row['attempt']}"
        if row["died"] and row["attempt"] >= max_attempts:
            await ai_q.fail(tx, row["id"], row["run"], None, f"{reason}; gave up after {max_attempts} attempts")
            continue
        await tx.execute(
            """
            UPDATE videos SET ai_lease_until = NULL, ai_heartbeat_at = now(),
                   ai_error = CASE WHEN %(died)s THEN %(reason)s ELSE ai_error END
            WHERE id = %(id)s
            """,
            {"id": row["id"], "died": row["died"], "reason": reason},
        )
        await request_job(tx, "generate_ai", row["id"], {"run": row["run"]})
    return len(rows)
