"""The worker benchmark's baseline: bare arq running a no-op function (for bench/jobs.py).

    python bench/bare_arq.py --redis-url URL --queue NAME --max-jobs 4 --poll-delay 0.1 --keep-result 3600

Logging is configured at INFO like `capvid worker`, so arq logs each job in both.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func


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
