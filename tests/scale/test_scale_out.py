"""Scale-out: the Procfile's processes, two of each (honcho -c web=2,worker=2), on one Postgres and
one Redis. Uploads through both web processes spread over both workers, every transition happens
exactly once, and event streams on both web processes deliver the transitions.

Speech-to-text is the local Deepgram stand-in, answering after a second: a job then outlasts a
worker's poll interval, so with six uploads at once (more than one worker's `max_jobs`) both
workers must take some."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as redis_sync

from config import Settings
from service.ops.heartbeats import workers_key
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import MEDIA, bearer, make_user, query

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
HONCHO = Path(sys.executable).with_name("honcho")
VIDEOS = 6
WEB, WORKERS = 2, 2
DEADLINE_SECONDS = 60
STOP_SECONDS = 15


def free_base_port() -> int:
    """A base port P for honcho with P, P+1 (web) and P+100, P+101 (workers' metrics) all free."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + 101 > 65535:
            continue
        try:
            for port in (base, base + 1, base + 100, base + 101):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports for honcho")


@dataclass
class Cluster:
    process: subprocess.Popen[bytes]
    log: Path
    web_urls: list[str]

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to honcho's whole process group (honcho stops its children), SIGKILL if that takes too long."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a child that outlived honcho
    except ProcessLookupError:
        pass


@pytest.fixture
def cluster(settings: Settings, deepgram: FakeDeepgram, tmp_path: Path) -> Iterator[Cluster]:
    deepgram.mode, deepgram.hang_seconds = "hang", 1.0  # "hang" answers (with words) after hang_seconds
    base = free_base_port()
    env_file = tmp_path / "empty.env"  # honcho reads ./.env by default: nothing from the checkout's
    env_file.write_text("")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(HONCHO.parent), os.environ.get("PATH", "")]),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "STORAGE_DIR": str(settings.storage_dir),
        "HOST": "127.0.0.1",
        "TRANSCRIPTION_ENGINE": "deepgram",
        "DEEPGRAM_API_KEY": deepgram.api_key,
        "DEEPGRAM_BASE_URL": deepgram.url,
        "WORKER_GRACE_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "honcho.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(HONCHO), "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "-e", str(env_file),
             "-p", str(base), "-c", f"web={WEB},worker={WORKERS}", "--no-colour"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )
    try:
        yield Cluster(process, log, [f"http://127.0.0.1:{base + n}" for n in range(WEB)])
    finally:
        stop(process)


async def wait_until_up(cluster: Cluster, settings: Settings) -> None:
    """Both web processes ready, both workers polling (each reports itself in Redis once it polls)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    async with aiohttp.ClientSession() as http:
        for url in cluster.web_urls:
            while True:
                try:
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert cluster.process.poll() is None, cluster.tail()
                assert time.monotonic() < deadline, f"{url} not ready:\n{cluster.tail()}"
                await asyncio.sleep(0.2)
    with redis_sync.Redis.from_url(settings.redis_url) as client:
        while client.zcard(workers_key(settings.arq_queue_name)) < WORKERS:
            assert time.monotonic() < deadline, f"the workers did not start:\n{cluster.tail()}"
            await asyncio.sleep(0.2)


@dataclass
class Received:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


async def read_stream(http: aiohttp.ClientSession, url: str, video_id: str, token: str, got: Received,
                      opened: asyncio.Event) -> None:
    """Collect `transcription` and `ai` events of one video's stream until cancelled."""
    async with http.get(f"{url}/api/video/events", params={"videoId": video_id}, headers=bearer(token),
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        assert response.status == 200, await response.text()
        event, data = "", ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line:
                if event == "state":
                    opened.set()
                elif event in ("transcription", "ai"):
                    got.events.append((event, json.loads(data)))
                event, data = "", ""


@asynccontextmanager
async def streams(urls: list[str], video_ids: list[str], token: str) -> AsyncIterator[dict[tuple[str, str], Received]]:
    """An event stream of every video on every web process, open before anything happens to the videos."""
    received = {(url, video_id): Received() for url in urls for video_id in video_ids}
    async with aiohttp.ClientSession() as http:
        tasks, waits = [], []
        for (url, video_id), got in received.items():
            opened = asyncio.Event()
            tasks.append(asyncio.create_task(read_stream(http, url, video_id, token, got, opened)))
            waits.append(asyncio.create_task(opened.wait()))
        try:
            done, _ = await asyncio.wait(waits, timeout=30)
            assert len(done) == len(waits), [t.exception() for t in tasks if t.done()]
            yield received
        finally:
            for task in [*tasks, *waits]:
                task.cancel()
            await asyncio.gather(*tasks, *waits, return_exceptions=True)


def completes(got: Received) -> list[tuple[str, int]]:
    """The (kind, event id) of every COMPLETE a stream delivered, in order of kind and id."""
    return sorted((kind, data["eventId"]) for kind, data in got.events
                  if data.get("transcriptionStatus", data.get("aiGenerationStatus")) == "COMPLETE")


async def wait_all_done(cluster: Cluster, settings: Settings, video_ids: list[str]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        rows = query(settings, "SELECT transcription_status, ai_status FROM videos WHERE id = ANY(%s)", (video_ids,))
        if all(r["transcription_status"] == "COMPLETE" and r["ai_status"] == "COMPLETE" for r in rows):
            return
        assert cluster.process.poll() is None, cluster.tail()
        assert time.monotonic() < deadline, f"not done: {rows}\n{cluster.tail()}"
        await asyncio.sleep(0.2)


async def test_two_web_processes_and_two_workers(cluster: Cluster, settings: Settings) -> None:
    token = await make_user(settings, "scale@example.com")
    await wait_until_up(cluster, settings)
    media = (MEDIA / "spoken.mp4").read_bytes()
    urls = cluster.web_urls
    async with aiohttp.ClientSession(headers=bearer(token)) as http:
        video_ids = []
        for n in range(VIDEOS):
            async with http.post(f"{urls[n % WEB]}/api/video", json={"name": f"scale {n}"}) as response:
                assert response.status == 201, await response.text()
                video_ids.append((await response.json())["id"])
        async with streams(urls, video_ids, token) as received:

            async def upload(n: int, video_id: str) -> None:  # alternating web processes
                async with http.put(f"{urls[n % WEB]}/api/video/upload", params={"videoId": video_id},
                                    data=media) as response:
                    assert response.status == 200, await response.text()

            await asyncio.gather(*(upload(n, video_id) for n, video_id in enumerate(video_ids)))
            await wait_all_done(cluster, settings, video_ids)
            completions = query(
                settings,
                "SELECT id, video_id, kind FROM video_events WHERE status = 'COMPLETE' AND video_id = ANY(%s)",
                (video_ids,),
            )
            expected = {video_id: sorted((e["kind"], e["id"]) for e in completions if e["video_id"] == video_id)
                        for video_id in video_ids}
            deadline = time.monotonic() + 10
            while any(set(completes(got)) < set(expected[video_id]) for (_, video_id), got in received.items()):
                assert time.monotonic() < deadline, f"a stream missed a COMPLETE event: {received}"
                await asyncio.sleep(0.1)

    # Each transition happened exactly once: one COMPLETE event per video, run and machine.
    counts = query(
        settings,
        """
        SELECT kind, video_id, run, count(*) AS n FROM video_events
        WHERE status = 'COMPLETE' AND video_id = ANY(%s) GROUP BY 1, 2, 3
        """,
        (video_ids,),
    )
    assert sorted((c["kind"], c["video_id"], c["run"], c["n"]) for c in counts) == sorted(
        (kind, video_id, 1, 1) for kind in ("transcription", "ai") for video_id in video_ids
    )
    # Every job request was handed over once, by one of the relays.
    assert query(settings, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"] == 0

    # Both workers ran jobs; each transcription completed in exactly one job run.
    runs = query(settings, "SELECT function, video_id, worker, outcome FROM job_runs WHERE video_id = ANY(%s)",
                 (video_ids,))
    transcribed_by = {r["worker"] for r in runs if r["function"] == "transcribe"}
    assert len(transcribed_by) == WORKERS, runs
    assert sorted(r["video_id"] for r in runs if r["function"] == "transcribe" and r["outcome"] == "complete") == \
        sorted(video_ids)

    # The streams of both web processes delivered each COMPLETE once, with the event's id.
    for (url, video_id), got in received.items():
        assert completes(got) == expected[video_id], (url, got.events)
