"""SQL of views: a guarded upsert per viewer, a daily rollup and a counter, in one statement.

Every read is a bounded number of row reads: the counter (one row), or the rollup rows of the
days asked for, never a scan of the views.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import aiopg

from service.db import Row, connection
from service.videos.queries import READABLE

VIEW_WINDOW = timedelta(hours=24)

# One statement, so one transaction: the viewer row, the day's rollup and the counter change
# together or not at all. The viewer upsert returns a row only when the view counts (a new
# viewer, or one last counted at least 24 hours ago); concurrent views of one viewer serialize on
# that row and exactly one of them counts. `+ 1` under the row lock of each upsert is exact
# under any concurrency. Only public videos count, and never their owner's views (a private
# video's only reader is its owner). FOR KEY SHARE keeps the video from being deleted meanwhile;
# a video deleted just before is not found.
RECORD_VIEW = """
WITH video AS (
    SELECT id, owner_id, public FROM videos WHERE id = %(video_id)s FOR KEY SHARE
), counted AS (
    INSERT INTO video_viewers AS w (video_id, viewer_key, last_counted_at)
    SELECT id, %(viewer_key)s, %(now)s FROM video
     WHERE public AND owner_id IS DISTINCT FROM %(user_id)s
    ON CONFLICT (video_id, viewer_key) DO UPDATE SET last_counted_at = EXCLUDED.last_counted_at
     WHERE w.last_counted_at <= EXCLUDED.last_counted_at - %(window)s
    RETURNING w.video_id
), day AS (
    INSERT INTO video_view_days AS d (video_id, day, count)
    SELECT video_id, %(day)s, 1 FROM counted
    ON CONFLICT (video_id, day) DO UPDATE SET count = d.count + 1
), stats AS (
    INSERT INTO video_stats AS s (video_id, view_count)
    SELECT video_id, 1 FROM counted
    ON CONFLICT (video_id) DO UPDATE SET view_count = s.view_count + 1
)
SELECT owner_id, public, EXISTS (SELECT 1 FROM counted) AS counted FROM video
"""


async def record_view(
    pool: aiopg.Pool, video_id: str, viewer_key: bytes, user_id: int | None, now: datetime
) -> Row | None:
    """The video's owner and visibility, and whether this view counted; None when there is no video."""
    async with connection(pool) as tx:
        return await tx.fetchone(
            RECORD_VIEW,
            {
                "video_id": video_id,
                "viewer_key": viewer_key,
                "user_id": user_id,
                "now": now,
                "day": utc_day(now),
                "window": VIEW_WINDOW,
            },
        )


def utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


async def readable_view_count(
    pool: aiopg.Pool, video_id: str, user_id: int, first: date | None = None, last: date | None = None
) -> int | None:
    """Counted views (all, or of the UTC days first..last); None when the caller may not read the video."""
    if first is None and last is None:
        count = "(SELECT s.view_count FROM video_stats s WHERE s.video_id = v.id)"
    else:
        count = """(SELECT sum(d.count) FROM video_view_days d
                     WHERE d.video_id = v.id AND d.day BETWEEN %(first)s AND %(last)s)"""
    params = {"video_id": video_id, "user_id": user_id, "first": first or date.min, "last": last or date.max}
    async with connection(pool) as tx:
        row = await tx.fetchone(f"SELECT coalesce({count}, 0) AS count FROM videos v WHERE {READABLE}", params)
    return None if row is None else int(row["count"])


async def readable_daily_views(pool: aiopg.Pool, video_id: str, user_id: int, first: date, last: date) -> list[Row] | None:
    """The rollup rows of the UTC days first..last (days without views have none); None: not readable."""
    async with connection(pool) as tx:
        rows = await tx.fetchall(
            f"""
            SELECT d.day, d.count FROM videos v
              LEFT JOIN video_view_days d ON d.video_id = v.id AND d.day BETWEEN %(first)s AND %(last)s
             WHERE {READABLE}
            """,
            {"video_id": video_id, "user_id": user_id, "first": first, "last": last},
        )
    if not rows:
        return None
    return [row for row in rows if row["day"] is not None]


async def stored_view_salt(pool: aiopg.Pool, candidate: bytes) -> bytes:
    """The salt kept in the database; `candidate` becomes it when there is none yet (first caller wins)."""
    async with connection(pool) as tx:
        await tx.execute(
            "INSERT INTO secrets (name, value) VALUES ('view_salt', %s) ON CONFLICT (name) DO NOTHING", (candidate,)
        )
        # A separate statement: its snapshot sees the row whichever concurrent caller committed it.
        value = await tx.fetchval("SELECT value FROM secrets WHERE name = 'view_salt'")
    return bytes(value)
