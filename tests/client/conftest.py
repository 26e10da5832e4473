"""The real app on a test server, and a CapvidClient of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from config import Settings
from service.app import create_app
from service.client import CapvidClient


@pytest.fixture
async def server_url(aiohttp_server: Any, settings: Settings) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def capvid(server_url: str, alice: str) -> AsyncIterator[CapvidClient]:
    async with CapvidClient(server_url, alice, dev_token_file=None, reconnect_delay=0.05) as client:
        yield client
