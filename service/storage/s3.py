"""The `s3` backend: any S3 API (AWS, MinIO, R2, Ceph, Garage) through aiobotocore.

One client per process, opened on first use and closed by `aclose()`. Uploads stream as
multipart uploads, a part at a time; listing pages through ListObjectsV2 and deleting goes
1,000 keys to a DeleteObjects request. A backend that cannot be reached (refused, timed
out, dropped connection, 5xx, SlowDown) raises `StorageUnavailable`, which callers retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import exceptions as botocore_errors

from config import Settings
from service.storage import StorageUnavailable, TooLarge

LIST_PAGE = 1000
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
MAX_PARTS = 10_000  # the most parts one multipart upload takes
DOWNLOAD_CHUNK = 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0

# The backend is away: worth retrying later (botocore already retried once).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore_errors.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError
    botocore_errors.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
    botocore_errors.IncompleteReadError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
)
TRANSIENT_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException"}
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _code(exc: botocore_errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore_errors.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _is_missing(exc: botocore_errors.ClientError) -> bool:
    # The object, not the bucket: a missing bucket (NoSuchBucket, also a 404) is a configuration error.
    code = _code(exc)
    return code in MISSING_CODES or (not code and _status(exc) == 404)


@contextlib.contextmanager
def _unavailable_on_outage(what: str) -> Iterator[None]:
    """Turn "the backend is not there right now" into StorageUnavailable; other errors pass."""
    try:
        yield
    except botocore_errors.ClientError as exc:
        if _status(exc) >= 500 or _code(exc) in TRANSIENT_CODES:
            raise StorageUnavailable(f"S3 {what}: {_code(exc) or _status(exc)}: {exc}") from exc
        raise
    except TRANSPORT_ERRORS as exc:
        raise StorageUnavailable(f"S3 {what}: {type(exc).__name__}: {exc}") from exc


class S3Storage:
    backend = "s3"

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is required for the s3 storage backend")
        self.settings = settings
        self.bucket: str = settings.s3_bucket
        self.part_bytes = settings.s3_part_bytes
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def _config(self) -> AioConfig:
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": READ_TIMEOUT_SECONDS,
            # Two tries in all, then StorageUnavailable: the caller retries with its own backoff.
            "retries": {"total_max_attempts": 2, "mode": "standard"},
            # botocore >= 1.36 adds CRC checksums to every upload by default, which several
            # S3-compatible servers reject: send them only where the API requires them.
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "max_pool_connections": 32,
        }
        if self.settings.s3_force_path_style:
            options["s3"] = {"addressing_style": "path"}
        return AioConfig(**options)

    async def client(self) -> Any:
        """The process's S3 client, created on first use."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                s = self.settings
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        region_name=s.s3_region,
                        endpoint_url=s.s3_endpoint_url,
                        # None falls back to botocore's own chain (environment, instance role).
                        aws_access_key_id=s.s3_access_key_id.get_secret_value() if s.s3_access_key_id else None,
                        aws_secret_access_key=(
                            s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
                        ),
                        config=self._config(),
                    )
                )
                self._stack = stack
        return self._client

    async def write_stream(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        client = await self.client()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        # S3 takes at most 10,000 parts: a larger size limit needs larger parts.
        part_bytes = max(self.part_bytes, -(-max_bytes // MAX_PARTS))
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                buffer += chunk
                # At most one part (plus the chunk that completed it) is ever held.
                while len(buffer) >= part_bytes:
                    if upload_id is None:
                        with _unavailable_on_outage("CreateMultipartUpload"):
                            created = await client.create_multipart_upload(
                                Bucket=self.bucket, Key=key, ContentType=content_type
                            )
                        upload_id = str(created["UploadId"])
                    part = bytes(buffer[:part_bytes])
                    del buffer[:part_bytes]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                # Smaller than one part: a single PutObject.
                with _unavailable_on_outage("PutObject"):
                    await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
                return size
            if buffer:
                parts.append(await self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
                buffer.clear()
            with _unavailable_on_outage("CompleteMultipartUpload"):
                await client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            upload_id = None
        except BaseException:
            if upload_id is not None:
                await self._abort(key, upload_id)
            raise
        return size

    async def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        client = await self.client()
        with _unavailable_on_outage("UploadPart"):
            answer = await client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def _abort(self, key: str, upload_id: str) -> None:
        # Parts of an aborted upload are dropped by S3; if even the abort fails, a bucket
        # lifecycle rule (AbortIncompleteMultipartUpload) is the last resort.
        client = await self.client()
        with contextlib.suppress(Exception):
            await asyncio.shield(client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        client = await self.client()
        with _unavailable_on_outage("PutObject"):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    async def get_bytes(self, key: str) -> bytes | None:
        client = await self.client()
        with _unavailable_on_outage("GetObject"):
            try:
                answer = await client.get_object(Bucket=self.bucket, Key=key)
            except botocore_errors.ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
            async with answer["Body"] as body:
                return bytes(await body.read())

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        client = await self.client()
        fd, name = tempfile.mkstemp(prefix="capvid-s3-", suffix=Path(key).suffix)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, _unavailable_on_outage("GetObject"):
                try:
                    answer = await client.get_object(Bucket=self.bucket, Key=key)
                except botocore_errors.ClientError as exc:
                    if _is_missing(exc):
                        raise FileNotFoundError(key) from None
                    raise
                # A chunk at a time: the object is never held whole in memory.
                async with answer["Body"] as body:
                    async for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                        await asyncio.to_thread(out.write, chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        # ListObjectsV2 pages by hand (what botocore's paginator does), so that each request's
        # outage is reported as StorageUnavailable. The continuation token names the last key
        # listed, so deleting a page before asking for the next one is safe.
        client = await self.client()
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE}
            if token:
                request["ContinuationToken"] = token
            with _unavailable_on_outage("ListObjectsV2"):
                page = await client.list_objects_v2(**request)
            keys = [str(item["Key"]) for item in page.get("Contents", [])]
            if keys:
                yield keys
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return

    async def delete_keys(self, keys: list[str]) -> list[tuple[str, str]]:
        client = await self.client()
        failures: list[tuple[str, str]] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            # Quiet: the answer lists only failures. S3 reports a missing key as deleted.
            with _unavailable_on_outage("DeleteObjects"):
                answer = await client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            for error in answer.get("Errors", []):
                if error.get("Code") == "NoSuchKey":
                    continue
                failures.append((str(error.get("Key")), f"{error.get('Code')}: {error.get('Message')}"))
        return failures

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
