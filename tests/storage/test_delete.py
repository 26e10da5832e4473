"""Uploads land on the configured backend; a delete removes every row at once and, through a
cleanup that cannot be lost, every object under the video's prefix. On both backends: `s3`
against a real S3 API (moto's server) and `local` on a folder."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import workers.deps
import workers.settings
from config import Settings
from service.app import create_app
from service.storage import Storage, build_storage, transcript_key
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import Api, bearer, drain, query, write
from tests.pipeline.pausing import Gate, PausingTranscriber
from tests.storage.helpers import SPOKEN, delete, keys_under, rows_of, seed, uploaded_video


async def seed_under(settings: Settings, backend: str, prefix: str, count: int) -> list[str]:
    storage = build_storage(settings, backend)
    try:
        return await seed(storage, prefix, count)
    finally:
        await storage.aclose()


async def test_an_upload_lands_on_the_configured_backend_and_is_transcribed_from_it(
    api: Api, alice: str, backend: str, deepgram: FakeDeepgram
):
    video = await uploaded_video(api.client, alice)
    assert video["source"] == backend
    assert await keys_under(api.settings, backend, video["prefix"]) == [f"{video['prefix']}result.mp4"]
    storage = build_storage(api.settings, backend)
    try:
        assert await storage.get_bytes(f"{video['prefix']}result.mp4") == SPOKEN
    finally:
        await storage.aclose()

    # The worker reads the media from the video's backend, even after the default changed.
    other = "local" if backend == "s3" else "s3"
    await drain(api.settings.model_copy(update={"storage_backend": other}))
    assert await api.status(alice, video["id"]) == "COMPLETE"
    assert deepgram.requests[0].body == SPOKEN, "the engine got the media read back from storage"
    assert sorted(await keys_under(api.settings, backend, video["prefix"])) == [
        f"{video['prefix']}result.mp4",
        f"{video['prefix']}transcription.vtt",
    ]
    response = await api.client.get("/api/video/transcript", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 200
    assert (await response.text()).startswith("WEBVTT")
    meta = (await api.video(alice, video["id"]))["metadata"]
    assert meta["aiGenerationStatus"] == "COMPLETE", "the AI job read the transcript from the same backend"


async def every_route_answers_404(client: TestClient, token: str, video_id: str) -> None:
    params = {"videoId": video_id}
    routes = [
        ("GET", "/api/video"),
        ("GET", "/api/video/transcribe/status"),
        ("GET", "/api/video/transcription"),
        ("GET", "/api/video/transcript"),
        ("GET", "/api/video/analytics"),
        ("POST", "/api/video/transcribe"),
        ("POST", "/api/video/ai/generate"),
        ("PUT", "/api/video/upload"),
        ("DELETE", "/api/video/delete"),
        ("DELETE", "/api/desktop/video/delete"),
    ]
    for method, path in routes:
        data = b"media" if method == "PUT" else None
        response = await client.request(method, path, params=params, data=data, headers=bearer(token))
        assert response.status == 404, f"{method} {path} answered {response.status}"


async def test_deleting_a_video_with_2500_objects_leaves_none(api: Api, alice: str, bob: str, backend: str):
    settings = api.settings
    video = await uploaded_video(api.client, alice)
    sibling = await uploaded_video(api.client, alice)
    foreign = await uploaded_video(api.client, bob)
    await drain(settings)  # media and transcripts of all three, written by the app and the worker
    await seed_under(settings, backend, video["prefix"], 2498)  # segments, thumbnails, previews
    await seed_under(settings, backend, sibling["prefix"], 30)
    await seed_under(settings, backend, foreign["prefix"], 30)
    before = await keys_under(settings, backend, video["prefix"])
    assert len(before) == 2500 and f"{video['prefix']}transcription.vtt" in before
    kept = {v["id"]: sorted(await keys_under(settings, backend, v["prefix"])) for v in (sibling, foreign)}
    await write(
        settings,
        "INSERT INTO comments (video_id, author_id, type, content) VALUES (%s, %s, 'text', 'nice') RETURNING id",
        (video["id"], int(video["ownerId"])),
    )

    assert await delete(api.client, bob, video["id"]) == 404, "only the owner deletes"
    assert await delete(api.client, alice, video["id"]) == 200
    await every_route_answers_404(api.client, alice, video["id"])
    rows = rows_of(settings, video["id"])
    assert rows["videos"] == [] and rows["comments"] == []
    assert rows["outbox"] == [{"function": "cleanup_storage"}]
    assert rows["video_events"] == [{"kind": "deleted"}]

    await drain(settings)
    assert await keys_under(settings, backend, video["prefix"]) == []
    for other in (sibling, foreign):
        assert sorted(await keys_under(settings, backend, other["prefix"])) == kept[other["id"]]
        assert (await api.video(alice if other is sibling else bob, other["id"]))["id"] == other["id"]
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert cleanup["backend"] == backend and cleanup["prefix"] == video["prefix"]
    assert cleanup["finished"] and cleanup["deleted_keys"] == 2500 and cleanup["last_error"] is None
    if backend == "local":
        assert not (settings.storage_dir / video["prefix"]).exists(), "no empty folders are left"


async def test_a_delete_while_redis_is_down_is_cleaned_up_once_it_is_back(
    aiohttp_client: Any, settings: Settings, alice: str, backend: str
):
    dead_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    client = await aiohttp_client(create_app(dead_redis))
    video = await uploaded_video(client, alice)
    await seed_under(settings, backend, video["prefix"], 1200)

    assert await delete(client, alice, video["id"]) == 200
    await every_route_answers_404(client, alice, video["id"])
    await asyncio.sleep(0.5)  # the app's relay tries, and fails, to reach Redis
    pending = query(settings, "SELECT function FROM outbox WHERE video_id = %s AND sent_at IS NULL", (video["id"],))
    assert pending == [{"function": "cleanup_storage"}], "the cleanup request waits in the outbox"
    assert len(await keys_under(settings, backend, video["prefix"])) == 1201

    await drain(settings)  # Redis is back: a relay hands the request over and a worker cleans up
    assert await keys_under(settings, backend, video["prefix"]) == []
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert cleanup["finished"] and cleanup["deleted_keys"] == 1201


class PausingWrites:
    """The worker's storage, stopping inside the transcript write (made under the video's row
    lock, in the completing transaction) until the test lets it go."""

    def __init__(self, inner: Storage, gate: Gate, written: list[str]) -> None:
        self.inner, self.gate, self.written, self.backend = inner, gate, written, inner.backend

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key.endswith("/transcription.vtt"):
            await self.gate.pass_through()
        await self.inner.put_bytes(key, data, content_type)
        self.written.append(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("paused", ["transcribing", "writing the transcript"])
async def test_a_delete_racing_a_running_transcription_leaves_nothing(
    api: Api, alice: str, backend: str, paused: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    settings = api.settings
    # Downloaded copies of S3 media go here, so the test can see that none is left behind.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    gate, written = Gate(), []
    if paused == "transcribing":
        real_build = workers.settings.build_engine
        monkeypatch.setattr(workers.settings, "build_engine", lambda s: PausingTranscriber(real_build(s), gate))
    else:
        real_storage_for = workers.deps.Deps.storage_for
        monkeypatch.setattr(
            workers.deps.Deps, "storage_for", lambda self, b: PausingWrites(real_storage_for(self, b), gate, written)
        )
    video = await uploaded_video(api.client, alice)
    await seed_under(settings, backend, video["prefix"], 40)
    owner = int(video["ownerId"])

    work = asyncio.create_task(drain(settings))
    deleting: asyncio.Task[int] | None = None
    try:
        await asyncio.wait_for(gate.entered.wait(), 30)
        row = query(settings, "SELECT transcription_status FROM videos WHERE id = %s", (video["id"],))
        assert row == [{"transcription_status": "PROCESSING"}]
        deleting = asyncio.create_task(delete(api.client, alice, video["id"]))
        if paused == "writing the transcript":
            await asyncio.sleep(0.5)
            assert not deleting.done(), "the delete waits for the row lock the completing job holds"
        else:
            assert await deleting == 200
    finally:
        gate.release.set()
        await asyncio.wait_for(work, 60)
    assert deleting is not None and await deleting == 200
    await drain(settings)

    assert await keys_under(settings, backend, video["prefix"]) == []
    if paused == "writing the transcript":
        assert written == [transcript_key(owner, video["id"])], "the job wrote its transcript; the cleanup removed it"
    rows = rows_of(settings, video["id"])
    assert rows["videos"] == [] and rows["comments"] == []
    assert {r["function"] for r in rows["outbox"]} == {"cleanup_storage"}
    assert rows["video_events"] == [{"kind": "deleted"}]
    assert [c["finished"] for c in rows["storage_cleanups"]] == [True]
    assert list((tmp_path / "tmp").iterdir()) == [], "no downloaded copy is left behind"
    await every_route_answers_404(api.client, alice, video["id"])


class RefusesOneKeyOnce:
    """The worker's storage, refusing to delete one key the first time (as S3 does with
    AccessDenied per key); on the second try it first reads what the cleanup recorded."""

    def __init__(self, inner: Storage, refused: str, settings: Settings, seen: list[dict[str, Any]]) -> None:
        self.inner, self.backend, self.refused, self.settings, self.seen = inner, inner.backend, refused, settings, seen
        self.tries = 0

    async def delete_keys(self, keys: list[str]) -> list[tuple[str, str]]:
        if self.refused not in keys:
            return await self.inner.delete_keys(keys)
        self.tries += 1
        if self.tries == 1:
            return await self.inner.delete_keys([k for k in keys if k != self.refused]) + [
                (self.refused, "AccessDenied: Access Denied")
            ]
        self.seen += await asyncio.to_thread(
            query, self.settings, "SELECT finished_at, last_error, failed_keys FROM storage_cleanups"
        )
        return await self.inner.delete_keys(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_keys_that_could_not_be_deleted_are_recorded_and_retried(
    api: Api, alice: str, backend: str, monkeypatch: pytest.MonkeyPatch
):
    settings = api.settings
    video = await uploaded_video(api.client, alice)
    await seed_under(settings, backend, video["prefix"], 1500)
    refused = f"{video['prefix']}result.mp4"
    seen: list[dict[str, Any]] = []
    wrapped: dict[str, RefusesOneKeyOnce] = {}
    real_storage_for = workers.deps.Deps.storage_for
    monkeypatch.setattr(
        workers.deps.Deps,
        "storage_for",
        lambda self, b: wrapped.setdefault(b, RefusesOneKeyOnce(real_storage_for(self, b), refused, settings, seen)),
    )
    assert await delete(api.client, alice, video["id"]) == 200
    await drain(settings)

    assert seen == [
        {
            "finished_at": None,
            "last_error": "1 object(s) could not be deleted",
            "failed_keys": [{"key": refused, "reason": "AccessDenied: Access Denied"}],
        }
    ], "the first run recorded the failed key and asked to be retried"
    assert await keys_under(settings, backend, video["prefix"]) == []
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert cleanup["finished"] and cleanup["last_error"] is None and cleanup["failed_keys"] == []


async def test_uploads_stream_in_parts_and_one_too_large_leaves_nothing(
    aiohttp_client: Any, settings: Settings, alice: str, backend: str
):
    mib = 1024 * 1024
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_upload_bytes": 12 * mib})))

    async def body(count: int) -> Any:  # chunked: no Content-Length, so the limit is enforced while streaming
        for i in range(count):
            yield bytes([i]) * mib

    response = await client.post("/api/video", json={}, headers=bearer(alice))
    video = await response.json()
    prefix = f"{video['ownerId']}/{video['id']}/"
    response = await client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=body(11), headers=bearer(alice)
    )
    assert response.status == 200, await response.text()
    storage = build_storage(settings, backend)
    try:
        assert len(await storage.get_bytes(f"{prefix}result.mp4") or b"") == 11 * mib
        if backend == "s3":
            s3 = await storage.client()  # type: ignore[attr-defined]
            head = await s3.head_object(Bucket=settings.s3_bucket, Key=f"{prefix}result.mp4")
            assert head["ETag"].strip('"').endswith("-3"), "streamed as a multipart upload of 5 MiB parts"

        response = await client.post("/api/video", json={}, headers=bearer(alice))
        other = await response.json()
        response = await client.put(
            "/api/video/upload", params={"videoId": other["id"]}, data=body(13), headers=bearer(alice)
        )
        assert response.status == 413
        assert await keys_under(settings, backend, f"{other['ownerId']}/{other['id']}/") == []
        if backend == "s3":
            uploads = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
            assert uploads.get("Uploads", []) == [], "the refused upload's parts were aborted"
    finally:
        await storage.aclose()
