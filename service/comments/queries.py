"""SQL of comments and reactions. Their counters (`video_stats`) are kept by the `count_comments`
trigger in the transaction of each insert and delete (see migration 0002)."""

from __future__ import annotations

import aiopg

from service.db import Row, connection
from service.videos.queries import READABLE

COMMENT_COLUMNS = "c.id, c.video_id, c.author_id, u.name AS author_name, c.type, c.content, c.timestamp, c.created_at"


async def insert_comment(
    pool: aiopg.Pool, video_id: str, author_id: int, kind: str, content: str, timestamp: float | None
) -> Row | None:
    """The new comment; None when the author may not read the video. FOR KEY SHARE: a delete
    running meanwhile either waits for this insert or, committed first, leaves nothing to comment on."""
    async with connection(pool) as tx:
        return await tx.fetchone(
            f"""
            WITH v AS (SELECT v.id FROM videos v WHERE {READABLE} FOR KEY SHARE),
            c AS (
                INSERT INTO comments (video_id, author_id, type, content, timestamp)
                SELECT id, %(user_id)s, %(type)s, %(content)s, %(timestamp)s FROM v
                RETURNING *
            )
            SELECT {COMMENT_COLUMNS} FROM c JOIN users u ON u.id = c.author_id
            """,
            {"video_id": video_id, "user_id": author_id, "type": kind, "content": content, "timestamp": timestamp},
        )


async def readable_comments(
    pool: aiopg.Pool, video_id: str, user_id: int, limit: int, after: int | None, kind: str | None
) -> list[Row] | None:
    """Up to `limit` comments after the id `after`, oldest first; None when the caller may not read the video."""
    async with connection(pool) as tx:
        if await tx.fetchone(f"SELECT 1 FROM videos v WHERE {READABLE}", {"video_id": video_id, "user_id": user_id}) is None:
            return None
        return await tx.fetchall(
            f"""
            SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id
             WHERE c.video_id = %(video_id)s AND c.id > %(after)s
               AND (%(type)s::text IS NULL OR c.type = %(type)s)
             ORDER BY c.id LIMIT %(limit)s
            """,
            {"video_id": video_id, "after": after or 0, "type": kind, "limit": limit},
        )


async def delete_comment(pool: aiopg.Pool, comment_id: int, user_id: int) -> bool:
    """Delete a comment its author or the video's owner asks to delete; False when there is none such."""
    async with connection(pool) as tx:
        deleted = await tx.execute(
            """
            DELETE FROM comments c USING videos v
             WHERE c.id = %(comment_id)s AND v.id = c.video_id
               AND (c.author_id = %(user_id)s OR v.owner_id = %(user_id)s)
            """,
            {"comment_id": comment_id, "user_id": user_id},
        )
    return deleted == 1
