"""POST /api/ops/retry and /api/ops/requeue-stuck: what they change in Postgres and the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from service.app import create_app
from tests.helpers import bearer, query, write
from tests.ops.conftest import add_video


def video(settings, video_id: str) -> dict:
    return query(settings, "SELECT * FROM videos WHERE id = %s", (video_id,))[0]


def requests_for(settings, video_id: str) -> list[tuple]:
    rows = query(settings, "SELECT function, args FROM outbox WHERE video_id = %s ORDER BY id", (video_id,))
    return [(r["function"], r["args"].get("run")) for r in rows]


async def retry(client, token: str, video_id: str, kind: str):
    return await client.post("/api/ops/retry", params={"videoId": video_id, "kind": kind}, headers=bearer(token))


async def failed_upload(api, alice) -> str:
    """A video whose transcription ended in ERROR after its upload (run 1)."""
    video_id = (await api.create_video(alice))["id"]
    assert (await api.upload(alice, video_id, b"not really a video")).status == 200
    await write(
        api.settings,
        "UPDATE videos SET transcription_status = 'ERROR', transcription_error = 'unreadable media',"
        " transcription_attempt = 1 WHERE id = %s RETURNING id",
        (video_id,),
    )
    return video_id


async def test_retry_starts_a_new_transcription_run_with_its_job_request(api, admin, alice):
    video_id = await failed_upload(api, alice)

    response = await retry(api.client, admin, video_id, "transcription")

    assert response.status == 200, await response.text()
    assert await response.json() == {"videoId": video_id, "kind": "transcription", "status": "PROCESSING", "run": 2}
    row = video(api.settings, video_id)
    assert (row["transcription_status"], row["transcription_run"], row["transcription_attempt"]) == ("PROCESSING", 2, 0)
    assert row["transcription_error"] is None
    assert requests_for(api.settings, video_id) == [("transcribe", 1), ("transcribe", 2)]
    events = query(api.settings, "SELECT status, run FROM video_events WHERE video_id = %s AND kind = 'transcription'"
                   " ORDER BY id", (video_id,))
    assert [(e["status"], e["run"]) for e in events][-1] == ("PROCESSING", 2)


async def test_retry_is_a_conflict_unless_the_video_is_in_error(api, admin, alice):
    video_id = await failed_upload(api, alice)
    assert (await retry(api.client, admin, video_id, "transcription")).status == 200
    before = requests_for(api.settings, video_id)

    again = await retry(api.client, admin, video_id, "transcription")  # now PROCESSING

    assert again.status == 409
    body = await again.json()
    assert body["error"] == "Conflict" and "PROCESSING" in body["message"]
    assert requests_for(api.settings, video_id) == before
    never = (await api.create_video(alice))["id"]
    assert (await retry(api.client, admin, never, "transcription")).status == 409
    assert (await retry(api.client, admin, never, "ai")).status == 409


async def test_retry_of_an_unknown_video_is_404_and_bad_input_400(api, admin):
    response = await retry(api.client, admin, "zzzzzzzzzzzzzzz", "transcription")
    assert response.status == 404 and await response.json() == {"error": "Video not found"}
    bad = [{"videoId": "zzzzzzzzzzzzzzz", "kind": "thumbnail"}, {"kind": "ai"}, {"videoId": "a b", "kind": "ai"}]
    for params in bad:
        response = await api.client.post("/api/ops/retry", params=params, headers=bearer(admin))
        assert response.status == 400, params


async def test_retry_starts_a_new_ai_run(api, admin, alice):
    await add_video(api.settings, "alice@example.com", id="ai-failed", transcription_status="COMPLETE",
                    ai_status="ERROR", ai_run=1, ai_attempt=3, ai_error="model said no")

    response = await retry(api.client, admin, "ai-failed", "ai")

    assert response.status == 200, await response.text()
    assert await response.json() == {"videoId": "ai-failed", "kind": "ai", "status": "QUEUED", "run": 2}
    row = video(api.settings, "ai-failed")
    assert (row["ai_status"], row["ai_run"], row["ai_attempt"], row["ai_error"]) == ("QUEUED", 2, 0, None)
    assert row["metadata"]["aiGenerationStatus"] == "QUEUED"
    assert requests_for(api.settings, "ai-failed") == [("generate_ai", 2)]


async def test_ai_retry_needs_a_complete_transcript_and_ai_enabled(aiohttp_client, api, settings, admin, alice):
    await add_video(settings, "alice@example.com", id="ai-no-transcript", transcription_status="PROCESSING",
                    ai_status="ERROR", ai_run=1)
    assert (await retry(api.client, admin, "ai-no-transcript", "ai")).status == 409
    await add_video(settings, "alice@example.com", id="ai-off", transcription_status="COMPLETE", ai_status="ERROR",
                    ai_run=1)
    no_ai = await aiohttp_client(create_app(settings.model_copy(update={"ai_enabled": False})))
    response = await retry(no_ai, admin, "ai-off", "ai")
    assert response.status == 409 and "disabled" in (await response.json())["message"]
    assert query(settings, "SELECT * FROM outbox") == []


async def test_requeue_stuck_hands_stuck_work_on_and_answers_what_it_did(api, admin, alice):
    now = datetime.now(timezone.utc)
    await add_video(api.settings, "alice@example.com", id="dead-claim", transcription_status="PROCESSING",
                    transcription_run=1, transcription_attempt=1, transcription_lease_until=now - timedelta(seconds=5))
    await add_video(api.settings, "alice@example.com", id="dead-last-try", transcription_status="PROCESSING",
                    transcription_run=1, transcription_attempt=3, transcription_lease_until=now - timedelta(seconds=5))
    await add_video(api.settings, "alice@example.com", id="lost-ai-job", transcription_status="COMPLETE",
                    ai_status="QUEUED", ai_run=4, ai_heartbeat_at=now - timedelta(hours=1))
    await add_video(api.settings, "alice@example.com", id="working", transcription_status="PROCESSING",
                    transcription_run=1, transcription_attempt=1, transcription_lease_until=now + timedelta(minutes=1))

    response = await api.client.post("/api/ops/requeue-stuck", headers=bearer(admin))

    assert response.status == 200, await response.text()
    assert await response.json() == {"transcriptions": 2, "ai": 1, "cleanups": 0, "webhookDeliveries": 0}
    assert requests_for(api.settings, "dead-claim") == [("transcribe", 1)]
    assert video(api.settings, "dead-claim")["transcription_lease_until"] is None
    assert video(api.settings, "dead-last-try")["transcription_status"] == "ERROR"
    assert requests_for(api.settings, "lost-ai-job") == [("generate_ai", 4)]
    assert requests_for(api.settings, "working") == []
    again = await api.client.post("/api/ops/requeue-stuck", headers=bearer(admin))
    assert (await again.json())["transcriptions"] == 0  # nothing is stuck any more
