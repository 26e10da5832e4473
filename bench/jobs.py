"""Worker overhead benchmark: jobs per second through our whole transition path with a no-op engine,
against bare arq running a no-op function, same Redis, same worker settings, in one run.

    python bench/jobs.py [--jobs N] [--rounds 3] [--quick] [--storage-dir DIR]

Ours: N transcription requests committed the way an upload commits them (the video's media recorded,
PROCESSING, the outbox row and the event, one transaction each) and relayed to arq the way the web
process that committed them relays them, then one `capvid worker` (with a no-op engine injected,
bench/noop_worker.py) runs each: claim, heartbeat, the no-op engine, the transcript written, COMPLETE
with its event (and AI SKIPPED: an empty transcript) and the job history row in one commit. Bare: N jobs of
`async def noop(ctx): return None` enqueued in arq, then one bare arq worker (bench/bare_arq.py)
with our max_jobs, poll_delay and keep_result.

Both sides have their work queued before the worker starts, and the rate is N over the time from
the first job's start to the last job's end (arq's own result records). Each round runs every side once,
in alternating order; the figures are the medians over the rounds. Target: ours >= 0.5 of bare.

Our worker writes its transcripts to a tmpfs (/dev/shm) where there is one, or under --storage-dir: see
`storage_folder`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
from arq.connections import ArqRedis  # noqa: E402
from arq.jobs import Job  # noqa: E402

from bench.common import (  # noqa: E402
    ROOT, SPOKEN, add_common_arguments, bench_queue, BenchError, capvid_env, cpu_seconds, Figure, run_bench,
    spawn, stop_process, tail,
)
from config import Settings, load_settings  # noqa: E402
from service.admin import add_user  # noqa: E402
from service.db import create_pool, transaction  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from service.outbox import job_id as outbox_job_id, relay_once  # noqa: E402
from service.storage import Storages, media_key  # noqa: E402
from service.transcription.queries import start_transcription_run  # noqa: E402
from service.videos.queries import insert_video, lock_owned_video  # noqa: E402
from workers.settings import worker_settings  # noqa: E402

NAME = "worker overhead"
TARGET = 0.5
# The heartbeat runs every LEASE_SECONDS / 3: with a 0.3 ms lease one falls due at once (0.1 ms) in
# each job, and the no-op engine returns right after it, so the engine takes no longer than it must
# (the lease itself matters to nobody here: no second delivery, no recovery sweep).
HEARTBEAT_LEASE_SECONDS = 0.0003
SHM = Path("/dev/shm")


@dataclass
class Drain:
    jobs: int
    seconds: float  # first job's start to last job's end
    worker_cpu: float  # the worker process's CPU seconds over that span
    heartbeats: float = math.nan  # per job (ours), from Postgres' count of updated rows
    new_file_micros: float = math.nan  # creating a file on the storage disk, just before the drain (ours)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return self.worker_cpu / self.jobs * 1000


class CpuTrace:
    """The worker's CPU seconds, sampled against the wall clock while it drains, so that the CPU it spent
    between the first job's start and the last job's end (arq's records) can be read off afterwards: its
    start-up (imports, connections) and its idling after the drain stay out."""

    INTERVAL = 0.02

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds)
        self.task = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        while True:
            try:
                self.samples.append((time.time(), cpu_seconds(self.pid)))
            except OSError:
                return  # the worker exited
            await asyncio.sleep(self.INTERVAL)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        try:
            self.samples.append((time.time(), cpu_seconds(self.pid)))  # the drain ended before this
        except OSError:
            pass

    def between(self, start: float, end: float) -> float:
        return cpu_at(self.samples, end) - cpu_at(self.samples, start)


def cpu_at(samples: list[tuple[float, float]], moment: float) -> float:
    """CPU seconds at `moment`, interpolated between the (time, CPU seconds) samples around it."""
    before = max((s for s in samples if s[0] <= moment), default=None)
    after = min((s for s in samples if s[0] >= moment), default=None)
    if before is None or after is None:
        raise BenchError("the worker's CPU was not sampled over the whole drain")
    if after[0] == before[0]:
        return before[1]
    return before[1] + (after[1] - before[1]) * (moment - before[0]) / (after[0] - before[0])


def storage_folder(stack: ExitStack, tmp: Path, chosen: Path | None, needed_bytes: int = 0) -> Path:
    """Where our worker writes the transcripts: `chosen`, else a new folder in /dev/shm where that is a
    tmpfs with `needed_bytes` free, else in the run's temp folder. The rate measures the worker against
    arq, not a disk: on ext4 without a journal (as on the machines of bench/README.md) creating a file costs
    10 to 300 µs depending on how many files anything deleted on that disk in the minutes before (see
    `new_file_micros`), and that cost falls on our side alone."""
    if chosen is None and (filesystem_of(SHM) != "tmpfs" or shutil.disk_usage(SHM).free < needed_bytes):
        return tmp / "storage"
    parent = chosen if chosen is not None else SHM
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="capvid-bench-jobs-", dir=parent))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder / "storage"


def filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` is on ("tmpfs", "ext4", ...), from /proc/mounts; "" if unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def new_file_micros(folder: Path, count: int = 200) -> float:
    """Microseconds to create a small file in a new folder, as each job's transcript is created. On ext4 this
    moves from about 10 to several hundred for a minute or more after many files were deleted (inodes freed
    lately are skipped one by one when a new one is allocated): it is printed with each round, because
    it falls on our side alone (bare arq writes no file)."""
    folders = [folder / str(n) for n in range(count)]
    for path in folders:
        path.mkdir(parents=True)
    started = time.perf_counter()
    for path in folders:
        (path / "transcription.vtt").write_bytes(b"WEBVTT\n\n")
    return (time.perf_counter() - started) / count * 1e6


async def prepare_videos(settings: Settings, owner_id: int, count: int) -> list[str]:
    """`count` videos with media in storage, not yet requested (that is what `request_all` times)."""
    body = SPOKEN.read_bytes()
    storages = Storages(settings)
    pool = await create_pool(settings, minsize=0, maxsize=2)
    try:
        async with transaction(pool) as tx:
            ids = [await insert_video(tx, owner_id, f"bench {n}", False, {}, storages.default.backend)
                   for n in range(count)]
        for video_id in ids:
            await storages.default.put_bytes(media_key(owner_id, video_id), body, "video/mp4")
    finally:
        await storages.aclose()
        pool.close()
        await pool.wait_closed()
    return ids


async def request_all(settings: Settings, owner_id: int, video_ids: list[str]) -> list[str]:
    """What the upload handler commits for each video, relayed to arq as the web process that committed
    it relays it (the worker's own relay only sweeps up after an outage); returns the arq job ids."""
    pool = await create_pool(settings, minsize=0, maxsize=2)
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        for video_id in video_ids:
            async with transaction(pool) as tx:
                video = await lock_owned_video(tx, video_id, owner_id)
                assert video is not None
                await tx.execute("UPDATE videos SET media_key = %s, updated_at = now() WHERE id = %s",
                                 (media_key(owner_id, video_id), video_id))
                await start_transcription_run(tx, video)
        async with transaction(pool) as tx:
            rows = await tx.fetchall("SELECT id FROM outbox WHERE video_id = ANY(%s) AND sent_at IS NULL",
                                     (video_ids,))
        relayed = await relay_once(pool, redis, settings.arq_queue_name)
    finally:
        await redis.aclose()
        pool.close()
        await pool.wait_closed()
    if len(rows) != len(video_ids) or relayed != len(rows):
        raise BenchError(f"{len(rows)} outbox rows for {len(video_ids)} requests, {relayed} relayed "
                         "(another relay running?)")
    return [outbox_job_id(row["id"]) for row in rows]


async def wait_results(redis: ArqRedis, job_ids: list[str], queue: str, child: "subprocess.Popen[bytes]", log: Path,
                       timeout: float) -> Drain:
    """Until arq holds a result for every job; the span from the first start to the last finish, and the
    worker's CPU over it."""
    keys = [f"arq:result:{job_id}" for job_id in job_ids]
    deadline = time.monotonic() + timeout
    cpu = CpuTrace(child.pid)
    try:
        # Watched by the queue's length alone (arq takes a job off the queue with its result, in one
        # transaction) while the worker drains: counting results takes the machine's CPU from the side
        # that needs it most.
        while (queued := await redis.zcard(queue)) > 0:
            if time.monotonic() > deadline or child.poll() is not None:
                raise BenchError(f"{len(keys) - queued} of {len(keys)} jobs finished in {timeout:.0f} s:\n{tail(log)}")
            await asyncio.sleep(0.1)
        while (done := sum([await redis.exists(*keys[i:i + 1000]) for i in range(0, len(keys), 1000)])) < len(keys):
            if time.monotonic() > deadline or child.poll() is not None:
                raise BenchError(f"{done} of {len(keys)} jobs finished in {timeout:.0f} s:\n{tail(log)}")
            await asyncio.sleep(0.2)
    finally:
        await cpu.stop()
    results = [await Job(job_id, redis, _queue_name=queue).result_info() for job_id in job_ids]
    failed = [r for r in results if r is None or not r.success]
    if failed:
        raise BenchError(f"{len(failed)} jobs failed, e.g. {failed[0]}")
    start = min(r.start_time for r in results if r).timestamp()
    end = max(r.finish_time for r in results if r).timestamp()
    return Drain(len(job_ids), end - start, cpu.between(start, end))


async def run_ours(stack: ExitStack, settings: Settings, tmp: Path, jobs: int, heartbeat: bool,
                   max_jobs: int) -> Drain:
    label = "heartbeat" if heartbeat else "plain"
    lease = HEARTBEAT_LEASE_SECONDS if heartbeat else settings.lease_seconds
    ours = settings.model_copy(update={"arq_queue_name": bench_queue(), "lease_seconds": lease})
    owner_id = await add_user(ours, f"bench-{uuid.uuid4().hex[:12]}@localhost", "Benchmark", is_admin=False)
    video_ids = await prepare_videos(ours, owner_id, jobs)
    job_ids = await request_all(ours, owner_id, video_ids)
    disk = new_file_micros(Path(ours.storage_dir).parent / "new-file-probe" / uuid.uuid4().hex)
    log = tmp / f"ours-{label}.log"
    env = capvid_env(ours, LEASE_SECONDS=str(lease), WORKER_METRICS_PORT=str(free_port()))
    updates_before = video_updates(ours.database_url)
    child = spawn(stack, [sys.executable, str(ROOT / "bench" / "noop_worker.py"), "--max-jobs", str(max_jobs),
                          *(["--until-heartbeat"] if heartbeat else [])], env, log)
    redis = ArqRedis.from_url(ours.redis_url)
    try:
        drain = await wait_results(redis, job_ids, ours.arq_queue_name, child, log, timeout=60 + jobs / 10)
    finally:
        await redis.aclose()
    stop_process(child)
    await check_transitions(ours, video_ids)
    # The claim is one UPDATE of the video, COMPLETE with AI SKIPPED another; the rest are heartbeats.
    drain.heartbeats = (video_updates(ours.database_url) - updates_before) / jobs - 2
    drain.new_file_micros = disk
    return drain


def video_updates(database_url: str) -> int:
    """Rows of `videos` updated so far (a backend reports its counts at the latest when it exits)."""
    time.sleep(1.0)  # the backends of connections just closed finish exiting
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'videos'")
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


async def check_transitions(settings: Settings, video_ids: list[str]) -> None:
    """Every video COMPLETE, with exactly one COMPLETE event: the path really ran, once each."""
    pool = await create_pool(settings, minsize=0, maxsize=1)
    try:
        async with transaction(pool) as tx:
            row = await tx.fetchone(
                """
                SELECT count(*) FILTER (WHERE v.transcription_status = 'COMPLETE') AS complete,
                       (SELECT count(*) FROM video_events e WHERE e.video_id = ANY(%(ids)s)
                          AND e.kind = 'transcription' AND e.status = 'COMPLETE') AS events,
                       (SELECT count(DISTINCT e.video_id) FROM video_events e WHERE e.video_id = ANY(%(ids)s)
                          AND e.kind = 'transcription' AND e.status = 'COMPLETE') AS videos
                FROM videos v WHERE v.id = ANY(%(ids)s)
                """,
                {"ids": video_ids},
            )
    finally:
        pool.close()
        await pool.wait_closed()
    assert row is not None
    if not row["complete"] == row["events"] == row["videos"] == len(video_ids):
        raise BenchError(f"of {len(video_ids)} videos {row['complete']} COMPLETE, {row['events']} COMPLETE events "
                         f"on {row['videos']} videos")


async def run_bare(stack: ExitStack, settings: Settings, tmp: Path, jobs: int, max_jobs: int) -> Drain:
    queue = bench_queue()
    tunables = worker_settings(settings)
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        prefix = uuid.uuid4().hex[:8]
        job_ids = [f"bare:{prefix}:{n}" for n in range(jobs)]
        for job_id in job_ids:
            await redis.enqueue_job("noop", _job_id=job_id, _queue_name=queue)
        log = tmp / "bare.log"
        child = spawn(stack, [sys.executable, str(ROOT / "bench" / "bare_arq.py"), "--redis-url", settings.redis_url,
                              "--queue", queue, "--max-jobs", str(max_jobs),
                              "--poll-delay", str(tunables["poll_delay"]),
                              "--keep-result", str(tunables["keep_result"])], capvid_env(settings), log)
        return await wait_results(redis, job_ids, queue, child, log, timeout=60 + jobs / 10)
    finally:
        await redis.aclose()


async def measure(settings: Settings, tmp: Path, args: argparse.Namespace) -> dict[str, list[Drain]]:
    sides = {
        "bare": lambda stack: run_bare(stack, settings, tmp, args.jobs, args.max_jobs),
        "heartbeat": lambda stack: run_ours(stack, settings, tmp, args.jobs, True, args.max_jobs),
        "plain": lambda stack: run_ours(stack, settings, tmp, args.jobs, False, args.max_jobs),
    }
    drains: dict[str, list[Drain]] = {label: [] for label in sides}
    for number in range(1, args.rounds + 1):
        # One worker at a time, so each side has the machine to itself; the order alternates each round,
        # so drifting machine load falls on every side alike.
        for label in tuple(sides)[:: 1 if number % 2 else -1]:
            with ExitStack() as stack:
                drain = await sides[label](stack)
            drains[label].append(drain)
            beats = "" if math.isnan(drain.heartbeats) else f", {drain.heartbeats:.2f} heartbeats a job"
            disk = "" if math.isnan(drain.new_file_micros) else f"; a new file took {drain.new_file_micros:.0f} µs"
            print(f"  round {number}/{args.rounds} {label:>9}: {args.jobs} jobs in {drain.seconds:.2f} s, "
                  f"{drain.rate:,.0f} jobs/s{beats}; worker CPU {drain.cpu_ms_per_job:.2f} ms a job{disk}", flush=True)
    return drains


def figures(drains: dict[str, list[Drain]], max_jobs: int, storage_kind: str) -> list[Figure]:
    bare, heartbeat, plain = (statistics.median(drain.rate for drain in drains[side])
                              for side in ("bare", "heartbeat", "plain"))
    beats = statistics.median(d.heartbeats for d in drains["heartbeat"])
    bare_cpu, heartbeat_cpu = (statistics.median(drain.cpu_ms_per_job for drain in drains[side])
                               for side in ("bare", "heartbeat"))
    rounds = len(drains["bare"])
    return [
        Figure.compare(NAME, f"jobs/s: claim, heartbeat, no-op engine, COMPLETE + event (max_jobs {max_jobs}, "
                       f"{beats:.2f} heartbeats a job; transcripts on {storage_kind}; median of {rounds})",
                       heartbeat, bare, "jobs/s", "bare arq no-op", f"ratio >= {TARGET}", heartbeat / bare >= TARGET),
        Figure.compare(NAME, f"jobs/s: the same, the engine returning at once (no heartbeat due; median of {rounds})",
                       plain, bare, "jobs/s", "bare arq no-op", f"ratio >= {TARGET}", plain / bare >= TARGET),
        # No target: where the rate goes. Each worker is one Python process, busy most of the drain, so the
        # rate ratio runs close to the inverse of this one.
        Figure.compare(NAME, f"worker process CPU per job, with a heartbeat (median of {rounds})",
                       heartbeat_cpu, bare_cpu, "ms", "bare arq no-op"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, help="jobs per side (default 3000; --quick 300)")
    parser.add_argument("--max-jobs", type=int, help="arq's max_jobs of both sides (default: the production one, 4)")
    parser.add_argument("--rounds", type=int, help="runs of each side, alternating (default 3; --quick 1)")
    parser.add_argument("--storage-dir", type=Path,
                        help="write our transcripts under this folder (default: /dev/shm where it is a tmpfs)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.quick else 3000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if min(args.jobs, args.rounds) < 1:
        parser.error("--jobs and --rounds must be at least 1")

    def bench(stack: ExitStack, tmp: Path, database_url: str, redis_url: str) -> list[Figure]:
        # Room for every video's media and transcript: our two sides, in every round.
        storage = storage_folder(stack, tmp, args.storage_dir,
                                 needed_bytes=2 * args.rounds * args.jobs * (SPOKEN.stat().st_size + 8192))
        storage_kind = filesystem_of(storage.parent) or "an unknown filesystem"
        settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=storage)
        apply_migrations(settings.database_url)
        args.max_jobs = args.max_jobs or worker_settings(settings)["max_jobs"]
        print(f"{args.jobs} jobs per side and round, {args.rounds} round(s), one worker each, max_jobs {args.max_jobs}; "
              f"transcripts in {storage.parent} ({storage_kind})", flush=True)
        return figures(asyncio.run(measure(settings, tmp, args)), args.max_jobs, storage_kind)

    return run_bench("jobs", args, bench)


if __name__ == "__main__":
    sys.exit(main())
