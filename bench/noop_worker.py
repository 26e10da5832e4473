"""`capvid worker` with a no-op transcription engine injected (for bench/jobs.py).

    python bench/noop_worker.py [--engine-seconds S]

Everything else is the real worker, started through the real command line (settings, logging,
job functions and their wrappers, the outbox relay, heartbeats): only `build_engine` is replaced,
so no production setting names a fake engine. The recovery cron is left out: it is no part of
a job's path, and its sweep would take the bench's very short leases for dead claims.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import Settings  # noqa: E402
from service.cli import main as capvid_main  # noqa: E402
from workers import settings as worker_module  # noqa: E402
from workers.transcription.engines import ProgressCallback, Transcript  # noqa: E402


class NoopEngine:
    """Hears nothing, at once (or after `seconds`, to let a heartbeat fall due)."""

    name = "noop"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        on_progress(1.0)
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return Transcript(segments=[], duration=None, note="no-op engine")

    async def aclose(self) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engine-seconds", type=float, default=0.0, help="how long each transcription takes")
    parser.add_argument("--max-jobs", type=int, help="arq's max_jobs (default: the production worker's)")
    args = parser.parse_args()
    create_worker = worker_module.create_worker
    extra = {"max_jobs": args.max_jobs} if args.max_jobs else {}

    def without_recovery(settings: Settings, **overrides: Any) -> worker_module.CapvidWorker:
        return create_worker(settings, **{"cron_jobs": [], **extra, **overrides})

    with mock.patch.object(worker_module, "build_engine", lambda _settings: NoopEngine(args.engine_seconds)), \
            mock.patch.object(worker_module, "create_worker", without_recovery):
        return capvid_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
