"""Helpers of the observability tests: parsed metrics, captured JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.observability.logs import log_handler

# Nothing listens on port 1: the way to point a setting at an unreachable server.
CLOSED_REDIS = "redis://127.0.0.1:1/5"
CLOSED_POSTGRES = "postgresql://postgres@127.0.0.1:1/capvid_e"


def samples(text: str) -> list[Sample]:
    """Every sample of a scrape, parsed by prometheus-client's own parser (which fails on a bad line)."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a scrape; None when it is not there."""
    found = [s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def family_types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs() -> Iterator[LogLines]:
    """What the process logs, through the handler `capvid web` / `capvid worker` install, as parsed lines."""
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
