"""Deliveries: signed, retried with backoff, logged, idempotent, and only to the video's owner."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import redis as redis_sync

from service.db import create_pool
from tests.helpers import bearer, drain, query, write
from tests.pipeline.conftest import uploaded, with_deepgram
from tests.helpers import run_recovery
from tests.webhooks.conftest import create_webhook, delete_new_video, deliveries, start_receiver
from tests.webhooks.recipe import documented_verify
from workers.webhooks.job import deliver, retry_delay

# Retries give up 0.3 s after the first attempt.
SHORT_WINDOW = {
    "webhook_allow_private_urls": True,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_window_seconds": 0.3,
    "transcription_engine": "deepgram",
    "deepgram_api_key": "k",
}


async def test_a_transition_is_delivered_signed(api, settings, alice, receiver):
    hook = await create_webhook(api.client, alice, receiver.url, ["video.deleted"])
    video_id = await delete_new_video(api, alice)
    await drain(settings)

    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert documented_verify()(hook["secret"], sent.headers["Capvid-Signature"], sent.body) is True
    payload = json.loads(sent.body)
    event = query(settings, "SELECT id, created_at FROM video_events WHERE video_id = %s", (video_id,))[0]
    assert payload == {
        "id": f"evt_{event['id']}",
        "type": "video.deleted",
        "createdAt": event["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {"videoId": video_id},
    }
    assert sent.headers["Capvid-Event-Id"] == payload["id"]
    assert sent.headers["Capvid-Event-Type"] == "video.deleted"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"].startswith("capvid-webhooks/")

    [row] = deliveries(settings)
    assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == ("delivered", 1, 200, None)
    log = await (await api.client.get("/api/webhooks/deliveries", headers=bearer(alice))).json()
    [entry] = log["deliveries"]
    assert entry["webhookId"] == hook["id"] and entry["eventId"] == payload["id"] and entry["videoId"] == video_id
    assert (entry["status"], entry["attempts"], entry["lastStatusCode"]) == ("delivered", 1, 200)
    assert entry["finishedAt"] and entry["nextAttemptAt"] is None and log["nextCursor"] is None


async def test_only_subscribed_event_types_are_delivered(api, settings, alice, receiver):
    await create_webhook(api.client, alice, receiver.url, ["transcription.complete"])
    await delete_new_video(api, alice)
    await drain(settings)
    assert receiver.requests == [] and deliveries(settings) == []


async def test_the_pipeline_delivers_each_transition(api, settings, alice, receiver, deepgram):
    await create_webhook(api.client, alice, receiver.url, ["*"])
    video_id = await uploaded(api, alice)
    await drain(with_deepgram(settings, deepgram))
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert sorted(b["type"] for b in bodies) == sorted(
        ["transcription.processing", "transcription.complete", "ai.queued", "ai.processing", "ai.complete"]
    )
    complete = next(b for b in bodies if b["type"] == "transcription.complete")
    assert complete["data"] == {"videoId": video_id, "status": "COMPLETE", "run": 1, "attempt": 1}
    assert len({b["id"] for b in bodies}) == 5


async def test_a_failing_receiver_is_retried_until_it_succeeds(api, settings, alice, receiver):
    receiver.answers = [500, 503]
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await drain(settings)

    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1, "the same body, with the same event id, every time"
    [row] = deliveries(settings)
    assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == ("delivered", 3, 200, None)
    assert row["first_attempt_at"] < row["last_attempt_at"]
    log = await (await api.client.get("/api/webhooks/deliveries", headers=bearer(alice))).json()
    assert (log["deliveries"][0]["attempts"], log["deliveries"][0]["status"]) == (3, "delivered")


@pytest.mark.parametrize("settings_overrides", [SHORT_WINDOW])
async def test_a_receiver_failing_for_the_whole_window_is_given_up(api, settings, alice, receiver):
    receiver.answers = [500] * 1000
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await drain(settings, rounds=20)

    [row] = deliveries(settings)
    assert (row["status"], row["last_status_code"], row["last_error"]) == ("failed", 500, "HTTP 500: not now")
    assert row["attempts"] >= 2 and row["attempts"] == len(receiver.requests)
    assert row["finished_at"] is not None


@pytest.mark.parametrize("settings_overrides", [SHORT_WINDOW])
async def test_an_unreachable_receiver_is_retried_then_failed(api, settings, alice):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    await create_webhook(api.client, alice, f"http://127.0.0.1:{port}/hook", ["*"])
    await delete_new_video(api, alice)
    await drain(settings, rounds=20)
    [row] = deliveries(settings)
    assert row["status"] == "failed" and row["attempts"] >= 2 and row["last_status_code"] is None
    assert "ClientConnectorError" in row["last_error"]


async def test_410_disables_the_webhook_and_cancels_its_pending_deliveries(api, settings, alice, receiver):
    receiver.answers = [410]
    hook = await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await delete_new_video(api, alice)
    await drain(settings, max_jobs=1)

    assert len(receiver.requests) == 1
    rows = deliveries(settings)
    assert [(r["status"], r["last_status_code"]) for r in rows] == [("failed", 410), ("cancelled", None)]
    [listed] = (await (await api.client.get("/api/webhooks", headers=bearer(alice))).json())["webhooks"]
    assert listed["id"] == hook["id"] and listed["disabledAt"] is not None
    assert "410" in listed["disabledReason"]

    await delete_new_video(api, alice)  # a disabled webhook hears nothing more
    await drain(settings)
    assert len(receiver.requests) == 1 and len(deliveries(settings)) == 2


async def test_bob_hears_nothing_of_alices_videos(api, settings, alice, bob, receiver, aiohttp_server):
    bobs_receiver = await start_receiver(aiohttp_server)
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await create_webhook(api.client, bob, bobs_receiver.url, ["*"])
    alices_video = await delete_new_video(api, alice)
    await drain(settings)

    assert [json.loads(r.body)["data"]["videoId"] for r in receiver.requests] == [alices_video]
    assert bobs_receiver.requests == []
    bobs_log = await (await api.client.get("/api/webhooks/deliveries", headers=bearer(bob))).json()
    assert bobs_log == {"deliveries": [], "nextCursor": None}


@pytest.mark.parametrize("settings_overrides", [SHORT_WINDOW])
async def test_a_redirect_is_not_followed(api, settings, alice, receiver):
    receiver.answers = [302] * 1000
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await drain(settings, rounds=20)

    assert {r.path for r in receiver.requests} == {"/hook"}, "retried at its own URL, never at /moved"
    [row] = deliveries(settings)
    assert (row["status"], row["last_status_code"]) == ("failed", 302)
    assert row["last_error"] == "HTTP 302: redirect to /moved not followed"


async def request_the_delivery_again(settings) -> None:
    """A second job for the one delivery (arq re-running it, a relay sending it twice, recovery asking again)."""
    [row] = deliveries(settings)
    await write(
        settings,
        "INSERT INTO outbox (function, video_id, args) VALUES ('deliver_webhook', %s, %s) RETURNING id",
        (row["video_id"], json.dumps({"deliveryId": row["id"]})),
    )


async def test_a_duplicate_job_does_not_send_twice(api, settings, alice, receiver):
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await drain(settings)
    assert len(receiver.requests) == 1

    await request_the_delivery_again(settings)
    await drain(settings)
    assert len(receiver.requests) == 1
    assert deliveries(settings)[0]["attempts"] == 1


async def test_concurrent_duplicate_jobs_send_once(api, settings, alice, receiver):
    receiver.delay = 0.5  # the first attempt is still in flight when the second job starts
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    await request_the_delivery_again(settings)
    await drain(settings)
    assert len(receiver.requests) == 1
    assert (deliveries(settings)[0]["status"], deliveries(settings)[0]["attempts"]) == ("delivered", 1)


async def test_a_lost_delivery_job_is_requested_again_by_recovery(api, settings, alice, receiver):
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    # Redis lost the job: its request is marked sent, and the queue is emptied.
    await write(settings, "UPDATE outbox SET sent_at = now() RETURNING id")
    redis_sync.Redis.from_url(settings.redis_url).flushdb()
    await drain(settings)
    assert receiver.requests == [] and deliveries(settings)[0]["status"] == "pending"

    await write(settings, "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour' RETURNING id")
    assert (await run_recovery(settings))["webhookDeliveries"] == 1
    await drain(settings)
    assert len(receiver.requests) == 1 and deliveries(settings)[0]["status"] == "delivered"


async def test_the_delivery_log_pages_and_filters(api, settings, alice, receiver):
    first = await create_webhook(api.client, alice, receiver.url, ["*"])
    second = await create_webhook(api.client, alice, receiver.url, ["*"])
    for _ in range(3):
        await delete_new_video(api, alice)
    await drain(settings)

    seen, cursor = [], None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = await (await api.client.get("/api/webhooks/deliveries", params=params, headers=bearer(alice))).json()
        seen += page["deliveries"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    ids = [int(d["id"]) for d in seen]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)
    only = await api.client.get(
        "/api/webhooks/deliveries", params={"webhookId": second["id"]}, headers=bearer(alice)
    )
    assert {d["webhookId"] for d in (await only.json())["deliveries"]} == {second["id"]}
    assert first["id"] != second["id"]


async def test_deleting_a_webhook_drops_its_pending_deliveries(api, settings, alice, receiver):
    hook = await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    response = await api.client.delete("/api/webhooks", params={"webhookId": hook["id"]}, headers=bearer(alice))
    assert response.status == 204
    await drain(settings)
    assert receiver.requests == [] and deliveries(settings) == []


async def test_an_interrupted_attempt_is_handed_back(api, settings, alice, receiver):
    receiver.delay = 1.0
    await create_webhook(api.client, alice, receiver.url, ["*"])
    await delete_new_video(api, alice)
    [row] = deliveries(settings)
    pool = await create_pool(settings, minsize=0, maxsize=2)
    try:
        attempt = asyncio.create_task(deliver(pool, settings, row["id"]))
        while not receiver.requests:
            await asyncio.sleep(0.02)
        attempt.cancel()  # the worker stops mid-request
        with pytest.raises(asyncio.CancelledError):
            await attempt
    finally:
        pool.close()
        await pool.wait_closed()
    [row] = deliveries(settings)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("pending", 1, None)

    receiver.delay = 0
    await drain(settings)  # the job's re-run claims it at once, no lease to wait out
    [row] = deliveries(settings)
    assert (row["status"], row["attempts"]) == ("delivered", 2)


def test_backoff_doubles_up_to_its_cap(settings):
    defaults = settings.model_copy(update={"webhook_retry_base_seconds": 10.0, "webhook_retry_max_seconds": 3600.0})
    delays = [retry_delay(defaults, attempt) for attempt in range(1, 12)]
    assert delays == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert retry_delay(defaults, 10_000) == 3600
