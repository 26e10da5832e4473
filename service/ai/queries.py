"""SQL that starts an AI generation run: QUEUED (with its job request) or SKIPPED, one transaction."""

from __future__ import annotations

from service.db import Tx
from service.events import record_event
from service.outbox import request_job

# metadata.aiGenerationStatus is what clients read; ai_status is the indexed copy the guards use.
SET_AI_STATUS = "ai_status = %(status)s, metadata = jsonb_set(metadata, '{aiGenerationStatus}', to_jsonb(%(status)s::text))"
# The columns of a new run (parameters `status` and `ai_note`); also part of a transcription's completion.
START_AI_RUN = f"""{SET_AI_STATUS}, ai_run = ai_run + 1, ai_attempt = 0, ai_handbacks = 0, ai_lease_until = NULL,
                   ai_heartbeat_at = now(), ai_error = NULL, ai_note = %(ai_note)s"""


def ai_run_status(skip_reason: str | None) -> str:
    return "SKIPPED" if skip_reason else "QUEUED"


async def start_ai_run(tx: Tx, video_id: str, owner_id: int, skip_reason: str | None) -> str:
    status = ai_run_status(skip_reason)
    run = await tx.fetchval(
        f"UPDATE videos SET {START_AI_RUN}, updated_at = now() WHERE id = %(video_id)s RETURNING ai_run",
        {"status": status, "ai_note": skip_reason, "video_id": video_id},
    )
    await announce_ai_run(tx, video_id, owner_id, run, skip_reason)
    return status


async def announce_ai_run(tx: Tx, video_id: str, owner_id: int, run: int, skip_reason: str | None) -> None:
    """What follows the update that started run `run`: its job request (QUEUED) and its event."""
    if skip_reason is None:
        await request_job(tx, "generate_ai", video_id, {"run": run})
    detail = {"reason": skip_reason} if skip_reason else None
    await record_event(tx, video_id, owner_id, "ai", ai_run_status(skip_reason), run, 0, detail)
