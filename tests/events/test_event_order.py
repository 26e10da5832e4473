"""Event ids rise in commit order for a video: its event lock is taken before an event's id is drawn."""

from __future__ import annotations

import asyncio

from config import Settings
from service.db import create_pool, transaction
from service.events import record_event
from service.events.log import _LOCK_CLASS
from tests.helpers import write

WAITING_FOR_THE_LOCK = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s"


async def test_an_event_waiting_for_its_video_lock_draws_its_id_after_the_wait(settings: Settings) -> None:
    video_id = "event-order"
    pool = await create_pool(settings, minsize=0, maxsize=3)
    try:
        async with pool.acquire() as conn, conn.cursor() as holder:
            # Another transaction holds the video's event lock (as one recording an event would).
            await holder.execute("BEGIN; SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, video_id))

            async def record() -> None:
                async with transaction(pool) as tx:
                    await record_event(tx, video_id, None, "transcription", "COMPLETE", 1, 1)

            recording = asyncio.create_task(record())
            async with asyncio.timeout(10):
                while (await write(settings, WAITING_FOR_THE_LOCK, (_LOCK_CLASS,)))[0]["count"] == 0:
                    await asyncio.sleep(0.01)
            # An id drawn while the event waits: the event's own must come after it.
            [drawn] = await write(settings, "SELECT nextval(pg_get_serial_sequence('video_events', 'id'))")
            assert not recording.done()
            await holder.execute("ROLLBACK")
            await recording
        [event] = await write(settings, "SELECT id FROM video_events WHERE video_id = %s", (video_id,))
        assert event["id"] > drawn["nextval"]
    finally:
        pool.close()
        await pool.wait_closed()
