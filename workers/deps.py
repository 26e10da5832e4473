"""What every job needs, opened once per worker process in `startup(ctx)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiopg
from arq.connections import ArqRedis

from config import Settings
from service.storage import Storage, build_storage
from workers.ai.engines import AIEngine
from workers.transcription.engines import Engine


@dataclass
class Deps:
    settings: Settings
    pool: aiopg.Pool
    redis: ArqRedis
    storage: Storage
    engine: Engine
    ai_engine: AIEngine

    def storage_for(self, backend: str) -> Storage:
        # A video keeps the backend it was uploaded to, even after STORAGE_BACKEND changes.
        if backend == self.storage.backend:
            return self.storage
        return build_storage(self.settings, backend)


def deps(ctx: dict[str, Any]) -> Deps:
    value = ctx["deps"]
    assert isinstance(value, Deps)
    return value
