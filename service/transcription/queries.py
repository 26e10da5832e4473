"""SQL that starts a transcription run: the state change and its job request, one transaction."""

from __future__ import annotations

from service.db import Row, Tx
from service.events import record_event
from service.outbox import request_job


async def start_transcription_run(tx: Tx, video: Row) -> str:
    """Move a locked video to PROCESSING in a new run and request the job (outbox)."""
    run = await tx.fetchval(
        """
        UPDATE videos SET
            transcription_status = 'PROCESSING',
            transcription_run = transcription_run + 1,
            transcription_attempt = 0,
            transcription_handbacks = 0,
            transcription_lease_until = NULL,
            transcription_heartbeat_at = now(),
            transcription_progress = 0,
            transcription_error = NULL,
            transcription_note = NULL,
            transcription_engine = NULL,
            transcription_started_at = now(),
            transcription_finished_at = NULL,
            updated_at = now()
        WHERE id = %s
        RETURNING transcription_run
        """,
        (video["id"],),
    )
    await request_job(tx, "transcribe", video["id"], {"run": run})
    await record_event(tx, video["id"], video["owner_id"], "transcription", "PROCESSING", run=run, attempt=0)
    return "PROCESSING"


async def request_transcription(tx: Tx, video: Row, force: bool) -> str | None:
    """Start when never run or failed; leave PROCESSING alone; redo COMPLETE only when forced."""
    status: str | None = video["transcription_status"]
    if status == "PROCESSING" or (status == "COMPLETE" and not force):
        return status
    return await start_transcription_run(tx, video)


async def transcript_location(tx: Tx, video_id: str, user_id: int) -> Row | None:
    return await tx.fetchone(
        """
        SELECT v.owner_id, v.source, v.transcription_status FROM videos v
        WHERE v.id = %(video_id)s AND (v.owner_id = %(user_id)s OR v.public)
        """,
        {"video_id": video_id, "user_id": user_id},
    )
