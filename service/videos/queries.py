"""SQL for the Video object: create, read (owner or public), list, delete."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import aiopg

from service.db import Json, Row, Tx, connection

# Like Cap's nanoid: 15 characters of [0-9a-z].
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
DEFAULT_NAME = "My Video"

VIDEO_COLUMNS = """
    v.id, v.owner_id, v.name, v.created_at, v.updated_at, v.public, v.source,
    v.transcription_status, v.metadata, v.duration, v.media_key IS NOT NULL AS has_media,
    v.transcription_error,
    CASE WHEN v.transcription_status = 'PROCESSING' THEN v.transcription_progress END AS transcription_progress,
    coalesce((SELECT s.comment_count FROM video_stats s WHERE s.video_id = v.id), 0) AS total_comments,
    coalesce((SELECT s.reaction_count FROM video_stats s WHERE s.video_id = v.id), 0) AS total_reactions
"""

# Who may read: the owner, or anyone authenticated when the video is public.
READABLE = "v.id = %(video_id)s AND (v.owner_id = %(user_id)s OR v.public)"


def new_video_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15))


async def insert_video(
    tx: Tx, owner_id: int, name: str | None, public: bool, metadata: dict[str, Any], source: str
) -> str:
    video_id = new_video_id()
    await tx.execute(
        """
        INSERT INTO videos (id, owner_id, name, name_edited, public, metadata, source)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (video_id, owner_id, name or DEFAULT_NAME, name is not None, public, Json(metadata), source),
    )
    return video_id


async def readable_video(tx: Tx, video_id: str, user_id: int) -> Row | None:
    return await tx.fetchone(
        f"SELECT {VIDEO_COLUMNS} FROM videos v WHERE {READABLE}", {"video_id": video_id, "user_id": user_id}
    )


async def get_readable_video(pool: aiopg.Pool, video_id: str, user_id: int) -> Row | None:
    async with connection(pool) as tx:
        return await readable_video(tx, video_id, user_id)


async def list_owner_videos(
    pool: aiopg.Pool, owner_id: int, limit: int, after: tuple[datetime, str] | None, status: str | None
) -> list[Row]:
    where = ["v.owner_id = %(owner_id)s"]
    params: dict[str, Any] = {"owner_id": owner_id, "limit": limit}
    if after is not None:
        where.append("(v.created_at, v.id) < (%(after_created)s, %(after_id)s)")
        params.update(after_created=after[0], after_id=after[1])
    if status == "NONE":
        where.append("v.transcription_status IS NULL")
    elif status is not None:
        where.append("v.transcription_status = %(status)s")
        params["status"] = status
    async with connection(pool) as tx:
        return await tx.fetchall(
            f"""
            SELECT {VIDEO_COLUMNS} FROM videos v WHERE {' AND '.join(where)}
            ORDER BY v.created_at DESC, v.id DESC LIMIT %(limit)s
            """,
            params,
        )


async def owns_video(pool: aiopg.Pool, video_id: str, owner_id: int) -> bool:
    async with connection(pool) as tx:
        return await tx.fetchone("SELECT 1 FROM videos WHERE id = %s AND owner_id = %s", (video_id, owner_id)) is not None


async def lock_owned_video(tx: Tx, video_id: str, owner_id: int) -> Row | None:
    """The owner's video, locked for this transaction (None: absent or not the caller's)."""
    return await tx.fetchone(
        "SELECT * FROM videos WHERE id = %s AND owner_id = %s FOR UPDATE", (video_id, owner_id)
    )
