"""Fixtures of the API contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from service.keys import SETTINGS
from tests.helpers import relay_idle


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
