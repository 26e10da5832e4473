"""Shared test helpers: users with tokens, an API wrapper, database inspection, burst workers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from config import Settings
from service.admin import add_user, issue_token
from service.db import create_pool
from service.outbox import relay_once
from workers.recovery import recover_stuck
from workers.settings import create_worker, shutdown, startup

TABLES = [
    "video_events", "outbox", "storage_cleanups", "video_viewers", "video_view_days", "video_stats", "comments",
    "videos", "api_keys", "users", "secrets", "webhook_deliveries", "webhooks", "job_runs",
]
MEDIA = Path(__file__).parent / "fixtures" / "media"
RELAY_IDLE_SECONDS = 3.0


def reset_database(database_url: str) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    conn.close()


def query(settings: Settings, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Read the database directly, as a person checking the result would."""
    with psycopg2.connect(settings.database_url) as conn:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            rows = [dict(r) for r in cur.fetchall()] if cur.description else []
    conn.close()
    return rows


async def write(settings: Settings, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """A write from a test, run off the event loop: it may wait on a row lock held by the app or a
    relay running on this same loop (a blocking call here would deadlock them)."""
    return await asyncio.to_thread(query, settings, sql, params)


async def make_user(settings: Settings, email: str, admin: bool = False) -> str:
    await add_user(settings, email, email.split("@")[0], admin)
    _, token = await issue_token(settings, email, "test")
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """The HTTP API as a client sees it."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def create_video(self, token: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/api/video", json=body, headers=bearer(token))
        assert response.status == 201, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    async def upload(self, token: str, video_id: str, data: bytes) -> ClientResponse:
        return await self.client.put(
            "/api/video/upload", params={"videoId": video_id}, data=data, headers=bearer(token)
        )

    async def video(self, token: str, video_id: str) -> dict[str, Any]:
        response = await self.client.get("/api/video", params={"videoId": video_id}, headers=bearer(token))
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    async def status(self, token: str, video_id: str) -> str | None:
        response = await self.client.get(
            "/api/video/transcribe/status", params={"videoId": video_id}, headers=bearer(token)
        )
        assert response.status == 200, await response.text()
        return (await response.json())["transcriptionStatus"]  # type: ignore[no-any-return]


async def relay(settings: Settings) -> int:
    pool = await create_pool(settings, minsize=0, maxsize=1)
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        return await relay_once(pool, redis, settings.arq_queue_name)
    finally:
        await redis.aclose()
        pool.close()
        await pool.wait_closed()


async def relay_idle(settings: Settings) -> None:
    """Until no job request is left unsent (at most RELAY_IDLE_SECONDS): the app's relay may hold a row it is
    handing to arq, which another relay skips."""
    if not query(settings, "SELECT 1 FROM outbox LIMIT 1"):
        return  # no job was requested, so no NOTIFY was sent
    deadline = time.monotonic() + RELAY_IDLE_SECONDS
    while time.monotonic() < deadline and query(settings, "SELECT 1 FROM outbox WHERE sent_at IS NULL LIMIT 1"):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # the NOTIFY of the last request has been delivered and handled by now


async def drain(settings: Settings, rounds: int = 8, **worker_overrides: Any) -> None:
    """Relay the outbox and run burst workers until no work is left: nothing unsent in the outbox
    and nothing in the queue (a job may request more jobs, and another relay may hand them over
    just after a burst worker found the queue empty)."""
    for _ in range(rounds):
        await relay(settings)
        worker = create_worker(settings, burst=True, poll_delay=0.05, **worker_overrides)
        try:
            await worker.main()
        finally:
            await worker.close()
        if not query(settings, "SELECT 1 FROM outbox WHERE sent_at IS NULL") and not await queued(settings):
            return
    raise AssertionError("the outbox and the queue did not drain")


async def queued(settings: Settings) -> int:
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        return int(await redis.zcard(settings.arq_queue_name))
    finally:
        await redis.aclose()


def record_figure(request: Any, text: str) -> None:
    """A measured figure of a test (chaos, fuzz): kept on its report and printed in the summary
    by `print_figures` (a `pytest_terminal_summary` hook of the suites that measure)."""
    request.node.user_properties.append(("figure", text))


def print_figures(terminalreporter: Any, folder: str, title: str) -> None:
    lines = [
        f"{report.nodeid.split('::')[-1]}: {value}"
        for status in ("passed", "failed")
        for report in terminalreporter.getreports(status)
        if report.when == "call" and report.nodeid.startswith(folder)
        for name, value in report.user_properties
        if name == "figure"
    ]
    if lines:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


async def run_recovery(settings: Settings) -> dict[str, int]:
    """One run of the recovery cron, in a worker context like arq's."""
    redis = ArqRedis.from_url(settings.redis_url)
    ctx: dict[str, Any] = {"settings": settings, "redis": redis}
    await startup(ctx)
    try:
        return await recover_stuck(ctx)
    finally:
        await shutdown(ctx)
        await redis.aclose()
