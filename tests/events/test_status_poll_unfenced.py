"""STATUS_CACHE_FENCE=false: a cached poll does not wait for a round trip on the listening connection;
it takes in the notifications that already reached it, and serves every poll from memory."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import bearer, write

STATUS = "/api/video/transcribe/status"


@pytest.fixture
def settings_overrides() -> dict:
    return {"status_cache_fence": False}


async def test_polls_are_served_from_memory_and_changes_applied_as_they_arrive(api, alice, hub, monkeypatch):
    video = await api.create_video(alice)
    assert await api.status(alice, video["id"]) is None

    async def no_database(*args: object) -> None:
        raise AssertionError("a cached poll read the database")

    monkeypatch.setattr("service.auth.caller.token_owner", no_database)
    monkeypatch.setattr("service.statuscache.status.video_access", no_database)
    for status in ["PROCESSING", "COMPLETE"]:
        await write(api.settings, "UPDATE videos SET transcription_status = %s WHERE id = %s", (status, video["id"]))
        deadline = time.monotonic() + 1.0  # the notification is in flight for microseconds to milliseconds
        while await api.status(alice, video["id"]) != status:
            assert time.monotonic() < deadline, "the change never reached the cache"
            await asyncio.sleep(0.001)
    response = await api.client.get(STATUS, params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200
