"""How a job execution ended, in one vocabulary shared by the job history, metrics and logs."""

from __future__ import annotations

import asyncio
from typing import Literal

from arq import Retry

# complete: did its work. error: ended the video's state machine in ERROR (a final, reported
# failure). skipped: nothing to do (deleted, superseded, already done). retry: handed back to
# arq to run again later. cancelled: the worker stopped mid-job (arq re-queues it).
# failed: raised an unexpected exception.
Outcome = Literal["complete", "error", "skipped", "retry", "cancelled", "failed"]

_SKIPPED_PREFIXES = ("not claimable", "lease lost", "superseded", "already finished")
# A job that scheduled its own next attempt (a new outbox row) instead of raising Retry.
_RETRY_PREFIXES = ("retry",)


def outcome_of_result(result: object) -> Outcome:
    """Classify what a job function returned (our pipelines return a short description)."""
    text = str(result) if result is not None else ""
    if text.startswith("ERROR"):
        return "error"
    if text.startswith(_SKIPPED_PREFIXES):
        return "skipped"
    if text.startswith(_RETRY_PREFIXES):
        return "retry"
    return "complete"


def outcome_of_exception(exc: BaseException) -> Outcome:
    if isinstance(exc, Retry):
        return "retry"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "failed"
