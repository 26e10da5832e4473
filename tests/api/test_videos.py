"""Create, read, list, upload, transcribe, generate and delete, checked in the database and in storage."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from pathlib import Path

import pytest

import service.deletion.queries
from tests.api.common import (
    DELETE_ROUTES,
    VIDEO_NOT_FOUND,
    add_comments,
    expect_bad_request,
    expect_error,
    storage_entries,
    storage_files,
    user_id,
    video_row,
)
from tests.helpers import bearer, drain, query

LIMIT = 1000
VIDEO_KEYS = {
    "id", "ownerId", "name", "createdAt", "updatedAt", "public", "source", "transcriptionStatus", "metadata",
    "totalComments", "totalReactions", "duration", "hasMedia", "transcriptionError", "transcriptionProgress",
}  # fmt: skip
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def settings_overrides():
    return {"max_upload_bytes": LIMIT}


def outbox(settings, video_id: str, function: str | None = None) -> list[dict]:
    # `_request_id` (which request asked) is for the logs: tests/observability checks it.
    sql = "SELECT function, args - '_request_id' AS args FROM outbox WHERE video_id = %s"
    params: tuple = (video_id,)
    if function:
        sql += " AND function = %s"
        params += (function,)
    return query(settings, sql + " ORDER BY id", params)


def set_status(settings, video_id: str, status: str | None) -> None:
    query(settings, "UPDATE videos SET transcription_status = %s WHERE id = %s", (status, video_id))


# ---- create -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, b"", b"{}", b"  \n"], ids=["no-body", "empty", "empty-object", "blank"])
async def test_create_defaults(api, alice, body):
    response = await api.client.post("/api/video", data=body, headers=bearer(alice))
    assert response.status == 201, await response.text()
    assert response.content_type == "application/json"
    video = await response.json()
    assert set(video) == VIDEO_KEYS
    assert re.fullmatch(r"[0-9a-z]{15}", video["id"])
    assert video["ownerId"] == str(user_id(api.settings, "alice@example.com"))
    assert video["name"] == "My Video" and video["public"] is True
    assert ISO_UTC.match(video["createdAt"]) and ISO_UTC.match(video["updatedAt"])
    assert video["source"] == "local" and video["metadata"] == {}
    assert video["transcriptionStatus"] is None and video["transcriptionError"] is None
    assert [video[k] for k in ("totalComments", "totalReactions", "duration", "hasMedia")] == [0, 0, None, False]
    row = video_row(api.settings, video["id"])
    assert row is not None and row["name"] == "My Video" and row["public"] is True and row["metadata"] == {}
    assert datetime.fromisoformat(video["createdAt"]) == row["created_at"]


async def test_create_with_fields_and_unknown_metadata_keys(api, alice):
    metadata = {
        "sourceName": "Screen 1",
        "customCreatedAt": "2024-05-01T12:00:00Z",
        "capFutureKey": {"nested": [1, "two", {"three": True}]},
        "enhancedAudioStatus": "SKIPPED",
    }
    video = await api.create_video(alice, name="Demo \N{MOVIE CAMERA}", public=False, metadata=metadata)
    assert video["name"] == "Demo \N{MOVIE CAMERA}" and video["public"] is False
    assert video["metadata"] == metadata
    row = video_row(api.settings, video["id"])
    assert row["name"] == "Demo \N{MOVIE CAMERA}" and row["public"] is False
    assert row["metadata"]["capFutureKey"] == metadata["capFutureKey"]
    assert row["metadata"]["sourceName"] == "Screen 1"
    assert (await api.video(alice, video["id"]))["metadata"] == metadata


async def test_unset_metadata_keys_are_left_out(api, alice):
    video = await api.create_video(alice, metadata={"sourceName": None, "kept": 1})
    assert video["metadata"] == {"kept": 1}
    assert (await api.video(alice, video["id"]))["metadata"] == {"kept": 1}


BAD_BODIES = {
    "metadata-nul-in-value": b'{"metadata": {"x": "a\\u0000b"}}',
    "metadata-nul-in-key": b'{"metadata": {"a\\u0000": 1}}',
    "metadata-nul-nested": b'{"metadata": {"x": {"y": ["\\u0000"]}}}',
    "metadata-nul-in-sourceName": b'{"metadata": {"sourceName": "\\u0000"}}',
    "metadata-aiTitle": b'{"metadata": {"aiTitle": "mine"}}',
    "metadata-summary": b'{"metadata": {"summary": "mine"}}',
    "metadata-chapters": b'{"metadata": {"chapters": [{"title": "a", "start": 0}]}}',
    "metadata-aiGenerationStatus": b'{"metadata": {"aiGenerationStatus": "COMPLETE"}}',
    "metadata-enhancedAudioStatus": b'{"metadata": {"enhancedAudioStatus": "DONE"}}',
    "metadata-customCreatedAt": b'{"metadata": {"customCreatedAt": "yesterday"}}',
    "metadata-not-object": b'{"metadata": ["a"]}',
    "metadata-too-deep": b'{"metadata": {"a": ' + b'{"b": ' * 12 + b"1" + b"}" * 13 + b"}",
    "name-nul": b'{"name": "a\\u0000b"}',
    "name-empty": b'{"name": ""}',
    "name-too-long": b'{"name": "' + b"n" * 501 + b'"}',
    "name-number": b'{"name": 5}',
    "public-null": b'{"public": null}',
    "unknown-field": b'{"owner": 2}',
    # Found by these tests: each of these is accepted or answers 500.
    "name-lone-surrogate": b'{"name": "\\ud800"}',
    "metadata-lone-surrogate": b'{"metadata": {"x": "\\udfff"}}',
    "metadata-NaN": b'{"metadata": {"x": NaN}}',
    "metadata-Infinity": b'{"metadata": {"x": -Infinity}}',
    "public-string": b'{"public": "yes"}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_create_bad_body_is_400(api, alice, body):
    response = await api.client.post(
        "/api/video", data=body, headers={**bearer(alice), "Content-Type": "application/json"}
    )
    await expect_bad_request(response)
    assert query(api.settings, "SELECT count(*) AS n FROM videos")[0]["n"] == 0


# ---- read -----------------------------------------------------------------------------------


async def test_get_counts_comments_and_reactions(api, alice, bob):
    video = await api.create_video(alice)
    other = await api.create_video(alice)
    add_comments(api.settings, video["id"], "alice@example.com", text=2, emoji=3)
    add_comments(api.settings, video["id"], "bob@example.com", text=1, emoji=0)
    add_comments(api.settings, other["id"], "bob@example.com", text=5, emoji=5)
    got = await api.video(alice, video["id"])
    assert (got["totalComments"], got["totalReactions"]) == (3, 3)
    assert set(got) == VIDEO_KEYS
    assert {k: v for k, v in got.items() if k not in ("totalComments", "totalReactions")} == {
        k: v for k, v in video.items() if k not in ("totalComments", "totalReactions")
    }


@pytest.mark.parametrize("status", [None, "PROCESSING", "COMPLETE", "ERROR"])
async def test_transcription_status(api, alice, status):
    video = await api.create_video(alice)
    set_status(api.settings, video["id"], status)
    response = await api.client.get(
        "/api/video/transcribe/status", params={"videoId": video["id"]}, headers=bearer(alice)
    )
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == {"transcriptionStatus": status}


async def test_analytics(api, alice):
    video = await api.create_video(alice)
    response = await api.client.get("/api/video/analytics", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == {"count": 0}


# ---- list -----------------------------------------------------------------------------------


async def list_all(api, token: str, limit: int, **params) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query_params = {"limit": str(limit), **params}
        if cursor:
            query_params["cursor"] = cursor
        response = await api.client.get("/api/videos", params=query_params, headers=bearer(token))
        assert response.status == 200, await response.text()
        body = await response.json()
        assert set(body) == {"videos", "nextCursor"}
        pages.append([v["id"] for v in body["videos"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20


def newest_first(settings, owner_email: str) -> list[str]:
    rows = query(
        settings,
        "SELECT v.id FROM videos v JOIN users u ON u.id = v.owner_id WHERE u.email = %s "
        "ORDER BY v.created_at DESC, v.id DESC",
        (owner_email,),
    )
    return [r["id"] for r in rows]


async def test_list_pages_newest_first_exactly_once(api, alice, bob):
    for i in range(7):
        await api.create_video(alice, name=f"v{i}")
    await api.create_video(bob, name="bob's")
    pages = await list_all(api, alice, 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == newest_first(api.settings, "alice@example.com")
    names = [(await api.video(alice, i))["name"] for i in pages[0]]
    assert names == ["v6", "v5", "v4"]


async def test_list_pages_with_equal_creation_times(api, alice):
    for _ in range(7):
        await api.create_video(alice)
    query(api.settings, "UPDATE videos SET created_at = '2024-01-01T00:00:00Z'")
    pages = await list_all(api, alice, 2)
    ids = [i for p in pages for i in p]
    assert len(ids) == 7 and set(ids) == {r["id"] for r in query(api.settings, "SELECT id FROM videos")}
    assert ids == sorted(ids, reverse=True)


async def test_list_exact_page_boundary(api, alice):
    for _ in range(6):
        await api.create_video(alice)
    pages = await list_all(api, alice, 3)
    assert [len(p) for p in pages] in ([3, 3], [3, 3, 0])
    assert len({i for p in pages for i in p}) == 6


async def test_list_only_the_callers_videos(api, alice, bob):
    mine = {(await api.create_video(alice, public=True))["id"] for _ in range(2)}
    await api.create_video(bob, public=True)
    response = await api.client.get("/api/videos", headers=bearer(alice))
    body = await response.json()
    assert {v["id"] for v in body["videos"]} == mine and body["nextCursor"] is None
    assert all(set(v) == VIDEO_KEYS for v in body["videos"])


async def test_list_filter_by_transcription_status(api, alice):
    ids = [(await api.create_video(alice))["id"] for _ in range(4)]
    for video_id, status in zip(ids, ["PROCESSING", "COMPLETE", "ERROR"], strict=False):
        set_status(api.settings, video_id, status)
    expected = {"PROCESSING": [ids[0]], "COMPLETE": [ids[1]], "ERROR": [ids[2]], "NONE": [ids[3]]}
    for status, want in expected.items():
        pages = await list_all(api, alice, 10, transcriptionStatus=status)
        assert [i for p in pages for i in p] == want, status


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_LIST_PARAMS = {
    "limit-0": {"limit": "0"},
    "limit-1000": {"limit": "1000"},
    "limit-101": {"limit": "101"},
    "limit-negative": {"limit": "-1"},
    "limit-text": {"limit": "ten"},
    "limit-empty": {"limit": ""},
    "status-lowercase": {"transcriptionStatus": "processing"},
    "limit-twice": [("limit", "1"), ("limit", "2")],
    "status-unknown": {"transcriptionStatus": "DONE"},
    "cursor-garbage": {"cursor": "not a cursor!"},
    "cursor-no-separator": {"cursor": cursor_of(b"2024-01-01T00:00:00+00:00")},
    "cursor-bad-date": {"cursor": cursor_of(b"yesterday|abc")},
    "cursor-not-utf8": {"cursor": cursor_of(b"\xff\xfe|\xff")},
    "cursor-too-long": {"cursor": "A" * 201},
    # Found by these tests: a NUL in a decoded cursor reaches psycopg2 and answers 500.
    "cursor-nul": {"cursor": cursor_of(b"2024-01-01T00:00:00+00:00|\x00")},
}


@pytest.mark.parametrize("params", BAD_LIST_PARAMS.values(), ids=BAD_LIST_PARAMS.keys())
async def test_list_bad_parameters_are_400(api, alice, params):
    await api.create_video(alice)
    response = await api.client.get("/api/videos", params=params, headers=bearer(alice))
    await expect_bad_request(response)


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_list_limit_bounds_allowed(api, alice, limit):
    await api.create_video(alice)
    response = await api.client.get("/api/videos", params={"limit": limit}, headers=bearer(alice))
    assert response.status == 200 and len((await response.json())["videos"]) == 1


# ---- upload ---------------------------------------------------------------------------------


def media_path(settings, video: dict) -> Path:
    return Path(settings.storage_dir) / video["ownerId"] / video["id"] / "result.mp4"


@pytest.mark.parametrize("size", [1, 500, LIMIT])
async def test_upload_stores_the_bytes(api, alice, size):
    video = await api.create_video(alice)
    data = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    response = await api.upload(alice, video["id"], data)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == VIDEO_KEYS and body["id"] == video["id"]
    assert body["hasMedia"] is True and body["transcriptionStatus"] == "PROCESSING"
    assert media_path(api.settings, video).read_bytes() == data
    assert storage_files(api.settings) == {f"{video['ownerId']}/{video['id']}/result.mp4": data}
    row = video_row(api.settings, video["id"])
    assert row["media_key"] == f"{video['ownerId']}/{video['id']}/result.mp4" and row["media_bytes"] == size
    assert row["transcription_status"] == "PROCESSING"
    assert outbox(api.settings, video["id"]) == [{"function": "transcribe", "args": {"run": 1}}]


async def test_upload_streamed_without_length(api, alice):
    video = await api.create_video(alice)

    async def chunks():
        for i in range(3):
            yield bytes([i]) * 300

    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=chunks(), headers=bearer(alice)
    )
    assert response.status == 200, await response.text()
    assert media_path(api.settings, video).read_bytes() == b"\x00" * 300 + b"\x01" * 300 + b"\x02" * 300


async def too_big_chunks():
    for _ in range(4):
        yield b"z" * 300


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_upload_too_large_is_413_and_keeps_nothing(api, alice, streamed):
    video = await api.create_video(alice)
    data = too_big_chunks() if streamed else b"z" * (LIMIT + 1)
    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=data, headers=bearer(alice)
    )
    body = await expect_error(response, 413)
    assert body["error"] == "Payload too large" and isinstance(body.get("message"), str)
    assert storage_files(api.settings) == {}
    row = video_row(api.settings, video["id"])
    assert row["media_key"] is None and row["transcription_status"] is None
    assert outbox(api.settings, video["id"]) == []
    assert (await api.video(alice, video["id"]))["hasMedia"] is False


async def test_upload_too_large_leaves_no_folders(api, alice):
    """Found by these tests: a streamed upload refused with 413 leaves `{ownerId}/{videoId}/` behind."""
    video = await api.create_video(alice)
    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=too_big_chunks(), headers=bearer(alice)
    )
    assert response.status == 413
    assert storage_entries(api.settings) == []


async def test_upload_too_large_keeps_the_previous_media(api, alice):
    video = await api.create_video(alice)
    assert (await api.upload(alice, video["id"], b"first")).status == 200
    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=too_big_chunks(), headers=bearer(alice)
    )
    await expect_error(response, 413)
    assert storage_files(api.settings) == {f"{video['ownerId']}/{video['id']}/result.mp4": b"first"}
    assert video_row(api.settings, video["id"])["media_bytes"] == 5


# ---- transcription and AI -------------------------------------------------------------------


async def test_transcribe_without_media_is_409(api, alice):
    video = await api.create_video(alice)
    response = await api.client.post("/api/video/transcribe", params={"videoId": video["id"]}, headers=bearer(alice))
    body = await expect_error(response, 409)
    assert set(body) == {"error", "message"} and body["error"] == "Conflict" and body["message"]
    assert video_row(api.settings, video["id"])["transcription_status"] is None
    assert outbox(api.settings, video["id"]) == []


async def test_transcribe_after_upload_stays_processing(api, alice):
    video = await api.create_video(alice)
    assert (await api.upload(alice, video["id"], b"media")).status == 200
    assert await api.status(alice, video["id"]) == "PROCESSING"
    for _ in range(2):
        response = await api.client.post(
            "/api/video/transcribe", params={"videoId": video["id"]}, headers=bearer(alice)
        )
        assert response.status == 202 and await response.json() == {"transcriptionStatus": "PROCESSING"}
    assert await api.status(alice, video["id"]) == "PROCESSING"
    assert outbox(api.settings, video["id"]) == [{"function": "transcribe", "args": {"run": 1}}]
    assert video_row(api.settings, video["id"])["transcription_run"] == 1


async def test_transcribe_retries_after_error(api, alice):
    video = await api.create_video(alice)
    assert (await api.upload(alice, video["id"], b"media")).status == 200
    set_status(api.settings, video["id"], "ERROR")
    response = await api.client.post("/api/video/transcribe", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 202 and await response.json() == {"transcriptionStatus": "PROCESSING"}
    assert [r["args"] for r in outbox(api.settings, video["id"], "transcribe")] == [{"run": 1}, {"run": 2}]


@pytest.mark.parametrize("status", [None, "PROCESSING", "ERROR"])
async def test_ai_generate_needs_a_complete_transcript(api, alice, status):
    video = await api.create_video(alice)
    set_status(api.settings, video["id"], status)
    response = await api.client.post("/api/video/ai/generate", params={"videoId": video["id"]}, headers=bearer(alice))
    body = await expect_error(response, 409)
    assert body["error"] == "Conflict" and body["message"]
    assert outbox(api.settings, video["id"]) == []


async def test_ai_generate_queues(api, alice):
    video = await api.create_video(alice)
    set_status(api.settings, video["id"], "COMPLETE")
    response = await api.client.post("/api/video/ai/generate", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 202 and await response.json() == {"aiGenerationStatus": "QUEUED"}
    assert outbox(api.settings, video["id"], "generate_ai") == [{"function": "generate_ai", "args": {"run": 1}}]
    assert (await api.video(alice, video["id"]))["metadata"]["aiGenerationStatus"] == "QUEUED"


@pytest.mark.parametrize("status", [None, "PROCESSING", "COMPLETE"])
async def test_no_transcript_is_404_json(api, alice, status):
    video = await api.create_video(alice)
    set_status(api.settings, video["id"], status)  # COMPLETE, but no transcript file in storage
    response = await api.client.get("/api/video/transcript", params={"videoId": video["id"]}, headers=bearer(alice))
    body = await expect_error(response, 404)
    assert body != VIDEO_NOT_FOUND


async def test_transcript_is_served(api, alice):
    video = await api.create_video(alice)
    set_status(api.settings, video["id"], "COMPLETE")
    path = Path(api.settings.storage_dir) / video["ownerId"] / video["id"] / "transcription.vtt"
    path.parent.mkdir(parents=True)
    path.write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhi\n")
    response = await api.client.get("/api/video/transcript", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200 and response.content_type == "text/vtt"
    assert await response.text() == path.read_text()


async def test_transcription_detail(api, alice):
    video = await api.create_video(alice)
    assert (await api.upload(alice, video["id"], b"media")).status == 200
    response = await api.client.get("/api/video/transcription", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "PROCESSING" and body["attempt"] == 0 and body["maxAttempts"] >= 1


# ---- delete ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DELETE_ROUTES)
async def test_delete_removes_rows_and_requests_cleanup(api, alice, bob, path):
    video = await api.create_video(alice)
    keep = await api.create_video(alice)
    assert (await api.upload(alice, video["id"], b"media")).status == 200
    add_comments(api.settings, video["id"], "alice@example.com", text=2, emoji=2)
    add_comments(api.settings, video["id"], "bob@example.com", text=1, emoji=1)
    add_comments(api.settings, keep["id"], "bob@example.com", text=1, emoji=1)
    response = await api.client.delete(path, params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200 and await response.read() == b""
    assert "json" not in response.headers.get("Content-Type", "")
    assert video_row(api.settings, video["id"]) is None
    assert query(api.settings, "SELECT count(*) AS n FROM comments WHERE video_id = %s", (video["id"],))[0]["n"] == 0
    assert query(api.settings, "SELECT type FROM comments ORDER BY type") == [{"type": "emoji"}, {"type": "text"}]
    assert video_row(api.settings, keep["id"]) is not None
    cleanups = query(api.settings, "SELECT id, backend, prefix, video_id FROM storage_cleanups")
    assert cleanups == [
        {"id": cleanups[0]["id"], "backend": "local", "prefix": f"{video['ownerId']}/{video['id']}/",
         "video_id": video["id"]}
    ]  # fmt: skip
    assert outbox(api.settings, video["id"], "cleanup_storage") == [
        {"function": "cleanup_storage", "args": {"cleanupId": cleanups[0]["id"]}}
    ]
    assert query(api.settings, "SELECT kind FROM video_events WHERE video_id = %s", (video["id"],)) == [
        {"kind": "deleted"}
    ]


async def test_delete_is_one_transaction(api, alice, monkeypatch, caplog):
    video = await api.create_video(alice)
    add_comments(api.settings, video["id"], "alice@example.com", text=1, emoji=1)

    async def broken_request_job(*args, **kwargs):
        raise RuntimeError("queue write failed")

    monkeypatch.setattr(service.deletion.queries, "request_job", broken_request_job)
    response = await api.client.delete("/api/video/delete", params={"videoId": video["id"]}, headers=bearer(alice))
    await expect_error(response, 500)
    # Nothing of the delete happened: the video, its comments and no cleanup row.
    assert video_row(api.settings, video["id"]) is not None
    assert query(api.settings, "SELECT count(*) AS n FROM comments")[0]["n"] == 2
    assert query(api.settings, "SELECT count(*) AS n FROM storage_cleanups")[0]["n"] == 0
    assert "queue write failed" in caplog.text


async def test_delete_then_cleanup_empties_storage(api, alice):
    video = await api.create_video(alice)
    other = await api.create_video(alice)
    for v in (video, other):  # media put in place directly: no transcription job for the worker to run
        path = media_path(api.settings, v)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"media of " + v["id"].encode())
        (path.parent / "transcription.vtt").write_text("WEBVTT\n")
    response = await api.client.delete("/api/video/delete", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200
    await drain(api.settings)
    assert set(storage_files(api.settings)) == {
        f"{other['ownerId']}/{other['id']}/result.mp4",
        f"{other['ownerId']}/{other['id']}/transcription.vtt",
    }
    assert query(api.settings, "SELECT finished_at IS NOT NULL AS done FROM storage_cleanups") == [{"done": True}]
