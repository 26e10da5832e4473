"""Delete benchmark: a video's 5,000 objects removed the way the cleanup job does it (ListObjectsV2
pages + DeleteObjects batches of 1,000) against a naive DeleteObject per key, in one run, on a
local S3 API server (moto's, on a free port), with the same client.

    python bench/delete.py [--objects N] [--parallel P]

Every HTTP request the S3 client sends is counted (botocore's `before-send` event, so retries
would count too). The floor for 5,000 objects is 5 list pages + 5 batch deletes = 10 requests.
The objects are put into moto's in-process store directly before each method (putting 5,000
over HTTP takes moto ~25 s and is not what is measured); listing and deleting go over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from a checkout

import aiobotocore  # noqa: E402
import moto  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.common import Figure, add_common_arguments, print_table, write_figures  # noqa: E402
from config import Settings  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.storage import video_prefix  # noqa: E402
from service.storage.s3 import DELETE_BATCH, LIST_PAGE, S3Storage  # noqa: E402

NAME = "delete"
BUCKET = "capvid-bench"
PREFIX = video_prefix(1, "benchvideo0001")


@dataclass
class Result:
    name: str
    seconds: float
    requests: Counter[str]
    left: int

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class RequestCounter:
    """Counts the HTTP requests a client sends, by S3 operation."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        self.by_operation[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        taken, self.by_operation = self.by_operation, Counter()
        return taken


def seed(count: int) -> None:
    """`count` small objects under the video's prefix: segments, thumbnails, previews."""
    partition, account = s3_backends.bucket_accounts[BUCKET]
    backend = s3_backends[account][partition]
    folders = (("segments", "ts"), ("thumbnails", "jpg"), ("previews", "webp"))
    for i in range(count):
        folder, ext = folders[i % 3]
        key = f"{PREFIX}{folder}/{i:05d}.{ext}"
        backend.put_object(BUCKET, key, key.encode())


async def count_left(storage: S3Storage) -> int:
    return sum([len(page) async for page in storage.list_keys(PREFIX)])


async def cleanup_job_delete(storage: S3Storage, parallel: int) -> None:
    """What workers/cleanup/job.py does: a page of keys, then one DeleteObjects per 1,000."""
    failures: list[tuple[str, str]] = []
    async for page in storage.list_keys(PREFIX):
        failures += await storage.delete_keys(page)
    assert not failures, failures


async def naive_delete(storage: S3Storage, parallel: int) -> None:
    """List the same way, then one DeleteObject request per key, `parallel` in flight."""
    client = await storage.client()
    gate = asyncio.Semaphore(parallel)

    async def one(key: str) -> None:
        async with gate:
            await client.delete_object(Bucket=BUCKET, Key=key)

    async for page in storage.list_keys(PREFIX):
        await asyncio.gather(*(one(key) for key in page))


async def measure(
    name: str, method: Callable[[S3Storage, int], Awaitable[None]], storage: S3Storage, counter: RequestCounter,
    objects: int, parallel: int,
) -> Result:
    seed(objects)
    assert await count_left(storage) == objects
    counter.take()
    started = time.perf_counter()
    await method(storage, parallel)
    seconds = time.perf_counter() - started
    requests = counter.take()
    left = await count_left(storage)
    counter.take()
    return Result(name, seconds, requests, left)


async def run(objects: int, parallel: int, json_path: Path | None) -> int:
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings = Settings(
        _env_file=None,
        storage_backend="s3",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_bucket=BUCKET,
        s3_access_key_id=SecretStr("bench"),
        s3_secret_access_key=SecretStr("bench"),
        s3_force_path_style=True,
    )
    storage = S3Storage(settings)
    try:
        client = await storage.client()
        await client.create_bucket(Bucket=BUCKET)
        counter = RequestCounter()
        client.meta.events.register("before-send.s3.*", counter)
        results = [
            await measure("capvid cleanup: ListObjectsV2 + DeleteObjects", cleanup_job_delete, storage, counter,
                          objects, parallel),
            await measure("naive: a DeleteObject per key, 1 at a time", naive_delete, storage, counter, objects, 1),
            await measure(f"naive: a DeleteObject per key, {parallel} in flight", naive_delete, storage, counter,
                          objects, parallel),
        ]
    finally:
        await storage.aclose()
        server.stop()
    report(results, objects)
    found = figures(results, objects)
    print()
    print_table(found)
    write_figures(json_path, found)
    return 0 if all(r.left == 0 for r in results) else 1


def figures(results: list[Result], objects: int) -> list[Figure]:
    best, one, parallel = results
    floor = math.ceil(objects / LIST_PAGE) + math.ceil(objects / DELETE_BATCH)
    where = f"{objects:,} objects, moto S3"
    return [
        Figure.compare(NAME, f"S3 requests to delete a video's objects ({where})", best.total, one.total,
                       "requests", "a DeleteObject per key", f"the floor: {floor}", best.total <= floor),
        Figure.compare(NAME, f"time to delete them ({where})", best.seconds, one.seconds, "s",
                       "a DeleteObject per key"),
        Figure.compare(NAME, f"time to delete them ({where})", best.seconds, parallel.seconds, "s",
                       parallel.name.removeprefix("naive: ")),
    ]


def report(results: list[Result], objects: int) -> None:
    floor = math.ceil(objects / LIST_PAGE) + math.ceil(objects / DELETE_BATCH)
    print(
        f"capvid delete benchmark: {objects} objects under one video prefix, moto {moto.__version__} S3 server on "
        f"127.0.0.1, aiobotocore {aiobotocore.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"{'method':<50} {'requests':>8}  {'(by operation)':<38} {'time':>8} {'objects/s':>10} {'left':>5}")
    for r in results:
        ops = ", ".join(f"{op} {n}" for op, n in sorted(r.requests.items()))
        print(
            f"{r.name:<50} {r.total:>8}  {'(' + ops + ')':<38} {r.seconds:>7.2f}s {objects / r.seconds:>10.0f} "
            f"{r.left:>5}"
        )
    best, *naive = results
    print(f"floor: {math.ceil(objects / LIST_PAGE)} list pages + {math.ceil(objects / DELETE_BATCH)} batch deletes "
          f"= {floor} requests; capvid sent {best.total}{' (at the floor)' if best.total == floor else ''}")
    for other in naive:
        print(
            f"vs {other.name}: {other.total / best.total:.0f}x fewer requests, "
            f"{other.seconds / best.seconds:.1f}x less time"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, help="objects under the video's prefix (default 5000; --quick 1000)")
    parser.add_argument("--parallel", type=int, default=32, help="requests in flight for the parallel naive delete")
    add_common_arguments(parser)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.objects or (1000 if args.quick else 5000), args.parallel, args.json)))


if __name__ == "__main__":
    main()
