"""`capvid worker` with a no-op transcription engine injected (for bench/jobs.py).

    python bench/noop_worker.py [--until-heartbeat] [--max-jobs N]

Everything else is the real worker, started through the real command line (settings, logging,
job functions and their wrappers, the outbox relay, heartbeats): only `build_engine` is replaced,
so no production setting names a fake engine, and the heartbeat query is wrapped (after the real
one, it tells the engine its job's beat went out). The recovery cron is left out: it is no part of
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
from service.db import Tx  # noqa: E402
from workers import settings as worker_module  # noqa: E402
from workers.transcription import queries as transcription_queries  # noqa: E402
from workers.transcription.engines import ProgressCallback, Transcript  # noqa: E402


class NoopEngine:
    """Hears nothing: at once, or (`until_heartbeat`) right after its job's first heartbeat, so that
    every job sends exactly one, as a transcription longer than LEASE_SECONDS / 3 sends at least one."""

    name = "noop"

    def __init__(self, until_heartbeat: bool) -> None:
        self.until_heartbeat = until_heartbeat
        self.beaten: dict[str, asyncio.Event] = {}  # by video id

    async def transcribe(self, media_path: Path, on_progress: ProgressCallback) -> Transcript:
        on_progress(1.0)
        if self.until_heartbeat:
            video_id = media_path.parent.name  # media keys are <owner>/<video>/<file>
            await self.beaten.setdefault(video_id, asyncio.Event()).wait()
            del self.beaten[video_id]
        return Transcript(segments=[], duration=None, note="no-op engine")

    def heartbeat_sent(self, video_id: str) -> None:
        self.beaten.setdefault(video_id, asyncio.Event()).set()

    async def aclose(self) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--until-heartbeat", action="store_true",
                        help="each transcription ends right after its job's first heartbeat")
    parser.add_argument("--max-jobs", type=int, help="arq's max_jobs (default: the production worker's)")
    args = parser.parse_args()
    create_worker = worker_module.create_worker
    extra = {"max_jobs": args.max_jobs} if args.max_jobs else {}

    def without_recovery(settings: Settings, **overrides: Any) -> worker_module.CapvidWorker:
        return create_worker(settings, **{"cron_jobs": [], **extra, **overrides})

    engine = NoopEngine(args.until_heartbeat)
    real_heartbeat = transcription_queries.heartbeat

    async def heartbeat(tx: Tx, video_id: str, *args: Any) -> bool:
        held = await real_heartbeat(tx, video_id, *args)
        engine.heartbeat_sent(video_id)
        return held

    with mock.patch.object(worker_module, "build_engine", lambda _settings: engine), \
            mock.patch.object(worker_module, "create_worker", without_recovery), \
            mock.patch.object(transcription_queries, "heartbeat", heartbeat):
        return capvid_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
