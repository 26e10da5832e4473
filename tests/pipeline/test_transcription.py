"""Upload → outbox → relay → arq → real speech-to-text → COMPLETE, and every way it can go wrong."""

from __future__ import annotations

import re

from arq.connections import ArqRedis

from service.storage import transcript_key
from tests.helpers import MEDIA, bearer, drain, query
from tests.pipeline.conftest import uploaded, with_deepgram

SPOKEN = (MEDIA / "spoken.txt").read_text()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def cue_lines(document: str) -> list[str]:
    return [line for line in document.splitlines() if "-->" in line]


def video_row(settings, video_id: str) -> dict:
    return query(settings, "SELECT * FROM videos WHERE id = %s", (video_id,))[0]


def transitions(settings, video_id: str, kind: str = "transcription") -> list[tuple]:
    rows = query(
        settings, "SELECT status, run FROM video_events WHERE video_id = %s AND kind = %s ORDER BY id", (video_id, kind)
    )
    return [(r["status"], r["run"]) for r in rows]


async def test_spoken_upload_is_transcribed_with_timed_cues(api, alice):
    video_id = await uploaded(api, alice)
    assert await api.status(alice, video_id) == "PROCESSING"
    await drain(api.settings)

    assert await api.status(alice, video_id) == "COMPLETE"
    owner = video_row(api.settings, video_id)["owner_id"]
    stored = (api.settings.storage_dir / transcript_key(owner, video_id)).read_text()
    assert stored.startswith("WEBVTT")
    assert cue_lines(stored), "the transcript has timed cues"
    spoken = words(SPOKEN) - {"capvid"}  # a made-up word the model may spell its own way
    assert len(spoken & words(stored)) >= 0.8 * len(spoken)

    response = await api.client.get("/api/video/transcript", params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 200
    assert response.content_type == "text/vtt"
    assert await response.text() == stored
    assert transitions(api.settings, video_id) == [("PROCESSING", 1), ("COMPLETE", 1)]
    assert video_row(api.settings, video_id)["duration"] > 5


async def test_silent_video_completes_with_an_empty_transcript(api, alice):
    video_id = await uploaded(api, alice, "silent.mp4")
    await drain(api.settings)

    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "COMPLETE"
    assert row["transcription_note"] == "no audio track"
    stored = (api.settings.storage_dir / transcript_key(row["owner_id"], video_id)).read_text()
    assert stored.strip() == "WEBVTT"
    assert row["ai_status"] == "SKIPPED" and "no audio" in row["ai_note"]


async def test_corrupt_file_goes_to_error_at_once(api, alice):
    video_id = await uploaded(api, alice, "corrupt.mp4")
    await drain(api.settings)

    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "ERROR"
    assert row["transcription_attempt"] == 1, "no retries for unreadable media"
    assert row["transcription_error"].startswith("unreadable media:")
    detail = await api.client.get("/api/video/transcription", params={"videoId": video_id}, headers=bearer(alice))
    body = await detail.json()
    assert body["status"] == "ERROR" and body["attempt"] == 1 and "unreadable media" in body["error"]
    assert (await api.video(alice, video_id))["transcriptionError"] == row["transcription_error"]


async def test_failing_engine_retries_then_errors(api, alice, deepgram):
    deepgram.mode = "error_500"
    video_id = await uploaded(api, alice)
    await drain(with_deepgram(api.settings, deepgram, transcription_max_attempts=3))

    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "ERROR"
    assert row["transcription_attempt"] == 3
    assert row["transcription_error"].startswith("failed after 3 attempts")
    assert len(deepgram.requests) == 3
    assert transitions(api.settings, video_id) == [("PROCESSING", 1), ("ERROR", 1)]


async def test_transient_failure_then_success(api, alice, deepgram):
    deepgram.fail_429_times = 1
    video_id = await uploaded(api, alice)
    await drain(with_deepgram(api.settings, deepgram))

    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "COMPLETE"
    assert row["transcription_attempt"] == 2
    assert len(deepgram.requests) == 2


async def test_transcribe_route_retries_errors_and_forces_complete(api, alice, deepgram):
    deepgram.mode = "error_500"
    video_id = await uploaded(api, alice)
    failing = with_deepgram(api.settings, deepgram, transcription_max_attempts=1)
    await drain(failing)
    assert await api.status(alice, video_id) == "ERROR"

    async def transcribe(**params: str) -> dict:
        response = await api.client.post(
            "/api/video/transcribe", params={"videoId": video_id, **params}, headers=bearer(alice)
        )
        assert response.status == 202
        return await response.json()  # type: ignore[no-any-return]

    deepgram.mode = "ok"
    assert await transcribe() == {"transcriptionStatus": "PROCESSING"}
    assert await transcribe() == {"transcriptionStatus": "PROCESSING"}, "PROCESSING is left alone"
    await drain(failing)
    assert await api.status(alice, video_id) == "COMPLETE"
    assert await transcribe() == {"transcriptionStatus": "COMPLETE"}, "COMPLETE is left alone"
    assert await transcribe(force="true") == {"transcriptionStatus": "PROCESSING"}
    await drain(failing)
    assert transitions(api.settings, video_id) == [
        ("PROCESSING", 1), ("ERROR", 1), ("PROCESSING", 2), ("COMPLETE", 2), ("PROCESSING", 3), ("COMPLETE", 3),
    ]


async def test_same_job_delivered_twice_applies_once(api, alice):
    video_id = await uploaded(api, alice)
    await drain(api.settings)
    owner = video_row(api.settings, video_id)["owner_id"]
    path = api.settings.storage_dir / transcript_key(owner, video_id)
    first = path.read_text()
    events_before = query(api.settings, "SELECT id FROM video_events WHERE video_id = %s", (video_id,))

    # The same request delivered again, under new job ids (as after a relay crash or a Redis restart).
    redis = ArqRedis.from_url(api.settings.redis_url)
    for duplicate in ("dup-1", "dup-2"):
        await redis.enqueue_job("transcribe", video_id, {"run": 1}, _job_id=duplicate)
    await redis.aclose()
    await drain(api.settings)

    assert path.read_text() == first
    assert query(api.settings, "SELECT id FROM video_events WHERE video_id = %s", (video_id,)) == events_before
    assert video_row(api.settings, video_id)["transcription_attempt"] == 1


async def test_concurrent_duplicates_only_one_claims(api, alice, deepgram):
    video_id = await uploaded(api, alice)
    redis = ArqRedis.from_url(api.settings.redis_url)
    await redis.enqueue_job("transcribe", video_id, {"run": 1}, _job_id="twin")
    await redis.aclose()
    await drain(with_deepgram(api.settings, deepgram))

    assert len(deepgram.requests) == 1, "the second copy found the claim held and ended quietly"
    assert transitions(api.settings, video_id) == [("PROCESSING", 1), ("COMPLETE", 1)]


async def test_a_newer_run_wins_over_an_older_job(api, alice):
    video_id = await uploaded(api, alice)
    # A second upload before any worker ran: run 1's job must not write anything.
    response = await api.upload(alice, video_id, (MEDIA / "silent.mp4").read_bytes())
    assert response.status == 200
    await drain(api.settings)

    row = video_row(api.settings, video_id)
    assert row["transcription_run"] == 2 and row["transcription_status"] == "COMPLETE"
    assert row["transcription_note"] == "no audio track", "the transcript is of the newest media"
    assert transitions(api.settings, video_id) == [("PROCESSING", 1), ("PROCESSING", 2), ("COMPLETE", 2)]
