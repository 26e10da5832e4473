"""What the current log line is about: the request, job and video, carried in context variables.

Each aiohttp request and each arq job runs in its own asyncio task, and a task copies the
context it was created in, so a value set here is seen by everything the request or job
calls (SQL helpers, the outbox, engines) and by nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("capvid_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("capvid_job_id", default=None)
VIDEO_ID: ContextVar[str | None] = ContextVar("capvid_video_id", default=None)

# The key under which a job request carries the id of the HTTP request that caused it
# (in the outbox row's args). Job argument models ignore unknown keys.
REQUEST_ID_ARG = "_request_id"


@contextmanager
def bound(request_id: str | None = None, job_id: str | None = None, video_id: str | None = None) -> Iterator[None]:
    """Set the given ids for the duration of the block (None leaves a value as it is)."""
    tokens = [
        (var, var.set(value))
        for var, value in ((REQUEST_ID, request_id), (JOB_ID, job_id), (VIDEO_ID, video_id))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The ids known here, for a log record or a job request."""
    values = {"request_id": REQUEST_ID.get(), "job_id": JOB_ID.get(), "video_id": VIDEO_ID.get()}
    return {key: value for key, value in values.items() if value is not None}


def with_request_id(args: dict[str, object]) -> dict[str, object]:
    """Job arguments carrying the current request id, so the job's log lines can be joined to it."""
    request_id = REQUEST_ID.get()
    if request_id is None or REQUEST_ID_ARG in args:
        return args
    return {**args, REQUEST_ID_ARG: request_id}
