"""One small storage interface for uploads, workers and cleanup alike.

Keys look like `{ownerId}/{videoId}/result.mp4`; everything of a video lives under the
prefix `{ownerId}/{videoId}/`, so deleting a video is deleting a prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from config import Settings


class TooLarge(Exception):
    """The stream went past the allowed size; nothing was kept."""


class StorageUnavailable(Exception):
    """The backend could not be reached: worth retrying later."""


class Storage(Protocol):
    backend: str

    async def write_stream(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        """Store the stream under `key` without holding it whole; returns its size. Raises TooLarge."""
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    async def get_bytes(self, key: str) -> bytes | None:
        """The object, or None when it does not exist."""
        ...

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A local file holding the object for the duration of the context (engines need a path)."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """Every key under `prefix`, a page at a time (any number of keys)."""
        ...

    async def delete_keys(self, keys: list[str]) -> list[tuple[str, str]]:
        """Delete keys (missing ones count as deleted); returns (key, reason) for each failure."""
        ...

    async def aclose(self) -> None: ...


def video_prefix(owner_id: int, video_id: str) -> str:
    return f"{owner_id}/{video_id}/"


def media_key(owner_id: int, video_id: str) -> str:
    return f"{video_prefix(owner_id, video_id)}result.mp4"


def transcript_key(owner_id: int, video_id: str) -> str:
    return f"{video_prefix(owner_id, video_id)}transcription.vtt"


def build_storage(settings: Settings, backend: str) -> Storage:
    if backend == "s3":
        from service.storage.s3 import S3Storage

        return S3Storage(settings)
    from service.storage.local import LocalStorage

    return LocalStorage(settings.storage_dir)


class Storages:
    """The backends of one process: new uploads go to STORAGE_BACKEND, while each video keeps
    the backend it was uploaded to (its `source`) after the setting changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._open: dict[str, Storage] = {}

    @property
    def default(self) -> Storage:
        return self.get(self.settings.storage_backend)

    def get(self, backend: str) -> Storage:
        if backend not in self._open:
            self._open[backend] = build_storage(self.settings, backend)
        return self._open[backend]

    async def aclose(self) -> None:
        for storage in self._open.values():
            await storage.aclose()
        self._open.clear()
