"""A second user against alice's private and public videos: reads of public videos only; no change, ever."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.common import (
    DELETE_ROUTES,
    OWNER_ROUTES,
    UNKNOWN_ID,
    VIDEO_NOT_FOUND,
    add_comments,
    call,
    expect_error,
    route_id,
    storage_files,
)
from tests.helpers import bearer, query

MEDIA = b"alice's media bytes"
VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n"


async def alice_video(api, alice, public: bool) -> str:
    """A video of alice's in the state where every change route would do something for its owner."""
    video = await api.create_video(alice, name=f"{'public' if public else 'private'} one", public=public)
    assert (await api.upload(alice, video["id"], MEDIA)).status == 200
    # Transcription done: ai/generate would queue, transcribe?force=true would start again.
    query(api.settings, "UPDATE videos SET transcription_status = 'COMPLETE' WHERE id = %s", (video["id"],))
    owner = video["ownerId"]
    path = Path(api.settings.storage_dir) / owner / video["id"] / "transcription.vtt"
    path.write_text(VTT)
    add_comments(api.settings, video["id"], "alice@example.com")
    return video["id"]


@pytest.fixture(params=[False, True], ids=["private", "public"])
async def target(request, api, alice) -> tuple[str, bool]:
    return await alice_video(api, alice, request.param), request.param


def snapshot(settings) -> dict:
    return {
        "videos": query(settings, "SELECT * FROM videos ORDER BY id"),
        "comments": query(settings, "SELECT * FROM comments ORDER BY id"),
        "outbox": query(settings, "SELECT id, function, video_id, args FROM outbox ORDER BY id"),
        "events": query(settings, "SELECT * FROM video_events ORDER BY id"),
        "cleanups": query(settings, "SELECT * FROM storage_cleanups ORDER BY id"),
        "storage": storage_files(settings),
    }


@pytest.mark.parametrize("route", OWNER_ROUTES, ids=route_id)
async def test_others_cannot_change(api, alice, bob, target, route):
    video_id, _public = target
    before = snapshot(api.settings)
    params = {"videoId": video_id, "force": "true"} if route.path == "/api/video/transcribe" else None
    response = await call(api.client, route, video_id, headers=bearer(bob), params=params)
    await expect_error(response, 404, VIDEO_NOT_FOUND)
    assert snapshot(api.settings) == before
    # The owner still can.
    response = await call(api.client, route, video_id, headers=bearer(alice), params=params)
    assert response.status == route.ok, await response.text()


async def test_not_found_is_identical_for_others_private_and_unknown(api, alice, bob):
    private = await alice_video(api, alice, public=False)
    for path in ["/api/video", "/api/video/transcribe/status", "/api/video/analytics", "/api/video/delete"]:
        theirs = await api.client.request(
            "DELETE" if path.endswith("delete") else "GET", path, params={"videoId": private}, headers=bearer(bob)
        )
        unknown = await api.client.request(
            "DELETE" if path.endswith("delete") else "GET", path, params={"videoId": UNKNOWN_ID}, headers=bearer(bob)
        )
        assert (theirs.status, theirs.content_type, await theirs.read()) == (
            unknown.status,
            unknown.content_type,
            await unknown.read(),
        )
        assert theirs.status == 404


async def test_public_video_is_readable_by_others(api, alice, bob):
    video_id = await alice_video(api, alice, public=True)
    video = await api.video(bob, video_id)
    assert video["id"] == video_id and video["public"] is True
    assert video["totalComments"] == 2 and video["totalReactions"] == 3
    assert await api.status(bob, video_id) == "COMPLETE"
    response = await api.client.get("/api/video/analytics", params={"videoId": video_id}, headers=bearer(bob))
    assert response.status == 200 and await response.json() == {"count": 0}
    response = await api.client.get("/api/video/transcript", params={"videoId": video_id}, headers=bearer(bob))
    assert response.status == 200 and await response.text() == VTT


@pytest.mark.parametrize(
    "path", ["/api/video", "/api/video/transcribe/status", "/api/video/analytics", "/api/video/transcript"]
)
async def test_private_video_is_hidden_from_others(api, alice, bob, path):
    video_id = await alice_video(api, alice, public=False)
    response = await api.client.get(path, params={"videoId": video_id}, headers=bearer(bob))
    await expect_error(response, 404, VIDEO_NOT_FOUND)
    # and readable by its owner
    response = await api.client.get(path, params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 200, await response.text()


async def test_others_public_videos_are_not_listed(api, alice, bob):
    await alice_video(api, alice, public=True)
    response = await api.client.get("/api/videos", headers=bearer(bob))
    assert response.status == 200 and await response.json() == {"videos": [], "nextCursor": None}


@pytest.mark.parametrize("path", DELETE_ROUTES)
async def test_delete_twice_200_then_404(api, alice, bob, path):
    video_id = await alice_video(api, alice, public=True)
    other = await alice_video(api, alice, public=False)
    first = await api.client.delete(path, params={"videoId": video_id}, headers=bearer(alice))
    assert first.status == 200
    assert await first.read() == b""
    assert "json" not in first.headers.get("Content-Type", "")
    second = await api.client.delete(path, params={"videoId": video_id}, headers=bearer(alice))
    await expect_error(second, 404, VIDEO_NOT_FOUND)
    assert query(api.settings, "SELECT id FROM videos") == [{"id": other}]
    assert query(api.settings, "SELECT DISTINCT video_id FROM comments") == [{"video_id": other}]


@pytest.mark.parametrize("path", DELETE_ROUTES)
async def test_owner_deletes_what_others_commented_on(api, alice, bob, path):
    video_id = await alice_video(api, alice, public=True)
    add_comments(api.settings, video_id, "bob@example.com", text=1, emoji=1)
    response = await api.client.delete(path, params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 200
    assert query(api.settings, "SELECT count(*) AS n FROM comments")[0]["n"] == 0
