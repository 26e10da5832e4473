"""Worker liveness (`capvid worker --check`) and arq's own tools reading capvid's jobs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from pydantic import SecretStr

from config import Settings
from service.ops.heartbeats import check_workers, worker_key, workers_key
from tests.helpers import drain, query, relay, relay_idle
from tests.pipeline.conftest import uploaded
from workers.settings import create_worker


async def worker_check(settings: Settings, cwd: Path) -> tuple[int, str]:
    """`capvid worker --check` as an operator (or a container health check) runs it."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "WORKER_HEALTH_SECONDS": str(settings.worker_health_seconds), "ARQ_QUEUE_NAME": settings.arq_queue_name}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "worker", "--check", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def wait_for_heartbeat(settings: Settings) -> None:
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        while not await redis.zcard(workers_key(settings.arq_queue_name)):
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def test_check_fails_without_a_worker_and_passes_while_one_runs(settings, tmp_path):
    code, output = await worker_check(settings, tmp_path)
    assert code == 1 and "no worker has reported" in output, output

    # A worker with an engine that loads no model, so it starts at once.
    quick = settings.model_copy(update={"transcription_engine": "deepgram", "deepgram_api_key": SecretStr("unused")})
    worker = create_worker(quick, handle_signals=False)
    running = asyncio.create_task(worker.main())
    try:
        await asyncio.wait_for(wait_for_heartbeat(settings), 30)
        code, output = await worker_check(settings, tmp_path)
        assert code == 0 and "1 worker(s) reported" in output, output
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()

    code, output = await worker_check(settings, tmp_path)  # a worker that stopped leaves at once
    assert code == 1, output


async def test_a_worker_that_stopped_reporting_is_not_healthy(settings):
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        queue = settings.arq_queue_name
        at = time.time() - (settings.worker_health_seconds + 5)
        await redis.set(worker_key(queue, "stuck:1"), json.dumps({"id": "stuck:1", "at": at, "interval": 10}))
        await redis.zadd(workers_key(queue), {"stuck:1": at})
        healthy, message = await check_workers(redis, queue, settings.worker_health_seconds)
        assert not healthy and "no worker has reported" in message
        await redis.set(worker_key(queue, "stuck:1"), json.dumps({"id": "stuck:1", "at": time.time(), "interval": 10}))
        healthy, message = await check_workers(redis, queue, settings.worker_health_seconds)
        assert healthy and "stuck:1" in message
    finally:
        await redis.aclose()


async def test_arq_s_own_job_api_reads_a_capvid_job(api, alice):
    video_id = await uploaded(api, alice, "corrupt.mp4")
    await relay(api.settings)  # handed to arq now, unless the app's own relay already did or is doing it
    await relay_idle(api.settings)
    [request] = query(api.settings, "SELECT id, sent_at FROM outbox WHERE video_id = %s", (video_id,))
    assert request["sent_at"] is not None
    redis = ArqRedis.from_url(api.settings.redis_url)
    try:
        job = Job(f"capvid:{request['id']}", redis, _queue_name=api.settings.arq_queue_name)
        assert await job.status() == JobStatus.queued
        info = await job.info()
        assert info is not None and info.function == "transcribe"
        assert info.args[0] == video_id and info.args[1]["run"] == 1
        json.dumps([info.args, info.kwargs])  # JSON-safe: any dashboard or language can read them

        await drain(api.settings)
        assert await job.status() == JobStatus.complete
        result: Any = await job.result_info()
        assert result.success and result.result == "ERROR (corrupt media)"
    finally:
        await redis.aclose()
