"""One transcription attempt: claim, transcribe with heartbeats, write the VTT, complete."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from arq import Retry

from config import Settings
from service.ai.queries import announce_ai_run
from service.db import connection, transaction
from service.events import record_event
from service.events.progress import report_progress
from service.storage import StorageUnavailable, transcript_key
from workers.deps import Deps
from workers.history import end_in
from workers.leases import LeaseLost, report_while, run_with_heartbeat
from workers.metrics import observe_real_time_factor
from workers.transcription import queries as q
from workers.transcription import vtt
from workers.transcription.engines import CorruptMedia, Transcript

log = logging.getLogger("capvid.transcription")
PROGRESS_SECONDS = 1.0  # progress is reported at most this often, and only when it moved


@dataclass
class Attempt:
    video_id: str
    run: int
    number: int
    owner_id: int
    source: str
    media_key: str
    counted: int  # attempts that count towards the limit: `number` less the hand-backs of stopping workers


class Progress:
    """The latest fraction reported by the engine (from its thread), read by the heartbeat."""

    def __init__(self) -> None:
        self.value = 0.0
        self.reported = 0.0  # the run's request stored 0

    def __call__(self, fraction: float) -> None:
        self.value = min(1.0, max(self.value, fraction))

    def unreported(self) -> float | None:
        value = round(self.value, 3)
        return None if value == self.reported else value


async def run_transcription(deps: Deps, video_id: str, run: int) -> str:
    settings = deps.settings
    # Single statements run autocommit: a BEGIN/COMMIT around them would only add round trips.
    async with connection(deps.pool) as tx:
        row = await q.claim(tx, video_id, run, settings.lease_seconds, deps.engine.name)
    if row is None:
        return "not claimable: deleted, finished, superseded or held by a live attempt"
    attempt = Attempt(
        video_id, run, row["attempt"], row["owner_id"], row["source"], row["media_key"], row["counted"]
    )
    if attempt.counted > settings.transcription_max_attempts:
        reason = f"gave up after {settings.transcription_max_attempts} attempts: {row['last_error'] or 'unknown error'}"
        async with transaction(deps.pool) as tx:
            await q.fail(tx, video_id, run, attempt.number, reason)
        return "ERROR (attempts used up)"
    try:
        transcript = await transcribe_media(deps, attempt)
    except LeaseLost:
        return "lease lost: another attempt or a delete took over"
    except asyncio.CancelledError:
        # Worker shutting down (arq re-queues the job): hand the claim back so the next
        # delivery can take it at once instead of waiting for the lease to run out.
        # Only a stopping worker's hand-back is free: a job timeout is cancelled the same way, and
        # must count, or media that always times out would be retried forever.
        await asyncio.shield(_release(deps, attempt, "interrupted: the worker stopped during the attempt", deps.stopping))
        raise
    except CorruptMedia as exc:
        async with transaction(deps.pool) as tx:
            await q.fail(tx, video_id, run, attempt.number, f"unreadable media: {exc}")
        return "ERROR (corrupt media)"
    except FileNotFoundError:
        async with transaction(deps.pool) as tx:
            await q.fail(tx, video_id, run, attempt.number, "the uploaded media is missing from storage")
        return "ERROR (media missing)"
    except Exception as exc:
        return await retry_or_fail(deps, attempt, exc)
    return await finish(deps, attempt, transcript)


async def transcribe_media(deps: Deps, attempt: Attempt) -> Transcript:
    progress = Progress()
    settings = deps.settings

    async def beat() -> bool:
        async with connection(deps.pool) as tx:
            return await q.heartbeat(
                tx, attempt.video_id, attempt.run, attempt.number, settings.lease_seconds, progress.value
            )

    async def report() -> None:
        value = progress.unreported()
        if value is None:
            return
        async with connection(deps.pool) as tx:
            await report_progress(tx, "transcription", attempt.video_id, attempt.run, attempt.number, value)
        progress.reported = value

    async with deps.storage_for(attempt.source).local_copy(attempt.media_key) as path:
        started = time.perf_counter()
        work = report_while(deps.engine.transcribe(path, progress), report, PROGRESS_SECONDS)
        transcript = await run_with_heartbeat(work, beat, settings.lease_seconds / 3)
        observe_real_time_factor(time.perf_counter() - started, transcript.duration)
        return transcript


async def _release(deps: Deps, attempt: Attempt, reason: str, handed_back: bool) -> None:
    async with transaction(deps.pool) as tx:
        await q.release_for_retry(tx, attempt.video_id, attempt.run, attempt.number, reason, handed_back)


async def retry_or_fail(deps: Deps, attempt: Attempt, exc: Exception) -> str:
    """Transient failure: retry with exponential backoff, or ERROR once attempts are used up."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not isinstance(exc, StorageUnavailable):
        log.warning("transcription of %s failed (attempt %d): %s", attempt.video_id, attempt.number, reason)
    settings = deps.settings
    async with transaction(deps.pool) as tx:
        if attempt.counted >= settings.transcription_max_attempts:
            reason = f"failed after {attempt.counted} attempts: {reason}"
            await q.fail(tx, attempt.video_id, attempt.run, attempt.number, reason)
            return "ERROR (attempts used up)"
        released = await q.release_for_retry(tx, attempt.video_id, attempt.run, attempt.number, reason)
    if not released:
        return "lease lost while failing"
    raise Retry(defer=settings.retry_backoff_seconds * 2 ** (attempt.number - 1))


async def finish(deps: Deps, attempt: Attempt, transcript: Transcript) -> str:
    document = vtt.render(transcript.segments)
    note = transcript.note if not transcript.segments else None
    skip_reason = ai_skip_reason(deps.settings, transcript)
    async with transaction(deps.pool) as tx:
        # The guarded update locks the video: the transcript is written under that lock, so a delete or
        # a newer run waits for it and a late writer can never overwrite a newer result; a failed write
        # rolls the completion back.
        video = await q.complete(
            tx, attempt.video_id, attempt.run, attempt.number, transcript.duration, note, skip_reason
        )
        if video is None:
            return "superseded or deleted before completion: nothing written"
        await deps.storage_for(attempt.source).put_bytes(
            transcript_key(attempt.owner_id, attempt.video_id), document.encode(), "text/vtt"
        )
        await record_event(
            tx, attempt.video_id, attempt.owner_id, "transcription", "COMPLETE", attempt.run, attempt.number,
            {"note": note} if note else None,
        )
        await announce_ai_run(tx, attempt.video_id, attempt.owner_id, video["ai_run"], skip_reason)
        await end_in(tx, "COMPLETE")
    return "COMPLETE"


def ai_skip_reason(settings: Settings, transcript: Transcript) -> str | None:
    if not settings.ai_enabled:
        return "AI generation is disabled"
    if not transcript.has_audio:
        return "the video has no audio"
    words = sum(len(segment.text.split()) for segment in transcript.segments)
    if words < settings.ai_min_words:
        return f"the transcript is too short ({words} words; at least {settings.ai_min_words} needed)"
    return None
