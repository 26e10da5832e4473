"""SQL of the AI job: compare-and-set on (ai_status, ai_run, ai_attempt)."""

from __future__ import annotations

from typing import Any

from service.ai.queries import SET_AI_STATUS
from service.db import NO_FLUSH_WAIT, Json, Row, Tx
from service.events import record_event

GUARD = "id = %(video_id)s AND ai_run = %(run)s AND ai_status IN ('QUEUED', 'PROCESSING')"
HELD = "id = %(video_id)s AND ai_run = %(run)s AND ai_status = 'PROCESSING' AND ai_attempt = %(attempt)s"


async def claim(tx: Tx, video_id: str, run: int, lease_seconds: float) -> Row | None:
    row = await tx.fetchone(
        f"""
        UPDATE videos SET {SET_AI_STATUS}, ai_attempt = ai_attempt + 1,
               ai_lease_until = now() + %(lease)s * interval '1 second', ai_heartbeat_at = now(), updated_at = now()
        WHERE {GUARD} AND (ai_lease_until IS NULL OR ai_lease_until < now())
        RETURNING owner_id, source, duration, ai_attempt AS attempt, ai_error AS last_error,
                  ai_attempt - ai_handbacks AS counted
        """,
        {"status": "PROCESSING", "video_id": video_id, "run": run, "lease": lease_seconds},
    )
    if row is not None and row["attempt"] == 1:
        await record_event(tx, video_id, row["owner_id"], "ai", "PROCESSING", run, 1)
    return row


async def heartbeat(tx: Tx, video_id: str, run: int, attempt: int, lease_seconds: float) -> bool:
    count = await tx.execute(
        f"""
        UPDATE videos SET ai_lease_until = now() + %(lease)s * interval '1 second', ai_heartbeat_at = now()
        FROM {NO_FLUSH_WAIT}
        WHERE {HELD}
        """,
        {"video_id": video_id, "run": run, "attempt": attempt, "lease": lease_seconds},
    )
    return count == 1


async def release_for_retry(
    tx: Tx, video_id: str, run: int, attempt: int, reason: str, handed_back: bool = False
) -> bool:
    """`handed_back`: the worker is stopping, so this attempt does not count towards the limit."""
    count = await tx.execute(
        f"""
        UPDATE videos SET ai_lease_until = NULL, ai_heartbeat_at = now(), ai_error = %(reason)s,
                          ai_handbacks = ai_handbacks + %(handback)s
        WHERE {HELD}
        """,
        {"video_id": video_id, "run": run, "attempt": attempt, "reason": reason, "handback": int(handed_back)},
    )
    return count == 1


async def fail(tx: Tx, video_id: str, run: int, attempt: int | None, reason: str) -> bool:
    guard = GUARD if attempt is None else HELD
    row = await tx.fetchone(
        f"""
        UPDATE videos SET {SET_AI_STATUS}, ai_lease_until = NULL, ai_error = %(reason)s, updated_at = now()
        WHERE {guard} RETURNING owner_id, ai_attempt
        """,
        {"status": "ERROR", "video_id": video_id, "run": run, "attempt": attempt, "reason": reason},
    )
    if row is None:
        return False
    await record_event(tx, video_id, row["owner_id"], "ai", "ERROR", run, row["ai_attempt"], {"reason": reason})
    return True


async def complete(
    tx: Tx, video_id: str, run: int, attempt: int, title: str, summary: str, chapters: list[dict[str, Any]]
) -> bool:
    """Write the results; the name follows the AI title only while the owner never renamed the video."""
    row = await tx.fetchone(
        f"""
        UPDATE videos SET ai_status = 'COMPLETE', ai_lease_until = NULL, ai_error = NULL,
               metadata = metadata || jsonb_build_object(
                   'aiGenerationStatus', 'COMPLETE', 'aiTitle', %(title)s::text,
                   'summary', %(summary)s::text, 'chapters', %(chapters)s::jsonb),
               name = CASE WHEN name_edited THEN name ELSE %(title)s END,
               updated_at = now()
        WHERE {HELD} RETURNING owner_id
        """,
        {
            "video_id": video_id,
            "run": run,
            "attempt": attempt,
            "title": title,
            "summary": summary,
            "chapters": Json(chapters),
        },
    )
    if row is None:
        return False
    await record_event(tx, video_id, row["owner_id"], "ai", "COMPLETE", run, attempt)
    return True
