"""Pydantic models of the ops API (camelCase JSON, documented in /api/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from service.models import CamelModel, QueryModel, VideoId

Kind = Literal["transcription", "ai"]
Outcome = Literal["complete", "error", "skipped", "retry", "cancelled", "failed"]
# `failed`: every final failure (a video set to ERROR, or an exception); `running`: not finished yet.
JobState = Literal["running", "failed", "complete", "error", "skipped", "retry", "cancelled"]


class QueueQuery(QueryModel):
    failures: int = Field(20, ge=1, le=100, description="how many recent failures, stuck and errored videos to list")


class JobsQuery(QueryModel):
    state: JobState | None = Field(None, description="only runs in this state (`failed`: outcome error or failed)")
    function: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    video_id: VideoId | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,18}$", description="`nextCursor` of the previous page")


class RetryQuery(QueryModel):
    video_id: VideoId
    kind: Kind = Field(description="which state machine to start again")


class FunctionFigures(CamelModel):
    function: str
    queued: int | None = Field(None, description="due and waiting for a worker (null: Redis unavailable)")
    deferred: int | None = Field(None, description="waiting for a later time (retries with backoff)")
    in_progress: int | None = None
    oldest_queued_seconds: float | None = Field(None, description="longest wait of a queued job since it was due")
    completed_last_hour: int = Field(description="finished as complete or skipped in the last hour")
    failed_last_hour: int = Field(description="finished as error or failed in the last hour")
    outcomes_last_hour: dict[str, int] = Field(default_factory=dict)


class ArqHealth(CamelModel):
    key: str
    value: str
    ttl_seconds: float | None = None


class RedisFigures(CamelModel):
    available: bool
    error: str | None = None
    queue_name: str
    total: int | None = None
    queued: int | None = None
    deferred: int | None = None
    in_progress: int | None = None
    sampled: bool = Field(False, description="more jobs than were read: per-function figures cover a sample")
    health_check: ArqHealth | None = Field(None, description="arq's own health-check key")


class OutboxFigures(CamelModel):
    unsent: int
    oldest_seconds: float | None = None
    by_function: dict[str, int] = Field(default_factory=dict)


class WorkerOut(CamelModel):
    id: str
    hostname: str | None = None
    pid: int | None = None
    started_at: datetime | None = None
    last_seen_at: datetime | None = None
    age_seconds: float
    healthy: bool
    jobs_running: int | None = None
    jobs_complete: int | None = None
    jobs_failed: int | None = None
    jobs_retried: int | None = None
    version: str | None = None


class StuckVideo(CamelModel):
    video_id: str
    kind: Kind
    status: str
    run: int
    attempt: int
    reason: Literal["lease expired", "never claimed"]
    heartbeat_at: datetime | None = None
    lease_until: datetime | None = None
    stuck_seconds: float | None = None
    error: str | None = None


class StuckVideos(CamelModel):
    count: int
    videos: list[StuckVideo]


class ErroredVideo(CamelModel):
    video_id: str
    kind: Kind
    run: int
    attempt: int
    error: str | None = None
    updated_at: datetime


class ErroredVideos(CamelModel):
    count: int
    videos: list[ErroredVideo]


class JobRun(CamelModel):
    id: int
    job_id: str
    function: str
    video_id: str | None = None
    run: int | None = None
    attempt: int | None = None
    try_: int = Field(alias="try")
    worker: str
    queued_at: datetime | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    outcome: Outcome | None = None
    detail: str | None = None
    kind: Kind | None = Field(None, description="the state machine a retry of this job starts again")
    retryable: bool = Field(False, description="the video is in ERROR now: POST /api/ops/retry would start it again")


class JobPage(CamelModel):
    jobs: list[JobRun]
    next_cursor: str | None


class QueueOut(CamelModel):
    generated_at: datetime
    redis: RedisFigures
    functions: list[FunctionFigures]
    outbox: OutboxFigures
    workers: list[WorkerOut] | None = Field(description="workers that reported lately (null: Redis unavailable)")
    worker_health_seconds: int
    stuck: StuckVideos
    errored: ErroredVideos
    failures: list[JobRun]


class RetryOut(CamelModel):
    video_id: str
    kind: Kind
    status: str
    run: int


class RequeueOut(CamelModel):
    transcriptions: int = Field(
        description="stuck transcriptions requested again, or set to ERROR on their last attempt"
    )
    ai: int = Field(description="stuck AI generations requested again, or set to ERROR on their last attempt")
    cleanups: int = Field(description="unfinished storage cleanups requested again")
    webhook_deliveries: int = Field(0, description="webhook deliveries whose job was lost, requested again")
