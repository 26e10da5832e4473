"""Progress of long work, as Cloudflare Stream's `pctComplete`: stored on the video and announced.

A progress report is not a state transition (no `video_events` row, no id): it updates the
stored fraction of the attempt that holds the video and, only when that guarded update matched,
sends a `progress` notification on the events channel. Workers report at most once a second.
"""

from __future__ import annotations

import json
from typing import Literal

from service.db import NO_FLUSH_WAIT, Tx
from service.events.log import EVENTS_CHANNEL

ProgressKind = Literal["transcription", "ai"]

# Guarded like every write of a job: only the attempt that holds the video reports.
_UPDATES: dict[ProgressKind, str] = {
    "transcription": f"""
        UPDATE videos SET transcription_progress = %(progress)s
        FROM {NO_FLUSH_WAIT}
        WHERE id = %(video_id)s AND transcription_status = 'PROCESSING'
          AND transcription_run = %(run)s AND transcription_attempt = %(attempt)s
        RETURNING id
    """,
    "ai": f"""
        UPDATE videos SET ai_progress = %(progress)s, ai_step = %(step)s
        FROM {NO_FLUSH_WAIT}
        WHERE id = %(video_id)s AND ai_status = 'PROCESSING' AND ai_run = %(run)s AND ai_attempt = %(attempt)s
        RETURNING id
    """,
}


def progress_payload(kind: ProgressKind, video_id: str, progress: float, step: str | None) -> str:
    return json.dumps({"k": "progress", "v": video_id, "kind": kind, "p": progress, "st": step}, separators=(",", ":"))


async def report_progress(
    tx: Tx, kind: ProgressKind, video_id: str, run: int, attempt: int, progress: float, step: str | None = None
) -> bool:
    """Store and announce the attempt's progress (0..1); False when the attempt no longer holds the video."""
    progress = min(1.0, max(0.0, progress))
    count = await tx.execute(
        f"WITH held AS ({_UPDATES[kind]}) SELECT pg_notify(%(channel)s, %(payload)s) FROM held",
        {
            "video_id": video_id,
            "run": run,
            "attempt": attempt,
            "progress": progress,
            "step": step,
            "channel": EVENTS_CHANNEL,
            "payload": progress_payload(kind, video_id, progress, step),
        },
    )
    return count == 1
