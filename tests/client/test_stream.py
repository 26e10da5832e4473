"""The client's event stream, waits and reconnects against a local fake of GET /api/video/events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.client import (
    AiEvent,
    CapvidApiError,
    CapvidClient,
    CapvidConnectionError,
    DeletedEvent,
    ProgressEvent,
    StateEvent,
    TranscriptionEvent,
    VideoDeleted,
    VideoState,
    WaitFailed,
)
from tests.client.fake_events import FakeEvents


@pytest.fixture
def fake() -> FakeEvents:
    return FakeEvents()


@pytest.fixture
async def capvid(aiohttp_server: Any, fake: FakeEvents) -> AsyncIterator[CapvidClient]:
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("")).rstrip("/")
    async with CapvidClient(url, fake.token, dev_token_file=None, reconnect_delay=0.01, max_reconnects=3) as client:
        yield client


async def collect(capvid: CapvidClient, **kwargs: Any) -> list[Any]:
    return [event async for event in capvid.events("vid1", **kwargs)]


async def test_a_fresh_stream_starts_with_the_state_and_ends_after_deleted(capvid, fake):
    fake.transcription("PROCESSING")
    fake.state = {"transcriptionStatus": "PROCESSING", "transcriptionProgress": 0.25, "aiGenerationStatus": None}
    fake.split_bytes, fake.line_ending = True, "\r\n"
    task = asyncio.create_task(collect(capvid))
    await fake.wait_streams(1)
    fake.progress("transcription", 0.5, "decoding")
    fake.transcription("COMPLETE", note=None)
    fake.ai("QUEUED")
    fake.deleted()
    events = await task

    assert events == [
        StateEvent(video_id="vid1", event_id=1, transcription_status="PROCESSING", transcription_progress=0.25),
        ProgressEvent(video_id="vid1", kind="transcription", progress=0.5, step="decoding"),
        TranscriptionEvent(video_id="vid1", event_id=2, transcription_status="COMPLETE", run=1, attempt=1,
                           detail={"note": None}),
        AiEvent(video_id="vid1", event_id=3, ai_generation_status="QUEUED", run=1, attempt=1),
        DeletedEvent(video_id="vid1", event_id=4),
    ]


async def test_last_event_id_replays_what_came_after(capvid, fake):
    fake.transcription("PROCESSING")
    fake.transcription("COMPLETE")
    fake.ai("SKIPPED", reason="too short")
    fake.deleted()
    events = await collect(capvid, last_event_id=1)
    assert [type(e).__name__ for e in events] == ["TranscriptionEvent", "AiEvent", "DeletedEvent"]
    assert events[1].detail == {"reason": "too short"}
    assert fake.last_event_ids == ["1"]


async def test_wait_for_complete_with_progress(capvid, fake):
    fake.transcription("PROCESSING")
    fake.state["transcriptionStatus"] = "PROCESSING"
    seen: list[VideoState] = []
    task = asyncio.create_task(capvid.wait_for("vid1", transcription="COMPLETE", on_update=seen.append))
    await fake.wait_streams(1)
    fake.progress("transcription", 0.4)
    fake.progress("transcription", 0.9)
    fake.transcription("COMPLETE")
    state = await task

    assert state.transcription_status == "COMPLETE" and state.last_event_id == 2
    assert [s.transcription_progress for s in seen] == [None, 0.4, 0.9, 1.0]


async def test_wait_for_fails_on_error_with_the_reason(capvid, fake):
    fake.transcription("PROCESSING")
    fake.state["transcriptionStatus"] = "PROCESSING"
    task = asyncio.create_task(capvid.wait_for("vid1", transcription="COMPLETE"))
    await fake.wait_streams(1)
    fake.transcription("ERROR", reason="unreadable media: no streams")
    with pytest.raises(WaitFailed, match="transcription ended ERROR: unreadable media: no streams") as failed:
        await task
    assert failed.value.state.transcription_status == "ERROR"


async def test_a_final_state_already_reached_returns_at_once(capvid, fake):
    fake.transcription("COMPLETE")
    fake.ai("COMPLETE")
    fake.state = {"transcriptionStatus": "COMPLETE", "transcriptionProgress": 1.0, "aiGenerationStatus": "COMPLETE"}
    state = await capvid.wait_for("vid1", transcription="COMPLETE", ai="COMPLETE")
    assert (state.transcription_status, state.ai_generation_status, state.last_event_id) == ("COMPLETE", "COMPLETE", 2)


async def test_ai_of_an_earlier_transcript_is_not_taken_for_the_new_one(capvid, fake):
    """A re-upload leaves the old AI COMPLETE in place while the new transcription runs."""
    for status in ("PROCESSING", "COMPLETE"):
        fake.transcription(status)
    fake.ai("COMPLETE")
    fake.transcription("PROCESSING")
    fake.state = {"transcriptionStatus": "PROCESSING", "transcriptionProgress": 0.1, "aiGenerationStatus": "COMPLETE"}
    seen: list[VideoState] = []
    task = asyncio.create_task(capvid.wait_for("vid1", ai="COMPLETE", on_update=seen.append))
    await fake.wait_streams(1)
    fake.transcription("COMPLETE")  # committed together with the next AI event
    fake.ai("QUEUED")
    fake.ai("PROCESSING")
    fake.ai("COMPLETE")
    state = await task
    assert state.last_event_id == 8
    assert [s.ai_generation_status for s in seen] == [None, None, "QUEUED", "PROCESSING", "COMPLETE"]


async def test_waiting_for_ai_fails_when_transcription_fails(capvid, fake):
    fake.state["transcriptionStatus"] = "PROCESSING"
    task = asyncio.create_task(capvid.wait_for("vid1", ai="COMPLETE"))
    await fake.wait_streams(1)
    fake.transcription("ERROR", reason="no engine")
    with pytest.raises(WaitFailed, match="AI generation will not run"):
        await task


@pytest.mark.parametrize("cut", ["clean", "abrupt"])
async def test_a_dropped_stream_resumes_from_the_last_event(capvid, fake, cut):
    fake.transcription("PROCESSING")
    fake.state["transcriptionStatus"] = "PROCESSING"
    fake.cuts = [(1, cut), (0, cut)]  # first stream: one live event; second: none; third: kept
    seen: list[VideoState] = []
    task = asyncio.create_task(capvid.wait_for("vid1", ai="COMPLETE", on_update=seen.append))
    await fake.wait_streams(1)
    fake.transcription("COMPLETE")  # sent, then the stream is cut
    await fake.wait_streams(3)
    fake.ai("QUEUED")
    fake.ai("COMPLETE")
    state = await task

    assert fake.last_event_ids == [None, "2", "2"]
    assert [s.last_event_id for s in seen] == [1, 2, 3, 4], "each event exactly once"
    assert state.ai_generation_status == "COMPLETE"


async def test_server_errors_are_retried_then_given_up(capvid, fake):
    fake.state["transcriptionStatus"] = "COMPLETE"
    fake.state["aiGenerationStatus"] = "COMPLETE"
    fake.fail_with = [503, 502]
    state = await capvid.wait_for("vid1", transcription="COMPLETE")
    assert state.transcription_status == "COMPLETE"

    fake.fail_with = [503] * 4  # max_reconnects=3: the fourth failure in a row is final
    with pytest.raises(CapvidApiError) as failed:
        await capvid.wait_for("vid1", transcription="COMPLETE")
    assert failed.value.status == 503 and failed.value.body["message"] == "try again"


async def test_not_found_is_raised_at_once_with_its_body(capvid, fake):
    with pytest.raises(CapvidApiError) as failed:
        await capvid.wait_for("other", transcription="COMPLETE")
    assert failed.value.status == 404 and failed.value.body == {"error": "Video not found"}
    assert fake.last_event_ids == []


async def test_deleted_while_waiting(capvid, fake):
    fake.state["transcriptionStatus"] = "PROCESSING"
    task = asyncio.create_task(capvid.wait_for("vid1", transcription="COMPLETE"))
    await fake.wait_streams(1)
    fake.deleted()
    with pytest.raises(VideoDeleted):
        await task


async def test_timeout(capvid, fake):
    fake.state["transcriptionStatus"] = "PROCESSING"
    with pytest.raises(TimeoutError):
        await capvid.wait_for("vid1", transcription="COMPLETE", timeout=0.2)


async def test_iter_progress_until_complete(capvid, fake):
    fake.transcription("PROCESSING")
    fake.state = {"transcriptionStatus": "PROCESSING", "transcriptionProgress": 0.0, "aiGenerationStatus": None}

    async def follow() -> list[tuple[str | None, float | None, str | None]]:
        return [(p.status, p.fraction, p.step) async for p in capvid.iter_progress("vid1")]

    task = asyncio.create_task(follow())
    await fake.wait_streams(1)
    fake.progress("ai", 0.7)  # another kind: not ours
    fake.progress("transcription", 0.5, "speech")
    fake.transcription("COMPLETE")
    assert await task == [("PROCESSING", 0.0, None), ("PROCESSING", 0.5, "speech"), ("COMPLETE", 1.0, None)]


async def test_unreachable_server(fake, unused_tcp_port):
    async with CapvidClient(
        f"http://127.0.0.1:{unused_tcp_port}", "tok", dev_token_file=None, reconnect_delay=0.01, max_reconnects=1
    ) as client:
        with pytest.raises(CapvidConnectionError):
            await client.wait_for("vid1")
