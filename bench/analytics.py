"""Analytics benchmark: the view count of a video with 1,000,000 views against one with 10, and view ingest.

    python bench/analytics.py [--views N] [--requests N] [--ingest N] [--concurrency N]

Uses DATABASE_URL / REDIS_URL when set, else embedded servers in a temp folder, and the real
`capvid web` in a subprocess. Seeds the views with SQL (viewer rows, daily rollups and counters,
consistent with what the HTTP route writes), then, in one run:

1. GET /api/video/analytics for both videos, interleaved, one request at a time: the medians
   must be within 20% of each other (the count is a counter, not a scan of the views);
2. POST /api/video/view with distinct viewerIds at a fixed concurrency: views per second, and the
   count must come out exact; the same viewers again (deduplicated, nothing counts) likewise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from a checkout

import aiohttp  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402

from bench.common import (  # noqa: E402
    BenchError, Figure, add_common_arguments, bench_queue, machine, new_token, print_table, spawn_capvid,
    start_servers, temp_folder, wait_http, write_figures,
)
from config import Settings, load_settings  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402

NAME = "analytics"
TARGET = 1.20  # the larger median over the smaller
SEED_DAYS = 365


@dataclass
class Timings:
    label: str
    seconds: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def seed_views(database_url: str, video_id: str, views: int, now: datetime) -> float:
    """`views` distinct viewers of `video_id`, spread over the last SEED_DAYS days, with the daily
    rollups and the counter that the view route would have written for them. Returns seconds."""
    start = time.perf_counter()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO video_viewers (video_id, viewer_key, last_counted_at)
            SELECT %(video)s, sha256(convert_to(%(video)s || ':' || g, 'UTF8')),
                   %(now)s - (g %% %(days)s) * interval '1 day' - interval '1 minute'
              FROM generate_series(1, %(views)s) AS g
            """,
            {"video": video_id, "now": now, "days": SEED_DAYS, "views": views},
        )
        cur.execute(
            """
            INSERT INTO video_view_days (video_id, day, count)
            SELECT video_id, (last_counted_at AT TIME ZONE 'UTC')::date, count(*)
              FROM video_viewers WHERE video_id = %(video)s GROUP BY 1, 2
            """,
            {"video": video_id},
        )
        cur.execute(
            """
            INSERT INTO video_stats AS s (video_id, view_count)
            SELECT %(video)s, count(*) FROM video_viewers WHERE video_id = %(video)s
            ON CONFLICT (video_id) DO UPDATE SET view_count = EXCLUDED.view_count
            """,
            {"video": video_id},
        )
    conn.close()
    return time.perf_counter() - start


def settle(database_url: str) -> None:
    """Statistics for the planner, and the seed's dirty pages written now rather than while timing."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE video_viewers, video_view_days, video_stats")
        try:
            cur.execute("CHECKPOINT")
        except psycopg2.errors.InsufficientPrivilege:
            pass  # not a superuser (nor pg_checkpoint): the server checkpoints on its own schedule
    conn.close()


async def create_video(http: aiohttp.ClientSession, base: str, name: str) -> str:
    async with http.post(f"{base}/api/video", json={"name": name, "public": True}) as response:
        if response.status != 201:
            raise BenchError(f"POST /api/video: {response.status} {await response.text()}")
        video_id: str = (await response.json())["id"]
        return video_id


async def view_count(http: aiohttp.ClientSession, base: str, video_id: str, **params: str) -> int:
    async with http.get(f"{base}/api/video/analytics", params={"videoId": video_id, **params}) as response:
        if response.status != 200:
            raise BenchError(f"GET /api/video/analytics: {response.status} {await response.text()}")
        count: int = (await response.json())["count"]
        return count


async def timed_reads(
    http: aiohttp.ClientSession, base: str, videos: dict[str, str], requests: int, warmup: int, **params: str
) -> dict[str, Timings]:
    """`requests` reads of each video, interleaved one at a time (the order alternates every pair)."""
    labels = list(videos)
    timings = {label: Timings(label, []) for label in labels}
    for n in range(warmup + requests):
        for label in labels if n % 2 == 0 else reversed(labels):
            start = time.perf_counter()
            await view_count(http, base, videos[label], **params)
            if n >= warmup:
                timings[label].seconds.append(time.perf_counter() - start)
    return timings


async def ingest(base: str, video_id: str, viewers: int, concurrency: int, prefix: str) -> float:
    """POST /api/video/view anonymously for viewerIds prefix-0 .. prefix-(viewers-1); returns seconds."""
    pending = iter(range(viewers))
    failures: list[str] = []

    async def worker(http: aiohttp.ClientSession) -> None:
        for n in pending:
            async with http.post(
                f"{base}/api/video/view", params={"videoId": video_id}, json={"viewerId": f"{prefix}-{n}"}
            ) as response:
                if response.status != 204:
                    failures.append(f"{response.status} {await response.text()}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if failures:
        raise BenchError(f"{len(failures)} views failed, e.g. {failures[0]}")
    return elapsed


def postgres_version(database_url: str) -> str:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        row = cur.fetchone()
    conn.close()
    return f"PostgreSQL {row[0] if row else '?'}"


async def run(args: argparse.Namespace, settings: Settings, tmp: Path, stack: ExitStack) -> tuple[bool, list[Figure]]:
    token = await new_token(settings)
    child = spawn_capvid(stack, "web", settings, tmp)
    base = f"http://127.0.0.1:{settings.port}"
    await wait_http(f"{base}/readyz", child, tmp / f"web-{settings.port}.log")
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection: requests one at a time
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as http:
        many = await create_video(http, base, "one million views")
        few = await create_video(http, base, "ten views")
        now = datetime.now(timezone.utc)
        print(f"seeding {args.views:,} views over {SEED_DAYS} days...", flush=True)
        seeded = seed_views(settings.database_url, many, args.views, now)
        seed_views(settings.database_url, few, 10, now)
        settle(settings.database_url)
        print(f"seeded in {seeded:.1f} s", flush=True)
        labels = {f"{args.views:,} views": many, "10 views": few}
        for label, video_id in labels.items():
            got = await view_count(http, base, video_id)
            expected = args.views if video_id == many else 10
            if got != expected:
                raise BenchError(f"{label}: the route says {got}, {expected} were seeded")

        print(f"timing GET /api/video/analytics: {args.requests} requests per video, interleaved...", flush=True)
        plain = await timed_reads(http, base, labels, args.requests, args.warmup)
        today = now.date()
        year = {"from": (today - timedelta(days=SEED_DAYS - 1)).isoformat(), "to": today.isoformat()}
        print(f"timing GET /api/video/analytics?from={year['from']}&to={year['to']}...", flush=True)
        ranged = await timed_reads(http, base, labels, args.requests, args.warmup // 4, **year)

        fresh = await create_video(http, base, "ingest")
        print(f"ingest: {args.ingest:,} views with distinct viewerIds, concurrency {args.concurrency}...", flush=True)
        first = await ingest(base, fresh, args.ingest, args.concurrency, "viewer")
        counted_first = await view_count(http, base, fresh)
        print("ingest: the same viewers again (deduplicated: none counts)...", flush=True)
        again = await ingest(base, fresh, args.ingest, args.concurrency, "viewer")
        counted_again = await view_count(http, base, fresh)
    if (counted_first, counted_again) != (args.ingest, args.ingest):
        raise BenchError(f"ingest counted {counted_first} then {counted_again}, expected {args.ingest} both times")
    met = report(settings, args, plain, ranged, first, again, date.today())
    return met, figures(args, plain, ranged, first, again)


def figures(args: argparse.Namespace, plain: dict[str, Timings], ranged: dict[str, Timings], first: float,
            again: float) -> list[Figure]:
    (big, small), (ranged_big, ranged_small) = ([t.median * 1e3 for t in group.values()] for group in (plain, ranged))
    views = f"{args.views:,} views vs 10"
    return [
        Figure.compare(NAME, f"GET /api/video/analytics median ({views})", big, small, "ms", "10 views",
                       f"within {TARGET - 1:.0%}", max(big, small) / min(big, small) <= TARGET),
        Figure.compare(NAME, f"GET /api/video/analytics?from&to (one year) median ({views})", ranged_big,
                       ranged_small, "ms", "10 views", f"within {TARGET - 1:.0%}",
                       max(ranged_big, ranged_small) / min(ranged_big, ranged_small) <= TARGET),
        Figure.compare(NAME, f"POST /api/video/view: counted views/s (concurrency {args.concurrency})",
                       args.ingest / first, args.ingest / again, "views/s", "same viewers again, deduplicated"),
    ]


def report(
    settings: Settings,
    args: argparse.Namespace,
    plain: dict[str, Timings],
    ranged: dict[str, Timings],
    first: float,
    again: float,
    today: date,
) -> bool:
    print(f"\nmachine:   {machine()}")
    print(f"database:  {postgres_version(settings.database_url)}; web: one `capvid web` process, "
          f"DB_POOL_MAX={settings.db_pool_max}")
    print(f"date:      {today.isoformat()}; load average now {os.getloadavg()[0]:.1f} (other work on the machine)\n")
    print(f"{'GET /api/video/analytics':<44}{'median ms':>10}{'p90 ms':>9}{'p99 ms':>9}")
    for title, group in (("", plain), (" (from/to: one year)", ranged)):
        for label, timings in group.items():
            print(f"{label + title:<44}{timings.median * 1e3:>10.3f}{timings.quantile(0.9) * 1e3:>9.3f}"
                  f"{timings.quantile(0.99) * 1e3:>9.3f}")
    big, small = (t.median for t in plain.values())
    ratio = max(big, small) / min(big, small)
    ranged_big, ranged_small = (t.median for t in ranged.values())
    print(f"\nmedian {args.views:,} views / median 10 views: {big / small:.3f} "
          f"(from/to: {ranged_big / ranged_small:.3f})")
    met = ratio <= TARGET
    print(f"target: medians within {TARGET - 1:.0%} of each other: {'met' if met else 'not met'} "
          f"({ratio - 1:.1%} apart)\n")
    print(f"{'POST /api/video/view':<44}{'views':>10}{'seconds':>9}{'views/s':>9}")
    print(f"{'distinct viewers (all counted)':<44}{args.ingest:>10,}{first:>9.2f}{args.ingest / first:>9,.0f}")
    print(f"{'the same viewers again (none counted)':<44}{args.ingest:>10,}{again:>9.2f}{args.ingest / again:>9,.0f}")
    print(f"concurrency {args.concurrency}; counts checked exact: {args.ingest:,} after both passes")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--views", type=int, help="views of the large video (default 1,000,000; --quick 100,000)")
    parser.add_argument("--requests", type=int, help="timed reads per video (default 2000; --quick 300)")
    parser.add_argument("--warmup", type=int, help="untimed reads per video first (default 200; --quick 50)")
    parser.add_argument("--ingest", type=int, help="views posted in the ingest test (default 20,000; --quick 2,000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight while ingesting (default 32)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    for name, full, quick in (("views", 1_000_000, 100_000), ("requests", 2000, 300), ("warmup", 200, 50),
                              ("ingest", 20_000, 2000)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.views, args.requests, args.ingest, args.concurrency) < 1 or args.warmup < 0:
        parser.error("counts must be positive")
    try:
        with ExitStack() as stack:
            tmp = temp_folder(stack, "analytics", args.keep)
            database_url, redis_url = start_servers(stack, tmp)
            settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage",
                                     host="127.0.0.1", port=free_port(), arq_queue_name=bench_queue())
            apply_migrations(settings.database_url)
            met, found = asyncio.run(run(args, settings, tmp, stack))
            print()
            print_table(found)
            write_figures(args.json, found)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
