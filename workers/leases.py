"""Heartbeats for claimed work: extend the lease while the job runs, stop the job if it loses it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.tasks import stop_task

log = logging.getLogger("capvid.worker")
T = TypeVar("T")


class LeaseLost(Exception):
    """The video was deleted or a newer attempt took it over: stop without writing."""


async def run_with_heartbeat(
    work: Awaitable[T], beat: Callable[[], Awaitable[bool]], interval: float
) -> T:
    """Run `work`, calling `beat` every `interval` seconds; cancel the work if a beat says the lease is gone."""

    async def tick() -> None:
        try:
            alive = await beat()
        except Exception as exc:
            # A missed beat is not a lost lease: the database may be back before the lease ends.
            log.warning("heartbeat failed: %s", exc)
            return
        if not alive:
            raise LeaseLost()

    return await _run_ticking(work, tick, interval)


async def report_while(work: Awaitable[T], report: Callable[[], Awaitable[None]], interval: float) -> T:
    """Run `work`, calling `report` every `interval` seconds while it runs (progress; a failed report is
    only logged: progress is news, not state)."""

    async def tick() -> None:
        try:
            await report()
        except Exception as exc:
            log.warning("progress report failed: %s", exc)

    return await _run_ticking(work, tick, interval)


async def _run_ticking(work: Awaitable[T], tick: Callable[[], Awaitable[None]], interval: float) -> T:
    """Run `work`, calling `tick` every `interval` seconds; the work is cancelled if a tick raises."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            await tick()
    finally:
        await stop_task(task)
