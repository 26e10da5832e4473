"""The worker benchmark's baseline: bare arq running a no-op function (for bench/jobs.py).

    python bench/bare_arq.py --redis-url URL --queue NAME --max-jobs 4 --poll-delay 0.1 --keep-result 3600

Logging is configured at INFO like `capvid worker`, so arq logs each job in both, and the loop
is the one `capvid worker` runs on (uvloop where installed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

try:  # the loop `capvid worker` runs on (workers.settings.new_event_loop), without importing capvid
    from uvloop import new_event_loop
except ImportError:
    from asyncio import new_event_loop


async def noop(ctx: dict[str, Any]) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--poll-delay", type=float, required=True)
    parser.add_argument("--keep-result", type=float, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.set_event_loop(new_event_loop())
    Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        queue_name=args.queue,
        max_jobs=args.max_jobs,
        poll_delay=args.poll_delay,
        keep_result=args.keep_result,
    ).run()


if __name__ == "__main__":
    main()
