"""GET /api/video/events: state first, then every transition within a second of its commit, in order,
resumable without gaps or duplicates, ending after `deleted`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service.db import transaction
from service.keys import PG_POOL
from tests.events.conftest import open_stream, uploaded
from tests.helpers import bearer, drain, query, write
from workers.transcription import queries as transcription_q
from workers.transcription.engines import ProgressCallback, Segment, Transcript

LATENCY = 1.0  # the bound: a committed change reaches an open stream within a second


def event_ids(settings, video_id: str) -> list[int]:
    rows = query(settings, "SELECT id FROM video_events WHERE video_id = %s ORDER BY id", (video_id,))
    return [row["id"] for row in rows]


async def fail_run(api, video_id: str, run: int = 1, reason: str = "the test failed it") -> float:
    """PROCESSING → ERROR through the real guarded query (as recovery does); returns when it committed."""
    async with transaction(api.client.app[PG_POOL]) as tx:
        assert await transcription_q.fail(tx, video_id, run, None, reason)
    return time.monotonic()


async def retry(api, token: str, video_id: str) -> float:
    response = await api.client.post("/api/video/transcribe", params={"videoId": video_id}, headers=bearer(token))
    assert response.status == 202, await response.text()
    return time.monotonic()


async def test_state_first_then_each_transition_within_a_second(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    [first] = event_ids(api.settings, video_id)
    stream = await open_stream(api.client, alice, video_id)
    streams.append(stream)

    state = await stream.next()
    assert (state.event, state.id) == ("state", str(first))
    assert state.data == {
        "videoId": video_id, "transcriptionStatus": "PROCESSING", "transcriptionProgress": 0.0,
        "aiGenerationStatus": None,
    }

    committed = await fail_run(api, video_id)
    error = await stream.next()
    assert error.received - committed < LATENCY
    assert error.event == "transcription" and int(error.id) > first
    assert error.data == {
        "videoId": video_id, "eventId": int(error.id), "transcriptionStatus": "ERROR", "run": 1, "attempt": 0,
        "detail": {"reason": "the test failed it"},
    }

    committed = await retry(api, alice, video_id)
    processing = await stream.next()
    assert processing.received - committed < LATENCY
    assert (processing.event, processing.data["transcriptionStatus"], processing.data["run"]) == (
        "transcription", "PROCESSING", 2,
    )
    assert [int(e.id) for e in (error, processing)] == event_ids(api.settings, video_id)[1:]


class SteppingEngine:
    """Reports part of the media as transcribed, then waits for the test before it finishes."""

    name = "stepping"

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        on_progress(0.4)
        await asyncio.wait_for(self.go.wait(), 30)
        on_progress(1.0)
        words = "hello and welcome this is a short test of the event stream"
        return Transcript(segments=[Segment(0.0, 3.0, words)], duration=3.0)

    async def aclose(self) -> None:
        pass


async def test_progress_and_the_whole_pipeline_reach_the_stream(api, alice, hub, streams, monkeypatch):
    engine = SteppingEngine()
    monkeypatch.setattr("workers.settings.build_engine", lambda settings: engine)
    video_id = await uploaded(api, alice)
    stream = await open_stream(api.client, alice, video_id)
    streams.append(stream)
    assert (await stream.next()).event == "state"
    worker = asyncio.create_task(drain(api.settings))
    try:
        progress = await stream.next_of("progress", timeout=10)
        assert progress.id is None, "progress is not a transition: it has no id"
        assert progress.data == {"videoId": video_id, "kind": "transcription", "progress": 0.4, "step": None}
        video = await api.video(alice, video_id)
        assert (video["transcriptionStatus"], video["transcriptionProgress"]) == ("PROCESSING", pytest.approx(0.4))
        engine.go.set()
        await asyncio.wait_for(worker, 60)
    finally:
        engine.go.set()
        await asyncio.gather(worker, return_exceptions=True)

    seen = []
    while (event := await stream.next()).event != "ai" or event.data["aiGenerationStatus"] != "COMPLETE":
        seen.append(event)
    transitions = [(e.event, e.data.get("transcriptionStatus") or e.data.get("aiGenerationStatus")) for e in seen]
    assert [t for t in transitions if t[0] != "progress"] == [
        ("transcription", "COMPLETE"), ("ai", "QUEUED"), ("ai", "PROCESSING"),
    ]
    steps = [e.data["step"] for e in seen if e.event == "progress" and e.data["kind"] == "ai"]
    assert steps == ["reading the transcript", "generating", "saving"]
    assert [int(e.id) for e in [*seen, event] if e.id] == event_ids(api.settings, video_id)[1:]
    assert (await api.video(alice, video_id))["transcriptionProgress"] is None, "only while PROCESSING"


async def test_resuming_after_a_dropped_connection_misses_and_repeats_nothing(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    stream = await open_stream(api.client, alice, video_id)
    state = await stream.next()
    await stream.close()

    # While no stream is open: ERROR, then a retry.
    await fail_run(api, video_id)
    await retry(api, alice, video_id)

    resumed = await open_stream(api.client, alice, video_id, last_event_id=state.id)
    streams.append(resumed)
    backlog = [await resumed.next(), await resumed.next()]
    assert [(e.event, e.data["transcriptionStatus"]) for e in backlog] == [
        ("transcription", "ERROR"), ("transcription", "PROCESSING"),
    ], "no state event on a resumed stream: the events after the id, in order"

    await fail_run(api, video_id, run=2)  # live again
    live = await resumed.next()
    assert live.data["transcriptionStatus"] == "ERROR" and live.data["run"] == 2
    ids = [int(e.id) for e in [*backlog, live]]
    assert ids == event_ids(api.settings, video_id)[1:]
    assert resumed.events.empty(), "nothing twice"

    # The query parameter works as the header does.
    again = await open_stream(api.client, alice, video_id, lastEventId=str(ids[0]))
    streams.append(again)
    assert [int((await again.next()).id), int((await again.next()).id)] == ids[1:]


async def test_a_live_event_racing_the_backlog_is_sent_once(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    [first] = event_ids(api.settings, video_id)
    # Transitions committed while streams open and read their backlog: each arrives once, in order.
    openings = [
        asyncio.create_task(open_stream(api.client, alice, video_id, last_event_id=str(first))) for _ in range(5)
    ]
    await fail_run(api, video_id)
    await retry(api, alice, video_id)
    for opening in openings:
        stream = await opening
        streams.append(stream)
        got = [await stream.next(), await stream.next()]
        assert [int(e.id) for e in got] == event_ids(api.settings, video_id)[1:]
        await asyncio.sleep(0.2)
        assert stream.events.empty()


async def test_a_detail_too_large_for_a_notification_is_read_from_the_log(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    stream = await open_stream(api.client, alice, video_id)
    streams.append(stream)
    await stream.next()
    reason = "a very long error message " * 400  # ~10 kB: more than NOTIFY may carry
    await fail_run(api, video_id, reason=reason)
    error = await stream.next()
    assert error.data["detail"] == {"reason": reason}


async def test_stream_ends_after_deleted(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    stream = await open_stream(api.client, alice, video_id)
    streams.append(stream)
    state = await stream.next()
    response = await api.client.delete("/api/video/delete", params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 200
    deleted = await stream.next()
    assert deleted.event == "deleted"
    assert deleted.data == {"videoId": video_id, "eventId": int(deleted.id)}
    assert await stream.ended(), "the server ends the stream after deleted"

    # The owner resuming from before the delete still gets the tombstone; then the stream ends.
    resumed = await open_stream(api.client, alice, video_id, last_event_id=state.id)
    streams.append(resumed)
    assert (await resumed.next()).event == "deleted"
    assert await resumed.ended()
    response = await api.client.get("/api/video/events", params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 404 and await response.json() == {"error": "Video not found"}


async def test_read_rules(api, alice, bob, hub, streams):
    private = await api.create_video(alice, public=False)
    public = await api.create_video(alice, public=True)

    def get(token: str | None, video_id: str, **headers: str):
        auth = bearer(token) if token else {}
        return api.client.get("/api/video/events", params={"videoId": video_id}, headers={**auth, **headers})

    response = await get(bob, private["id"])
    assert response.status == 404 and await response.json() == {"error": "Video not found"}
    response = await get(None, public["id"])
    assert response.status == 401 and await response.json() == {"error": "Unauthorized"}
    response = await get(bob, public["id"], **{"Last-Event-ID": "x1"})
    assert response.status == 400 and (await response.json())["error"] == "Bad request"
    response = await api.client.get("/api/video/events", params={"videoId": "bad id!"}, headers=bearer(bob))
    assert response.status == 400

    stream = await open_stream(api.client, bob, public["id"])
    streams.append(stream)
    state = await stream.next()
    assert (state.event, state.id, state.data["transcriptionStatus"]) == ("state", "0", None)


async def test_losing_read_access_ends_the_stream(api, alice, bob, hub, streams):
    video = await api.create_video(alice, public=True)
    stream = await open_stream(api.client, bob, video["id"])
    streams.append(stream)
    await stream.next()
    await write(api.settings, "UPDATE videos SET public = false WHERE id = %s", (video["id"],))
    assert await stream.ended(), "a video made private ends other users' streams"

    await write(api.settings, "UPDATE videos SET public = true WHERE id = %s", (video["id"],))
    stream = await open_stream(api.client, bob, video["id"])
    streams.append(stream)
    await stream.next()
    await write(api.settings, "UPDATE api_keys SET revoked_at = now() WHERE label = 'test'")
    assert await stream.ended(), "a revoked token ends its streams"


@pytest.fixture
def settings_overrides() -> dict:
    return {"event_heartbeat_seconds": 0.2}


async def test_heartbeat_comments(api, alice, hub, streams):
    video = await api.create_video(alice)
    stream = await open_stream(api.client, alice, video["id"])
    streams.append(stream)
    await stream.next()
    await asyncio.sleep(0.7)
    assert stream.comments[:2] == [": heartbeat", ": heartbeat"]


async def test_a_lost_listener_connection_misses_nothing(api, alice, hub, streams):
    video_id = await uploaded(api, alice)
    stream = await open_stream(api.client, alice, video_id)
    streams.append(stream)
    await stream.next()
    # Kill the hub's LISTEN connection, and change the video before it is back.
    pid = hub._conn.raw.get_backend_pid()  # type: ignore[union-attr]
    await write(api.settings, "SELECT pg_terminate_backend(%s)", (pid,))
    await fail_run(api, video_id)
    error = await stream.next(timeout=10)
    assert error.data["transcriptionStatus"] == "ERROR"
    assert hub.connected
    assert await api.status(alice, video_id) == "ERROR"


async def test_slow_subscriber_is_dropped_not_buffered(api, alice, hub):
    from service.events.subscribers import QUEUE_LIMIT, Progress

    video = await api.create_video(alice)
    with hub.subscribe(video["id"], events=True) as subscriber:
        for n in range(QUEUE_LIMIT + 10):
            subscriber.push(Progress(video["id"], "transcription", n / 1000, None))
        assert subscriber.dropped and not subscriber.items


def open_streams_gauge() -> float:
    return REGISTRY.get_sample_value("capvid_event_streams_open") or 0.0


async def test_shutdown_ends_open_streams_and_the_gauge_counts_them(api, alice, hub, streams):
    video = await api.create_video(alice)
    before = open_streams_gauge()
    stream = await open_stream(api.client, alice, video["id"])
    streams.append(stream)
    await stream.next()
    assert open_streams_gauge() == before + 1
    hub.close_subscribers()
    assert await stream.ended(timeout=2)
    assert open_streams_gauge() == before
