"""SQL of the transcription job: every write is compare-and-set on (status, run, attempt)."""

from __future__ import annotations

from service.ai.queries import START_AI_RUN, ai_run_status
from service.db import NO_FLUSH_WAIT, Prepared, Row, Tx
from service.events import record_event

GUARD = "id = %(video_id)s AND transcription_status = 'PROCESSING' AND transcription_run = %(run)s"
HELD = GUARD + " AND transcription_attempt = %(attempt)s"

CLAIM = Prepared(
    "transcription_claim",
    f"""
        UPDATE videos SET
            transcription_attempt = transcription_attempt + 1,
            transcription_lease_until = now() + %(lease)s * interval '1 second',
            transcription_heartbeat_at = now(),
            transcription_engine = %(engine)s,
            updated_at = now()
        WHERE {GUARD}
          AND (transcription_lease_until IS NULL OR transcription_lease_until < now())
        RETURNING owner_id, source, media_key, transcription_attempt AS attempt, transcription_error AS last_error,
                  transcription_attempt - transcription_handbacks AS counted
        """,
)
HEARTBEAT = Prepared(
    "transcription_heartbeat",
    f"""
        UPDATE videos SET
            transcription_lease_until = now() + %(lease)s * interval '1 second',
            transcription_heartbeat_at = now(),
            transcription_progress = %(progress)s
        FROM {NO_FLUSH_WAIT}
        WHERE {HELD}
        """,
)
COMPLETE = Prepared(
    "transcription_complete",
    f"""
        UPDATE videos SET transcription_status = 'COMPLETE', transcription_lease_until = NULL,
                          transcription_progress = 1, transcription_error = NULL, transcription_note = %(note)s,
                          transcription_finished_at = now(), duration = COALESCE(%(duration)s, duration),
                          {START_AI_RUN}, updated_at = now()
        WHERE {HELD}
        RETURNING owner_id, ai_run
        """,
)


async def claim(tx: Tx, video_id: str, run: int, lease_seconds: float, engine: str) -> Row | None:
    """Take the video for one attempt, unless another attempt holds a live lease."""
    return await tx.fetchone(CLAIM, {"video_id": video_id, "run": run, "lease": lease_seconds, "engine": engine})


async def heartbeat(tx: Tx, video_id: str, run: int, attempt: int, lease_seconds: float, progress: float) -> bool:
    count = await tx.execute(
        HEARTBEAT,
        {"video_id": video_id, "run": run, "attempt": attempt, "lease": lease_seconds, "progress": progress},
    )
    return count == 1


async def release_for_retry(
    tx: Tx, video_id: str, run: int, attempt: int, reason: str, handed_back: bool = False
) -> bool:
    """Hand the video back (lease cleared) with the reason, before arq runs the job again.
    `handed_back`: the worker is stopping, so this attempt does not count towards the limit."""
    count = await tx.execute(
        f"""
        UPDATE videos SET transcription_lease_until = NULL, transcription_heartbeat_at = now(),
                          transcription_error = %(reason)s, updated_at = now(),
                          transcription_handbacks = transcription_handbacks + %(handback)s
        WHERE {HELD}
        """,
        {"video_id": video_id, "run": run, "attempt": attempt, "reason": reason, "handback": int(handed_back)},
    )
    return count == 1


async def fail(tx: Tx, video_id: str, run: int, attempt: int | None, reason: str) -> bool:
    """PROCESSING -> ERROR; `attempt=None` guards on the run alone (recovery of a dead attempt)."""
    guard = GUARD if attempt is None else HELD
    row = await tx.fetchone(
        f"""
        UPDATE videos SET transcription_status = 'ERROR', transcription_lease_until = NULL,
                          transcription_error = %(reason)s, transcription_finished_at = now(),
                          transcription_progress = NULL, updated_at = now()
        WHERE {guard}
        RETURNING owner_id, transcription_attempt
        """,
        {"video_id": video_id, "run": run, "attempt": attempt, "reason": reason},
    )
    if row is None:
        return False
    await record_event(
        tx, video_id, row["owner_id"], "transcription", "ERROR", run, row["transcription_attempt"], {"reason": reason}
    )
    return True


async def complete(
    tx: Tx, video_id: str, run: int, attempt: int, duration: float | None, note: str | None,
    ai_skip_reason: str | None,
) -> Row | None:
    """COMPLETE, and the AI run it starts (QUEUED, or SKIPPED for `ai_skip_reason`), in one guarded
    update; None when the attempt no longer holds the video. The row stays locked until commit."""
    return await tx.fetchone(
        COMPLETE,
        {"video_id": video_id, "run": run, "attempt": attempt, "duration": duration, "note": note,
         "status": ai_run_status(ai_skip_reason), "ai_note": ai_skip_reason},
    )
