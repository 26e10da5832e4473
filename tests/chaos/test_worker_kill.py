"""A worker SIGKILLed in the middle of transcriptions, ten times over a batch of uploads, with
the real speech-to-text engine: every video ends COMPLETE, none is left PROCESSING, and no
job is lost or applied twice (one COMPLETE per video and run, one transcript, AI done).

Each round starts a `capvid worker`, waits until it has claimed a transcription, lets it work
a moment and kills it; a kill counts only if it caught a claim unfinished. Leases of 2 s and
a recovery run every second hand the dead worker's claims to the next one. Every kill costs
the videos it interrupts an attempt, so attempts are not the limit here (50).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime
from pathlib import Path

import pytest

from config import Settings
from service.storage import transcript_key
from tests.chaos.processes import Process, capvid_env
from tests.helpers import Api, query, record_figure
from tests.pipeline.conftest import uploaded
from tests.pipeline.test_recovery import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

KILLS = 10
BATCH = 6
MAX_WORK_BEFORE_KILL = 0.5  # seconds after a claim is seen


async def test_ten_kills_mid_transcription_lose_nothing_and_apply_nothing_twice(
    api: Api, alice: str, tmp_path: Path, request: pytest.FixtureRequest
):
    settings = api.settings
    env = capvid_env(
        settings, TRANSCRIPTION_ENGINE="whisper", TRANSCRIPTION_MAX_ATTEMPTS="50", AI_MAX_ATTEMPTS="50",
        UNCLAIMED_REQUEUE_SECONDS="5",
        WHISPER_CPU_THREADS="1",  # four jobs at once on two cores: one thread each, not four
    )
    log = tmp_path / "workers.log"
    videos = [await uploaded(api, alice) for _ in range(BATCH)]
    rng = random.Random(9)
    kills = rounds = interrupted = 0
    while kills < KILLS:
        rounds += 1
        assert rounds <= 3 * KILLS, f"only {kills} of {rounds} kills caught a transcription unfinished"
        if not processing(settings):
            videos.append(await uploaded(api, alice))  # keep something to interrupt
        since = db_now(settings)
        worker = Process("worker", env, log)
        try:
            await wait_for(lambda: claimed_since(settings, since) > 0, 120, f"a claim (see {log})")
            await asyncio.sleep(rng.uniform(0, MAX_WORK_BEFORE_KILL))
        finally:
            worker.kill()
        caught = unfinished_claims_since(settings, since)
        kills += caught > 0
        interrupted += caught
    last_kill = time.monotonic()

    final = Process("worker", env, log)
    try:
        await wait_for(lambda: all_done(settings), 180, f"every video COMPLETE with its AI metadata (see {log})")
    finally:
        await final.stop()
    recovered_in = time.monotonic() - last_kill

    check_each_applied_once(settings, videos)
    attempts = sum(int(str(r["transcription_attempt"])) for r in rows(settings, videos))
    record_figure(
        request,
        f"{kills} kills ({rounds} rounds) interrupted {interrupted} transcriptions of {len(videos)} videos: "
        f"all COMPLETE once, {attempts} attempts in all, done {recovered_in:.1f} s after the last kill",
    )


def db_now(settings: Settings) -> datetime:
    now: datetime = query(settings, "SELECT now() AS now")[0]["now"]
    return now


def processing(settings: Settings) -> bool:
    return bool(query(settings, "SELECT 1 FROM videos WHERE transcription_status = 'PROCESSING'"))


def claimed_since(settings: Settings, since: datetime) -> int:
    """Transcriptions claimed (and held) since `since`: the new worker is at work."""
    return len(query(
        settings,
        """SELECT id FROM videos WHERE transcription_status = 'PROCESSING'
           AND transcription_lease_until > now() AND transcription_heartbeat_at >= %s""",
        (since,),
    ))


def unfinished_claims_since(settings: Settings, since: datetime) -> int:
    """After a kill: claims the dead worker made and never finished nor handed back."""
    return len(query(
        settings,
        """SELECT id FROM videos WHERE transcription_status = 'PROCESSING'
           AND transcription_lease_until IS NOT NULL AND transcription_heartbeat_at >= %s""",
        (since,),
    ))


def all_done(settings: Settings) -> bool:
    left = query(
        settings,
        """SELECT id FROM videos WHERE transcription_status IS DISTINCT FROM 'COMPLETE'
              OR ai_status IS NULL OR ai_status IN ('QUEUED', 'PROCESSING')
           UNION ALL SELECT video_id FROM outbox WHERE sent_at IS NULL""",
    )
    return not left


def rows(settings: Settings, videos: list[str]) -> list[dict[str, object]]:
    return query(settings, "SELECT * FROM videos WHERE id = ANY(%s) ORDER BY id", (videos,))


def check_each_applied_once(settings: Settings, videos: list[str]) -> None:
    found = rows(settings, videos)
    assert len(found) == len(videos)
    for row in found:
        assert row["transcription_status"] == "COMPLETE" and row["transcription_lease_until"] is None, row["id"]
        assert row["transcription_run"] == 1, "no new run was started by recovery"
        assert row["ai_status"] == "COMPLETE", (row["id"], row["ai_status"], row["ai_error"])
        key = transcript_key(int(str(row["owner_id"])), str(row["id"]))
        assert (settings.storage_dir / key).read_text().startswith("WEBVTT"), f"no transcript for {row['id']}"
    completions = query(
        settings,
        """SELECT video_id, kind, run, count(*) AS n FROM video_events
           WHERE video_id = ANY(%s) AND status = 'COMPLETE' GROUP BY video_id, kind, run""",
        (videos,),
    )
    assert sorted((c["video_id"], c["kind"]) for c in completions) == sorted(
        (v, kind) for v in videos for kind in ("ai", "transcription")
    ), "each video completed its transcription and its AI metadata"
    assert all(c["n"] == 1 for c in completions), f"applied twice: {[c for c in completions if c['n'] != 1]}"
    assert not query(settings, "SELECT id FROM outbox WHERE sent_at IS NULL"), "every job request was sent"
