"""Engines that stop inside a job until the test lets them go: to race deletes against running work."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from workers.ai.engines import AIResult, Cue
from workers.transcription.engines import ProgressCallback, Transcript


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def pass_through(self) -> None:
        self.entered.set()
        await self.release.wait()


class PausingTranscriber:
    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner, self.gate, self.name = inner, gate, inner.name

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        await self.gate.pass_through()
        return await self.inner.transcribe(media_path, on_progress)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


class PausingAI:
    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner, self.gate, self.name = inner, gate, inner.name

    async def generate(self, cues: list[Cue], duration: float) -> AIResult:
        await self.gate.pass_through()
        return await self.inner.generate(cues, duration)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()
