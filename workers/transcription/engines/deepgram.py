"""Deepgram's pre-recorded API, called the way Cap calls it (nova-3, smart formatting, utterances).

The media is probed locally first: a video without an audio track, or one that
cannot be opened, is answered without uploading gigabytes to learn the same.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from config import Settings
from workers.transcription.engines import CorruptMedia, ProgressCallback, Segment, Transcript, TransientEngineError
from workers.transcription.engines.whisper import probe_media

LISTEN_PARAMS: Mapping[str, str] = {
    "model": "nova-3",
    "smart_format": "true",
    "utterances": "true",
    "punctuate": "true",
}
DEFAULT_CONTENT_TYPE = "video/mp4"
_MEDIA_STATUSES = frozenset({415, 422})
# Deepgram answers 400 both for bad media ("failed to process audio: corrupt or unsupported data")
# and for bad parameters; only the former condemns the video, the latter is ours to fix.
_MEDIA_WORDS = ("corrupt", "failed to process audio", "unsupported data", "unsupported media", "decode", "no audio")
_SENTENCE_END = (".", "?", "!")
_MAX_WORDS_GAP = 1.5  # seconds of silence that also end a fallback segment


class DeepgramConfigError(RuntimeError):
    """Deepgram refused our credentials or request: retrying cannot help, an operator must act."""


class DeepgramEngine:
    name = "deepgram"

    def __init__(self, settings: Settings) -> None:
        if settings.deepgram_api_key is None:
            raise DeepgramConfigError("DEEPGRAM_API_KEY is required when TRANSCRIPTION_ENGINE=deepgram")
        self._key = settings.deepgram_api_key.get_secret_value()
        self._url = settings.deepgram_base_url.rstrip("/") + "/v1/listen"
        self._timeout = aiohttp.ClientTimeout(total=settings.engine_http_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        probe = await asyncio.to_thread(probe_media, media_path)
        if not probe.has_audio:
            return Transcript(segments=[], duration=probe.duration, has_audio=False, note="no audio track")
        body = await self._listen(media_path)
        on_progress(1.0)
        return parse_response(body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession must be born inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _listen(self, media_path: Path) -> dict[str, Any]:
        headers = {"Authorization": f"Token {self._key}", "Content-Type": content_type_for(media_path)}
        try:
            with media_path.open("rb") as media:  # aiohttp streams it in chunks, read off the loop
                async with self._client().post(self._url, params=LISTEN_PARAMS, data=media, headers=headers) as resp:
                    text = await resp.text()
                    _raise_for_status(resp.status, text)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientEngineError(f"Deepgram request failed: {_describe(exc)}") from exc
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise TransientEngineError(f"Deepgram answered with invalid JSON: {text[:200]!r}") from exc
        if not isinstance(body, dict):
            raise TransientEngineError(f"Deepgram answered with unexpected JSON: {text[:200]!r}")
        return body


def content_type_for(media_path: Path) -> str:
    guessed, _ = mimetypes.guess_type(media_path.name)
    return guessed or DEFAULT_CONTENT_TYPE


def parse_response(body: Mapping[str, Any]) -> Transcript:
    """Segments from utterances; failing those, words grouped into sentences; failing those, the transcript."""
    metadata = body.get("metadata") or {}
    results = body.get("results") or {}
    duration = _float_or_none(metadata.get("duration"))
    alternative = _first_alternative(results)
    segments = (
        _from_utterances(results.get("utterances"))
        or _from_words(alternative.get("words"))
        or _from_transcript(alternative.get("transcript"), duration)
    )
    channel = (results.get("channels") or [{}])[0]
    return Transcript(
        segments=segments,
        duration=duration,
        has_audio=True,
        note=None if segments else "no speech detected",
        language=channel.get("detected_language") if isinstance(channel, dict) else None,
        extra={"request_id": metadata["request_id"]} if "request_id" in metadata else {},
    )


def _raise_for_status(status: int, text: str) -> None:
    if status < 300:
        return
    message = _error_message(text)
    if status in (401, 403):
        raise DeepgramConfigError(f"Deepgram rejected the API key (HTTP {status}: {message}); check DEEPGRAM_API_KEY")
    if status in (408, 429) or status >= 500:
        raise TransientEngineError(f"Deepgram HTTP {status}: {message}")
    if status in _MEDIA_STATUSES or (status == 400 and any(word in message.lower() for word in _MEDIA_WORDS)):
        raise CorruptMedia(f"Deepgram could not process the media: {message}")
    raise DeepgramConfigError(f"Deepgram refused the request (HTTP {status}: {message})")


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no details"
    if isinstance(body, dict):
        for key in ("err_msg", "message", "error", "reason"):
            if body.get(key):
                return str(body[key])
    return text.strip()[:300]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _first_alternative(results: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        alternative = results["channels"][0]["alternatives"][0]
    except (KeyError, IndexError, TypeError):
        return {}
    return alternative if isinstance(alternative, dict) else {}


def _from_utterances(utterances: Any) -> list[Segment]:
    if not isinstance(utterances, list):
        return []
    segments = [
        Segment(start=float(u["start"]), end=float(u["end"]), text=str(u["transcript"]).strip())
        for u in utterances
        if str(u.get("transcript", "")).strip()
    ]
    return sorted(segments, key=lambda s: s.start)  # multichannel utterances come per channel


def _from_words(words: Any) -> list[Segment]:
    if not isinstance(words, list):
        return []
    segments: list[Segment] = []
    current: list[Mapping[str, Any]] = []
    for word in words:
        if current and float(word["start"]) - float(current[-1]["end"]) > _MAX_WORDS_GAP:
            segments.append(_words_segment(current))
            current = []
        current.append(word)
        if _word_text(word).endswith(_SENTENCE_END):
            segments.append(_words_segment(current))
            current = []
    if current:
        segments.append(_words_segment(current))
    return segments


def _words_segment(words: list[Mapping[str, Any]]) -> Segment:
    text = " ".join(_word_text(w) for w in words)
    return Segment(start=float(words[0]["start"]), end=float(words[-1]["end"]), text=text)


def _word_text(word: Mapping[str, Any]) -> str:
    return str(word.get("punctuated_word") or word.get("word") or "")


def _from_transcript(transcript: Any, duration: float | None) -> list[Segment]:
    text = str(transcript or "").strip()
    return [Segment(start=0.0, end=duration or 0.0, text=text)] if text else []


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
