"""Event streams read as a client reads them, and the pieces the event tests share."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession
from aiohttp.test_utils import TestClient

from service.events.hub import HUB, Hub
from tests.helpers import Api, MEDIA, bearer


@dataclass
class Sse:
    event: str
    id: str | None
    data: Any
    received: float  # time.monotonic() when it arrived


class EventStream:
    """An open `GET /api/video/events`: what arrives is kept in order, with its arrival time."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.events: asyncio.Queue[Sse | None] = asyncio.Queue()  # None: the server ended the stream
        self.comments: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        try:
            while line := await self.response.content.readline():
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self.comments.append(text)
                elif text:
                    name, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
                elif data or fields:
                    payload = json.loads("\n".join(data)) if data else None
                    event = Sse(fields.get("event", "message"), fields.get("id"), payload, time.monotonic())
                    self.events.put_nowait(event)
                    fields, data = {}, []
        except Exception:
            pass  # the connection was dropped
        self.events.put_nowait(None)

    async def next(self, timeout: float = 5.0) -> Sse:
        event = await asyncio.wait_for(self.events.get(), timeout)
        assert event is not None, "the stream ended"
        return event

    async def next_of(self, *names: str, timeout: float = 5.0) -> Sse:
        """The next event with one of these names (others, e.g. progress, are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.01, deadline - time.monotonic()))
            if event.event in names:
                return event

    async def ended(self, timeout: float = 5.0) -> bool:
        """True when the server ends the stream within `timeout` (what is left unread is discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = await asyncio.wait_for(self.events.get(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return False
            if event is None:
                return True

    async def close(self) -> None:
        self.response.close()
        await self._reader


async def open_stream(
    client: TestClient | ClientSession, token: str, video_id: str, last_event_id: str | None = None, **params: str
) -> EventStream:
    headers = bearer(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await client.get("/api/video/events", params={"videoId": video_id, **params}, headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    return EventStream(response)


@pytest.fixture
async def streams() -> AsyncIterator[list[EventStream]]:
    """Streams opened by a test, closed at its end."""
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        await stream.close()


@pytest.fixture
async def hub(client: TestClient) -> Hub:
    """The app's hub, listening (a change made before it listens would reach no stream)."""
    hub = client.app[HUB]
    await asyncio.wait_for(hub.wait_listening(), 10)
    return hub


async def uploaded(api: Api, token: str, **body: Any) -> str:
    """A video whose media is uploaded: transcription is PROCESSING (run 1, event 1)."""
    video = await api.create_video(token, **body)
    response = await api.upload(token, video["id"], (MEDIA / "spoken.mp4").read_bytes())
    assert response.status == 200, await response.text()
    return str(video["id"])
