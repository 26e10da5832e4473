"""SQL of the ops API: job history, outbox backlog, stuck and failed videos, and the retry action."""

from __future__ import annotations

from typing import Any

from service.ai.queries import start_ai_run
from service.db import Row, Tx
from service.transcription.queries import request_transcription
from workers.recovery import AI, TRANSCRIPTION, Machine, stuck

# Which state machine a job function drives, and so what a retry of it starts again.
KIND_OF_FUNCTION = {"transcribe": "transcription", "generate_ai": "ai"}
FAILED_OUTCOMES = ("error", "failed")

JOB_COLUMNS = """
    j.id, j.job_id, j.function, j.video_id, j.run, j.attempt, j.try, j.worker, j.queued_at, j.started_at,
    j.finished_at, extract(epoch FROM j.finished_at - j.started_at)::float8 AS duration_seconds, j.outcome, j.detail,
    j.outcome IN ('error', 'failed') AND CASE j.function
        WHEN 'transcribe' THEN v.transcription_status = 'ERROR'
        WHEN 'generate_ai' THEN v.ai_status = 'ERROR' ELSE false END IS TRUE AS retryable
"""


async def outcomes_last_hour(tx: Tx) -> list[Row]:
    return await tx.fetchall(
        """
        SELECT function, outcome, count(*)::int AS count FROM job_runs
        WHERE finished_at > now() - interval '1 hour'
        GROUP BY function, outcome
        """
    )


async def outbox_backlog(tx: Tx) -> list[Row]:
    return await tx.fetchall(
        """
        SELECT function, count(*)::int AS count,
               extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
        FROM outbox WHERE sent_at IS NULL GROUP BY function
        """
    )


async def stuck_videos(tx: Tx, unclaimed_seconds: float, limit: int) -> tuple[int, list[Row]]:
    """Videos recovery would act on (the same condition), longest stuck first."""
    params = {"unclaimed": unclaimed_seconds, "limit": limit}
    count = await tx.fetchval(
        f"SELECT (SELECT count(*) FROM videos WHERE {stuck(TRANSCRIPTION)})"
        f" + (SELECT count(*) FROM videos WHERE {stuck(AI)})",
        params,
    )
    rows = await tx.fetchall(
        f"""
        ({_stuck_select(TRANSCRIPTION)}) UNION ALL ({_stuck_select(AI)})
        ORDER BY heartbeat_at NULLS FIRST, video_id LIMIT %(limit)s
        """,
        params,
    )
    return int(count), rows


def _stuck_select(machine: Machine) -> str:
    p = machine.prefix
    return f"""
        SELECT id AS video_id, '{p}' AS kind, {p}_status AS status, {p}_run AS run, {p}_attempt AS attempt,
               CASE WHEN {p}_lease_until IS NULL THEN 'never claimed' ELSE 'lease expired' END AS reason,
               {p}_heartbeat_at AS heartbeat_at, {p}_lease_until AS lease_until, {p}_error AS error,
               extract(epoch FROM now() - {p}_heartbeat_at)::float8 AS stuck_seconds
        FROM videos WHERE {stuck(machine)}
        ORDER BY {p}_heartbeat_at NULLS FIRST LIMIT %(limit)s
    """


async def errored_videos(tx: Tx, limit: int) -> tuple[int, list[Row]]:
    """Videos whose transcription or AI generation is in ERROR now, most recently changed first."""
    count = await tx.fetchval(
        "SELECT (SELECT count(*) FROM videos WHERE transcription_status = 'ERROR')"
        " + (SELECT count(*) FROM videos WHERE ai_status = 'ERROR')"
    )
    rows = await tx.fetchall(
        """
        (SELECT id AS video_id, 'transcription' AS kind, transcription_run AS run,
                transcription_attempt AS attempt, transcription_error AS error, updated_at
         FROM videos WHERE transcription_status = 'ERROR' ORDER BY updated_at DESC LIMIT %(limit)s)
        UNION ALL
        (SELECT id, 'ai', ai_run, ai_attempt, ai_error, updated_at
         FROM videos WHERE ai_status = 'ERROR' ORDER BY updated_at DESC LIMIT %(limit)s)
        ORDER BY updated_at DESC, video_id LIMIT %(limit)s
        """,
        {"limit": limit},
    )
    return int(count), rows


async def job_runs(
    tx: Tx,
    limit: int,
    before_id: int | None = None,
    state: str | None = None,
    function: str | None = None,
    video_id: str | None = None,
) -> list[Row]:
    """Job history, newest first, a page at a time (`before_id`: the previous page's last id)."""
    where = ["true"]
    params: dict[str, Any] = {"limit": limit}
    if before_id is not None:
        where.append("j.id < %(before_id)s")
        params["before_id"] = before_id
    if state == "running":
        where.append("j.outcome IS NULL")
    elif state == "failed":
        where.append("j.outcome IN %(failed)s")
        params["failed"] = FAILED_OUTCOMES
    elif state is not None:
        where.append("j.outcome = %(state)s")
        params["state"] = state
    if function is not None:
        where.append("j.function = %(function)s")
        params["function"] = function
    if video_id is not None:
        where.append("j.video_id = %(video_id)s")
        params["video_id"] = video_id
    return await tx.fetchall(
        f"""
        SELECT {JOB_COLUMNS} FROM job_runs j LEFT JOIN videos v ON v.id = j.video_id
        WHERE {' AND '.join(where)}
        ORDER BY j.id DESC LIMIT %(limit)s
        """,
        params,
    )


class NotRetryable(Exception):
    """The video is not in a state a retry can start from (the message says why)."""


async def retry_video(tx: Tx, video_id: str, kind: str, ai_enabled: bool) -> Row | None:
    """Start a new run of a video's failed transcription or AI generation, with its job request, in
    the caller's transaction. None: no such video. Raises NotRetryable unless it is in ERROR."""
    video = await tx.fetchone("SELECT * FROM videos WHERE id = %s FOR UPDATE", (video_id,))
    if video is None:
        return None
    if kind == "transcription":
        _require_error("transcription", video["transcription_status"])
        if video["media_key"] is None:
            raise NotRetryable("the video has no uploaded media to transcribe")
        status = await request_transcription(tx, video, force=False)
    else:
        _require_error("AI generation", video["ai_status"])
        if video["transcription_status"] != "COMPLETE":
            raise NotRetryable("the transcript is not COMPLETE")
        if not ai_enabled:
            raise NotRetryable("AI generation is disabled on this server")
        status = await start_ai_run(tx, video_id, video["owner_id"], None)
    column = "transcription_run" if kind == "transcription" else "ai_run"
    run = await tx.fetchval(f"SELECT {column} FROM videos WHERE id = %s", (video_id,))
    return {"video_id": video_id, "kind": kind, "status": status, "run": run}


def _require_error(what: str, status: str | None) -> None:
    if status != "ERROR":
        raise NotRetryable(f"{what} is {status or 'not started'}, not ERROR")
