"""With Redis unreachable: not ready (503 JSON), still alive, and uploads still accepted."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import bearer, query


@pytest.fixture
def settings_overrides():
    return {"redis_url": "redis://127.0.0.1:1/0"}


async def test_readyz_is_503_json(client):
    response = await client.get("/readyz")
    assert response.status == 503 and response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"].startswith("unreachable")


async def test_healthz_is_still_200(client):
    response = await client.get("/healthz")
    assert response.status == 200


async def test_upload_is_kept_in_the_outbox(api, alice):
    video = await api.create_video(alice)
    response = await api.upload(alice, video["id"], b"media")
    assert response.status == 200, await response.text()
    assert (await response.json())["transcriptionStatus"] == "PROCESSING"
    rows = query(api.settings, "SELECT function, sent_at FROM outbox WHERE video_id = %s", (video["id"],))
    assert rows == [{"function": "transcribe", "sent_at": None}]
    assert (await api.client.get("/api/video", params={"videoId": video["id"]}, headers=bearer(alice))).status == 200
    # Nothing left for the relay to retry while the app shuts down. Off the event loop: the relay,
    # on this loop, may hold the row locked while it tries Redis.
    await asyncio.to_thread(query, api.settings, "DELETE FROM outbox")
