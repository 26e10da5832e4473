"""CapvidClient: the Video API for programs (background producers, scripts, the CLI).

    async with CapvidClient() as capvid:              # CAPVID_URL / CAPVID_TOKEN, or arguments
        video = await capvid.create_video(name="Demo")
        await capvid.upload(video.id, "talk.mp4")
        await capvid.wait_for(video.id, transcription="COMPLETE", timeout=600)
        print(await capvid.transcript(video.id))
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp

from service.client.config import DEV_TOKEN_FILE, resolve_connection
from service.client.errors import (
    CapvidApiError,
    CapvidConnectionError,
    CapvidError,
    CapvidProtocolError,
    VideoDeleted,
    WaitFailed,
)
from service.client.events import (
    AI_DONE,
    TRANSCRIPTION_DONE,
    AiEvent,
    DeletedEvent,
    ProgressEvent,
    TranscriptionEvent,
    VideoEvent,
    VideoState,
    parse_event,
)
from service.client.models import ClientTranscriptionDetail, ClientVideo, parse, parse_page
from service.client.sse import SSEDecoder, aiter_sse
from service.models import AiGenerationStatus, TranscriptionDetail, TranscriptionStatus, Video, VideoPage

UPLOAD_CHUNK = 1024 * 1024
Wanted = str | Collection[str] | None
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Progress:
    """One step of a transcription's or AI generation's progress (`fraction` 0..1 when known)."""

    kind: Literal["transcription", "ai"]
    status: str | None
    fraction: float | None
    step: str | None = None


class CapvidClient:
    """An async client of one capvid server. Use it as an async context manager (it owns an
    aiohttp session) or pass your own `session`."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        reconnect_delay: float = 1.0,
        max_reconnects: int = 10,
        dev_token_file: Path | None = DEV_TOKEN_FILE,
    ) -> None:
        connection = resolve_connection(base_url, token, dev_token_file)
        self.base_url = str(connection.base_url).rstrip("/")
        self._auth = {"Authorization": f"Bearer {connection.token}"}
        self._session = session
        self._owns_session = session is None
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout, connect=connect_timeout)
        # Uploads take as long as they take; a stream is dead when not even a heartbeat (every
        # 15 s) arrived for stream_idle_timeout.
        self._upload_timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=stream_idle_timeout
        )
        self.reconnect_delay = reconnect_delay
        self.max_reconnects = max_reconnects

    async def __aenter__(self) -> CapvidClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- videos -----------------------------------------------------------------------------

    async def create_video(
        self, name: str | None = None, public: bool = True, metadata: dict[str, Any] | None = None
    ) -> Video:
        """A new video without media. Without a name the server picks one (and the AI title replaces it)."""
        body: dict[str, Any] = {"public": public}
        if name is not None:
            body["name"] = name
        if metadata:
            body["metadata"] = metadata
        return parse(ClientVideo, await self._json("POST", "/api/video", json=body))

    async def get_video(self, video_id: str) -> Video:
        return parse(ClientVideo, await self._json("GET", "/api/video", params={"videoId": video_id}))

    async def list_videos(
        self, limit: int = 20, cursor: str | None = None, transcription_status: str | None = None
    ) -> VideoPage:
        params = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        if transcription_status:
            params["transcriptionStatus"] = transcription_status
        return parse_page(await self._json("GET", "/api/videos", params=params))

    async def delete(self, video_id: str) -> None:
        """Delete the video with everything attached to it (owner only)."""
        async with self._open("DELETE", "/api/video/delete", params={"videoId": video_id}) as response:
            await response.read()

    async def upload(
        self,
        video_id: str,
        path: str | os.PathLike[str],
        on_progress: ProgressCallback | None = None,
        chunk_size: int = UPLOAD_CHUNK,
    ) -> Video:
        """Stream a media file to the video (a chunk at a time, never the whole file in memory);
        transcription starts on the server. `on_progress(bytes_sent, total)` after each chunk."""
        file = Path(path)
        total = file.stat().st_size
        headers = {
            "Content-Type": mimetypes.guess_type(file.name)[0] or "application/octet-stream",
            # A known length: the server refuses an oversized file before reading it.
            "Content-Length": str(total),
        }
        body = _file_chunks(file, chunk_size, total, on_progress)
        return parse(
            ClientVideo,
            await self._json(
                "PUT", "/api/video/upload", params={"videoId": video_id}, data=body, headers=headers,
                timeout=self._upload_timeout,
            )
        )

    # --- transcription and AI ---------------------------------------------------------------

    async def transcribe(self, video_id: str, force: bool = False) -> TranscriptionStatus | None:
        """Request transcription (a retry after ERROR; `force` redoes a COMPLETE one); the status after it."""
        params = {"videoId": video_id, "force": "true" if force else "false"}
        return _field(await self._json("POST", "/api/video/transcribe", params=params), "transcriptionStatus")

    async def transcription_status(self, video_id: str) -> TranscriptionStatus | None:
        body = await self._json("GET", "/api/video/transcribe/status", params={"videoId": video_id})
        return _field(body, "transcriptionStatus")

    async def transcription_detail(self, video_id: str) -> TranscriptionDetail:
        body = await self._json("GET", "/api/video/transcription", params={"videoId": video_id})
        return parse(ClientTranscriptionDetail, body)

    async def transcript(self, video_id: str) -> str:
        """The WebVTT transcript (a 404 CapvidApiError until transcription is COMPLETE)."""
        async with self._open("GET", "/api/video/transcript", params={"videoId": video_id}) as response:
            return await response.text()

    async def generate_ai(self, video_id: str) -> AiGenerationStatus | None:
        """Request a new AI title, summary and chapters (409 until the transcript is COMPLETE)."""
        body = await self._json("POST", "/api/video/ai/generate", params={"videoId": video_id})
        return _field(body, "aiGenerationStatus")

    # --- the event stream -------------------------------------------------------------------

    async def events(self, video_id: str, last_event_id: int | None = None) -> AsyncGenerator[VideoEvent, None]:
        """The video's events over one connection, until the server ends it. Without
        `last_event_id` the first is a StateEvent; with it, every event after that id, then live."""
        async with aclosing(self._stream(video_id, last_event_id, SSEDecoder())) as stream:
            async for event in stream:
                yield event

    async def watch(self, video_id: str, last_event_id: int | None = None) -> AsyncGenerator[VideoEvent, None]:
        """Like `events`, but resumes a dropped stream with Last-Event-ID (no event is lost or
        repeated) until the video is deleted. Raises CapvidConnectionError after
        `max_reconnects` attempts in a row that received nothing."""
        failures = 0
        retry_ms: int | None = None  # the server's `retry:`, kept across connections
        while True:
            decoder = SSEDecoder()
            received = False
            failure: CapvidError | None
            try:
                async with aclosing(self._stream(video_id, last_event_id, decoder)) as stream:
                    async for event in stream:
                        received, failures = True, 0
                        yield event
                        if isinstance(event, DeletedEvent):
                            return
            except CapvidApiError as exc:
                if exc.status < 500:
                    raise
                failure = exc
            except CapvidConnectionError as exc:
                failure = exc
            else:
                failure = None if received else CapvidConnectionError("the event stream ended at once")
            if decoder.last_event_id.isdigit():
                last_event_id = int(decoder.last_event_id)
            if failure is not None and not received:
                failures += 1
                if failures > self.max_reconnects:
                    raise failure
            retry_ms = decoder.retry_ms if decoder.retry_ms is not None else retry_ms
            delay = retry_ms / 1000 if retry_ms is not None else self.reconnect_delay
            await asyncio.sleep(min(30.0, delay * 2 ** max(0, failures - 1)))

    async def wait_for(
        self,
        video_id: str,
        *,
        transcription: Wanted = None,
        ai: Wanted = None,
        timeout: float | None = None,
        on_update: Callable[[VideoState], None] | None = None,
    ) -> VideoState:
        """Wait on the event stream until the transcription and/or AI status is one of those
        wanted (a status or a collection of them; neither given: transcription COMPLETE) and
        return the state. Raises WaitFailed when a final status that is not wanted is reached
        (ERROR while waiting for COMPLETE), VideoDeleted, and TimeoutError after `timeout` s.
        `on_update(state)` runs after every event (progress included)."""
        want_transcription, want_ai = _wanted(transcription), _wanted(ai)
        if not want_transcription and not want_ai:
            want_transcription = frozenset({"COMPLETE"})
        state = VideoState(video_id)
        async with asyncio.timeout(timeout), aclosing(self.watch(video_id)) as events:
            async for event in events:
                state = state.apply(event)
                if on_update is not None:
                    on_update(state)
                if state.deleted:
                    raise VideoDeleted("the video was deleted", state)
                if isinstance(event, ProgressEvent):
                    continue
                verdict = _verdict(state, want_transcription, want_ai)
                if verdict is True:
                    return state
                if isinstance(verdict, str):
                    raise WaitFailed(verdict, state)
        raise AssertionError("watch() ends only after a deleted event")

    async def iter_progress(
        self, video_id: str, kind: Literal["transcription", "ai"] = "transcription"
    ) -> AsyncGenerator[Progress, None]:
        """Progress of the video's transcription (or AI generation) until it reaches a final
        status: the last item carries it (COMPLETE, ERROR or, for AI, SKIPPED). The first item
        is the current state."""
        done = TRANSCRIPTION_DONE if kind == "transcription" else AI_DONE
        other = AiEvent if kind == "transcription" else TranscriptionEvent
        state = VideoState(video_id)
        async with aclosing(self.watch(video_id)) as events:
            async for event in events:
                state = state.apply(event)
                if state.deleted:
                    raise VideoDeleted("the video was deleted", state)
                if kind == "ai" and state.transcription_status == "ERROR":
                    raise WaitFailed(_failure("transcription", state) + ": AI generation will not run", state)
                if isinstance(event, other) or (isinstance(event, ProgressEvent) and event.kind != kind):
                    continue
                if kind == "transcription":
                    status, fraction = state.transcription_status, state.transcription_progress
                else:
                    status, fraction = state.ai_generation_status, state.ai_progress
                step = event.step if isinstance(event, ProgressEvent) else None
                yield Progress(kind=kind, status=status, fraction=fraction, step=step)
                if status in done:
                    return

    # --- HTTP -------------------------------------------------------------------------------

    async def _stream(
        self, video_id: str, last_event_id: int | None, decoder: SSEDecoder
    ) -> AsyncGenerator[VideoEvent, None]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        async with self._open(
            "GET", "/api/video/events", params={"videoId": video_id}, headers=headers, timeout=self._stream_timeout
        ) as response, aclosing(aiter_sse(response.content.iter_any(), decoder)) as messages:
            async for sse in messages:
                event = parse_event(sse)
                if event is not None:
                    yield event

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._open(method, path, **kwargs) as response:
            try:
                return await response.json(content_type=None)
            except ValueError:
                raise CapvidProtocolError(f"{method} {path}: the answer is not JSON") from None

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if self._session is None:
            raise RuntimeError("use `async with CapvidClient(...)` (or pass a session)")
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                params=params,
                headers={**self._auth, **(headers or {})},
                timeout=timeout or self._request_timeout,
                **kwargs,
            ) as response:
                if response.status >= 400:
                    raise await _api_error(response)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CapvidConnectionError(f"{method} {self.base_url}{path}: {_describe(exc)}") from exc


async def _file_chunks(
    file: Path, chunk_size: int, total: int, on_progress: ProgressCallback | None
) -> AsyncGenerator[bytes, None]:
    sent = 0
    with file.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, chunk_size):
            yield chunk
            sent += len(chunk)
            if on_progress is not None:
                on_progress(sent, total)


async def _api_error(response: aiohttp.ClientResponse) -> CapvidApiError:
    text = await response.text(errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": response.reason or f"HTTP {response.status}", "message": text[:500] or None}
    return CapvidApiError(response.status, body)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or name not in body:
        raise CapvidProtocolError(f"the server's answer has no {name}")
    return body[name]


def _wanted(value: Wanted) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset({value}) if isinstance(value, str) else frozenset(value)


def _failure(kind: str, state: VideoState) -> str:
    status = state.transcription_status if kind == "transcription" else state.ai_generation_status
    detail = state.transcription_detail if kind == "transcription" else state.ai_detail
    reason = detail.get("reason") or detail.get("note")
    name = "transcription" if kind == "transcription" else "AI generation"
    return f"{name} ended {status}" + (f": {reason}" if reason else "")


def _verdict(state: VideoState, transcription: frozenset[str], ai: frozenset[str]) -> bool | str:
    """True when reached, False while it may still be, else why it never will be."""
    if transcription and state.transcription_status not in transcription:
        return _failure("transcription", state) if state.transcription_status in TRANSCRIPTION_DONE else False
    if ai and state.ai_generation_status not in ai:
        if state.ai_generation_status in AI_DONE:
            return _failure("ai", state)
        if state.transcription_status == "ERROR":
            return _failure("transcription", state) + ": AI generation will not run"
        return False
    return True
