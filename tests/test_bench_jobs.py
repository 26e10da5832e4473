"""The worker benchmark's own parts: the CPU a worker spent at a moment, read off sampled values; where
its transcripts go."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.common import BenchError
from bench.jobs import cpu_at, filesystem_of, storage_folder

SAMPLES = [(100.0, 5.0), (101.0, 6.0), (103.0, 6.0), (104.0, 8.0)]


def test_cpu_at_a_moment_is_interpolated_between_the_samples_around_it() -> None:
    assert cpu_at(SAMPLES, 100.5) == pytest.approx(5.5)
    assert cpu_at(SAMPLES, 103.5) == pytest.approx(7.0)
    assert cpu_at(SAMPLES, 101.0) == cpu_at(SAMPLES, 102.0) == 6.0


def test_a_moment_outside_the_samples_cannot_be_measured() -> None:
    with pytest.raises(BenchError):
        cpu_at(SAMPLES, 99.0)
    with pytest.raises(BenchError):
        cpu_at(SAMPLES, 104.5)


def test_transcripts_go_under_the_chosen_folder_which_is_cleared_after_the_run(tmp_path: Path) -> None:
    with ExitStack() as stack:
        storage = storage_folder(stack, tmp_path / "run", tmp_path / "chosen")
        storage.mkdir()
        (storage / "transcription.vtt").write_text("WEBVTT\n")
        assert storage.parent.parent == tmp_path / "chosen"
    assert list((tmp_path / "chosen").iterdir()) == []


@pytest.mark.skipif(filesystem_of(Path("/dev/shm")) != "tmpfs", reason="no tmpfs at /dev/shm here")
def test_by_default_transcripts_go_to_tmpfs(tmp_path: Path) -> None:
    with ExitStack() as stack:
        storage = storage_folder(stack, tmp_path, None)
        assert filesystem_of(storage.parent) == "tmpfs"
        assert storage.parent.is_dir()
    assert not storage.parent.exists()


def test_without_room_in_tmpfs_transcripts_go_to_the_run_folder(tmp_path: Path) -> None:
    with ExitStack() as stack:
        assert storage_folder(stack, tmp_path, None, needed_bytes=2**62) == tmp_path / "storage"
