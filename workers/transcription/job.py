"""The arq job: thin, JSON-safe arguments, the work lives in the pipeline."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from workers.deps import deps
from workers.transcription.pipeline import run_transcription


class TranscribeArgs(BaseModel):
    run: int


async def transcribe(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
    return await run_transcription(deps(ctx), video_id, TranscribeArgs.model_validate(args).run)
