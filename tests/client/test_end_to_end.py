"""The client and `capvid video` against the real app and a running worker: create, upload, follow
the event stream to COMPLETE, read the transcript, delete."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

from config import Settings
from service.client import CapvidApiError, DeletedEvent, VideoState
from tests.client.cli import capvid_cli
from tests.helpers import MEDIA, query
from workers.settings import create_worker

SPOKEN = MEDIA / "spoken.mp4"
SPOKEN_WORDS = {"hello", "welcome", "testing", "speech", "recognition", "short", "video"}
WAIT = 120  # a safety net for a stuck pipeline; the pytest timeout is the other one


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[None]:
    """A worker polling Redis in this event loop for the whole test (the app's relay feeds it)."""
    running = create_worker(settings, burst=False, poll_delay=0.05, handle_signals=False)
    task = asyncio.create_task(running.main())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await running.close()


async def test_create_upload_wait_transcript_delete(capvid, settings, worker):
    video = await capvid.create_video(name="e2e")
    await capvid.upload(video.id, SPOKEN)
    seen: list[VideoState] = []
    state = await capvid.wait_for(video.id, transcription="COMPLETE", ai="COMPLETE", timeout=WAIT, on_update=seen.append)

    assert (state.transcription_status, state.ai_generation_status) == ("COMPLETE", "COMPLETE")
    statuses = [s.transcription_status for s in seen]
    assert statuses[0] == "PROCESSING" and "COMPLETE" in statuses
    transcript = await capvid.transcript(video.id)
    assert len(SPOKEN_WORDS & words(transcript)) >= 5, transcript
    row = query(settings, "SELECT transcription_status, ai_status FROM videos WHERE id = %s", (video.id,))
    assert row == [{"transcription_status": "COMPLETE", "ai_status": "COMPLETE"}]
    assert (await capvid.transcription_detail(video.id)).attempt == 1

    assert await capvid.generate_ai(video.id) == "QUEUED"
    progress = [item async for item in capvid.iter_progress(video.id, "ai")]
    assert progress[-1].status == "COMPLETE"
    assert {item.status for item in progress} <= {"QUEUED", "PROCESSING", "COMPLETE"}
    assert query(settings, "SELECT ai_run FROM videos WHERE id = %s", (video.id,)) == [{"ai_run": 2}]

    await capvid.delete(video.id)
    with pytest.raises(CapvidApiError) as gone:
        await capvid.get_video(video.id)
    assert (gone.value.status, gone.value.body) == (404, {"error": "Video not found"})
    # A stream resumed after the last event it saw is owed the tombstone.
    events = [event async for event in capvid.events(video.id, last_event_id=state.last_event_id)]
    assert len(events) == 1 and isinstance(events[0], DeletedEvent)


@pytest.mark.slow
async def test_cli_upload_wait_prints_the_transcript(server_url, alice, settings, worker, tmp_path):
    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "upload", str(SPOKEN), "--wait", "--ai")
    assert code == 0, err
    lines = out.splitlines()
    video_id = lines[0]
    assert query(settings, "SELECT transcription_status FROM videos WHERE id = %s", (video_id,)) == [
        {"transcription_status": "COMPLETE"}
    ]
    cues = [line for line in lines[1:] if re.match(r"^\d{2}:\d{2}:\d{2}\.\d{3}  \S", line)]
    assert cues and lines[1] == cues[0], out
    assert len(SPOKEN_WORDS & words(" ".join(cues))) >= 5, out
    title = [line for line in lines if line.startswith("title: ")]
    assert title and title[0] != "title: ", out
    assert "transcribing" in err and "Traceback" not in err

    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "status", video_id)
    assert (code, out.splitlines()) == (0, ["transcription: COMPLETE", "ai: COMPLETE"]), err
    code, out, _ = await capvid_cli(server_url, alice, tmp_path, "video", "transcript", video_id)
    assert code == 0 and out.startswith("WEBVTT")
    code, out, _ = await capvid_cli(server_url, alice, tmp_path, "video", "delete", video_id)
    assert (code, out) == (0, f"deleted {video_id}\n")
    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "status", video_id, "--wait")
    assert (code, out, err) == (1, "", "capvid: 404 Video not found\n")


async def test_cli_upload_wait_reports_a_failed_transcription(server_url, alice, settings, worker, tmp_path):
    corrupt = MEDIA / "corrupt.mp4"
    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "upload", str(corrupt), "--wait")
    assert code == 1
    video_id = out.strip()
    assert query(settings, "SELECT transcription_status FROM videos WHERE id = %s", (video_id,)) == [
        {"transcription_status": "ERROR"}
    ]
    assert err.splitlines()[-1].startswith("capvid: transcription ended ERROR: unreadable media:"), err
    assert "Traceback" not in err
