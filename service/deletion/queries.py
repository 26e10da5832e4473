"""SQL of a delete: every row of the video goes, and a storage cleanup request is written, at once."""

from __future__ import annotations

from service.db import Tx
from service.events import record_event
from service.outbox import request_job
from service.storage import video_prefix


async def delete_video(tx: Tx, video_id: str, owner_id: int) -> bool:
    """Delete the owner's video with everything that belongs to it; False when there is none."""
    video = await tx.fetchone(
        "DELETE FROM videos WHERE id = %s AND owner_id = %s RETURNING id, owner_id, source", (video_id, owner_id)
    )
    if video is None:
        return False
    # Comments, reactions, viewers, daily view rollups and counters go by ON DELETE CASCADE;
    # job requests and history go here.
    await tx.execute("DELETE FROM outbox WHERE video_id = %s AND function NOT IN ('cleanup_storage', 'deliver_webhook')", (video_id,))
    await tx.execute("DELETE FROM video_events WHERE video_id = %s", (video_id,))
    cleanup_id = await tx.fetchval(
        "INSERT INTO storage_cleanups (video_id, backend, prefix) VALUES (%s, %s, %s) RETURNING id",
        (video_id, video["source"], video_prefix(owner_id, video_id)),
    )
    await request_job(tx, "cleanup_storage", video_id, {"cleanupId": cleanup_id})
    # The one row that outlives the video: the tombstone event that tells listeners it is gone.
    await record_event(tx, video_id, owner_id, "deleted", None)
    return True
