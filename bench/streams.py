"""Event stream benchmark: one web process holding 10,000 open event streams, its memory, and the time
from a committed transition to its delivery on every stream.

    python bench/streams.py [--streams 10000] [--rounds 6] [--layouts 1x10000,100x100] [--quick]

Uses DATABASE_URL / REDIS_URL when set, else embedded servers in a temp folder. One `capvid web`
subprocess per layout; this process holds the clients (plain asyncio connections on loopback, the
open-file limit raised to the hard limit here and, inherited, in the web process) and commits the
transitions: alternately the upload's "new run" (PROCESSING, with its outbox row) and a worker's
COMPLETE, each a guarded update and its `video_events` row in one transaction, through the real
query functions. A delivery's latency is its arrival (when the event's last byte was read) minus
the moment this process sent the transition's COMMIT, on the same clock.

Layouts: `VxS` is V videos with S streams each. `1x10000` is the worst fan-out (one commit, 10,000
deliveries); `100x100` is more like real use: a round commits a transition of each of the 100
videos back to back, and each stream's latency counts from its own video's commit.
Baseline: the same, on one stream alone, before the many are opened. Targets: RSS under 400 MB, p99
under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    add_common_arguments, bench_queue, BenchError, cpu_seconds, Figure, new_user, percentile, raise_open_files,
    rss_bytes, run_bench, spawn_capvid, wait_http,
)
from config import Settings, load_settings  # noqa: E402
from service.db import create_pool, transaction  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.events import record_event  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from service.transcription.queries import start_transcription_run  # noqa: E402
from service.videos.queries import insert_video, lock_owned_video  # noqa: E402
from workers.transcription import queries as worker_q  # noqa: E402

NAME = "event streams"
RSS_TARGET_MB = 400
P99_TARGET_S = 1.0
ROUTE = "/api/video/events"
TRANSITIONS = {b"transcription", b"ai", b"deleted"}
OPEN_IN_FLIGHT = 50  # connections being opened at once (aiohttp's listen backlog is 128)
OPEN_ATTEMPTS = 5  # a stream refused with 503 (the database pool busy) is tried again, like EventSource
DELIVERY_TIMEOUT = 60.0
SINGLE_ROUNDS = 4  # even: the first video ends PROCESSING, like the others
MB = 1024 * 1024


class Waiting:
    """How many streams still wait for their event of this round (no polling over 10,000 streams)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = asyncio.Event()
        if count == 0:
            self.done.set()

    def arrived(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.done.set()


class Stream(asyncio.Protocol):
    """One event stream over a raw connection: records when each event with an id was complete.

    Parsing is the minimum (lines, blank-line dispatch), so the time stamp is taken as soon as the
    bytes are read, not after a client library's work. Chunk-size lines of the chunked encoding have
    no colon and are ignored like any field without a value."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.seen: dict[int, float] = {}
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._body = False
        self._partial = b""
        self._event = b""
        self._id: int | None = None
        self.expect: int | None = None
        self.waiting: Waiting | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self._body:
            self._head += data
            head, sep, rest = self._head.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                status = head.splitlines()[0]
                self._fail(f"answered {status!r}", Refused if b" 503 " in status else BenchError)
                return
            self._body, data = True, rest
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                self._dispatch(now)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip()
            elif line.startswith(b"id:"):
                self._id = int(line[3:])

    def _dispatch(self, now: float) -> None:
        if self._event == b"state" and not self.opened.done():
            self.opened.set_result(self._id or 0)
        elif self._event in TRANSITIONS and self._id is not None:
            self.seen[self._id] = now
            if self._id == self.expect and self.waiting is not None:
                self.waiting.arrived()
        self._event, self._id = b"", None

    def await_event(self, event_id: int, waiting: "Waiting") -> None:
        """Count in `waiting` the arrival of event `event_id` (at once if it is here already)."""
        if event_id in self.seen:
            waiting.arrived()
        else:
            self.expect, self.waiting = event_id, waiting

    def _fail(self, reason: str, error: type[BenchError] = BenchError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error(f"event stream {reason}"))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"closed by the server ({exc})")


@dataclass
class Layout:
    videos: int
    per_video: int

    @property
    def label(self) -> str:
        return f"{self.videos} video{'s' * (self.videos > 1)} x {self.per_video:,} streams"


@dataclass
class Result:
    layout: Layout
    latencies: list[float] = field(default_factory=list)  # every delivery, seconds
    to_all: list[float] = field(default_factory=list)  # per round: the last delivery
    open_seconds: float = 0.0
    refused: int = 0  # opens answered 503 and retried
    rss_before: int = 0
    rss_open: int = 0
    single: list[float] = field(default_factory=list)  # one stream alone, before the many


class Transitions:
    """The real writers' transactions, alternating a new run (PROCESSING) and COMPLETE."""

    def __init__(self, settings: Settings, owner_id: int) -> None:
        self.settings, self.owner_id = settings, owner_id
        self.runs: dict[str, int] = {}

    async def open(self) -> None:
        self.pool = await create_pool(self.settings, minsize=1, maxsize=2)

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def new_videos(self, count: int) -> list[str]:
        async with transaction(self.pool) as tx:
            ids = [await insert_video(tx, self.owner_id, f"stream {n}", False, {}, "local") for n in range(count)]
        for video_id in ids:
            await self.new_run(video_id)
        return ids

    async def new_run(self, video_id: str) -> float:
        """What an upload commits: PROCESSING in a new run, its outbox row, its event. The COMMIT's time."""
        async with transaction(self.pool) as tx:
            video = await lock_owned_video(tx, video_id, self.owner_id)
            assert video is not None
            await start_transcription_run(tx, video)
            self.runs[video_id] = video["transcription_run"] + 1
            sent = time.time()
        return sent

    async def complete(self, video_id: str) -> float:
        """What a worker commits: claim (its own transaction), then COMPLETE and its event."""
        run = self.runs[video_id]
        async with transaction(self.pool) as tx:
            claimed = await worker_q.claim(tx, video_id, run, 60.0, "bench")
        assert claimed is not None, "claim failed"
        async with transaction(self.pool) as tx:
            # AI SKIPPED in the same update, as after an empty transcript; only the COMPLETE event is timed.
            completed = await worker_q.complete(tx, video_id, run, claimed["attempt"], None, None, "benchmark")
            assert completed is not None
            await record_event(tx, video_id, self.owner_id, "transcription", "COMPLETE", run, claimed["attempt"])
            sent = time.time()
        return sent

    async def newest_ids(self, video_ids: list[str]) -> dict[str, int]:
        async with transaction(self.pool) as tx:
            rows = await tx.fetchall(
                "SELECT video_id, max(id) AS id FROM video_events WHERE video_id = ANY(%s) GROUP BY video_id",
                (video_ids,),
            )
        return {row["video_id"]: row["id"] for row in rows}


class Refused(BenchError):
    """The server answered the stream's request with 503: a browser's EventSource would retry."""


async def open_streams(port: int, token: str, video_ids: list[str],
                       per_video: int) -> tuple[dict[str, list[Stream]], int]:
    """`per_video` streams of each video, each open once its `state` event arrived; and how many opens
    were refused (503) and retried."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_IN_FLIGHT)
    streams: dict[str, list[Stream]] = {video_id: [] for video_id in video_ids}
    refused = 0

    async def one(video_id: str) -> None:
        nonlocal refused
        request = (f"GET {ROUTE}?videoId={video_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode()
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            async with gate:
                _, stream = await loop.create_connection(lambda: Stream(request), "127.0.0.1", port)
                try:
                    await asyncio.wait_for(stream.opened, 60)
                except Refused:
                    refused += 1
                    if attempt == OPEN_ATTEMPTS:
                        raise
                else:
                    streams[video_id].append(stream)
                    return
            await asyncio.sleep(0.5 * attempt)

    await asyncio.gather(*(one(video_id) for video_id in video_ids for _ in range(per_video)))
    return streams, refused


def close_streams(streams: dict[str, list[Stream]]) -> None:
    for group in streams.values():
        for stream in group:
            if stream.transport is not None:
                stream.transport.close()


async def deliver(transitions: Transitions, streams: dict[str, list[Stream]],
                  commit: Callable[[str], Awaitable[float]]) -> list[float]:
    """One round: a transition of every video, back to back; each stream's latency from its video's commit."""
    sent = {video_id: await commit(video_id) for video_id in streams}
    expected = await transitions.newest_ids(list(streams))
    waiting = Waiting(sum(len(group) for group in streams.values()))
    for video_id, group in streams.items():
        for stream in group:
            stream.await_event(expected[video_id], waiting)
    try:
        await asyncio.wait_for(waiting.done.wait(), DELIVERY_TIMEOUT)
    except asyncio.TimeoutError:
        raise BenchError(f"{waiting.count} streams did not get their event within {DELIVERY_TIMEOUT:.0f} s") from None
    return [s.seen[expected[v]] - sent[v] for v, group in streams.items() for s in group]


async def run_layout(settings: Settings, tmp: Path, token: str, transitions: Transitions, layout: Layout,
                     rounds: int) -> Result:
    result = Result(layout)
    with ExitStack() as stack:
        web_settings = settings.model_copy(update={"port": free_port()})
        child = spawn_capvid(stack, "web", web_settings, tmp)
        await wait_http(f"http://127.0.0.1:{web_settings.port}/readyz", child, tmp / f"web-{web_settings.port}.log")
        video_ids = await transitions.new_videos(layout.videos)
        # Baseline: one stream alone (also warms the route up before the memory baseline).
        alone, _ = await open_streams(web_settings.port, token, video_ids[:1], 1)
        for n in range(SINGLE_ROUNDS):
            commit = transitions.complete if n % 2 == 0 else transitions.new_run
            result.single += await deliver(transitions, alone, commit)
        close_streams(alone)
        await asyncio.sleep(0.5)
        result.rss_before = rss_bytes(child.pid)
        started = time.perf_counter()
        streams, result.refused = await open_streams(web_settings.port, token, video_ids, layout.per_video)
        result.open_seconds = time.perf_counter() - started
        print(f"  {layout.label}: opened in {result.open_seconds:.1f} s ({result.refused} refused with 503 and "
              f"retried); web RSS {result.rss_before / MB:.0f} MB -> {rss_bytes(child.pid) / MB:.0f} MB", flush=True)
        try:
            for n in range(rounds):  # every video is PROCESSING now (SINGLE_ROUNDS is even)
                commit = transitions.complete if n % 2 == 0 else transitions.new_run
                cpu = cpu_seconds(child.pid), cpu_seconds()
                latencies = await deliver(transitions, streams, commit)
                cpu = cpu_seconds(child.pid) - cpu[0], cpu_seconds() - cpu[1]
                result.latencies += latencies
                result.to_all.append(max(latencies))
                result.rss_open = max(result.rss_open, rss_bytes(child.pid))
                print(f"    round {n + 1}/{rounds} ({commit.__name__}): "
                      f"p50 {statistics.median(latencies) * 1e3:.0f} ms, "
                      f"p99 {percentile(latencies, 0.99) * 1e3:.0f} ms, all {max(latencies) * 1e3:.0f} ms; "
                      f"RSS {rss_bytes(child.pid) / MB:.0f} MB; CPU s web {cpu[0]:.2f}, clients {cpu[1]:.2f}",
                      flush=True)
        finally:
            close_streams(streams)
    return result


def figures(results: list[Result]) -> list[Figure]:
    found = []
    for r in results:
        streams = r.layout.videos * r.layout.per_video
        where = f"{r.layout.label}"
        single_p50 = statistics.median(r.single)
        p99 = percentile(r.latencies, 0.99)
        found += [
            Figure.compare(NAME, f"web RSS with {streams:,} streams open ({where})", r.rss_open / MB,
                           r.rss_before / MB, "MB", "before opening", f"< {RSS_TARGET_MB} MB",
                           r.rss_open / MB < RSS_TARGET_MB),
            Figure.compare(NAME, f"commit -> delivery p50 ({where})", statistics.median(r.latencies) * 1e3,
                           single_p50 * 1e3, "ms", "p50, one stream alone"),
            Figure.compare(NAME, f"commit -> delivery p99 ({where})", p99 * 1e3, single_p50 * 1e3, "ms",
                           "p50, one stream alone", f"< {P99_TARGET_S:g} s", p99 < P99_TARGET_S),
            Figure.compare(NAME, f"commit -> delivered to all, median round ({where})",
                           statistics.median(r.to_all) * 1e3, single_p50 * 1e3, "ms", "p50, one stream alone"),
        ]
    return found


def parse_layouts(text: str, streams: int) -> list[Layout]:
    layouts = []
    for item in filter(None, text.split(",")):
        videos, _, per_video = item.partition("x")
        layout = Layout(int(videos), int(per_video) if per_video else streams // int(videos))
        if layout.videos < 1 or layout.per_video < 1:
            raise ValueError(item)
        layouts.append(layout)
    return layouts


async def measure(settings: Settings, tmp: Path, layouts: list[Layout], rounds: int) -> list[Result]:
    owner_id, token = await new_user(settings)
    transitions = Transitions(settings, owner_id)
    await transitions.open()
    try:
        return [await run_layout(settings, tmp, token, transitions, layout, rounds) for layout in layouts]
    finally:
        await transitions.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000, help="streams per layout (default 10,000)")
    parser.add_argument("--layouts", help="comma-separated VIDEOSxSTREAMS (default 1x10000,100x100; --quick 1x10000)")
    parser.add_argument("--rounds", type=int, help="transitions per layout (default 6; --quick 2)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 6)
    try:
        layouts = parse_layouts(args.layouts or (f"1x{args.streams}" if args.quick else
                                                 f"1x{args.streams},100x{args.streams // 100}"), args.streams)
    except ValueError as exc:
        parser.error(f"--layouts: not VIDEOSxSTREAMS: {exc}")
    limit = raise_open_files()
    most = max(layout.videos * layout.per_video for layout in layouts)
    if limit < most + 200:
        parser.error(f"the open-file hard limit is {limit}: too low for {most:,} streams (raise it: ulimit -Hn)")

    def bench(stack: ExitStack, tmp: Path, database_url: str, redis_url: str) -> list[Figure]:
        settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage",
                                 arq_queue_name=bench_queue())
        apply_migrations(settings.database_url)
        print(f"open-file limit {limit}; layouts: {', '.join(l.label for l in layouts)}; {args.rounds} rounds",
              flush=True)
        return figures(asyncio.run(measure(settings, tmp, layouts, args.rounds)))

    return run_bench("streams", args, bench)


if __name__ == "__main__":
    sys.exit(main())
