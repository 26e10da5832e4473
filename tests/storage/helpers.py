"""Helpers of the storage tests: fill and count a prefix through the storage interface, and a
TCP proxy in front of the S3 server that can be taken down and brought back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from config import Settings
from service.storage import Storage, build_storage, video_prefix
from service.storage.local import LocalStorage
from service.storage.s3 import S3Storage
from tests.helpers import MEDIA, bearer, query

SPOKEN = (MEDIA / "spoken.mp4").read_bytes()


async def keys_under(settings: Settings, backend: str, prefix: str) -> list[str]:
    """Every key under `prefix`, read with a storage client of its own (as an operator would)."""
    storage = build_storage(settings, backend)
    try:
        return [key async for page in storage.list_keys(prefix) for key in page]
    finally:
        await storage.aclose()


def object_keys(prefix: str, count: int) -> list[str]:
    """`count` keys of a video's small objects under `prefix`: segments, thumbnails, previews."""
    folders = (("segments", "ts"), ("thumbnails", "jpg"), ("previews", "webp"))
    return [f"{prefix}{folders[i % 3][0]}/{i:05d}.{folders[i % 3][1]}" for i in range(count)]


async def fill(storage: Storage, prefix: str, count: int, parallel: int = 32) -> list[str]:
    """`count` small objects under `prefix`, written through the storage interface."""
    keys = object_keys(prefix, count)
    gate = asyncio.Semaphore(parallel)

    async def put(key: str) -> None:
        async with gate:
            await storage.put_bytes(key, key.encode())

    await asyncio.gather(*(put(key) for key in keys))
    return keys


async def seed(storage: Storage, prefix: str, count: int) -> list[str]:
    """`count` small objects under `prefix`, as fast as possible: files written directly on the
    local backend; on S3, put into the moto server's in-process store directly (moto answers
    only ~200 PutObject requests a second; everything under test, listing, reading and
    deleting, still goes over the S3 API)."""
    keys = object_keys(prefix, count)
    if isinstance(storage, LocalStorage):
        await asyncio.to_thread(_write_files, storage.root, keys)
        return keys
    if not isinstance(storage, S3Storage):
        return await fill(storage, prefix, count)
    from moto.s3.models import s3_backends

    partition, account = s3_backends.bucket_accounts[storage.bucket]
    backend = s3_backends[account][partition]
    for key in keys:
        backend.put_object(storage.bucket, key, key.encode())
    return keys


async def uploaded_video(client: TestClient, token: str) -> dict[str, Any]:
    """A video created and uploaded through the API: (its id, owner id and prefix)."""
    response = await client.post("/api/video", json={}, headers=bearer(token))
    assert response.status == 201, await response.text()
    video = await response.json()
    response = await client.put("/api/video/upload", params={"videoId": video["id"]}, data=SPOKEN, headers=bearer(token))
    assert response.status == 200, await response.text()
    video = await response.json()
    video["prefix"] = video_prefix(int(video["ownerId"]), video["id"])
    return video  # type: ignore[no-any-return]


def _write_files(root: Path, keys: list[str]) -> None:
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


async def delete(client: TestClient, token: str, video_id: str) -> int:
    response = await client.delete("/api/video/delete", params={"videoId": video_id}, headers=bearer(token))
    if response.status == 200:
        assert await response.read() == b"", "a delete answers 200 with an empty body"
    return response.status


def rows_of(settings: Settings, video_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row that refers to the video, table by table."""
    return {
        "videos": query(settings, "SELECT id FROM videos WHERE id = %s", (video_id,)),
        "comments": query(settings, "SELECT id FROM comments WHERE video_id = %s", (video_id,)),
        "outbox": query(settings, "SELECT function FROM outbox WHERE video_id = %s", (video_id,)),
        "video_events": query(settings, "SELECT kind FROM video_events WHERE video_id = %s", (video_id,)),
        "storage_cleanups": query(
            settings,
            "SELECT backend, prefix, deleted_keys, finished_at IS NOT NULL AS finished, last_error, failed_keys "
            "FROM storage_cleanups WHERE video_id = %s",
            (video_id,),
        ),
    }


class Outage:
    """A TCP proxy to the S3 server. `down()` closes the listening socket and drops every open
    connection (clients get "connection refused", as from a stopped server); `up()` listens
    again on the same port. The server behind it, and its data, stay as they were."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)  # type: ignore[arg-type]

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()
