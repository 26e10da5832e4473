"""The arq job for AI metadata."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from workers.ai.pipeline import run_ai_generation
from workers.deps import deps


class GenerateArgs(BaseModel):
    run: int


async def generate_ai(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
    return await run_ai_generation(deps(ctx), video_id, GenerateArgs.model_validate(args).run)
