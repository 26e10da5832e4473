"""The event log: one `video_events` row per state transition, in the transaction that made it.

A trigger (migration 0003) sends `NOTIFY capvid_events` for every row, so the notification
goes out exactly when the transition commits. Ids come from an identity column, so they are
unique and increasing in insertion order; a transaction-scoped lock per video makes them
increase in *commit* order too for one video (a second writer waits for the first to commit
before it takes its id), which is what lets a client resume after the last id it saw.
"""

from __future__ import annotations

from typing import Any, Literal

import aiopg

from service.db import Json, Prepared, Row, Tx, connection

EventKind = Literal["transcription", "ai", "deleted"]
EVENTS_CHANNEL = "capvid_events"
# Key space of the per-video event lock (two-int advisory locks do not meet one-bigint ones).
_LOCK_CLASS = 0x63766576  # "cvev"
EVENT_COLUMNS = "id, video_id, kind, status, run, attempt, detail"
# The lock is taken by the row source, so before the row's id is drawn (its default is computed when
# the row is formed): one statement instead of a SELECT of the lock and then the INSERT.
INSERT_EVENT = Prepared(
    "insert_video_event",
    f"""
    INSERT INTO video_events (video_id, owner_id, kind, status, run, attempt, detail)
    SELECT %(video_id)s, %(owner_id)s, %(kind)s, %(status)s, %(run)s, %(attempt)s, %(detail)s
    FROM (SELECT pg_advisory_xact_lock({_LOCK_CLASS}, hashtext(%(video_id)s))) AS video_event_lock
    """,
)


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
    # Nobody reads its result: it travels with the transaction's next statement or its COMMIT.
    await tx.defer(INSERT_EVENT, {"video_id": video_id, "owner_id": owner_id, "kind": kind, "status": status,
                                  "run": run, "attempt": attempt, "detail": Json(detail or {})})


async def events_after(pool: aiopg.Pool, video_id: str, after_id: int) -> list[Row]:
    """The video's events newer than `after_id`, oldest first."""
    async with connection(pool) as tx:
        return await tx.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM video_events WHERE video_id = %s AND id > %s ORDER BY id",
            (video_id, after_id),
        )


async def event_detail(pool: aiopg.Pool, event_id: int) -> dict[str, Any]:
    async with connection(pool) as tx:
        detail = await tx.fetchval("SELECT detail FROM video_events WHERE id = %s", (event_id,))
    return detail if isinstance(detail, dict) else {}


async def stream_head(pool: aiopg.Pool, video_id: str, user_id: int) -> Row | None:
    """The video's state and its newest event id, read in one snapshot (None: not readable)."""
    async with connection(pool) as tx:
        return await tx.fetchone(
            """
            SELECT v.transcription_status,
                   CASE WHEN v.transcription_status = 'PROCESSING' THEN v.transcription_progress END
                       AS transcription_progress,
                   v.ai_status,
                   coalesce((SELECT max(e.id) FROM video_events e WHERE e.video_id = v.id), 0) AS last_event_id
            FROM videos v
            WHERE v.id = %(video_id)s AND (v.owner_id = %(user_id)s OR v.public)
            """,
            {"video_id": video_id, "user_id": user_id},
        )


async def owner_tombstone(pool: aiopg.Pool, video_id: str, owner_id: int, after_id: int) -> Row | None:
    """The `deleted` event of the caller's own video, when the caller has not seen it yet."""
    async with connection(pool) as tx:
        return await tx.fetchone(
            f"""
            SELECT {EVENT_COLUMNS} FROM video_events
            WHERE video_id = %s AND kind = 'deleted' AND owner_id = %s AND id > %s
            ORDER BY id DESC LIMIT 1
            """,
            (video_id, owner_id, after_id),
        )
