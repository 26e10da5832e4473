"""The S3 server goes away during a cleanup: the job retries with backoff and finishes once the
server is back. The server is reached through a TCP proxy that refuses connections and drops
open ones while "down"; moto behind it keeps its objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from config import Settings
from service.storage import build_storage
from service.storage.s3 import S3Storage
from service.tasks import stop_task
from tests.helpers import Api, drain, query
from tests.storage.helpers import Outage, delete, keys_under, rows_of, seed, uploaded_video

pytestmark = pytest.mark.parametrize("backend", ["s3"])


@pytest.fixture
async def outage(moto_url: str) -> AsyncIterator[Outage]:
    target = urlparse(moto_url)
    proxy = Outage(target.hostname or "127.0.0.1", target.port or 80)
    await proxy.up()
    yield proxy
    await proxy.down()


@pytest.fixture
def s3_endpoint(outage: Outage) -> str:
    return outage.url


@pytest.mark.parametrize("when", ["before the cleanup starts", "after its first batch"])
async def test_cleanup_retries_while_s3_is_down_and_finishes_when_it_is_back(
    api: Api, alice: str, outage: Outage, moto_url: str, monkeypatch: pytest.MonkeyPatch, when: str
):
    settings = api.settings
    direct = settings.model_copy(update={"s3_endpoint_url": moto_url})  # the test's own view, past the proxy
    video = await uploaded_video(api.client, alice)
    storage = build_storage(direct, "s3")
    try:
        await seed(storage, video["prefix"], 2100)
    finally:
        await storage.aclose()
    if when == "before the cleanup starts":
        await outage.down()
    else:
        real_delete = S3Storage.delete_keys

        async def delete_then_go_down(self: S3Storage, keys: list[str]) -> list[tuple[str, str]]:
            failures = await real_delete(self, keys)
            await outage.down()
            return failures

        monkeypatch.setattr(S3Storage, "delete_keys", delete_then_go_down)

    assert await delete(api.client, alice, video["id"]) == 200, "a delete needs only Postgres"
    work = asyncio.create_task(drain(settings, rounds=2))
    try:
        await wait_for_failed_attempts(settings, video["id"], 2)
        assert not work.done()
        [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
        assert not cleanup["finished"] and cleanup["last_error"].startswith("StorageUnavailable: S3 ")
        left = 2101 if when == "before the cleanup starts" else 1101
        assert len(await keys_under(direct, "s3", video["prefix"])) == left
        monkeypatch.undo()
        await outage.up()
        await asyncio.wait_for(work, 60)
    finally:
        await stop_task(work)
    assert await keys_under(direct, "s3", video["prefix"]) == []
    [cleanup] = rows_of(settings, video["id"])["storage_cleanups"]
    assert cleanup["finished"] and cleanup["last_error"] is None and cleanup["failed_keys"] == []


async def wait_for_failed_attempts(settings: Settings, video_id: str, attempts: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        row = query(settings, "SELECT attempts, last_error FROM storage_cleanups WHERE video_id = %s", (video_id,))
        if row and row[0]["attempts"] >= attempts and row[0]["last_error"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the cleanup did not fail {attempts} times: {row}")
        await asyncio.sleep(0.05)
