"""CapvidClient's request/response calls against the real app (no event stream needed)."""

from __future__ import annotations

from typing import Any

import pytest

from config import Settings
from service.app import create_app
from service.client import CapvidApiError, CapvidClient, CapvidConfigError, CapvidProtocolError, resolve_connection
from service.client.models import ClientVideo, parse
from service.storage import media_key
from tests.helpers import MEDIA, query

SPOKEN = MEDIA / "spoken.mp4"


async def test_create_get_list(capvid):
    video = await capvid.create_video(name="Demo", public=False, metadata={"sourceName": "demo.mp4"})
    assert (video.name, video.public, video.has_media, video.transcription_status) == ("Demo", False, False, None)
    assert video.metadata["sourceName"] == "demo.mp4"
    assert await capvid.get_video(video.id) == video
    page = await capvid.list_videos(limit=5)
    assert [v.id for v in page.videos] == [video.id] and page.next_cursor is None


def test_fields_a_newer_server_adds_are_ignored():
    answer = {
        "id": "v1", "ownerId": "1", "name": "n", "createdAt": "2024-05-01T00:00:00Z", "updatedAt": "2024-05-01T00:00:00Z",
        "public": True, "source": "local", "transcriptionStatus": None, "metadata": {}, "totalComments": 0,
        "totalReactions": 0, "somethingNew": {"x": 1},
    }
    assert parse(ClientVideo, answer).id == "v1"
    with pytest.raises(CapvidProtocolError, match="ClientVideo"):
        parse(ClientVideo, {**answer, "public": "maybe"})


async def test_upload_streams_the_file_in_chunks(capvid, settings):
    video = await capvid.create_video()
    calls: list[tuple[int, int]] = []
    uploaded = await capvid.upload(video.id, SPOKEN, on_progress=lambda sent, total: calls.append((sent, total)),
                                   chunk_size=4096)
    size = SPOKEN.stat().st_size
    assert uploaded.has_media and uploaded.transcription_status == "PROCESSING"
    assert calls == [(min(n * 4096, size), size) for n in range(1, -(-size // 4096) + 1)]
    owner = query(settings, "SELECT owner_id FROM videos WHERE id = %s", (video.id,))[0]["owner_id"]
    assert (settings.storage_dir / media_key(owner, video.id)).read_bytes() == SPOKEN.read_bytes()
    assert await capvid.transcription_status(video.id) == "PROCESSING"
    assert await capvid.transcribe(video.id) == "PROCESSING"  # left alone while it runs


async def test_an_oversized_upload_is_refused_before_sending_it(aiohttp_server: Any, settings: Settings, alice):
    server = await aiohttp_server(create_app(settings.model_copy(update={"max_upload_bytes": 1000})))
    async with CapvidClient(str(server.make_url("")), alice, dev_token_file=None) as capvid:
        video = await capvid.create_video()
        with pytest.raises(CapvidApiError) as refused:
            await capvid.upload(video.id, SPOKEN)
    assert refused.value.status == 413 and refused.value.error == "Payload too large"
    assert query(settings, "SELECT media_key FROM videos") == [{"media_key": None}]


async def test_errors_carry_status_and_body(capvid, server_url):
    video = await capvid.create_video()
    with pytest.raises(CapvidApiError) as conflict:
        await capvid.transcribe(video.id)
    assert conflict.value.status == 409
    assert conflict.value.body == {"error": "Conflict", "message": "The video has no uploaded media to transcribe"}
    with pytest.raises(CapvidApiError) as missing:
        await capvid.transcript(video.id)
    assert (missing.value.status, missing.value.body) == (404, {"error": "Transcript not found"})
    with pytest.raises(CapvidApiError, match="409 Conflict: The transcript is not COMPLETE yet"):
        await capvid.generate_ai(video.id)
    with pytest.raises(CapvidApiError) as bad:
        await capvid.get_video("not a valid id!")
    assert bad.value.status == 400 and bad.value.error == "Bad request" and "videoId" in (bad.value.message or "")

    async with CapvidClient(server_url, "cv_wrong", dev_token_file=None) as stranger:
        with pytest.raises(CapvidApiError) as unauthorized:
            await stranger.get_video(video.id)
    assert (unauthorized.value.status, unauthorized.value.body) == (401, {"error": "Unauthorized"})


def test_connection_from_arguments_environment_and_dev_token(monkeypatch, tmp_path):
    monkeypatch.delenv("CAPVID_URL", raising=False)
    monkeypatch.delenv("CAPVID_TOKEN", raising=False)
    token_file = tmp_path / "dev-token"
    with pytest.raises(CapvidConfigError, match="CAPVID_TOKEN"):
        resolve_connection(dev_token_file=token_file)

    token_file.write_text("cv_dev\n")
    found = resolve_connection(dev_token_file=token_file)
    assert (str(found.base_url), found.token) == ("http://127.0.0.1:8000", "cv_dev")

    monkeypatch.setenv("CAPVID_URL", "https://videos.example.com/api/")
    monkeypatch.setenv("CAPVID_TOKEN", "cv_env")
    found = resolve_connection(dev_token_file=token_file)
    assert (str(found.base_url), found.token) == ("https://videos.example.com", "cv_env")

    found = resolve_connection("http://10.0.0.5:9000", "cv_arg", dev_token_file=token_file)
    assert (str(found.base_url), found.token) == ("http://10.0.0.5:9000", "cv_arg")
    with pytest.raises(CapvidConfigError, match="not an http"):
        resolve_connection("ftp://x", "t")
