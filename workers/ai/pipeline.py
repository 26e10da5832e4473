"""One AI generation attempt: claim, read the transcript, generate with heartbeats, complete."""

from __future__ import annotations

import asyncio
import logging

from arq import Retry

from service.db import connection, transaction
from service.events.progress import report_progress
from service.storage import transcript_key
from workers.ai import queries as q
from workers.ai.engines import AIResult, TransientAIError
from workers.deps import Deps
from workers.history import end_in
from workers.leases import LeaseLost, run_with_heartbeat
from workers.transcription import vtt

log = logging.getLogger("capvid.ai")
CHAPTERS_MIN_DURATION = 120.0  # as Cap: no chapters for videos under two minutes
# The steps an attempt reports (`event: progress`, kind "ai"), with the fraction done when each starts.
STEPS = {"reading the transcript": 0.1, "generating": 0.2, "saving": 0.9}


async def run_ai_generation(deps: Deps, video_id: str, run: int) -> str:
    settings = deps.settings
    async with transaction(deps.pool) as tx:
        row = await q.claim(tx, video_id, run, settings.lease_seconds)
    if row is None:
        return "not claimable: deleted, finished, superseded or held by a live attempt"
    attempt, counted = int(row["attempt"]), int(row["counted"])  # counted: less stopping workers' hand-backs
    if counted > settings.ai_max_attempts:
        async with transaction(deps.pool) as tx:
            await q.fail(tx, video_id, run, attempt, f"gave up after {settings.ai_max_attempts} attempts: {row['last_error']}")
        return "ERROR (attempts used up)"

    async def beat() -> bool:
        async with connection(deps.pool) as tx:
            return await q.heartbeat(tx, video_id, run, attempt, settings.lease_seconds)

    try:
        await report_step(deps, video_id, run, attempt, "reading the transcript")
        document = await deps.storage_for(row["source"]).get_bytes(transcript_key(row["owner_id"], video_id))
        if document is None:
            raise FileNotFoundError("the transcript is missing from storage")
        cues = vtt.parse(document.decode())
        duration = row["duration"] or (cues[-1].end if cues else 0.0)
        await report_step(deps, video_id, run, attempt, "generating")
        result = await run_with_heartbeat(deps.ai_engine.generate(cues, duration), beat, settings.lease_seconds / 3)
    except LeaseLost:
        return "lease lost: another attempt or a delete took over"
    except asyncio.CancelledError:
        # Worker shutting down: hand the claim back so the re-queued job can take it at once.
        # Free only when the worker is stopping: a job timeout is cancelled the same way and must count.
        await asyncio.shield(_release(deps, video_id, run, attempt, deps.stopping))
        raise
    except (TransientAIError, OSError, ConnectionError) as exc:
        return await retry_or_fail(deps, video_id, run, attempt, counted, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.exception("AI generation of %s failed", video_id)
        async with transaction(deps.pool) as tx:
            await q.fail(tx, video_id, run, attempt, f"{type(exc).__name__}: {exc}")
        return "ERROR"
    return await finish(deps, video_id, run, attempt, result, duration)


async def report_step(deps: Deps, video_id: str, run: int, attempt: int, step: str) -> None:
    try:
        async with connection(deps.pool) as tx:
            await report_progress(tx, "ai", video_id, run, attempt, STEPS[step], step)
    except Exception as exc:
        log.warning("AI progress of %s not reported: %s", video_id, exc)  # news, not state: carry on


async def _release(deps: Deps, video_id: str, run: int, attempt: int, handed_back: bool) -> None:
    async with transaction(deps.pool) as tx:
        await q.release_for_retry(
            tx, video_id, run, attempt, "interrupted: the worker stopped during the attempt", handed_back
        )


async def retry_or_fail(deps: Deps, video_id: str, run: int, attempt: int, counted: int, reason: str) -> str:
    settings = deps.settings
    async with transaction(deps.pool) as tx:
        if counted >= settings.ai_max_attempts:
            await q.fail(tx, video_id, run, attempt, f"failed after {counted} attempts: {reason}")
            return "ERROR (attempts used up)"
        released = await q.release_for_retry(tx, video_id, run, attempt, reason)
    if not released:
        return "lease lost while failing"
    raise Retry(defer=settings.retry_backoff_seconds * 2 ** (attempt - 1))


async def finish(deps: Deps, video_id: str, run: int, attempt: int, result: AIResult, duration: float) -> str:
    chapters = clean_chapters(result, duration)
    await report_step(deps, video_id, run, attempt, "saving")
    async with transaction(deps.pool) as tx:
        written = await q.complete(tx, video_id, run, attempt, result.title, result.summary, chapters)
        if written:
            await end_in(tx, "COMPLETE")
    return "COMPLETE" if written else "superseded or deleted before completion: nothing written"


def clean_chapters(result: AIResult, duration: float) -> list[dict[str, object]]:
    """Whatever the engine said: ascending, distinct, inside the video, the first at 0."""
    if duration < CHAPTERS_MIN_DURATION:
        return []
    chapters: list[dict[str, object]] = []
    seen: set[float] = set()
    for chapter in sorted(result.chapters, key=lambda c: c.start):
        start = round(chapter.start, 3)
        if start >= duration or start in seen:
            continue
        seen.add(start)
        chapters.append({"title": chapter.title, "start": start})
    if chapters:
        chapters[0]["start"] = 0.0
    return chapters
