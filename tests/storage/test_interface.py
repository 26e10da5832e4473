"""The one storage interface, the same on both backends: streams, bytes, local copies, listing
in pages, deleting in batches. S3 runs against a real S3 API (moto's server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from config import Settings
from service.dev import free_port
from service.storage import Storage, StorageUnavailable, TooLarge, build_storage
from service.storage.s3 import S3Storage
from tests.storage.helpers import keys_under, seed

MIB = 1024 * 1024


@pytest.fixture
async def storage(settings: Settings, backend: str) -> AsyncIterator[Storage]:
    opened = build_storage(settings, backend)
    assert opened.backend == backend
    yield opened
    await opened.aclose()


async def chunks(count: int, size: int = MIB, seen: list[int] | None = None) -> AsyncIterator[bytes]:
    for i in range(count):
        if seen is not None:
            seen.append(i)
        yield bytes([i % 256]) * size


async def test_put_and_get_bytes(storage: Storage):
    await storage.put_bytes("1/v1/transcription.vtt", b"WEBVTT\n", "text/vtt")
    assert await storage.get_bytes("1/v1/transcription.vtt") == b"WEBVTT\n"
    await storage.put_bytes("1/v1/transcription.vtt", b"WEBVTT\n\nnew")
    assert await storage.get_bytes("1/v1/transcription.vtt") == b"WEBVTT\n\nnew"
    assert await storage.get_bytes("1/v1/missing.vtt") is None


async def test_a_small_stream_is_stored_whole(storage: Storage):
    size = await storage.write_stream("1/v1/result.mp4", chunks(3, 1000), max_bytes=10_000)
    assert size == 3000
    assert await storage.get_bytes("1/v1/result.mp4") == b"\x00" * 1000 + b"\x01" * 1000 + b"\x02" * 1000


async def test_a_large_stream_goes_up_in_parts_while_it_is_read(storage: Storage, backend: str):
    # 12 MiB in 1 MiB chunks with 5 MiB parts: three parts, each sent as soon as it is full.
    seen: list[int] = []
    sent_after: list[int] = []
    if isinstance(storage, S3Storage):
        client = await storage.client()
        client.meta.events.register("before-call.s3.UploadPart", lambda **_: sent_after.append(len(seen)))
    size = await storage.write_stream("1/v1/result.mp4", chunks(12, seen=seen), max_bytes=100 * MIB)
    assert size == 12 * MIB
    data = await storage.get_bytes("1/v1/result.mp4")
    assert data is not None and len(data) == 12 * MIB
    assert data[:MIB] == b"\x00" * MIB and data[-MIB:] == b"\x0b" * MIB
    if backend == "s3":
        assert sent_after == [5, 10, 12], "a part goes up as soon as it is full: never the whole stream held"
        head = await client.head_object(Bucket=storage.bucket, Key="1/v1/result.mp4")
        assert head["ETag"].strip('"').endswith("-3"), "stored as a three-part multipart upload"
        assert head["ContentType"] == "video/mp4"


async def test_too_large_a_stream_leaves_nothing(storage: Storage, settings: Settings, backend: str):
    with pytest.raises(TooLarge):
        await storage.write_stream("1/v1/result.mp4", chunks(8), max_bytes=7 * MIB - 1)
    assert await keys_under(settings, backend, "1/") == []
    await assert_no_open_uploads(storage)


async def test_a_failing_stream_leaves_nothing(storage: Storage, settings: Settings, backend: str):
    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks(6):
            yield chunk
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await storage.write_stream("1/v1/result.mp4", broken(), max_bytes=100 * MIB)
    assert await keys_under(settings, backend, "1/") == []
    await assert_no_open_uploads(storage)


async def assert_no_open_uploads(storage: Storage) -> None:
    if isinstance(storage, S3Storage):
        client = await storage.client()
        uploads = await client.list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == [], "the multipart upload was aborted"


async def test_local_copy_is_a_file_for_the_context_only(storage: Storage, backend: str):
    await storage.put_bytes("1/v1/result.mp4", b"media" * 100_000)
    async with storage.local_copy("1/v1/result.mp4") as path:
        assert path.read_bytes() == b"media" * 100_000
    if backend == "s3":
        assert not path.exists(), "the downloaded copy is removed after use"
    with pytest.raises(FileNotFoundError):
        async with storage.local_copy("1/v1/missing.mp4"):
            pass


async def test_listing_goes_a_page_at_a_time_and_stays_inside_the_prefix(storage: Storage):
    keys = await seed(storage, "7/abc/", 2100)
    await storage.put_bytes("7/abcd/result.mp4", b"another video whose id starts the same")
    await storage.put_bytes("70/abc/result.mp4", b"another user")
    pages = [page async for page in storage.list_keys("7/abc/")]
    assert [len(page) for page in pages] == [1000, 1000, 100]
    assert sorted(key for page in pages for key in page) == sorted(keys)
    assert [page async for page in storage.list_keys("7/nothing/")] == []


async def test_delete_keys_in_batches_counts_missing_keys_as_deleted(storage: Storage, settings: Settings):
    keys = await seed(storage, "7/abc/", 1500)
    await storage.put_bytes("7/other/result.mp4", b"kept")
    requests: list[int] = []
    if isinstance(storage, S3Storage):
        client = await storage.client()
        client.meta.events.register(
            "before-call.s3.DeleteObjects", lambda params, **_: requests.append(params["body"].count(b"<Key>"))
        )
    assert await storage.delete_keys(keys + ["7/abc/never-existed.ts"]) == []
    assert [page async for page in storage.list_keys("7/abc/")] == []
    assert await storage.get_bytes("7/other/result.mp4") == b"kept"
    if isinstance(storage, S3Storage):
        assert requests == [1000, 501], "DeleteObjects takes at most 1,000 keys a request"
    assert await storage.delete_keys(keys[:10]) == [], "deleting again is not an error"


@pytest.mark.parametrize("backend", ["s3"])
async def test_an_unreachable_s3_server_is_storage_unavailable(settings: Settings):
    port = free_port()  # nothing listens there
    storage = build_storage(settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{port}"}), "s3")
    try:
        with pytest.raises(StorageUnavailable):
            [page async for page in storage.list_keys("1/v1/")]
        with pytest.raises(StorageUnavailable):
            await storage.delete_keys(["1/v1/result.mp4"])
        with pytest.raises(StorageUnavailable):
            await storage.put_bytes("1/v1/result.mp4", b"x")
    finally:
        await storage.aclose()


@pytest.mark.parametrize("backend", ["s3"])
async def test_5xx_and_slow_down_are_storage_unavailable(settings: Settings, aiohttp_server: Any):
    calls: list[str] = []

    async def overloaded(request: web.Request) -> web.Response:
        calls.append(request.method)
        body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        return web.Response(status=503, text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", overloaded)
    server = await aiohttp_server(app)
    storage = build_storage(settings.model_copy(update={"s3_endpoint_url": str(server.make_url(""))}), "s3")
    try:
        with pytest.raises(StorageUnavailable, match="SlowDown"):
            await storage.delete_keys(["1/v1/result.mp4"])
    finally:
        await storage.aclose()
    assert len(calls) == 2, "botocore retries once, then it is the caller's turn (with backoff)"


async def test_storages_share_one_client_per_backend(settings: Settings, backend: str):
    from service.storage import Storages

    storages = Storages(settings)
    try:
        assert storages.default is storages.get(backend)
        await asyncio.gather(*(storages.default.put_bytes(f"1/v/{i}", b"x") for i in range(20)))
        if isinstance(storages.default, S3Storage):
            assert await storages.default.client() is await storages.default.client()
    finally:
        await storages.aclose()


@pytest.mark.parametrize("backend", ["s3"])
async def test_per_key_errors_of_delete_objects_are_returned(settings: Settings, aiohttp_server: Any):
    async def delete_objects(request: web.Request) -> web.Response:
        assert "delete" in request.query
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            "<Error><Key>1/v1/locked.ts</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            "<Error><Key>1/v1/gone.ts</Key><Code>NoSuchKey</Code><Message>The key does not exist</Message></Error>"
            "</DeleteResult>"
        )
        return web.Response(text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/{tail:.*}", delete_objects)
    server = await aiohttp_server(app)
    storage = build_storage(settings.model_copy(update={"s3_endpoint_url": str(server.make_url(""))}), "s3")
    try:
        failures = await storage.delete_keys(["1/v1/locked.ts", "1/v1/gone.ts", "1/v1/ok.ts"])
    finally:
        await storage.aclose()
    assert failures == [("1/v1/locked.ts", "AccessDenied: Access Denied")], "a missing key is not a failure"


@pytest.mark.parametrize("backend", ["s3"])
async def test_a_missing_bucket_is_an_error_not_a_missing_object(settings: Settings):
    from botocore.exceptions import ClientError

    storage = build_storage(settings.model_copy(update={"s3_bucket": "capvid-no-such-bucket"}), "s3")
    try:
        with pytest.raises(ClientError, match="NoSuchBucket"):
            await storage.get_bytes("1/v1/transcription.vtt")
        with pytest.raises(ClientError, match="NoSuchBucket"):
            async with storage.local_copy("1/v1/result.mp4"):
                pass
    finally:
        await storage.aclose()
