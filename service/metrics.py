"""Prometheus metrics: every metric the web and worker processes export, named in one place.

Names follow the Prometheus conventions: a `capvid_` prefix, base units in the name
(`_seconds`, `_bytes`), `_total` for counters (prometheus-client adds the suffix itself).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_SECONDS = Histogram(
    "capvid_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
)
JOBS = Counter(
    "capvid_jobs",
    "Job executions by function and outcome (complete, retry, failed, cancelled).",
    ["function", "outcome"],
)
JOB_SECONDS = Histogram(
    "capvid_job_duration_seconds",
    "Time a job function ran, by function.",
    ["function"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
QUEUE_DEPTH = Gauge("capvid_queue_depth", "Jobs in the arq queue (queued, deferred and running).")
OUTBOX_BACKLOG = Gauge("capvid_outbox_backlog", "Outbox rows not yet handed to Redis.")
EVENT_STREAMS_OPEN = Gauge("capvid_event_streams_open", "Event streams (SSE) and long-polls open in this process.")
TRANSCRIPTION_REAL_TIME_FACTOR = Histogram(
    "capvid_transcription_real_time_factor",
    "Transcription time divided by media duration (below 1 is faster than real time).",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
