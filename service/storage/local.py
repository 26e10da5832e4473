"""The `local` backend: objects are files under STORAGE_DIR, keys are relative paths."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from service.storage import TooLarge

LIST_PAGE = 1000
# Smaller writes (transcripts, metadata) happen on the event loop: into the page cache they take
# microseconds, less than the hand-off to a thread, and a thread would fight the loop for the GIL.
INLINE_WRITE_BYTES = 256 * 1024


class LocalStorage:
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root_prefix = os.path.join(self.root, "")

    def _path(self, key: str) -> Path:
        # Keys come from ids we generate, but a path outside the root must be impossible anyway.
        # normpath folds "..", and the storage folder holds no symlinks of ours, so this string
        # check is enough: resolve() would stat every component on every access.
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self._root_prefix):
            raise ValueError(f"storage key escapes the storage folder: {key!r}")
        return Path(path)

    @staticmethod
    def _open_beside(path: Path) -> tuple[Path, BinaryIO]:
        """A new temp file beside `path`: written there and renamed, a reader never sees half a file.
        Its folder is made only when missing (mostly it exists: a mkdir that fails costs a system call)."""
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            return temp, open(temp, "xb")
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            return temp, open(temp, "xb")

    async def write_stream(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        path = self._path(key)
        temp, file = self._open_beside(path)
        size = 0
        try:
            with file as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(os.replace, temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            self._prune_empty(path.parent)
            raise
        return size

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if len(data) <= INLINE_WRITE_BYTES:
            self._write_file(self._path(key), data)
            return

        async def one_chunk() -> AsyncIterator[bytes]:
            yield data

        await self.write_stream(key, one_chunk(), max_bytes=len(data))

    def _write_file(self, path: Path, data: bytes) -> None:
        temp, file = self._open_beside(path)
        try:
            with file as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    async def get_bytes(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            return None

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        base = self._path(prefix.rstrip("/"))
        keys = await asyncio.to_thread(self._walk, base)
        for start in range(0, len(keys), LIST_PAGE):
            yield keys[start : start + LIST_PAGE]

    def _walk(self, base: Path) -> list[str]:
        if not base.is_dir():
            return []
        # In-progress uploads (".name.<uuid>.part") are their writer's to keep or remove.
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".part"))
        )

    async def delete_keys(self, keys: list[str]) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self._delete_all, keys)

    def _delete_all(self, keys: list[str]) -> list[tuple[str, str]]:
        failures: list[tuple[str, str]] = []
        parents: set[Path] = set()
        for key in keys:
            try:
                path = self._path(key)
                path.unlink(missing_ok=True)
                parents.add(path.parent)
            except OSError as exc:
                failures.append((key, str(exc)))
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune_empty(parent)
        return failures

    def _prune_empty(self, folder: Path) -> None:
        # Empty folders left by a delete are removed up to the storage root.
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    async def aclose(self) -> None:
        return None
