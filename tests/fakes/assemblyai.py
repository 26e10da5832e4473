"""A local stand-in for AssemblyAI's v2 API (upload, transcript, poll, sentences), speaking its wire format.

    fake = FakeAssemblyAI(api_key="k", sentences=[(0.0, 2.0, "Hello there.")])
    server = await aiohttp_server(fake.app())
    ... Settings(assemblyai_base_url=str(server.make_url("")), ...)
    assert fake.uploads == [media_bytes]

Times in `sentences` are seconds; the API answers in milliseconds, as the real one does.
Behaviour is set by attributes and may be changed between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

Status = Literal["completed", "error"]
HangOn = Literal["upload", "transcript", "poll", "sentences"]

DEFAULT_SENTENCES: tuple[tuple[float, float, str], ...] = (
    (0.0, 2.0, "Hello and welcome to capvid."),
    (2.1, 6.0, "Today we are testing speech recognition with a short video."),
)
NO_AUDIO_ERROR = "Transcoding failed. File does not appear to contain audio. File type is video/mp4 (ISO Media)."
CORRUPT_ERROR = "Transcoding failed. Unable to decode the media file: it is corrupt or in an unsupported format."
UPLOAD_HOST = "https://cdn.assemblyai.invalid/upload/"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class FakeAssemblyAI:
    api_key: str = "k"
    sentences: list[tuple[float, float, str]] = field(default_factory=lambda: list(DEFAULT_SENTENCES))
    audio_duration: int = 6
    language_code: str = "en_us"
    processing_polls: int = 1  # polls answered "processing" before the final status
    final_status: Status = "completed"
    error_message: str = NO_AUDIO_ERROR  # used when final_status is "error"
    never_completes: bool = False
    fail_429_times: int = 0  # the first N requests (any endpoint) get 429
    fail_500: bool = False
    hang_on: HangOn | None = None
    hang_seconds: float = 30.0  # a hang answers after this, or when the server shuts down
    requests: list[RecordedRequest] = field(default_factory=list)
    uploads: list[bytes] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)  # JSON bodies of POST /v2/transcript
    _polls: dict[str, int] = field(default_factory=dict, repr=False)
    _upload_urls: set[str] = field(default_factory=set, repr=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v2/upload", self._upload)
        app.router.add_post("/v2/transcript", self._create)
        app.router.add_get("/v2/transcript/{id}", self._poll)
        app.router.add_get("/v2/transcript/{id}/sentences", self._sentences)
        app.on_shutdown.append(self._release)
        return app

    async def _release(self, _app: web.Application) -> None:
        # Lets hanging handlers finish so the test server closes at once.
        self._released.set()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Recording, auth and the failure modes every endpoint shares."""
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), CIMultiDict(request.headers), body)
        )
        if request.headers.get("authorization") != self.api_key:
            return _error(401, "Authentication error, API token missing/invalid")
        if self.fail_429_times > 0:
            self.fail_429_times -= 1
            return _error(429, "Too Many Requests")
        if self.fail_500:
            return _error(500, "Internal Server Error")
        if self.hang_on is not None and _endpoint(request) == self.hang_on:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.hang_seconds)
        response: web.StreamResponse = await handler(request)
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads.append(await request.read())
        url = UPLOAD_HOST + uuid.uuid4().hex
        self._upload_urls.add(url)
        return web.json_response({"upload_url": url})

    async def _create(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.created.append(payload)
        if payload.get("audio_url") not in self._upload_urls:
            return _error(400, "Download error, unable to download the audio_url")
        transcript_id = str(uuid.uuid4())
        self._polls[transcript_id] = 0
        return web.json_response(self._transcript(transcript_id, "queued", payload["audio_url"]))

    async def _poll(self, request: web.Request) -> web.Response:
        transcript_id = request.match_info["id"]
        if transcript_id not in self._polls:
            return _error(404, "Transcript not found")
        self._polls[transcript_id] += 1
        done = not self.never_completes and self._polls[transcript_id] > self.processing_polls
        status = self.final_status if done else "processing"
        return web.json_response(self._transcript(transcript_id, status))

    async def _sentences(self, request: web.Request) -> web.Response:
        transcript_id = request.match_info["id"]
        if transcript_id not in self._polls:
            return _error(404, "Transcript not found")
        sentences = [_sentence(start, end, text) for start, end, text in self.sentences]
        return web.json_response(
            {"sentences": sentences, "id": transcript_id, "confidence": 0.95, "audio_duration": self.audio_duration}
        )

    def _transcript(self, transcript_id: str, status: str, audio_url: str | None = None) -> dict[str, Any]:
        completed = status == "completed"
        return {
            "id": transcript_id,
            "status": status,
            "audio_url": audio_url or UPLOAD_HOST,
            "language_code": self.language_code,
            "punctuate": True,
            "format_text": True,
            "text": " ".join(text for _, _, text in self.sentences) if completed else None,
            "words": None,
            "audio_duration": self.audio_duration if completed else None,
            "error": self.error_message if status == "error" else None,
        }


def _endpoint(request: web.Request) -> HangOn | None:
    if request.path == "/v2/upload":
        return "upload"
    if request.path == "/v2/transcript":
        return "transcript"
    if request.path.endswith("/sentences"):
        return "sentences"
    if request.path.startswith("/v2/transcript/"):
        return "poll"
    return None


def _sentence(start: float, end: float, text: str) -> dict[str, Any]:
    return {
        "text": text,
        "start": round(start * 1000),
        "end": round(end * 1000),
        "confidence": 0.95,
        "words": [],
        "speaker": None,
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
