"""GET /api/ops/queue against a known state: jobs in Redis, history, outbox, workers, stuck and failed videos."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from arq.connections import ArqRedis

from config import Settings
from service.app import create_app, relay_ctx
from service.ops.heartbeats import HeartbeatReporter, worker_key, workers_key
from tests.helpers import write
from tests.ops.conftest import add_job_run, add_video, get_json

QUEUE = "arq:queue"


@pytest.fixture
async def quiet_client(aiohttp_client: Any, settings: Settings) -> Any:
    """The app without its outbox relay, so the outbox keeps exactly what a test puts in it."""
    app = create_app(settings)
    app.cleanup_ctx.remove(relay_ctx)
    return await aiohttp_client(app)


@pytest.fixture
async def redis(settings: Settings) -> Any:
    client = ArqRedis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def fill_queue(redis: ArqRedis) -> None:
    now = datetime.now(timezone.utc)
    await redis.enqueue_job("transcribe", "v1", {"run": 1}, _job_id="capvid:101")
    await redis.enqueue_job("transcribe", "v2", {"run": 1}, _job_id="capvid:102", _defer_by=3600)
    await redis.enqueue_job("generate_ai", "v3", {"run": 1}, _job_id="capvid:103")
    await redis.set("arq:in-progress:capvid:103", b"1")  # a worker is running it
    due_long_ago = now - timedelta(minutes=2)
    await redis.enqueue_job("transcribe", "v4", {"run": 2}, _job_id="capvid:104", _defer_until=due_long_ago)
    await redis.zadd(QUEUE, {"lost-job": 1})  # its job data expired: arq will drop it


async def report_workers(redis: ArqRedis) -> None:
    await HeartbeatReporter(QUEUE, 10, worker_id="alive:1").maybe_report(redis, {"jobsRunning": 1, "jobsComplete": 7})
    late = {"id": "late:2", "hostname": "late", "pid": 2, "startedAt": time.time() - 600, "at": time.time() - 25,
            "interval": 10, "version": "0.1.0"}
    await redis.set(worker_key(QUEUE, "late:2"), json.dumps(late))
    await redis.zadd(workers_key(QUEUE), {"late:2": late["at"]})
    await redis.set(f"{QUEUE}:health-check", b"Jan-01 00:00:00 j_complete=7 j_failed=0", px=11_000)


async def fill_postgres(settings: Settings) -> None:
    await add_video(settings, "alice@example.com", id="failed-video", transcription_status="ERROR", transcription_run=1,
                    transcription_attempt=1, transcription_error="unreadable media: bad header", media_key="k")
    await add_video(settings, "alice@example.com", id="dead-claim", transcription_status="PROCESSING",
                    transcription_run=1, transcription_attempt=1,
                    transcription_lease_until=datetime.now(timezone.utc) - timedelta(seconds=5),
                    transcription_heartbeat_at=datetime.now(timezone.utc) - timedelta(seconds=65))
    await add_video(settings, "alice@example.com", id="lost-ai-job", transcription_status="COMPLETE",
                    ai_status="QUEUED", ai_run=1, ai_heartbeat_at=datetime.now(timezone.utc) - timedelta(hours=1))
    await add_video(settings, "alice@example.com", id="working", transcription_status="PROCESSING",
                    transcription_run=1, transcription_attempt=1,
                    transcription_lease_until=datetime.now(timezone.utc) + timedelta(minutes=1),
                    transcription_heartbeat_at=datetime.now(timezone.utc))
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    await add_job_run(settings, function="transcribe", video_id="failed-video", run=1, attempt=1, outcome="error",
                      detail="ERROR (corrupt media): unreadable media: bad header",
                      finished_at=datetime.now(timezone.utc))
    await add_job_run(settings, function="generate_ai", video_id="x", outcome="complete", detail="COMPLETE",
                      finished_at=datetime.now(timezone.utc))
    await add_job_run(settings, function="transcribe", video_id="gone", outcome="failed", detail="ValueError: old",
                      started_at=hour_ago, finished_at=hour_ago)
    await add_job_run(settings, function="cleanup_storage", video_id="y")  # running
    requests = [("transcribe", False), ("transcribe", False), ("cleanup_storage", False), ("transcribe", True)]
    for function, sent in requests:
        await write(
            settings,
            "INSERT INTO outbox (function, video_id, created_at, sent_at)"
            " VALUES (%s, 'v', now() - interval '30 seconds', CASE WHEN %s THEN now() END) RETURNING id",
            (function, sent),
        )


async def test_queue_figures_match_the_state(quiet_client, settings, redis, admin, alice):
    await fill_queue(redis)
    await report_workers(redis)
    await fill_postgres(settings)

    data = await get_json(quiet_client, "/api/ops/queue", admin)

    assert data["redis"] | {"healthCheck": None} == {
        "available": True, "error": None, "queueName": QUEUE, "total": 5, "queued": 3, "deferred": 1,
        "inProgress": 1, "sampled": False, "healthCheck": None,
    }
    assert data["redis"]["healthCheck"]["value"].endswith("j_complete=7 j_failed=0")
    functions = {f["function"]: f for f in data["functions"]}
    transcribe = functions["transcribe"]
    assert (transcribe["queued"], transcribe["deferred"], transcribe["inProgress"]) == (2, 1, 0)
    assert 115 < transcribe["oldestQueuedSeconds"] < 600  # v4 has been due for two minutes
    assert (transcribe["completedLastHour"], transcribe["failedLastHour"]) == (0, 1)  # the old failure is not counted
    assert transcribe["outcomesLastHour"] == {"error": 1}
    ai = functions["generate_ai"]
    assert (ai["queued"], ai["deferred"], ai["inProgress"], ai["oldestQueuedSeconds"]) == (0, 0, 1, None)
    assert (ai["completedLastHour"], ai["failedLastHour"]) == (1, 0)
    assert functions["(expired)"]["queued"] == 1
    assert functions["cleanup_storage"]["queued"] == 0  # known functions are listed even when idle

    assert data["outbox"]["unsent"] == 3
    assert data["outbox"]["byFunction"] == {"transcribe": 2, "cleanup_storage": 1}
    assert 29 < data["outbox"]["oldestSeconds"] < 600

    workers = {w["id"]: w for w in data["workers"]}
    assert set(workers) == {"alive:1", "late:2"}
    assert workers["alive:1"]["healthy"] is True and workers["alive:1"]["jobsRunning"] == 1
    assert workers["alive:1"]["jobsComplete"] == 7 and workers["alive:1"]["version"]
    assert workers["late:2"]["healthy"] is False and workers["late:2"]["ageSeconds"] >= 25
    assert data["workerHealthSeconds"] == settings.worker_health_seconds

    stuck = {(v["videoId"], v["kind"]): v for v in data["stuck"]["videos"]}
    assert data["stuck"]["count"] == 2 and set(stuck) == {("dead-claim", "transcription"), ("lost-ai-job", "ai")}
    assert stuck[("dead-claim", "transcription")]["reason"] == "lease expired"
    assert stuck[("lost-ai-job", "ai")]["reason"] == "never claimed"
    assert stuck[("lost-ai-job", "ai")]["stuckSeconds"] >= 3600
    assert data["stuck"]["videos"][0]["videoId"] == "lost-ai-job"  # the longest stuck first

    assert data["errored"]["count"] == 1
    assert [(v["videoId"], v["kind"], v["error"]) for v in data["errored"]["videos"]] == [
        ("failed-video", "transcription", "unreadable media: bad header")
    ]

    failures = data["failures"]
    assert [(f["videoId"], f["outcome"]) for f in failures] == [("gone", "failed"), ("failed-video", "error")]
    latest = failures[1]
    assert latest["kind"] == "transcription" and latest["retryable"] is True
    assert latest["detail"] == "ERROR (corrupt media): unreadable media: bad header"
    assert failures[0]["retryable"] is False  # its video is gone


async def test_figures_are_bounded_to_a_sample(quiet_client, redis, admin, monkeypatch):
    monkeypatch.setattr("service.ops.queue.SAMPLE", 3)
    for n in range(5):
        await redis.enqueue_job("transcribe", f"v{n}", {"run": 1}, _job_id=f"capvid:{n}")
    data = await get_json(quiet_client, "/api/ops/queue", admin)
    assert data["redis"]["total"] == 5 and data["redis"]["queued"] == 5  # totals stay exact
    assert data["redis"]["sampled"] is True
    assert {f["function"]: f["queued"] for f in data["functions"]}["transcribe"] == 3


async def test_without_redis_the_postgres_parts_still_answer(aiohttp_client, settings, admin, alice):
    await fill_postgres(settings)
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    client = await aiohttp_client(create_app(dead))

    data = await get_json(client, "/api/ops/queue", admin)

    assert data["redis"]["available"] is False and data["redis"]["error"]
    assert data["redis"]["total"] is None and data["workers"] is None
    transcribe = {f["function"]: f for f in data["functions"]}["transcribe"]
    assert transcribe["queued"] is None and transcribe["failedLastHour"] == 1
    assert data["outbox"]["unsent"] >= 3  # the app's relay cannot hand them over either
    assert data["stuck"]["count"] == 2 and data["errored"]["count"] == 1
    assert len(data["failures"]) == 2
