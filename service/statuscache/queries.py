"""SQL behind the cache: what a fill reads (a miss, or the cache is off or not listening)."""

from __future__ import annotations

import aiopg

from service.db import Row, fetchone

TOKEN_OWNER = """
SELECT k.id AS token_id, u.id, u.email, u.is_admin,
       EXTRACT(EPOCH FROM now() - k.last_used_at)::float8 AS idle_seconds
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.token_hash = %s AND k.revoked_at IS NULL
"""

VIDEO_ACCESS = "SELECT owner_id, public, transcription_status FROM videos WHERE id = %s"


async def token_owner(pool: aiopg.Pool, digest: bytes) -> Row | None:
    """The live token's user, and how long ago the token was last used (None: never)."""
    return await fetchone(pool, TOKEN_OWNER, (digest,))


async def video_access(pool: aiopg.Pool, video_id: str) -> Row | None:
    return await fetchone(pool, VIDEO_ACCESS, (video_id,))
