"""Nothing is lost and nothing stays PROCESSING: Redis outages, killed workers, stale claims."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


from config import Settings
from service.app import create_app
from tests.helpers import MEDIA, bearer, drain, query, run_recovery, write
from tests.pipeline.conftest import uploaded

ROOT = Path(__file__).resolve().parents[2]


def video_row(settings: Settings, video_id: str) -> dict[str, Any]:
    return query(settings, "SELECT * FROM videos WHERE id = %s", (video_id,))[0]


async def test_upload_succeeds_while_redis_is_down_and_the_job_runs_once_it_is_back(
    aiohttp_client: Any, settings: Settings, alice: str
):
    dead_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    client = await aiohttp_client(create_app(dead_redis))
    response = await client.post("/api/video", json={}, headers=bearer(alice))
    video_id = (await response.json())["id"]
    response = await client.put(
        "/api/video/upload", params={"videoId": video_id}, data=(MEDIA / "spoken.mp4").read_bytes(),
        headers=bearer(alice),
    )
    assert response.status == 200
    await asyncio.sleep(0.5)  # the app's relay tries, and fails, to reach Redis
    pending = query(settings, "SELECT function FROM outbox WHERE video_id = %s AND sent_at IS NULL", (video_id,))
    assert pending == [{"function": "transcribe"}], "the request waits in the outbox"

    await drain(settings)  # Redis is back: a relay hands the row over and the worker runs it
    assert video_row(settings, video_id)["transcription_status"] == "COMPLETE"


async def test_nothing_is_enqueued_for_a_rolled_back_transaction(api, alice):
    video = await api.create_video(alice)
    # An upload into a video that is not the caller's rolls back: no outbox row, no job.
    other = await api.create_video(alice)
    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"] + "x"}, data=b"abc", headers=bearer(alice)
    )
    assert response.status == 404
    assert query(api.settings, "SELECT * FROM outbox") == []
    assert other["transcriptionStatus"] is None


async def test_a_claim_whose_worker_died_is_taken_over(api, alice):
    video_id = await uploaded(api, alice)
    # What a worker killed mid-job leaves behind: a claim with an expired lease.
    await write(
        api.settings,
        """UPDATE videos SET transcription_attempt = 1, transcription_lease_until = now() - interval '1 second'
           WHERE id = %s RETURNING id""",
        (video_id,),
    )
    await write(api.settings, "UPDATE outbox SET sent_at = now() RETURNING id")  # that job is gone with its worker
    await run_recovery(api.settings)
    await drain(api.settings)

    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "COMPLETE"
    assert row["transcription_attempt"] == 2


async def test_a_dead_claim_on_its_last_attempt_ends_in_error(api, alice):
    video_id = await uploaded(api, alice)
    await write(
        api.settings,
        """UPDATE videos SET transcription_attempt = 3, transcription_lease_until = now() - interval '1 second'
           WHERE id = %s RETURNING id""",
        (video_id,),
    )
    await run_recovery(api.settings)
    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "ERROR"
    assert "gave up after 3 attempts" in row["transcription_error"]


async def test_work_no_job_ever_claimed_is_requested_again(api, alice):
    video_id = await uploaded(api, alice)
    # Redis lost the queued job (restarted without persistence): nothing will ever claim it.
    await write(api.settings, "UPDATE outbox SET sent_at = now() RETURNING id")
    await write(
        api.settings,
        "UPDATE videos SET transcription_heartbeat_at = now() - interval '1 hour' WHERE id = %s RETURNING id",
        (video_id,),
    )
    await run_recovery(api.settings)
    await drain(api.settings)
    assert video_row(api.settings, video_id)["transcription_status"] == "COMPLETE"


async def test_worker_killed_mid_transcription_does_not_leave_the_video_processing(api, alice, deepgram):
    deepgram.mode = "hang"
    video_id = await uploaded(api, alice)
    env = worker_env(api.settings, deepgram.url)
    first = start_worker(env)
    try:
        await wait_for(lambda: len(deepgram.requests) >= 1, 30, "the first worker to start transcribing")
        assert video_row(api.settings, video_id)["transcription_status"] == "PROCESSING"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    deepgram.mode = "ok"
    second = start_worker(env)
    try:
        await wait_for(
            lambda: video_row(api.settings, video_id)["transcription_status"] == "COMPLETE", 60, "COMPLETE"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    row = video_row(api.settings, video_id)
    assert row["transcription_attempt"] == 2
    statuses = query(
        api.settings,
        "SELECT status FROM video_events WHERE video_id = %s AND kind = 'transcription' ORDER BY id",
        (video_id,),
    )
    assert [r["status"] for r in statuses] == ["PROCESSING", "COMPLETE"]


def worker_env(settings: Settings, deepgram_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        STORAGE_DIR=str(settings.storage_dir),
        MODEL_CACHE_DIR=str(settings.model_cache_dir),
        TRANSCRIPTION_ENGINE="deepgram",
        DEEPGRAM_API_KEY="k",
        DEEPGRAM_BASE_URL=deepgram_url,
        LEASE_SECONDS="2",
        RECOVERY_INTERVAL_SECONDS="1",
        OUTBOX_POLL_SECONDS="0.2",
        RETRY_BACKOFF_SECONDS="0.1",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_an_ai_claim_whose_worker_died_is_taken_over(api, alice):
    video_id = await uploaded(api, alice)
    await drain(api.settings)
    response = await api.client.post("/api/video/ai/generate", params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 202
    # The AI job was claimed by a worker that then died: PROCESSING with an expired lease.
    await write(
        api.settings,
        """UPDATE videos SET ai_status = 'PROCESSING', ai_attempt = 1,
                  metadata = metadata || '{"aiGenerationStatus": "PROCESSING"}',
                  ai_lease_until = now() - interval '1 second'
           WHERE id = %s RETURNING id""",
        (video_id,),
    )
    await write(api.settings, "UPDATE outbox SET sent_at = now() RETURNING id")
    assert (await run_recovery(api.settings))["ai"] == 1
    await drain(api.settings)

    row = video_row(api.settings, video_id)
    assert row["metadata"]["aiGenerationStatus"] == "COMPLETE"
    assert row["ai_attempt"] == 2, "a second attempt took over the dead one"
