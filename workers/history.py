"""Job history: every execution of a job function, recorded in Postgres (`job_runs`).

arq forgets a job once its result expires (`keep_result`) and keeps no reason for a
failure that our pipelines handled themselves (a video set to ERROR is a successful return).
`recorded(fn)` wraps a job function: one row with its outcome, the video's attempt and the
reason when it ends; a job still running after OPEN_ROW_AFTER_SECONDS gets its row then
(outcome NULL while it runs), so ops see long jobs running while short ones cost a single
write. A history write of its own is best effort: one that fails or takes too long is logged and
the job goes on. A pipeline that completes its video finishes the row inside that transaction
(`end_in`): the row then commits, or rolls back, with the completion it records.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiopg
from arq import Retry

from service.db import Prepared, Tx, connection
from service.ops.heartbeats import this_worker_id
from workers.outcome import Outcome, outcome_of_exception, outcome_of_result

log = logging.getLogger("capvid.history")

JobFn = Callable[..., Awaitable[Any]]
# A history write waits at most this long (Postgres away): the job matters more than its record.
WRITE_TIMEOUT_SECONDS = 5.0
# A job still running after this long gets its history row (outcome NULL) before it ends.
OPEN_ROW_AFTER_SECONDS = 1.0
PURGE_BATCH = 10_000
DETAIL_CHARS = 2000
# The history row of the job running in this task (set by `recorded`, read by `end_in`).
_current_row: ContextVar["_RunningRow | None"] = ContextVar("capvid_job_history_row", default=None)

# Where a finished job's attempt number and failure reason live, by function.
_STATE_OF_JOB = {
    "transcribe": "SELECT transcription_attempt AS attempt, transcription_error AS error FROM videos "
    "WHERE id = %(video_id)s AND transcription_run = %(run)s",
    "generate_ai": "SELECT ai_attempt AS attempt, ai_error AS error FROM videos "
    "WHERE id = %(video_id)s AND ai_run = %(run)s",
    "cleanup_storage": "SELECT attempts AS attempt, last_error AS error FROM storage_cleanups "
    "WHERE id = %(cleanup_id)s",
    "deliver_webhook": "SELECT attempts AS attempt, last_error AS error FROM webhook_deliveries "
    "WHERE id = %(delivery_id)s",
}
_NO_STATE = "SELECT NULL::integer AS attempt, NULL::text AS error WHERE false"

INSERT_RUN = """
INSERT INTO job_runs (job_id, function, video_id, run, try, worker, queued_at, started_at)
VALUES (%(job_id)s, %(function)s, %(video_id)s, %(run)s, %(try)s, %(worker)s, %(queued_at)s, %(called_at)s)
RETURNING id, started_at
"""

# The job's own state is read in the same statement: outcomes that failed take its reason.
FINISH_RUN = """
WITH state AS ({state}), done AS (
    SELECT (SELECT attempt FROM state) AS attempt,
           CASE WHEN %(with_reason)s::boolean AND (SELECT error FROM state) IS NOT NULL
                THEN %(detail)s::text || ': ' || (SELECT error FROM state) ELSE %(detail)s::text END AS detail
)
{write}
"""
# clock_timestamp(), not now(): a row finished inside the job's last transaction (end_in) ends when
# that transaction does, not when it began.
UPDATE_RUN = """
UPDATE job_runs SET finished_at = clock_timestamp(), outcome = %(outcome)s, attempt = done.attempt,
                    detail = done.detail
FROM done WHERE job_runs.id = %(id)s
"""
INSERT_FINISHED_RUN = """
INSERT INTO job_runs (job_id, function, video_id, run, try, worker, queued_at, started_at, finished_at, outcome,
                      attempt, detail)
SELECT %(job_id)s, %(function)s, %(video_id)s, %(run)s, %(try)s, %(worker)s, %(queued_at)s, %(started_at)s,
       clock_timestamp(), %(outcome)s, done.attempt, done.detail
FROM done
"""


@dataclass
class Execution:
    """One call of a job function, as recorded."""

    function: str
    job_id: str
    job_try: int
    queued_at: datetime | None
    video_id: str | None
    run: int | None
    cleanup_id: int | None
    delivery_id: int | None
    called_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_at: datetime | None = None
    row_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "function": self.function,
            "video_id": self.video_id,
            "run": self.run,
            "cleanup_id": self.cleanup_id,
            "delivery_id": self.delivery_id,
            "try": self.job_try,
            "worker": this_worker_id(),
            "queued_at": self.queued_at,
            "called_at": self.called_at,
            "started_at": self.started_at,
        }


def execution_of(function: str, ctx: dict[str, Any], args: tuple[Any, ...]) -> Execution:
    """What a call is about, from arq's ctx and our JSON-safe arguments `(video_id, {"run": n})`."""
    video_id = args[0] if args and isinstance(args[0], str) else None
    extra = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    return Execution(
        function=function,
        job_id=str(ctx.get("job_id", "")),
        job_try=int(ctx.get("job_try") or 1),
        queued_at=ctx.get("enqueue_time"),
        video_id=video_id,
        run=_int(extra.get("run")),
        cleanup_id=_int(extra.get("cleanupId")),
        delivery_id=_int(extra.get("deliveryId")),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, Retry):
        return f"retrying in {(exc.defer_score or 0) / 1000:g}s"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled: the worker stopped or the job timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def recorded(fn: JobFn, name: str | None = None) -> JobFn:
    """Wrap a job function `fn(ctx, *args)` so each execution is recorded in `job_runs`."""
    function = name or fn.__name__

    @functools.wraps(fn)
    async def job(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        pool = _pool(ctx)
        if pool is None:
            return await fn(ctx, *args, **kwargs)
        execution = execution_of(function, ctx, args)
        row = _RunningRow(pool, execution)
        token = _current_row.set(row)
        try:
            result = await fn(ctx, *args, **kwargs)
        except BaseException as exc:
            # Shielded: a cancelled job (worker stopping) still gets its row finished.
            await asyncio.shield(row.close(outcome_of_exception(exc), describe_exception(exc)))
            raise
        finally:
            _current_row.reset(token)
        detail = "" if result is None else str(result)
        if row.ended_with != detail:  # not already finished in the job's last transaction (end_in)
            await asyncio.shield(row.close(outcome_of_result(result), detail))
        return result

    return job


def _pool(ctx: dict[str, Any]) -> aiopg.Pool | None:
    deps = ctx.get("deps")
    return getattr(deps, "pool", None)


async def end_in(tx: Tx, result: str) -> None:
    """Finish the running job's history row inside `tx`, the transaction that ends its work, with
    `result`, what the job is about to return: the record commits with the transition it records
    and costs no round trip of its own. Without a row that can be finished here (no history, or a
    running row still being opened), the job's wrapper writes it when the job returns, as usual."""
    row = _current_row.get()
    if row is None or not row.can_end_in_transaction():
        return
    row.timer.cancel()  # a running row opened now would never be closed
    await tx.defer(*_finish_statement(row.execution, outcome_of_result(result), result))
    tx.after_commit(functools.partial(setattr, row, "ended_with", result))


class _RunningRow:
    """The job's `job_runs` row: opened (outcome NULL) if the job is still running after
    OPEN_ROW_AFTER_SECONDS, and closed with its outcome when it ends."""

    def __init__(self, pool: aiopg.Pool, execution: Execution) -> None:
        self.pool = pool
        self.execution = execution
        self.opening: asyncio.Task[None] | None = None
        self.ended_with: str | None = None  # the result its row was finished with by end_in
        self.timer = asyncio.get_running_loop().call_later(OPEN_ROW_AFTER_SECONDS, self._open)

    def _open(self) -> None:
        self.opening = asyncio.create_task(_started(self.pool, self.execution))

    def can_end_in_transaction(self) -> bool:
        return self.opening is None or self.opening.done()

    async def close(self, outcome: Outcome, detail: str) -> None:
        # A row being opened is waited for (closing it must update it, not add a second one);
        # one not due yet is never opened: the finished row is written in one go.
        self.timer.cancel()
        if self.opening is not None:
            await self.opening
        await _finished(self.pool, self.execution, outcome, detail)


async def _started(pool: aiopg.Pool, execution: Execution) -> None:
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
            async with connection(pool) as tx:
                row = await tx.fetchone(INSERT_RUN, execution.params())
    except Exception as exc:
        log.warning("job history: start of %s %s not recorded: %s", execution.function, execution.job_id, exc)
        return
    if row is not None:
        execution.row_id, execution.started_at = row["id"], row["started_at"]


async def _finished(pool: aiopg.Pool, execution: Execution, outcome: Outcome, detail: str) -> None:
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
            async with connection(pool) as tx:
                await tx.execute(*_finish_statement(execution, outcome, detail))
    except Exception as exc:
        log.warning("job history: end of %s %s not recorded: %s", execution.function, execution.job_id, exc)


@functools.cache
def _finish_run(function: str, running_row: bool) -> Prepared:
    """The row's end: an update of its running row, or the whole row at once (the job's state read
    from where `function` keeps it). Every job ends with one: prepared, once per connection."""
    name = f"finish_job_run_{function if function in _STATE_OF_JOB else 'stateless'}_{int(running_row)}"
    write = UPDATE_RUN if running_row else INSERT_FINISHED_RUN
    return Prepared(name, FINISH_RUN.format(state=_STATE_OF_JOB.get(function, _NO_STATE), write=write))


def _finish_statement(execution: Execution, outcome: Outcome, detail: str) -> tuple[Prepared, dict[str, Any]]:
    params = {
        **execution.params(),
        "id": execution.row_id,
        "outcome": outcome,
        # Postgres text refuses NUL; an exception's text can be any size.
        "detail": detail.replace("\x00", "")[:DETAIL_CHARS],
        # The job's recorded reason explains a final error or a retry; an exception speaks for itself.
        "with_reason": outcome in ("error", "retry"),
    }
    if params["started_at"] is None:
        params["started_at"] = execution.called_at
    return _finish_run(execution.function, execution.row_id is not None), params


async def purge_history(pool: aiopg.Pool, days: float) -> int:
    """Delete job history older than `days`, in bounded batches; returns how many rows went."""
    total = 0
    while True:
        async with connection(pool) as tx:
            deleted = await tx.execute(
                """
                DELETE FROM job_runs WHERE id IN (
                    SELECT id FROM job_runs WHERE started_at < now() - %s * interval '1 day' ORDER BY id LIMIT %s)
                """,
                (days, PURGE_BATCH),
            )
        total += deleted
        if deleted < PURGE_BATCH:
            return total
