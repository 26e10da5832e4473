"""Speech-to-text engines behind one small interface.

An engine turns a local media file into timed segments. It raises `CorruptMedia`
for input that will never succeed (no retry) and `TransientEngineError` for
failures worth retrying (network, 5xx, 429, timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from config import Settings

ProgressCallback = Callable[[float], None]
"""Called with the fraction (0..1) of the media transcribed so far; may be called from a thread."""


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    segments: list[Segment]
    duration: float | None
    has_audio: bool = True
    note: str | None = None  # why the transcript is empty, when it is
    language: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class CorruptMedia(Exception):
    """The media cannot be decoded: final, never retried."""


class TransientEngineError(Exception):
    """The engine failed in a way a later attempt may not: retried with backoff."""


class Engine(Protocol):
    name: str

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript: ...

    async def aclose(self) -> None: ...


def build_engine(settings: Settings) -> Engine:
    if settings.transcription_engine == "deepgram":
        from workers.transcription.engines.deepgram import DeepgramEngine

        return DeepgramEngine(settings)
    if settings.transcription_engine == "assemblyai":
        from workers.transcription.engines.assemblyai import AssemblyAIEngine

        return AssemblyAIEngine(settings)
    from workers.transcription.engines.whisper import WhisperEngine

    return WhisperEngine(settings)
