"""Fixtures of the API contract tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.keys import SETTINGS
from tests.helpers import query

IDLE_WAIT_SECONDS = 3.0


@pytest.fixture
async def client(client: TestClient) -> AsyncIterator[TestClient]:
    """The app's client; before it shuts down, its outbox relay is let go idle.

    service/outbox.py's relay used to swallow a cancellation that landed while a NOTIFY woke it
    (Python 3.11's asyncio.wait_for race), and the app's shutdown then waited for it forever:
    tests hung in teardown at random. test_shutdown.py checks that bug directly; shutting down
    only once no job request is in flight keeps a regression from hanging unrelated tests.
    """
    yield client
    await relay_idle(client.app[SETTINGS])


async def relay_idle(settings: Any) -> None:
    if not query(settings, "SELECT 1 FROM outbox LIMIT 1"):
        return  # no job was requested, so no NOTIFY was sent
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while time.monotonic() < deadline and query(settings, "SELECT 1 FROM outbox WHERE sent_at IS NULL LIMIT 1"):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # the NOTIFY of the last request has been delivered and handled by now
