"""`python -m bench` says what it needs before it runs anything."""

from __future__ import annotations

import pytest

import bench.run


def test_without_wrk_the_bench_command_stops_at_once_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.run, "wrk_binary", lambda: None)
    monkeypatch.setattr(bench.run, "start_servers", pytest.fail)  # nothing may start

    with pytest.raises(SystemExit) as stopped:
        bench.run.main(["--quick"])

    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "apt-get install -y wrk" in error
    assert "--only jobs,streams,transcription,delete,analytics" in error


def test_without_wrk_the_other_benchmarks_can_still_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.run, "wrk_binary", lambda: None)
    started: list[str] = []

    def run_one(name: str, *args: object) -> tuple[list[object], None]:
        started.append(name)
        return [], None

    monkeypatch.setattr(bench.run, "start_servers", lambda stack, tmp: ("postgresql://unused", "redis://unused"))
    monkeypatch.setattr(bench.run, "server_versions", lambda database_url, redis_url: "")
    monkeypatch.setattr(bench.run, "run_one", run_one)

    assert bench.run.main(["--quick", "--only", "jobs,delete"]) == 0
    assert started == ["jobs", "delete"]
