"""A local server speaking exactly the wire format of GET /api/video/events, scriptable by tests:
events are added to a log (replayed after Last-Event-ID) and pushed to open streams; a
connection can be cut after a number of events, cleanly or abruptly."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Cut = Literal["clean", "abrupt"]


@dataclass
class Logged:
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class FakeEvents:
    token: str = "tok"
    video_id: str = "vid1"
    state: dict[str, Any] = field(
        default_factory=lambda: {"transcriptionStatus": None, "transcriptionProgress": None, "aiGenerationStatus": None}
    )
    log: list[Logged] = field(default_factory=list)
    last_event_ids: list[str | None] = field(default_factory=list)  # the header of each stream request
    cuts: list[tuple[int, Cut]] = field(default_factory=list)  # per stream: cut after n events
    fail_with: list[int] = field(default_factory=list)  # per request: answer this status before streaming
    retry_ms: int | None = None
    split_bytes: bool = False  # write every byte separately (chunk boundaries everywhere)
    line_ending: str = "\n"
    _queues: list[asyncio.Queue[tuple[str, int | None, dict[str, Any]]]] = field(default_factory=list)
    _connected: asyncio.Condition = field(default_factory=asyncio.Condition)
    _streams: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/video/events", self.handle)
        return app

    # --- scripting ---------------------------------------------------------------------------

    def transcription(self, status: str, **detail: Any) -> int:
        return self._add("transcription", {"transcriptionStatus": status, "run": 1, "attempt": 1, "detail": detail})

    def ai(self, status: str, **detail: Any) -> int:
        return self._add("ai", {"aiGenerationStatus": status, "run": 1, "attempt": 1, "detail": detail})

    def deleted(self) -> int:
        return self._add("deleted", {})

    def progress(self, kind: str, value: float, step: str | None = None) -> None:
        data = {"videoId": self.video_id, "kind": kind, "progress": value, "step": step}
        for queue in self._queues:
            queue.put_nowait(("progress", None, data))

    async def wait_streams(self, count: int) -> None:
        """Until `count` streams have been opened (and are listening for live events)."""
        async with self._connected:
            await self._connected.wait_for(lambda: self._streams >= count)

    def _add(self, event: str, data: dict[str, Any]) -> int:
        event_id = (self.log[-1].id if self.log else 0) + 1
        data = {"videoId": self.video_id, "eventId": event_id, **data}
        self.log.append(Logged(event_id, event, data))
        for queue in self._queues:
            queue.put_nowait((event, event_id, data))
        return event_id

    # --- the endpoint ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        if self.fail_with:
            status = self.fail_with.pop(0)
            return web.json_response({"error": "Service unavailable", "message": "try again"}, status=status)
        if request.query.get("videoId") != self.video_id:
            return web.json_response({"error": "Video not found"}, status=404)
        last = request.headers.get("Last-Event-ID")
        self.last_event_ids.append(last)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, int | None, dict[str, Any]]] = asyncio.Queue()
        self._queues.append(queue)
        cut = self.cuts.pop(0) if self.cuts else None
        try:
            return await self._serve(request, response, queue, last, cut)
        finally:
            self._queues.remove(queue)

    async def _serve(
        self,
        request: web.Request,
        response: web.StreamResponse,
        queue: asyncio.Queue[tuple[str, int | None, dict[str, Any]]],
        last: str | None,
        cut: tuple[int, Cut] | None,
    ) -> web.StreamResponse:
        sent_id = 0
        if self.retry_ms is not None:
            await self._write(response, f"retry: {self.retry_ms}")
        await self._write(response, ": heartbeat")
        if last is None:
            sent_id = self.log[-1].id if self.log else 0
            await self._send(response, "state", sent_id, {"videoId": self.video_id, **self.state})
        else:
            sent_id = int(last)
            for item in [e for e in self.log if e.id > sent_id]:
                await self._send(response, item.event, item.id, item.data)
                sent_id = item.id
                if item.event == "deleted":
                    await response.write_eof()
                    return response
        sent = 0  # live events sent on this stream
        async with self._connected:
            self._streams += 1
            self._connected.notify_all()
        while True:
            if cut is not None and sent >= cut[0]:
                if cut[1] == "abrupt":
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write_eof()
                return response
            event, event_id, data = await queue.get()
            if event_id is not None and event_id <= sent_id:
                continue  # already replayed
            await self._send(response, event, event_id, data)
            sent += 1
            sent_id = event_id or sent_id
            if event == "deleted":
                await response.write_eof()
                return response

    async def _send(self, response: web.StreamResponse, event: str, event_id: int | None, data: dict[str, Any]) -> None:
        lines = [f"event: {event}"]
        if event_id is not None:
            lines.append(f"id: {event_id}")
        # Pretty-printed JSON: several data lines, which a reader must join with LF.
        lines += [f"data: {line}" for line in json.dumps(data, indent=1).splitlines()]
        await self._write(response, *lines)

    async def _write(self, response: web.StreamResponse, *lines: str) -> None:
        payload = ("".join(line + self.line_ending for line in lines) + self.line_ending).encode()
        if not self.split_bytes:
            await response.write(payload)
            return
        for i in range(len(payload)):
            await response.write(payload[i : i + 1])
