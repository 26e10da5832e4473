"""Fixtures for the transcription engine tests: media files, the offline model, fake APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.transcription.engines.model_files import ensure_base_model

MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "media"


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    """Engines touch no database or Redis: replaces the suite-wide reset, and the servers it needs."""
    yield


@pytest.fixture(scope="session")
def whisper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache with faster-whisper-base assembled once for the whole session."""
    cache = tmp_path_factory.mktemp("whisper-models")
    ensure_base_model(cache)
    return cache


@pytest.fixture(scope="session")
def spoken_mp4() -> Path:
    return MEDIA / "spoken.mp4"


@pytest.fixture(scope="session")
def spoken_text() -> str:
    return (MEDIA / "spoken.txt").read_text().strip()


@pytest.fixture(scope="session")
def silent_mp4() -> Path:
    return MEDIA / "silent.mp4"


@pytest.fixture(scope="session")
def corrupt_mp4() -> Path:
    return MEDIA / "corrupt.mp4"
