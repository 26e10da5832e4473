"""Several web processes each hold a LISTEN connection: every one of them delivers every event."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession

from service.db import create_pool, transaction
from tests.events.conftest import EventStream, open_stream
from tests.helpers import MEDIA, bearer
from workers.transcription import queries as transcription_q

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def web_processes(settings, tmp_path) -> Iterator[list[str]]:
    """Two `capvid web` processes on the test database and Redis; their base URLs."""
    procs, urls, logs = [], [], []
    for n in range(2):
        port = free_port()
        env = {
            **os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "HOST": "127.0.0.1", "PORT": str(port), "STORAGE_DIR": str(tmp_path / "storage"), "LOG_LEVEL": "WARNING",
        }
        logs.append(open(tmp_path / f"web-{n}.log", "wb"))
        command = [sys.executable, "-m", "service.cli", "web"]
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=logs[-1], stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


async def ready(session: ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not start")


@pytest.fixture
async def sessions(web_processes) -> AsyncIterator[list[ClientSession]]:
    opened = [ClientSession(base_url=url) for url in web_processes]
    try:
        for session, url in zip(opened, web_processes):
            await ready(session, url)
        yield opened
    finally:
        for session in opened:
            await session.close()


async def test_both_processes_deliver_the_same_event(settings, alice, sessions, streams):
    first, second = sessions
    response = await first.post("/api/video", json={}, headers=bearer(alice))
    video_id = (await response.json())["id"]
    media = (MEDIA / "spoken.mp4").read_bytes()
    response = await first.put("/api/video/upload", params={"videoId": video_id}, data=media, headers=bearer(alice))
    assert response.status == 200
    opened: list[EventStream] = [await open_stream(session, alice, video_id) for session in sessions]
    streams.extend(opened)
    states = [await stream.next() for stream in opened]
    assert {s.data["transcriptionStatus"] for s in states} == {"PROCESSING"}

    # Each process may have started listening just now: a change committed before that is still
    # delivered (a stream re-reads the log when its hub connects), so no wait is needed here.
    status = "/api/video/transcribe/status"
    etag = (await second.get(status, params={"videoId": video_id}, headers=bearer(alice))).headers["ETag"]
    waiting = asyncio.create_task(
        second.get(status, params={"videoId": video_id, "wait": "20"}, headers={**bearer(alice), "If-None-Match": etag})
    )
    await asyncio.sleep(0.3)
    pool = await create_pool(settings, minsize=0, maxsize=1)
    try:
        async with transaction(pool) as tx:
            assert await transcription_q.fail(tx, video_id, 1, None, "failed for both")
        committed = time.monotonic()
    finally:
        pool.close()
        await pool.wait_closed()

    events = [await stream.next() for stream in opened]
    assert {(e.event, e.id, e.data["transcriptionStatus"]) for e in events} == {
        ("transcription", events[0].id, "ERROR")
    }, "the same event, with the same id, from both processes"
    assert max(e.received for e in events) - committed < 1.0
    polled = await asyncio.wait_for(waiting, 1.0)
    assert polled.status == 200 and await polled.json() == {"transcriptionStatus": "ERROR"}
