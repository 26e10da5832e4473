"""AI metadata engines: a title, a summary and chapters from a timed transcript.

`TransientAIError` is retried with backoff (network, 429, 5xx, timeouts, a model that
answered JSON we could not validate); any other exception is final.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from config import Settings


class Cue(BaseModel):
    start: float
    end: float
    text: str


class Chapter(BaseModel):
    title: str = Field(min_length=1)
    start: float = Field(ge=0)


class AIResult(BaseModel):
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    chapters: list[Chapter] = Field(default_factory=list)


class TransientAIError(Exception):
    """A failure a later attempt may not repeat."""


class AIEngine(Protocol):
    name: str

    async def generate(self, cues: list[Cue], duration: float) -> AIResult:
        """`duration` is the video's length in seconds. Chapters only when duration >= 120."""
        ...

    async def aclose(self) -> None: ...


def build_ai_engine(settings: Settings) -> AIEngine:
    if settings.ai_engine == "openai":
        from workers.ai.engines.openai import OpenAIEngine

        return OpenAIEngine(settings)
    from workers.ai.engines.builtin import BuiltinEngine

    return BuiltinEngine(settings)
