"""What every job needs, opened once per worker process in `startup(ctx)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiopg
from arq.connections import ArqRedis

from config import Settings
from service.storage import Storage, Storages
from workers.ai.engines import AIEngine
from workers.transcription.engines import Engine


@dataclass
class Deps:
    settings: Settings
    pool: aiopg.Pool
    redis: ArqRedis
    storages: Storages
    engine: Engine
    ai_engine: AIEngine
    # Set by the worker on SIGTERM/SIGINT: work cancelled from now on is handed back, not failed.
    stopping: bool = False

    def storage_for(self, backend: str) -> Storage:
        return self.storages.get(backend)


def deps(ctx: dict[str, Any]) -> Deps:
    value = ctx["deps"]
    assert isinstance(value, Deps)
    return value
