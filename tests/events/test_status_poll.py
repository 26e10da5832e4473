"""GET /api/video/transcribe/status from memory: ETag and 304, long-polls, and a cache that is never
stale (a change committed before a poll is always in its answer)."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.admin import withdraw_token
from tests.helpers import bearer, query, write

STATUS = "/api/video/transcribe/status"


async def poll(api, token: str, video_id: str, **headers: str):
    return await api.client.get(STATUS, params={"videoId": video_id}, headers={**bearer(token), **headers})


async def long_poll(api, token: str, video_id: str, etag: str, wait: float):
    return await api.client.get(
        STATUS, params={"videoId": video_id, "wait": str(wait)}, headers={**bearer(token), "If-None-Match": etag}
    )


async def test_etag_and_not_modified(api, alice, hub):
    video = await api.create_video(alice)
    first = await poll(api, alice, video["id"])
    assert first.status == 200
    assert await first.read() == b'{"transcriptionStatus":null}', "the seed's exact body"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await poll(api, alice, video["id"], **{"If-None-Match": header})
        assert response.status == 304, header
        assert await response.read() == b""
        assert response.headers["ETag"] == etag
    response = await poll(api, alice, video["id"], **{"If-None-Match": '"other"'})
    assert response.status == 200 and await response.json() == {"transcriptionStatus": None}

    await uploaded_media(api, alice, video["id"])
    changed = await poll(api, alice, video["id"], **{"If-None-Match": etag})
    assert changed.status == 200 and await changed.json() == {"transcriptionStatus": "PROCESSING"}
    assert changed.headers["ETag"] != etag


async def uploaded_media(api, token: str, video_id: str) -> float:
    response = await api.upload(token, video_id, b"any media bytes")
    assert response.status == 200
    return time.monotonic()


async def test_long_poll_answers_within_a_second_of_a_change(api, alice, hub):
    video = await api.create_video(alice)
    etag = (await poll(api, alice, video["id"])).headers["ETag"]
    waiting = asyncio.create_task(long_poll(api, alice, video["id"], etag, 20))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "held while nothing changes"
    committed = await uploaded_media(api, alice, video["id"])
    response = await waiting
    answered = time.monotonic()
    assert answered - committed < 1.0
    assert response.status == 200 and await response.json() == {"transcriptionStatus": "PROCESSING"}
    assert response.headers["ETag"] != etag


async def test_long_poll_times_out_with_304(api, alice, hub):
    video = await api.create_video(alice)
    etag = (await poll(api, alice, video["id"])).headers["ETag"]
    started = time.monotonic()
    response = await long_poll(api, alice, video["id"], etag, 0.5)
    assert response.status == 304 and await response.read() == b""
    assert time.monotonic() - started >= 0.5


async def test_wait_with_an_old_etag_answers_at_once(api, alice, hub):
    video = await api.create_video(alice)
    started = time.monotonic()
    response = await long_poll(api, alice, video["id"], '"old"', 20)
    assert response.status == 200 and time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["0", "-1", "31", "abc", "nan", "inf"])
async def test_wait_out_of_range_is_400(api, alice, wait):
    video = await api.create_video(alice)
    response = await api.client.get(STATUS, params={"videoId": video["id"], "wait": wait}, headers=bearer(alice))
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "Bad request" and "wait" in body["message"]


async def test_wait_is_documented(api):
    spec = await (await api.client.get("/api/openapi.json")).json()
    names = [p["name"] for p in spec["paths"][STATUS]["get"]["parameters"]]
    assert names == ["videoId", "wait"]


async def test_long_poll_ends_with_404_when_the_video_goes_private(api, alice, bob, hub):
    video = await api.create_video(alice, public=True)
    etag = (await poll(api, bob, video["id"])).headers["ETag"]
    waiting = asyncio.create_task(long_poll(api, bob, video["id"], etag, 20))
    await asyncio.sleep(0.2)
    await write(api.settings, "UPDATE videos SET public = false WHERE id = %s", (video["id"],))
    response = await asyncio.wait_for(waiting, 1.0)
    assert response.status == 404 and await response.json() == {"error": "Video not found"}


# -- the cache is exact: every change is in the very next poll ----------------------------------


async def test_revoked_token_is_401_at_once(api, alice, hub):
    video = await api.create_video(alice)
    assert (await poll(api, alice, video["id"])).status == 200  # the token is in memory now
    await write(api.settings, "UPDATE api_keys SET revoked_at = now()")
    response = await poll(api, alice, video["id"])
    assert response.status == 401 and await response.json() == {"error": "Unauthorized"}


async def test_revoked_by_the_cli_is_401_at_once(api, settings, hub):
    from service.admin import issue_token
    from tests.helpers import make_user

    await make_user(settings, "carol@example.com")
    token_id, token = await issue_token(settings, "carol@example.com", "cli")
    video = await api.create_video(token)
    assert (await poll(api, token, video["id"])).status == 200
    await withdraw_token(settings, token_id)
    assert (await poll(api, token, video["id"])).status == 401


async def test_private_or_deleted_video_is_404_at_once(api, alice, bob, hub):
    video = await api.create_video(alice, public=True)
    assert (await poll(api, bob, video["id"])).status == 200
    await write(api.settings, "UPDATE videos SET public = false WHERE id = %s", (video["id"],))
    assert (await poll(api, bob, video["id"])).status == 404
    assert (await poll(api, alice, video["id"])).status == 200, "still the owner's"

    await write(api.settings, "UPDATE videos SET public = true WHERE id = %s", (video["id"],))
    assert (await poll(api, bob, video["id"])).status == 200
    response = await api.client.delete("/api/video/delete", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200
    assert (await poll(api, bob, video["id"])).status == 404
    assert (await poll(api, alice, video["id"])).status == 404


async def test_status_changes_are_never_stale(api, alice, hub):
    video = await api.create_video(alice)
    assert await api.status(alice, video["id"]) is None
    for status in ["PROCESSING", "COMPLETE", "ERROR", "PROCESSING", None, "COMPLETE"] * 5:
        await write(api.settings, "UPDATE videos SET transcription_status = %s WHERE id = %s", (status, video["id"]))
        assert await api.status(alice, video["id"]) == status


async def test_user_deleted_or_demoted_is_seen_at_once(api, alice, hub):
    video = await api.create_video(alice)
    assert (await poll(api, alice, video["id"])).status == 200
    await write(api.settings, "DELETE FROM users WHERE email = 'alice@example.com'")
    assert (await poll(api, alice, video["id"])).status == 401


async def test_cached_polls_make_no_database_call(api, alice, bob, hub, monkeypatch):
    video = await api.create_video(alice, public=True)
    for token in (alice, bob):
        assert (await poll(api, token, video["id"])).status == 200  # both callers and the video in memory

    async def no_database(*args: object) -> None:
        raise AssertionError("a cached poll read the database")

    monkeypatch.setattr("service.auth.caller.token_owner", no_database)
    monkeypatch.setattr("service.statuscache.status.video_access", no_database)
    monkeypatch.setattr("service.auth.caller.touch_token", no_database)
    for token in (alice, bob):
        response = await poll(api, token, video["id"])
        assert response.status == 200 and await response.json() == {"transcriptionStatus": None}


async def test_while_not_listening_polls_read_the_database(api, alice, hub):
    video = await api.create_video(alice)
    assert await api.status(alice, video["id"]) is None
    pid = hub._conn.raw.get_backend_pid()  # type: ignore[union-attr]
    await write(api.settings, "SELECT pg_terminate_backend(%s)", (pid,))
    await write(api.settings, "UPDATE videos SET transcription_status = 'ERROR' WHERE id = %s", (video["id"],))
    assert await api.status(alice, video["id"]) == "ERROR"
    await asyncio.wait_for(hub.wait_listening(), 10)
    await write(api.settings, "UPDATE videos SET transcription_status = 'COMPLETE' WHERE id = %s", (video["id"],))
    assert await api.status(alice, video["id"]) == "COMPLETE"


async def test_last_use_is_still_recorded_once_a_minute(api, alice, hub):
    video = await api.create_video(alice)
    first = query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"]
    assert first is not None
    for _ in range(3):
        assert (await poll(api, alice, video["id"])).status == 200
    assert query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"] == first, "not per request"


async def test_last_use_is_written_in_the_background_when_a_minute_passed(api, alice, hub):
    from service.auth.tokens import token_hash

    video = await api.create_video(alice)
    await write(api.settings, "UPDATE api_keys SET last_used_at = now() - interval '5 minutes'")
    old = query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"]
    entry = hub.cache.tokens.get(token_hash(alice))
    assert entry is not None
    entry.touch_due = 0.0  # as if a minute had passed since the token was last written
    assert (await poll(api, alice, video["id"])).status == 200
    deadline = time.monotonic() + 2
    while query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"] == old:
        assert time.monotonic() < deadline, "last_used_at was not written"
        await asyncio.sleep(0.02)
