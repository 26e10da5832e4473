"""The worker benchmark's own arithmetic: the CPU a worker spent over a drain, read off sampled values."""

from __future__ import annotations

import os

import pytest

from bench.common import BenchError
from bench.jobs import CpuTrace


async def test_cpu_between_two_moments_is_interpolated_between_samples() -> None:
    trace = CpuTrace(os.getpid())
    await trace.stop()
    trace.samples = [(100.0, 5.0), (101.0, 6.0), (103.0, 6.0), (104.0, 8.0)]

    assert trace.between(100.5, 103.5) == pytest.approx(7.0 - 5.5)
    assert trace.between(101.0, 103.0) == 0.0


async def test_a_drain_outside_the_samples_cannot_be_measured() -> None:
    trace = CpuTrace(os.getpid())
    await trace.stop()
    trace.samples = [(100.0, 5.0), (101.0, 6.0)]

    with pytest.raises(BenchError):
        trace.between(99.0, 100.5)
