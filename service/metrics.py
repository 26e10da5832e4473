"""Prometheus metrics: every metric the web and worker processes export, named in one place.

Names follow the Prometheus conventions: a `capvid_` prefix, base units in the name
(`_seconds`, `_bytes`), `_total` for counters (prometheus-client adds the suffix itself).

Each process exports its own (web: `GET /metrics`; a worker: `WORKER_METRICS_PORT`), so
counters are per process and Prometheus sums them. The queue depth and outbox backlog are
the same for every process: they are read at scrape time, by web processes only, and left
out of a scrape when Redis or Postgres does not answer (a stale value would lie).
"""

from __future__ import annotations

import hmac

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import SecretStr

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

HTTP_REQUEST_SECONDS = Histogram(
    "capvid_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
)
JOBS = Counter(
    "capvid_jobs",
    "Job executions by function and outcome (complete, error, skipped, retry, cancelled, failed).",
    ["function", "outcome"],
)
JOB_SECONDS = Histogram(
    "capvid_job_duration_seconds",
    "Time a job function ran, by function.",
    ["function"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
EVENT_STREAMS_OPEN = Gauge("capvid_event_streams_open", "Event streams (SSE) and long-polls open in this process.")
TRANSCRIPTION_REAL_TIME_FACTOR = Histogram(
    "capvid_transcription_real_time_factor",
    "Transcription time divided by media duration (below 1 is faster than real time).",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)

# Set at scrape time; each in a registry of its own so a scrape can leave it out when unknown.
QUEUE_REGISTRY = CollectorRegistry(auto_describe=True)
OUTBOX_REGISTRY = CollectorRegistry(auto_describe=True)
QUEUE_DEPTH = Gauge(
    "capvid_queue_depth", "Jobs in the arq queue (queued, deferred and running).", registry=QUEUE_REGISTRY
)
OUTBOX_BACKLOG = Gauge("capvid_outbox_backlog", "Outbox rows not yet handed to Redis.", registry=OUTBOX_REGISTRY)


def exposition(*extra: CollectorRegistry) -> bytes:
    """This process's metrics in the Prometheus text format, plus those of the given registries."""
    return generate_latest(REGISTRY) + b"".join(generate_latest(registry) for registry in extra)


def scrape_allowed(authorization: str | None, token: SecretStr | None) -> bool:
    """No METRICS_TOKEN: open. Else `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
