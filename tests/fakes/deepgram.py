"""A local stand-in for Deepgram's pre-recorded API (`POST /v1/listen`), speaking its wire format.

    fake = FakeDeepgram(api_key="k", utterances=[(0.0, 2.0, "Hello there.")])
    server = await aiohttp_server(fake.app())
    ... Settings(deepgram_base_url=str(server.make_url("")), ...)
    assert fake.requests[0].body == media_bytes

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

Mode = Literal["ok", "words_only", "transcript_only", "error_500", "hang", "corrupt"]

DEFAULT_UTTERANCES: tuple[tuple[float, float, str], ...] = (
    (0.0, 2.0, "Hello and welcome to capvid."),
    (2.1, 6.0, "Today we are testing speech recognition with a short video."),
)
CORRUPT_MESSAGE = "Bad Request: failed to process audio: corrupt or unsupported data"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class FakeDeepgram:
    api_key: str = "k"
    utterances: list[tuple[float, float, str]] = field(default_factory=lambda: list(DEFAULT_UTTERANCES))
    duration: float = 6.2
    mode: Mode = "ok"
    fail_429_times: int = 0  # the first N requests get 429, later ones `mode`
    hang_seconds: float = 30.0  # "hang" answers after this, or when the server shuts down
    requests: list[RecordedRequest] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/listen", self._listen)
        app.on_shutdown.append(self._release)
        return app

    async def _release(self, _app: web.Application) -> None:
        # Lets hanging handlers finish so the test server closes at once.
        self._released.set()

    async def _listen(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), CIMultiDict(request.headers), body)
        )
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return _error(401, "INVALID_AUTH", "Invalid credentials.")
        if self.fail_429_times > 0:
            self.fail_429_times -= 1
            return _error(429, "TOO_MANY_REQUESTS", "Too many requests. Please try again later")
        if self.mode == "error_500":
            return _error(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        if self.mode == "corrupt":
            return _error(400, "Bad Request", CORRUPT_MESSAGE)
        if self.mode == "hang":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.hang_seconds)
        return web.json_response(self.listen_response())

    def listen_response(self) -> dict[str, Any]:
        utterances = [_utterance(start, end, text) for start, end, text in self.utterances]
        words = [word for utterance in utterances for word in utterance["words"]]
        alternative: dict[str, Any] = {
            "transcript": " ".join(u["transcript"] for u in utterances),
            "confidence": 0.98,
        }
        if self.mode != "transcript_only":
            alternative["words"] = words
        results: dict[str, Any] = {"channels": [{"alternatives": [alternative]}]}
        if self.mode == "ok":
            results["utterances"] = utterances
        metadata = {
            "request_id": str(uuid.uuid4()),
            "duration": self.duration,
            "channels": 1,
            "models": [str(uuid.uuid4())],
            "model_info": {},
        }
        return {"metadata": metadata, "results": results}


def _utterance(start: float, end: float, text: str) -> dict[str, Any]:
    tokens = text.split()
    step = (end - start) / max(1, len(tokens))
    words = [
        {
            "word": token.strip(".,?!").lower(),
            "start": round(start + i * step, 3),
            "end": round(start + (i + 1) * step, 3),
            "confidence": 0.98,
            "punctuated_word": token,
        }
        for i, token in enumerate(tokens)
    ]
    return {
        "start": start,
        "end": end,
        "confidence": 0.98,
        "channel": 0,
        "transcript": text,
        "words": words,
        "id": str(uuid.uuid4()),
    }


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}, status=status
    )
