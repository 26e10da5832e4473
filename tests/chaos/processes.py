"""`capvid worker` and `capvid web` as real processes a chaos test can kill, and a supervisor
that restarts a worker whenever it exits (as honcho, systemd or a PaaS would)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config import Settings
from tests.pipeline.test_recovery import ROOT, worker_env

UNUSED_URL = "http://127.0.0.1:1"


def capvid_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a subprocess on these settings: short leases, recovery every second,
    a fast outbox sweep (tests/pipeline/test_recovery.py's worker_env), then `overrides`."""
    env = worker_env(settings, overrides.pop("DEEPGRAM_BASE_URL", UNUSED_URL))
    env.update(overrides)
    return env


class Process:
    """One `capvid <command>` process; its output goes to `log` (appended)."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command, self.log = command, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "service.cli", command], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    async def exited(self, seconds: float) -> int:
        """Wait (without blocking the loop) for the process to end; its return code."""
        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"capvid {self.command} (pid {self.pid}) still running after {seconds} s")
            await asyncio.sleep(0.05)
        return int(self.popen.returncode)

    async def stop(self, seconds: float = 30) -> None:
        """SIGTERM, and SIGKILL if it is still running after `seconds`: never left behind."""
        self.terminate()
        try:
            await self.exited(seconds)
        except AssertionError:
            self.kill()


class Supervisor:
    """Keeps one worker running, starting it again whenever it exits (a worker exits when Redis
    stays unreachable: the documented deployment runs it under a restarting supervisor).
    `async with Supervisor(...)`: on exit the worker gets SIGTERM (SIGKILL if it lingers)."""

    def __init__(self, env: dict[str, str], log: Path, restart_delay: float = 0.5) -> None:
        self.env, self.log, self.restart_delay = env, log, restart_delay
        self.starts = 0
        self.current: Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.current is not None:
            await self.current.stop(15)

    async def _run(self) -> None:
        while True:
            self.current = Process("worker", self.env, self.log)
            self.starts += 1
            while self.current.alive():
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.restart_delay)
