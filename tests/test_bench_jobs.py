"""The worker benchmark's own arithmetic: the CPU a worker spent at a moment, read off sampled values."""

from __future__ import annotations

import pytest

from bench.common import BenchError
from bench.jobs import cpu_at

SAMPLES = [(100.0, 5.0), (101.0, 6.0), (103.0, 6.0), (104.0, 8.0)]


def test_cpu_at_a_moment_is_interpolated_between_the_samples_around_it() -> None:
    assert cpu_at(SAMPLES, 100.5) == pytest.approx(5.5)
    assert cpu_at(SAMPLES, 103.5) == pytest.approx(7.0)
    assert cpu_at(SAMPLES, 101.0) == cpu_at(SAMPLES, 102.0) == 6.0


def test_a_moment_outside_the_samples_cannot_be_measured() -> None:
    with pytest.raises(BenchError):
        cpu_at(SAMPLES, 99.0)
    with pytest.raises(BenchError):
        cpu_at(SAMPLES, 104.5)
