"""Logging set-up: one JSON object a line (LOG_FORMAT=json) or readable text (LOG_FORMAT=text).

Every line carries the request, job and video ids known where it was logged (see
`context.py`), so one upload can be followed from its request to the jobs it caused:
`jq 'select(.request_id == "…")'` over the web and worker logs.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import IO, Literal

from pythonjsonlogger.json import JsonFormatter

from service.observability.context import current

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds request_id, job_id and video_id to a record (unless the call passed its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonLineFormatter(JsonFormatter):
    """`{"time", "level", "logger", "message", ...ids, ...extras}`; time in UTC, ISO 8601, milliseconds."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """The classic line, with the ids appended when there are any."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{key}={getattr(record, key)}" for key in ("request_id", "job_id", "video_id")
                       if getattr(record, key, None) is not None)
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the ids
        return f"{first} [{ids}]{newline}{rest}"


class ArqJobLines(logging.Filter):
    """Drops arq's own line at each job's start and successful end (arq.worker, INFO): the worker logs
    one structured line when a job ends (workers/metrics.py: function, outcome, duration, ids), and
    job_runs shows what is running. arq's lines come back with LOG_LEVEL=DEBUG; its retries,
    cancellations and failures are always logged."""

    FORMATS = frozenset({"%6.2fs → %s(%s)%s", "%6.2fs ← %s ● %s"})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.FORMATS or logging.getLogger().isEnabledFor(logging.DEBUG)


def log_handler(log_format: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(ArqJobLines())
    return handler


def setup_logging(log_format: LogFormat, level: str = "INFO") -> None:
    """Replace the root logger's handlers with one of ours (a process calls this once, at start)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(log_handler(log_format))
    root.setLevel(level)
    # No line of ours says where in the code, or in which thread or process, it was logged: skip
    # looking those up for every record (the logging HOWTO's "Optimization"; a worker makes a few
    # records a job, arq's included).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
