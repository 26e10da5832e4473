"""Stopping background tasks for sure.

On Python 3.11 a cancellation can be lost when it lands as an inner `asyncio.wait_for`
finishes (aiopg and others use wait_for inside): the task then runs on. Cancelling until the
task is done makes shutdown certain instead of a rare hang.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | asyncio.Future[Any]) -> None:
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: a background task's last error is not worth a warning at exit
