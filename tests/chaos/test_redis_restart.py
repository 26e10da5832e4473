"""Redis dies in the middle of 100 deletes and uploads and comes back empty a few seconds later
(no persistence: every queued job is lost with it). Every delete's storage cleanup still
happens and every upload still gets its transcript: the outbox keeps what was requested
during the outage, and recovery requests again what Redis forgot.

The app runs in-process, a `capvid worker` runs under a restarting supervisor (a worker exits
when Redis stays unreachable), both on a Redis of this test's own. Transcription uses the
local Deepgram fake: the point is volume and delivery, not speech (the kill test uses whisper).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config import Settings
from service.storage import build_storage, transcript_key, video_prefix
from tests.chaos.processes import Supervisor, capvid_env
from tests.chaos.servers import RedisServer
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import Api, query, record_figure
from tests.pipeline.conftest import uploaded
from tests.pipeline.test_recovery import wait_for
from tests.storage.helpers import delete, keys_under, seed

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DELETES, UPLOADS = 60, 40
OBJECTS_PER_VIDEO = 20
KILL_AFTER = 30  # operations
DURING = 40  # operations while Redis is down (which lasts at least DOWN_SECONDS)
DOWN_SECONDS = 3.0
PACE_SECONDS = 0.02


@pytest.fixture
def settings_overrides(redis_server: RedisServer, deepgram: FakeDeepgram) -> dict[str, Any]:
    return {
        "redis_url": redis_server.url,
        "transcription_engine": "deepgram",
        "deepgram_api_key": SecretStr(deepgram.api_key),
        "deepgram_base_url": deepgram.url,  # type: ignore[attr-defined]
    }


async def test_redis_restarted_empty_during_100_deletes_and_uploads_loses_nothing(
    api: Api, alice: str, redis_server: RedisServer, deepgram: FakeDeepgram, tmp_path: Path,
    request: pytest.FixtureRequest,
):
    settings = api.settings
    deepgram.mode, deepgram.hang_seconds = "hang", 1.0  # a second a transcript: work queues up in Redis
    doomed = await videos_with_objects(api, alice, DELETES)
    operations = [("delete", video) for video in doomed] + [("upload", "")] * UPLOADS
    random.Random(9).shuffle(operations)
    env = capvid_env(settings, DEEPGRAM_BASE_URL=deepgram.url, UNCLAIMED_REQUEUE_SECONDS="3")  # type: ignore[attr-defined]
    supervisor = Supervisor(env, tmp_path / "workers.log")
    outage = Outage(redis_server)
    uploads: list[str] = []
    async with supervisor:
        for number, (kind, video_id) in enumerate(operations):
            if number == KILL_AFTER:
                outage.begin(settings)
            elif number == KILL_AFTER + DURING:
                await outage.end()
            if kind == "delete":
                assert await delete(api.client, alice, video_id) == 200, "a delete needs Postgres only"
            else:
                uploads.append(await uploaded(api, alice))  # so does an upload
            await asyncio.sleep(PACE_SECONDS)
        await wait_for(lambda: everything_done(settings), 120, f"every cleanup and transcript (see {tmp_path})")
        done_in = time.monotonic() - outage.ended

    assert outage.in_redis > 0, "no job was in Redis when it died: nothing to lose, nothing to recover"
    again = requested_again(settings)
    await check_deletes(settings, doomed)
    check_uploads(settings, uploads)
    assert not query(settings, "SELECT id FROM outbox WHERE sent_at IS NULL"), "every job request was sent"
    record_figure(
        request,
        f"{len(operations)} operations ({DELETES} deletes, {UPLOADS} uploads), {DURING} of them while Redis was "
        f"down ({outage.seconds:.1f} s); {outage.in_redis} jobs in Redis when it died, {again} requested again by "
        f"recovery; worker started {supervisor.starts} times; every cleanup finished and every transcript made "
        f"{done_in:.1f} s after Redis came back (empty)",
    )


class Outage:
    """Kills Redis; `end()` starts it again (empty, same port), DOWN_SECONDS after at the earliest."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.in_redis = 0
        self.started = self.ended = self.seconds = 0.0

    def begin(self, settings: Settings) -> None:
        self.in_redis = in_redis(settings)
        self.server.kill()
        self.started = time.monotonic()

    async def end(self) -> None:
        await asyncio.sleep(max(0.0, self.started + DOWN_SECONDS - time.monotonic()))
        await asyncio.to_thread(self.server.start)
        self.ended = time.monotonic()
        self.seconds = self.ended - self.started


def in_redis(settings: Settings) -> int:
    """Job requests handed to Redis whose work is not done: what a Redis without persistence loses."""
    return len(query(
        settings,
        """SELECT o.id FROM outbox o WHERE o.sent_at IS NOT NULL AND (
               (o.function = 'transcribe' AND EXISTS (
                   SELECT 1 FROM videos v WHERE v.id = o.video_id AND v.transcription_status = 'PROCESSING'))
            OR (o.function = 'cleanup_storage' AND EXISTS (
                   SELECT 1 FROM storage_cleanups c WHERE c.video_id = o.video_id AND c.finished_at IS NULL)))""",
    ))


def requested_again(settings: Settings) -> int:
    """Job requests beyond one per upload and one per delete: recovery's (and retries')."""
    [row] = query(
        settings,
        "SELECT count(*) FILTER (WHERE function IN ('transcribe', 'cleanup_storage')) AS n FROM outbox",
    )
    return int(row["n"]) - DELETES - UPLOADS


async def videos_with_objects(api: Api, token: str, count: int) -> list[str]:
    """Videos with OBJECTS_PER_VIDEO stored objects each (segments, thumbnails, ...)."""
    storage = build_storage(api.settings, "local")
    videos = []
    try:
        for _ in range(count):
            video = await api.create_video(token)
            await seed(storage, video_prefix(int(video["ownerId"]), video["id"]), OBJECTS_PER_VIDEO)
            videos.append(video["id"])
    finally:
        await storage.aclose()
    return videos


def everything_done(settings: Settings) -> bool:
    left = query(
        settings,
        """SELECT id::text FROM storage_cleanups WHERE finished_at IS NULL
           UNION ALL SELECT id FROM videos WHERE transcription_status IS DISTINCT FROM 'COMPLETE'
                                       OR ai_status IS NULL OR ai_status IN ('QUEUED', 'PROCESSING')
           UNION ALL SELECT video_id FROM outbox WHERE sent_at IS NULL""",
    )
    return not left


async def check_deletes(settings: Settings, videos: list[str]) -> None:
    assert not query(settings, "SELECT id FROM videos WHERE id = ANY(%s)", (videos,))
    cleanups = query(
        settings, "SELECT video_id, prefix, finished_at, last_error FROM storage_cleanups WHERE video_id = ANY(%s)",
        (videos,),
    )
    assert sorted(c["video_id"] for c in cleanups) == sorted(videos), "one cleanup per delete"
    for cleanup in cleanups:
        assert cleanup["finished_at"] is not None and cleanup["last_error"] is None, cleanup
        assert await keys_under(settings, "local", cleanup["prefix"]) == [], f"objects left under {cleanup['prefix']}"


def check_uploads(settings: Settings, videos: list[str]) -> None:
    found = query(settings, "SELECT * FROM videos WHERE id = ANY(%s)", (videos,))
    assert len(found) == UPLOADS
    for row in found:
        assert (row["transcription_status"], row["ai_status"]) == ("COMPLETE", "COMPLETE"), row["id"]
        assert (settings.storage_dir / transcript_key(row["owner_id"], row["id"])).read_text().startswith("WEBVTT")
    completions = query(
        settings,
        """SELECT video_id, run, count(*) AS n FROM video_events
           WHERE video_id = ANY(%s) AND kind = 'transcription' AND status = 'COMPLETE' GROUP BY video_id, run""",
        (videos,),
    )
    assert len(completions) == UPLOADS and all(c["n"] == 1 for c in completions), "each transcript made once"
