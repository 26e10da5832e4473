"""Fixtures of the webhook tests: a local receiver that records what it is sent and answers as told."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from config import Settings
from tests.helpers import Api, bearer, query


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        # The receiver listens on 127.0.0.1; test_ssrf.py turns this off again.
        "webhook_allow_private_urls": True,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_timeout_seconds": 2.0,
        # No speech model to load in every burst worker: these tests transcribe nothing (or use the fake).
        "transcription_engine": "deepgram",
        "deepgram_api_key": "k",
        "deepgram_base_url": "http://127.0.0.1:9",
    }


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of `answers` (200 once they are used up)."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/moved", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, CIMultiDict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "/moved"})
        return web.Response(status=status, text="ok" if status < 300 else "not now")


async def start_receiver(aiohttp_server: Any) -> Receiver:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    receiver.url = str(server.make_url("/hook"))
    return receiver


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    return await start_receiver(aiohttp_server)


async def create_webhook(client: TestClient, token: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = await client.post("/api/webhooks", json={"url": url, "events": events or ["*"]}, headers=bearer(token))
    assert response.status == 201, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def delete_new_video(api: Api, token: str) -> str:
    """A transition that costs nothing: create a video and delete it (one `video.deleted` event)."""
    video_id = str((await api.create_video(token))["id"])
    response = await api.client.delete("/api/video/delete", params={"videoId": video_id}, headers=bearer(token))
    assert response.status == 200, await response.text()
    return video_id


def deliveries(settings: Settings) -> list[dict[str, Any]]:
    return query(settings, "SELECT * FROM webhook_deliveries ORDER BY id")
