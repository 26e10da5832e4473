"""Fixtures of the analytics and comments tests: an injected clock, views and counts through HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from config import Settings
from service.analytics.viewers import VIEWS
from service.keys import SETTINGS
from tests.helpers import bearer, query, relay_idle

START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """The app's clock, moved by the test: no sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def client(client: TestClient) -> AsyncIterator[TestClient]:
    yield client
    await relay_idle(client.app[SETTINGS])  # a delete wrote a cleanup request: let the relay go idle first


@pytest.fixture
def clock(client: TestClient) -> Clock:
    clock = Clock(START)
    client.app[VIEWS].clock = clock
    return clock


async def view(
    client: TestClient,
    video_id: str,
    viewer: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    all_headers = {**(headers or {}), **(bearer(token) if token else {})}
    body = {"viewerId": viewer} if viewer is not None else None
    return await client.post("/api/video/view", params={"videoId": video_id}, json=body, headers=all_headers)


async def counted(client: TestClient, video_id: str, viewer: str | None = None, **kwargs: Any) -> None:
    """A view that must be answered 204 (counted or not: the answer is the same)."""
    response = await view(client, video_id, viewer, **kwargs)
    assert response.status == 204, await response.text()
    assert await response.read() == b""


async def view_count(client: TestClient, token: str, video_id: str, **params: str) -> int:
    response = await client.get("/api/video/analytics", params={"videoId": video_id, **params}, headers=bearer(token))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"count"}
    return int(body["count"])


def stored(settings: Settings, video_id: str) -> dict[str, int]:
    """What the database holds for the video: the counters, the rollup total and the viewer rows."""
    stats = query(settings, "SELECT * FROM video_stats WHERE video_id = %s", (video_id,))
    days = query(settings, "SELECT coalesce(sum(count), 0) AS n FROM video_view_days WHERE video_id = %s", (video_id,))
    viewers = query(settings, "SELECT count(*) AS n FROM video_viewers WHERE video_id = %s", (video_id,))
    row = stats[0] if stats else {"view_count": 0, "comment_count": 0, "reaction_count": 0}
    return {
        "views": row["view_count"],
        "days": int(days[0]["n"]),
        "viewers": viewers[0]["n"],
        "comments": row["comment_count"],
        "reactions": row["reaction_count"],
    }


@pytest.fixture
async def public(api, alice) -> str:
    return (await api.create_video(alice, name="shared", public=True))["id"]


@pytest.fixture
async def private(api, alice) -> str:
    return (await api.create_video(alice, name="mine", public=False))["id"]
