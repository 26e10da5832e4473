"""The event log: one `video_events` row per state transition, in the transaction that made it."""

from __future__ import annotations

from typing import Any, Literal

from service.db import Json, Tx

EventKind = Literal["transcription", "ai", "deleted"]


async def record_event(
    tx: Tx,
    video_id: str,
    owner_id: int,
    kind: EventKind,
    status: str | None,
    run: int | None = None,
    attempt: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await tx.execute(
        """
        INSERT INTO video_events (video_id, owner_id, kind, status, run, attempt, detail)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (video_id, owner_id, kind, status, run, attempt, Json(detail or {})),
    )
