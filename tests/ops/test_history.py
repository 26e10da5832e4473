"""Job history: every execution of a job function is a `job_runs` row with its outcome and reason."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import aiopg
import pytest
from arq import Retry
from arq.connections import ArqRedis
from pydantic import SecretStr

from config import Settings
from service.db import DatabaseError, create_pool, transaction
from tests.helpers import drain, query, write
from tests.ops.conftest import add_job_run
from tests.pipeline.conftest import uploaded, with_deepgram
from workers import history
from workers.history import recorded
from workers.recovery import recover_stuck
from workers.settings import shutdown, startup


def runs(settings: Settings) -> list[dict[str, Any]]:
    return query(settings, "SELECT * FROM job_runs ORDER BY id")


async def test_a_corrupt_upload_is_recorded_as_an_error_with_the_video_s_reason(api, alice):
    video_id = await uploaded(api, alice, "corrupt.mp4")
    await drain(api.settings)

    [run] = runs(api.settings)
    assert (run["function"], run["video_id"], run["run"], run["attempt"], run["try"]) == (
        "transcribe", video_id, 1, 1, 1
    )
    assert run["outcome"] == "error"
    assert run["detail"].startswith("ERROR (corrupt media): unreadable media:")
    assert run["job_id"].startswith("capvid:") and ":" in run["worker"]
    assert run["queued_at"] <= run["started_at"] <= run["finished_at"]


async def test_a_transcription_and_its_ai_generation_are_recorded_complete(api, alice, deepgram):
    await uploaded(api, alice)
    await drain(with_deepgram(api.settings, deepgram))

    recorded_runs = [(r["function"], r["outcome"], r["detail"], r["attempt"]) for r in runs(api.settings)]
    assert recorded_runs == [("transcribe", "complete", "COMPLETE", 1), ("generate_ai", "complete", "COMPLETE", 1)]


async def test_a_retried_attempt_is_recorded_with_its_reason(api, alice, deepgram):
    deepgram.fail_429_times = 1
    await uploaded(api, alice)
    await drain(with_deepgram(api.settings, deepgram, ai_enabled=False))

    first, second = runs(api.settings)
    assert (first["outcome"], first["attempt"], first["try"]) == ("retry", 1, 1)
    assert first["detail"].startswith("retrying in ") and "429" in first["detail"]
    assert (second["outcome"], second["attempt"], second["try"]) == ("complete", 2, 2)


@pytest.fixture
async def pool(settings: Settings) -> Any:
    pool = await create_pool(settings, minsize=0, maxsize=2)
    yield pool
    pool.close()
    await pool.wait_closed()


def job_ctx(pool: aiopg.Pool) -> dict[str, Any]:
    return {"deps": SimpleNamespace(pool=pool), "job_id": "capvid:7", "job_try": 2,
            "enqueue_time": datetime.now(timezone.utc)}


async def test_exceptions_are_recorded_and_still_raised(settings, pool):
    async def explode(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        raise ValueError("boom")

    async def back_later(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        raise Retry(defer=2)

    async def hang(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        await asyncio.sleep(60)
        return "never"

    with pytest.raises(ValueError):
        await recorded(explode)(job_ctx(pool), "v1", {"run": 3})
    with pytest.raises(Retry):
        await recorded(back_later)(job_ctx(pool), "v1", {"run": 3})
    task = asyncio.create_task(recorded(hang)(job_ctx(pool), "v1", {"run": 3}))
    while not runs(settings)[2:]:
        await asyncio.sleep(0.01)  # until its running row is written (OPEN_ROW_AFTER_SECONDS)
    assert runs(settings)[2]["outcome"] is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    got = [(r["function"], r["outcome"], r["detail"], r["run"], r["try"], r["job_id"]) for r in runs(settings)]
    assert got == [
        ("explode", "failed", "ValueError: boom", 3, 2, "capvid:7"),
        ("back_later", "retry", "retrying in 2s", 3, 2, "capvid:7"),
        ("hang", "cancelled", "cancelled: the worker stopped or the job timed out", 3, 2, "capvid:7"),
    ]


async def test_a_short_job_is_written_once_when_it_ends_and_a_long_one_shows_running(settings, pool, monkeypatch):
    monkeypatch.setattr(history, "OPEN_ROW_AFTER_SECONDS", 0.1)
    release = asyncio.Event()

    async def quick(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        assert runs(settings) == []  # nothing written while it runs
        return "COMPLETE"

    async def slow(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        await release.wait()
        return "COMPLETE"

    assert await recorded(quick)(job_ctx(pool), "v1", {"run": 1}) == "COMPLETE"
    [row] = runs(settings)
    assert (row["function"], row["outcome"]) == ("quick", "complete")
    assert row["started_at"] <= row["finished_at"]

    called = datetime.now(timezone.utc)
    task = asyncio.create_task(recorded(slow)(job_ctx(pool), "v2", {"run": 1}))
    while len(runs(settings)) < 2:
        await asyncio.sleep(0.01)
    running = runs(settings)[1]
    assert (running["function"], running["outcome"], running["finished_at"]) == ("slow", None, None)
    # Its start is when it was called, not when its row was written (OPEN_ROW_AFTER_SECONDS later).
    assert running["started_at"] - called < timedelta(seconds=0.05)
    release.set()
    assert await task == "COMPLETE"
    assert [(r["id"], r["outcome"]) for r in runs(settings)] == [(row["id"], "complete"), (running["id"], "complete")]


async def test_a_job_ending_in_its_transaction_writes_its_row_with_the_commit(settings, pool):
    seen_inside: list[list[dict[str, Any]]] = []

    async def ends_in_transaction(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        async with transaction(pool) as tx:
            await tx.execute("SELECT 1")
            await history.end_in(tx, "COMPLETE")
            seen_inside.append(runs(settings))  # deferred: nothing is written before the commit
        return "COMPLETE"

    assert await recorded(ends_in_transaction)(job_ctx(pool), "v1", {"run": 1}) == "COMPLETE"
    assert seen_inside == [[]]
    [row] = runs(settings)
    assert (row["function"], row["outcome"], row["detail"], row["run"]) == (
        "ends_in_transaction", "complete", "COMPLETE", 1
    )


async def test_a_job_whose_last_transaction_rolls_back_is_recorded_by_its_wrapper(settings, pool):
    async def rolls_back(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        async with transaction(pool) as tx:
            await history.end_in(tx, "COMPLETE")
            await tx.execute("SELECT 1 / 0")
        return "COMPLETE"

    with pytest.raises(DatabaseError):
        await recorded(rolls_back)(job_ctx(pool), "v1", {"run": 1})
    [row] = runs(settings)
    assert (row["function"], row["outcome"]) == ("rolls_back", "failed")
    assert row["detail"].startswith("DivisionByZero")


async def test_history_never_fails_the_job_when_postgres_is_away(settings, caplog, monkeypatch):
    monkeypatch.setattr(history, "OPEN_ROW_AFTER_SECONDS", 0.01)

    async def work(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
        await asyncio.sleep(0.2)  # long enough to open its running row
        return "COMPLETE"

    away = await aiopg.create_pool("postgresql://postgres@127.0.0.1:1/none", minsize=0, maxsize=1, timeout=2)
    try:
        with caplog.at_level(logging.WARNING, logger="capvid.history"):
            assert await recorded(work)(job_ctx(away), "v1", {"run": 1}) == "COMPLETE"
    finally:
        away.close()
        await away.wait_closed()
    assert "start of work capvid:7 not recorded" in caplog.text
    assert "end of work capvid:7 not recorded" in caplog.text


async def test_the_recovery_cron_purges_old_history(settings):
    await add_job_run(settings, job_id="old", outcome="complete")
    await write(settings, "UPDATE job_runs SET started_at = now() - interval '8 days' RETURNING id")
    await add_job_run(settings, job_id="recent", outcome="complete")
    redis = ArqRedis.from_url(settings.redis_url)
    # An engine that loads no model: this test only needs the cron.
    quick = settings.model_copy(update={"transcription_engine": "deepgram", "deepgram_api_key": SecretStr("unused")})
    ctx: dict[str, Any] = {"settings": quick, "redis": redis}
    await startup(ctx)
    try:
        counts = await recover_stuck(ctx)
    finally:
        await shutdown(ctx)
        await redis.aclose()
    assert counts["jobRuns"] == 1
    assert [r["job_id"] for r in runs(settings)] == ["recent"]
