"""PostgreSQL goes away under polling load and comes back: while it is down every answer is a
prompt `503 {"error": "Service unavailable", ...}` (never a hang, a 500 or a traceback), a
status poll at most answered from memory with the last correct status; once it is back the
API answers 200 again within 5 s, by itself, and job requests flow again.

The server is a real `capvid web` process; the database is a PostgreSQL of this test's own
(stopped with `pg_ctl -m immediate`, as a crash); clients poll with a 5 s timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config import Settings
from service.dev import free_port
from service.migrate import apply_migrations
from tests.chaos.processes import Process, capvid_env
from tests.chaos.servers import PostgresServer
from tests.helpers import MEDIA, bearer, make_user, query, record_figure, write
from tests.pipeline.test_recovery import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

POLLERS = 8
CLIENT_TIMEOUT = 5.0
STEADY, OUTAGE, AFTER = 1.5, 3.0, 7.0  # seconds of polling before, during and after the outage
RECOVERY_BOUND = 5.0  # the bound: 200 again within 5 s of Postgres being back
UNAVAILABLE_KEYS = {"error", "message"}


@dataclass
class Answer:
    route: str
    video_id: str
    started: float
    ended: float
    status: int | None = None
    content_type: str | None = None
    body: Any = None
    failure: str | None = None  # a client-side error: timeout, reset connection


async def test_postgres_restart_under_polling_load(
    settings: Settings, postgres_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest
):
    apply_migrations(postgres_server.url)
    own = settings.model_copy(update={"database_url": postgres_server.url})
    token = await make_user(own, "poller@example.com")
    port = free_port()
    web = Process("web", capvid_env(own, HOST="127.0.0.1", PORT=str(port)), tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    answers: list[Answer] = []
    stop = asyncio.Event()
    pollers: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession(
            base, headers=bearer(token), timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        ) as http:
            await wait_until_ready(http, web)
            known = await videos_in_known_states(http, own)
            pollers = [asyncio.create_task(poll(http, known, answers, stop, seed)) for seed in range(POLLERS)]
            await asyncio.sleep(STEADY)
            await asyncio.to_thread(postgres_server.stop, "immediate")
            down = time.monotonic()
            await asyncio.sleep(OUTAGE)
            # Postgres accepts connections before start() returns: the outage is what precedes the start.
            restarting = time.monotonic()
            await asyncio.to_thread(postgres_server.start)
            up = time.monotonic()
            await asyncio.sleep(AFTER)
            stop.set()
            await asyncio.gather(*pollers)
            await job_requests_flow_again(http, own)
    finally:
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        await web.stop()

    check_answers(answers, known)
    during = [a for a in answers if a.started >= down and a.ended <= restarting]
    assert any(a.status == 503 for a in during), "the outage was not seen: no 503 while Postgres was down"
    from_memory = [a for a in during if a.status == 200]
    assert all(a.route.endswith("/status") for a in from_memory), "only a status poll may be answered from memory"
    late = [a for a in answers if a.started >= up + RECOVERY_BOUND]
    assert late and all(a.status == 200 for a in late), "not recovered within 5 s of Postgres being back"
    last_failure = max((a.ended for a in answers if a.status != 200 and a.started >= up), default=up)
    slowest = max(a.ended - a.started for a in during)
    unhandled = (tmp_path / "web.log").read_text(errors="replace").count("unhandled error")
    assert unhandled == 0, f"the server hit {unhandled} unexpected errors: see {tmp_path / 'web.log'}"
    record_figure(
        request,
        f"{len(answers)} polls from {POLLERS} clients; {len(during)} during a {OUTAGE:.0f} s outage: "
        f"{sum(a.status == 503 for a in during)} x 503 JSON, "
        f"{sum(a.status == 200 for a in during)} x 200 (status answered from memory), "
        f"slowest {slowest * 1000:.0f} ms; every poll 200 again {last_failure - up:.2f} s after Postgres was back",
    )


async def wait_until_ready(http: aiohttp.ClientSession, web: Process) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            async with http.get("/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if not web.alive() or time.monotonic() > deadline:
            raise AssertionError(f"capvid web did not become ready: see {web.log}")
        await asyncio.sleep(0.1)


async def videos_in_known_states(http: aiohttp.ClientSession, settings: Settings) -> dict[str, str | None]:
    """Three videos whose transcription status is COMPLETE, PROCESSING and never started."""
    known: dict[str, str | None] = {}
    for status in ("COMPLETE", "PROCESSING", None):
        async with http.post("/api/video", json={}) as response:
            assert response.status == 201, await response.text()
            video_id = (await response.json())["id"]
        if status is not None:
            await write(settings, "UPDATE videos SET transcription_status = %s, transcription_run = 1 WHERE id = %s",
                        (status, video_id))
        known[video_id] = status
    return known


async def poll(
    http: aiohttp.ClientSession, known: dict[str, str | None], answers: list[Answer], stop: asyncio.Event, seed: int
) -> None:
    """What Cap's clients do: poll the status of a video, and read the video, over and over."""
    rng = random.Random(seed)
    routes = ["/api/video/transcribe/status", "/api/video"]
    while not stop.is_set():
        route, video_id = rng.choice(routes), rng.choice(sorted(known))
        answer = Answer(route, video_id, time.monotonic(), 0.0)
        try:
            async with http.get(route, params={"videoId": video_id}) as response:
                answer.status, answer.content_type = response.status, response.content_type
                answer.body = await response.json() if response.content_type == "application/json" else await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            answer.failure = f"{type(exc).__name__}: {exc}"
        answer.ended = time.monotonic()
        answers.append(answer)
        await asyncio.sleep(0.02)


def check_answers(answers: list[Answer], known: dict[str, str | None]) -> None:
    failures = [a for a in answers if a.failure is not None]
    assert not failures, f"{len(failures)} polls got no answer within {CLIENT_TIMEOUT} s: {failures[0]}"
    wrong = [a for a in answers if not well_formed(a, known)]
    assert not wrong, f"{len(wrong)} answers outside the contract, e.g. {wrong[:3]}"


def well_formed(answer: Answer, known: dict[str, str | None]) -> bool:
    if answer.content_type != "application/json" or not isinstance(answer.body, dict):
        return False
    if answer.status == 503:
        body = answer.body
        return set(body) == UNAVAILABLE_KEYS and body["error"] == "Service unavailable" and bool(body["message"])
    if answer.status != 200:
        return False
    # A 200 (also one answered from memory while Postgres is down) carries the true status.
    if answer.body.get("transcriptionStatus") != known[answer.video_id]:
        return False
    return answer.route.endswith("/status") or answer.body.get("id") == answer.video_id


async def job_requests_flow_again(http: aiohttp.ClientSession, settings: Settings) -> None:
    """The relay of `capvid web` hands a new job request to Redis by itself after the restart."""
    async with http.post("/api/video", json={}) as response:
        video_id = (await response.json())["id"]
    async with http.put("/api/video/upload", params={"videoId": video_id}, data=(MEDIA / "spoken.mp4").read_bytes()) as response:
        assert response.status == 200, await response.text()
    await wait_for(
        lambda: query(settings, "SELECT 1 FROM outbox WHERE video_id = %s AND sent_at IS NOT NULL", (video_id,)),
        10, "the upload's job request to be relayed",
    )
