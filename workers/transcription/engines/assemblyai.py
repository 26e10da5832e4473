"""AssemblyAI's async API as Cap uses it: upload, create a transcript, poll, fetch sentences.

The media is probed locally first, like the other engines, so a video without an
audio track or a file that cannot be opened is answered without an upload.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from config import Settings
from workers.transcription.engines import CorruptMedia, ProgressCallback, Segment, Transcript, TransientEngineError
from workers.transcription.engines.whisper import MediaProbe, probe_media

# What a finished transcript's `error` says when the file has no sound at all, e.g.
# "Transcoding failed. File does not appear to contain audio."
_NO_AUDIO_PHRASES = ("does not appear to contain audio", "no audio")
_TOO_SHORT_PHRASES = ("too short",)
# Errors about the file itself: another attempt at the same file ends the same way. Anything
# else (their CDN failing to fetch our upload, internal errors) is retried.
_MEDIA_PHRASES = ("transcod", "decod", "corrupt", "unsupported", "invalid audio", "invalid media", "invalid file")
_PROGRESS_UPLOADED = 0.1
_PROGRESS_PROCESSING = 0.5


class AssemblyAIConfigError(RuntimeError):
    """AssemblyAI refused our credentials or request: retrying cannot help, an operator must act."""


class AssemblyAIEngine:
    name = "assemblyai"

    def __init__(self, settings: Settings) -> None:
        if settings.assemblyai_api_key is None:
            raise AssemblyAIConfigError("ASSEMBLYAI_API_KEY is required when TRANSCRIPTION_ENGINE=assemblyai")
        self._key = settings.assemblyai_api_key.get_secret_value()
        self._base = settings.assemblyai_base_url.rstrip("/")
        self._poll_seconds = settings.assemblyai_poll_seconds
        self._deadline_seconds = settings.engine_http_timeout_seconds
        self._timeout = aiohttp.ClientTimeout(total=settings.engine_http_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        probe = await asyncio.to_thread(probe_media, media_path)
        if not probe.has_audio:
            return Transcript(segments=[], duration=probe.duration, has_audio=False, note="no audio track")
        upload_url = await self._upload(media_path)
        on_progress(_PROGRESS_UPLOADED)
        transcript_id = await self._create(upload_url)
        result = await self._wait(transcript_id, on_progress)
        if result.get("status") == "error":
            return failed_transcript(str(result.get("error") or "unknown error"), probe)
        sentences = await self._request("GET", f"/v2/transcript/{transcript_id}/sentences")
        on_progress(1.0)
        return completed_transcript(result, sentences, probe)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession must be born inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"authorization": self._key}
            )
        return self._session

    async def _upload(self, media_path: Path) -> str:
        with media_path.open("rb") as media:  # aiohttp streams it in chunks, read off the loop
            body = await self._request(
                "POST", "/v2/upload", data=media, headers={"Content-Type": "application/octet-stream"}
            )
        return _required_str(body, "upload_url")

    async def _create(self, upload_url: str) -> str:
        request = {"audio_url": upload_url, "punctuate": True, "format_text": True}
        body = await self._request("POST", "/v2/transcript", json=request)
        return _required_str(body, "id")

    async def _wait(self, transcript_id: str, on_progress: ProgressCallback) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_seconds
        reported_processing = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TransientEngineError(
                    f"AssemblyAI did not finish transcript {transcript_id} within {self._deadline_seconds:g} s"
                )
            await asyncio.sleep(min(self._poll_seconds, remaining))
            body = await self._request("GET", f"/v2/transcript/{transcript_id}")
            status = body.get("status")
            if status in ("completed", "error"):
                return body
            if status == "processing" and not reported_processing:
                on_progress(_PROGRESS_PROCESSING)
                reported_processing = True

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._client().request(method, self._base + path, **kwargs) as resp:
                text = await resp.text()
                _raise_for_status(resp.status, text)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientEngineError(f"AssemblyAI {method} {path} failed: {_describe(exc)}") from exc
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise TransientEngineError(f"AssemblyAI answered {path} with invalid JSON: {text[:200]!r}") from exc
        if not isinstance(body, dict):
            raise TransientEngineError(f"AssemblyAI answered {path} with unexpected JSON: {text[:200]!r}")
        return body


def completed_transcript(result: Mapping[str, Any], sentences: Mapping[str, Any], probe: MediaProbe) -> Transcript:
    segments = sorted(
        (
            Segment(start=float(s["start"]) / 1000, end=float(s["end"]) / 1000, text=str(s["text"]).strip())
            for s in sentences.get("sentences") or []
            if str(s.get("text", "")).strip()
        ),
        key=lambda segment: segment.start,
    )
    duration = result.get("audio_duration")
    return Transcript(
        segments=segments,
        duration=float(duration) if isinstance(duration, (int, float)) else probe.duration,
        has_audio=True,
        note=None if segments else "no speech detected",
        language=result.get("language_code") if segments else None,
        extra={"transcript_id": result["id"]} if "id" in result else {},
    )


def failed_transcript(error: str, probe: MediaProbe) -> Transcript:
    """The outcome of a transcript whose status is `error`: an empty transcript, or the right exception."""
    lowered = error.lower()
    if any(phrase in lowered for phrase in _NO_AUDIO_PHRASES):
        return Transcript(segments=[], duration=probe.duration, has_audio=False, note="no audio track")
    if any(phrase in lowered for phrase in _TOO_SHORT_PHRASES):
        return Transcript(segments=[], duration=probe.duration, has_audio=True, note="audio too short to transcribe")
    if any(phrase in lowered for phrase in _MEDIA_PHRASES):
        raise CorruptMedia(f"AssemblyAI could not process the media: {error}")
    raise TransientEngineError(f"AssemblyAI transcription failed: {error}")


def _raise_for_status(status: int, text: str) -> None:
    if status < 300:
        return
    message = _error_message(text)
    if status in (401, 403):
        raise AssemblyAIConfigError(
            f"AssemblyAI rejected the API key (HTTP {status}: {message}); check ASSEMBLYAI_API_KEY"
        )
    if status in (408, 429) or status >= 500:
        raise TransientEngineError(f"AssemblyAI HTTP {status}: {message}")
    if status in (415, 422) or (status == 400 and any(p in message.lower() for p in ("corrupt", "decode"))):
        raise CorruptMedia(f"AssemblyAI could not process the media: {message}")
    raise AssemblyAIConfigError(f"AssemblyAI refused the request (HTTP {status}: {message})")


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no details"
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return text.strip()[:300]


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise TransientEngineError(f"AssemblyAI answer lacks {key!r}: {json.dumps(body)[:200]}")
    return value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
