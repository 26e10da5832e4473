"""Local speech-to-text with faster-whisper (CTranslate2), no network needed for the default model.

All blocking work (probing, decoding, model loading, inference) runs in worker
threads so the event loop keeps sending job heartbeats meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from config import Settings
from workers.transcription.engines import CorruptMedia, ProgressCallback, Segment, Transcript
from workers.transcription.engines.model_files import resolve_model

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLING_RATE = 16_000  # what whisper's feature extractor expects

# Greedy decoding: on 88 s of speech (2 CPU cores, int8) it ran in ~4.8 s against ~6.7 s
# for beam 5, with the same words bar one; temperature fallback still covers hard spots.
BEAM_SIZE = 1

# Silero VAD (bundled with faster-whisper, offline): without it whisper invents words
# ("You", "Thank you.") in silent stretches, which would land in captions and summaries.
VAD_FILTER = True

_models: dict[tuple[str, str, str, int], WhisperModel] = {}
_models_lock = threading.Lock()


@dataclass(frozen=True)
class MediaProbe:
    has_audio: bool
    duration: float | None  # of the whole container, seconds
    audio_duration: float | None  # what the audio stream's header claims, seconds


def probe_media(path: Path) -> MediaProbe:
    """Stream layout and durations from the container header, without decoding. Blocking.

    Raises CorruptMedia when the container cannot even be opened.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            audio = container.streams.audio
            return MediaProbe(
                has_audio=bool(audio),
                duration=_container_duration(container),
                audio_duration=_stream_duration(audio[0]) if audio else None,
            )
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise  # a missing or unreadable file is our problem, not the media's
        raise CorruptMedia(decode_failure_reason(exc)) from exc


def decode_failure_reason(exc: BaseException) -> str:
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"media could not be decoded: {detail}"


def load_model(settings: Settings) -> WhisperModel:
    """The process-wide WhisperModel for these settings, loaded on first use. Blocking."""
    # One lock for resolving and loading: two jobs starting together load the model once.
    with _models_lock:
        path = resolve_model(settings)
        key = (path, settings.whisper_device, settings.whisper_compute_type, settings.whisper_cpu_threads)
        model = _models.get(key)
        if model is None:
            from faster_whisper import WhisperModel  # heavy import, only where whisper is used

            model = WhisperModel(
                path,
                device=settings.whisper_device,
                compute_type=settings.whisper_compute_type,
                cpu_threads=settings.whisper_cpu_threads,
                download_root=str(settings.model_cache_dir),
            )
            _models[key] = model
        return model


class WhisperEngine:
    name = "whisper"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: WhisperModel | None = None

    async def load(self) -> WhisperModel:
        if self._model is None:
            self._model = await asyncio.to_thread(load_model, self._settings)
        return self._model

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        probe = await asyncio.to_thread(probe_media, media_path)
        if not probe.has_audio:
            return Transcript(segments=[], duration=probe.duration, has_audio=False, note="no audio track")
        model = await self.load()
        # A cancelled job (timeout, shutdown) cannot kill its thread; the flag makes it stop early.
        stop = threading.Event()
        try:
            return await asyncio.to_thread(_transcribe_blocking, model, media_path, probe, on_progress, stop)
        finally:
            stop.set()

    async def aclose(self) -> None:
        # The model stays in the process-wide cache for the next engine instance.
        self._model = None


def _transcribe_blocking(
    model: WhisperModel,
    media_path: Path,
    probe: MediaProbe,
    on_progress: ProgressCallback,
    stop: threading.Event,
) -> Transcript:
    audio = _decode_audio(media_path)
    if audio.size == 0:
        return _empty_audio(probe)
    duration = audio.size / SAMPLING_RATE
    pieces, info = model.transcribe(audio, beam_size=BEAM_SIZE, vad_filter=VAD_FILTER)
    segments = _collect_segments(pieces, duration, on_progress, stop)
    on_progress(1.0)
    return Transcript(
        segments=segments,
        duration=duration,
        has_audio=True,
        note=None if segments else "no speech detected",
        language=info.language if segments else None,
        extra={"language_probability": info.language_probability} if segments else {},
    )


def _decode_audio(media_path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    from faster_whisper.audio import decode_audio

    try:
        audio = decode_audio(str(media_path), sampling_rate=SAMPLING_RATE)
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise CorruptMedia(decode_failure_reason(exc)) from exc
    return np.asarray(audio, dtype=np.float32)


def _empty_audio(probe: MediaProbe) -> Transcript:
    # faster-whisper skips undecodable frames: a stream that claims a length but yields
    # nothing is damaged, while one with no length at all simply recorded nothing.
    if probe.audio_duration:
        raise CorruptMedia("media could not be decoded: the audio track has no decodable samples")
    return Transcript(segments=[], duration=probe.duration, has_audio=False, note="audio track is empty")


def _collect_segments(
    pieces: Any, duration: float, on_progress: ProgressCallback, stop: threading.Event
) -> list[Segment]:
    segments: list[Segment] = []
    try:
        for piece in pieces:  # lazy: each step runs the model on the next window
            if stop.is_set():
                break
            text = piece.text.strip()
            if text:
                segments.append(Segment(start=float(piece.start), end=float(piece.end), text=text))
            on_progress(min(1.0, piece.end / duration))
    finally:
        if hasattr(pieces, "close"):
            pieces.close()
    return segments


def _container_duration(container: Any) -> float | None:
    if container.duration is not None:
        return float(container.duration / av.time_base)
    durations = [d for d in (_stream_duration(s) for s in container.streams) if d is not None]
    return max(durations) if durations else None


def _stream_duration(stream: Any) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)
