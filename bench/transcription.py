"""Transcription benchmark: the whole pipeline (upload -> COMPLETE) against faster-whisper called directly.

    python bench/transcription.py [--repeat N] [--rounds R] [--media PATH] [--poll SECONDS]

Uses DATABASE_URL / REDIS_URL when set, else embedded servers in a temp folder. Speed targets live
here, as ratios measured side by side in one run, never as timed assertions in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from a checkout

import aiohttp  # noqa: E402
import av  # noqa: E402
import psycopg2  # noqa: E402
import redis  # noqa: E402

from bench.common import (  # noqa: E402
    SPOKEN, add_common_arguments, bench_queue, BenchError, capvid_env, Figure, machine, run_bench, stop_process,
    tail,
)
from config import Settings, load_settings  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.admin import add_user, issue_token  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from workers.transcription.engines.whisper import (  # noqa: E402
    BEAM_SIZE,
    VAD_FILTER,
    _transcribe_blocking,
    load_model,
    probe_media,
)

NAME = "transcription"
TARGET = 1.15
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
Children = dict[str, "subprocess.Popen[bytes]"]
NAN = float("nan")
BUSY_CORES = 0.25


@dataclass
class Round:
    direct: float
    pipeline: float
    upload: float  # PUT until its response: streaming to storage, the commit with the outbox row
    queue: float  # job history: enqueue until the job starts (the worker's poll delay)
    job: float  # job history: the job's run time (claim, engine, VTT, up to its COMPLETE commit)
    rest: float  # relay (commit -> enqueue), the status poll's lag
    # CPU seconds (Linux /proc, else NaN): the direct call's, the worker's during the pipeline, the status
    # polling's (web + this client), and everyone else's during each (other processes, Postgres, Redis).
    direct_cpu: float = NAN
    worker_cpu: float = NAN
    poll_cpu: float = NAN
    others_direct: float = NAN
    others_pipeline: float = NAN
    segments: int = 0
    fallbacks: int = 0  # segments whisper decoded again at temperature > 0


def build_media(source: Path, repeat: int, target: Path) -> None:
    """`source` `repeat` times back to back: packets remuxed with shifted timestamps, no re-encode."""
    with av.open(str(source)) as src:
        stamps = [(p.stream_index, p.pts, p.duration or 0) for p in src.demux() if p.pts is not None]
        # Each stream advances by its own presentation span, so it stays gapless whatever the other's
        # length (dts stays increasing: decode order leads presentation by less than one span).
        span = {s.index: max(pts + length for i, pts, length in stamps if i == s.index)
                - min(pts for i, pts, _ in stamps if i == s.index) for s in src.streams}
    with av.open(str(target), "w", format="mp4") as out:
        for k in range(repeat):
            with av.open(str(source)) as src:  # mux() takes the packet's data: every pass demuxes afresh
                streams = {s.index: out.streams[s.index] if k else out.add_stream_from_template(s) for s in src.streams}
                for packet in src.demux():
                    if packet.dts is None or packet.pts is None:
                        continue
                    shift = k * span[packet.stream_index]
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = streams[packet.stream_index]
                    out.mux(packet)


def decoded_seconds(path: Path) -> float:
    """Decode every audio frame (a remux mistake fails here, not in the worker); the audio's length."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise BenchError(f"{path} has no audio track")
        samples = rate = 0
        for frame in container.decode(audio=0):
            samples, rate = samples + frame.samples, frame.sample_rate
    if not samples:
        raise BenchError(f"{path}: no decodable audio")
    return samples / rate


class WatchedModel:
    """The engine's model passed through, counting segments whisper re-decoded at a higher temperature."""

    def __init__(self, model: Any) -> None:
        self.model, self.segments, self.fallbacks = model, 0, 0

    def transcribe(self, *args: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
        pieces, info = self.model.transcribe(*args, **kwargs)
        return self._watch(pieces), info

    def _watch(self, pieces: Iterator[Any]) -> Iterator[Any]:
        for piece in pieces:
            self.segments, self.fallbacks = self.segments + 1, self.fallbacks + (piece.temperature > 0)
            yield piece


def transcribe_direct(settings: Settings, path: Path) -> tuple[float, WatchedModel]:
    """What WhisperEngine.transcribe runs in its threads (probe, decode, model, segments), timed."""
    model = WatchedModel(load_model(settings))  # cached: loaded before timing, as the worker preloads it
    start = time.perf_counter()
    transcript = _transcribe_blocking(model, path, probe_media(path), lambda _: None, threading.Event())
    elapsed = time.perf_counter() - start
    if not transcript.segments:
        raise BenchError("the direct call heard no speech")
    return elapsed, model


def start_processes(stack: ExitStack, settings: Settings, tmp: Path) -> tuple[str, Children]:
    port = free_port()
    # MODEL_CACHE_DIR is shared with the direct run: the model is assembled once.
    env = capvid_env(settings.model_copy(update={"host": "127.0.0.1", "port": port}),
                     WORKER_METRICS_PORT=str(free_port()))
    children: Children = {}
    for role in ("web", "worker"):
        log = stack.enter_context((tmp / f"{role}.log").open("w"))
        children[role] = subprocess.Popen([sys.executable, "-m", "service.cli", role], env=env, stdout=log, stderr=log)
        stack.callback(stop_process, children[role])
    return f"http://127.0.0.1:{port}", children


async def wait_ready(http: aiohttp.ClientSession, base: str, settings: Settings, tmp: Path, children: Children) -> None:
    """Web answers /readyz; the worker writes arq's health key only once startup (model preload) is done."""
    health_key = f"{settings.arq_queue_name}:health-check"  # the queue is this run's alone: no stale key
    with redis.Redis.from_url(settings.redis_url) as client:
        for _ in range(3000):
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200 and client.exists(health_key):
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            for role, child in children.items():
                if child.poll() is not None:
                    raise BenchError(f"{role} exited with {child.returncode}:\n{tail(tmp / f'{role}.log')}")
            await asyncio.sleep(0.2)
    raise BenchError(f"web or worker not ready after 600 s:\n{tail(tmp / 'worker.log')}")


def cpu_snapshot(children: Children) -> dict[str, float]:
    """CPU seconds so far of this process, web and worker (all their threads), and the whole machine."""
    def process(pid: int | str) -> float:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / TICKS  # utime + stime

    try:
        snapshot = {role: process(child.pid) for role, child in children.items()} | {"bench": process("self")}
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    except OSError:
        return {}
    return snapshot | {"machine": (user + nice + system + irq + softirq + steal) / TICKS}


async def run_pipeline(http: aiohttp.ClientSession, base: str, body: bytes, poll: float) -> tuple[str, float, float]:
    """One upload until COMPLETE: (video id, pipeline seconds, upload seconds)."""
    async with http.post(f"{base}/api/video", json={"name": "bench"}) as response:
        if response.status != 201:
            raise BenchError(f"POST /api/video: {response.status} {await response.text()}")
        video_id: str = (await response.json())["id"]
    start = time.perf_counter()
    async with http.put(f"{base}/api/video/upload", params={"videoId": video_id}, data=body,
                        headers={"Content-Type": "video/mp4"}) as response:
        if response.status != 200:
            raise BenchError(f"PUT /api/video/upload: {response.status} {await response.text()}")
    uploaded = time.perf_counter()
    while True:
        async with http.get(f"{base}/api/video/transcribe/status", params={"videoId": video_id}) as response:
            status = (await response.json())["transcriptionStatus"]
        if status == "COMPLETE":
            return video_id, time.perf_counter() - start, uploaded - start
        if status == "ERROR":
            raise BenchError(f"transcription of {video_id} ended in ERROR")
        await asyncio.sleep(poll)


async def wait_ai_settled(http: aiohttp.ClientSession, base: str, video_id: str) -> None:
    """AI generation runs in the worker right after COMPLETE: let it finish before timing anything else."""
    for _ in range(1500):
        async with http.get(f"{base}/api/video", params={"videoId": video_id}) as response:
            if (await response.json())["metadata"].get("aiGenerationStatus") not in ("QUEUED", "PROCESSING"):
                await asyncio.sleep(0.5)  # the job's own bookkeeping after its final commit
                return
        await asyncio.sleep(0.2)
    raise BenchError(f"AI generation of {video_id} did not settle in 300 s")


def job_times(settings: Settings, video_id: str) -> tuple[float, float]:
    """The transcription job's wait in the queue and its run time, from its job history row (queued by
    the relay, started when arq called it, finished with its completing transaction)."""
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT extract(epoch FROM started_at - queued_at), extract(epoch FROM finished_at - started_at)
               FROM job_runs WHERE function = 'transcribe' AND video_id = %s AND outcome = 'complete'""",
            (video_id,),
        )
        rows = cur.fetchall()
    conn.close()
    if len(rows) != 1:
        raise BenchError(f"expected one completed transcribe job for {video_id} in job_runs, found {len(rows)}")
    ((queue, job),) = rows
    return float(queue), float(job)


async def measure(settings: Settings, args: argparse.Namespace, media: Path, tmp: Path, base: str,
                  children: Children) -> list[Round]:
    email = f"bench-{uuid.uuid4().hex[:12]}@localhost"
    await add_user(settings, email, "Benchmark", is_admin=False)
    _, token = await issue_token(settings, email, "bench")
    body = media.read_bytes()  # read before timing: the client's disk is not the pipeline's cost
    results: list[Round] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        await wait_ready(http, base, settings, tmp, children)
        for number in range(1, args.rounds + 1):
            before = cpu_snapshot(children)
            direct, watch = transcribe_direct(settings, media)  # blocks the loop on purpose: nothing else may run
            middle = cpu_snapshot(children)
            video_id, pipeline, upload = await run_pipeline(http, base, body, args.poll)
            after = cpu_snapshot(children)
            await wait_ai_settled(http, base, video_id)
            queue, job = job_times(settings, video_id)
            row = Round(direct, pipeline, upload, queue, job, pipeline - upload - queue - job,
                        segments=watch.segments, fallbacks=watch.fallbacks)
            if before and middle and after:
                first = {k: middle[k] - before[k] for k in before}
                second = {k: after[k] - middle[k] for k in middle}
                row.direct_cpu, row.worker_cpu, row.poll_cpu = first["bench"], second["worker"], second["web"] + second["bench"]
                # /proc/stat is tick-sampled, process times are not: "others" is approximate, never below 0.
                row.others_direct = max(0.0, first["machine"] - first["bench"] - first["web"] - first["worker"])
                row.others_pipeline = max(0.0, second["machine"] - second["bench"] - second["web"] - second["worker"])
            results.append(row)
            print(f"  round {number}/{args.rounds}: direct {direct:.2f} s, pipeline {pipeline:.2f} s", flush=True)
    return results


def report(settings: Settings, media: Path, media_seconds: float, results: list[Round]) -> list[Figure]:
    threads = settings.whisper_cpu_threads or "0 (CTranslate2 default)"
    print(f"\nmachine:  {machine()}")
    print(f"model:    whisper {settings.whisper_model}, {settings.whisper_device} {settings.whisper_compute_type}, "
          f"cpu_threads={threads}, beam_size={BEAM_SIZE}, vad_filter={VAD_FILTER}")
    print(f"media:    {media.name}, {media.stat().st_size / 1024:.0f} KiB, {media_seconds:.1f} s of audio\n")
    print(f"{'':7}{'wall seconds; pipeline = upload + queue + job + rest':<58}| CPU seconds")
    print(f"{'round':<7}{'direct':>7}{'pipeline':>9}{'ratio':>7}{'upload':>8}{'queue':>7}{'job':>7}{'rest':>7}     |"
          f"{'direct':>7}{'worker':>7}{'poll':>6}  others d/p")
    summary = replace(results[0], **{f.name: statistics.median(getattr(r, f.name) for r in results)
                                     for f in fields(Round) if f.type == "float"})
    # Other load during a measurement slows one side only: such rounds are marked, not dropped.
    busy = [r.others_direct / r.direct > BUSY_CORES or r.others_pipeline / r.pipeline > BUSY_CORES for r in results]
    for label, r in [*((f"{i}{'*' * b}", r) for i, (r, b) in enumerate(zip(results, busy), 1)), ("median", summary)]:
        print(f"{label:<7}{r.direct:>7.2f}{r.pipeline:>9.2f}{r.pipeline / r.direct:>6.2f}x{r.upload:>8.3f}"
              f"{r.queue:>7.2f}{r.job:>7.2f}{r.rest:>7.3f}     |{r.direct_cpu:>7.2f}{r.worker_cpu:>7.2f}"
              f"{r.poll_cpu:>6.2f}  {r.others_direct:.1f}/{r.others_pipeline:.1f}")
    ratio = summary.pipeline / summary.direct
    print(f"\n{'':<22}{'seconds':>9}{'real-time factor':>18}")
    print(f"{'media':<22}{media_seconds:>9.2f}")
    print(f"{'direct (median)':<22}{summary.direct:>9.2f}{summary.direct / media_seconds:>18.3f}")
    print(f"{'pipeline (median)':<22}{summary.pipeline:>9.2f}{summary.pipeline / media_seconds:>18.3f}")
    print(f"{'ratio pipeline/direct':<22}{ratio:>8.2f}x")
    print(f"target <= {TARGET:.2f}x:       {'met' if ratio <= TARGET else 'not met'}")
    # CPU seconds barely feel other load: a worker doing more work than the direct call shows up here.
    print(f"CPU worker/direct:     {summary.worker_cpu / summary.direct_cpu:>5.2f}x"
          f"   (others' CPU s during direct/pipeline: {summary.others_direct:.1f}/{summary.others_pipeline:.1f})")
    if any(busy):
        print(f"* other processes used more than {BUSY_CORES} of a core meanwhile: re-run on an idle machine")
    if results[-1].fallbacks:
        print(f"\nwarning: whisper re-decoded {results[-1].fallbacks} of {results[-1].segments} segments at a higher"
              " temperature (repeated text compresses too well: --repeat >= 3 of one sentence). That decoding samples"
              " at random, so its work varies run to run, and the real-time factor is not that of ordinary speech:"
              " prefer --media with real speech.")
    where = f"{media_seconds:.1f} s of speech, median of {len(results)}"
    return [Figure.compare(NAME, f"upload -> COMPLETE vs faster-whisper direct ({where})", summary.pipeline,
                           summary.direct, "s", "direct call", f"ratio <= {TARGET}", ratio <= TARGET)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # Not 10 (~60 s): from 3 copies of one sentence in whisper's 30 s window the text compresses so well that
    # whisper re-decodes by random sampling, and both sides then do different, random amounts of work.
    parser.add_argument("--repeat", type=int, default=2, help="times spoken.mp4 is repeated (default 2, 12.5 s)")
    parser.add_argument("--rounds", type=int, help="direct/pipeline pairs; medians reported (default 3; --quick 1)")
    parser.add_argument("--media", type=Path, help="benchmark this file instead of the repeated fixture")
    parser.add_argument("--poll", type=float, default=0.02, help="status poll interval, seconds (default 0.02)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.repeat < 1 or args.rounds < 1 or args.poll <= 0:
        parser.error("--repeat and --rounds must be at least 1, --poll above 0")
    if args.media and not args.media.is_file():
        parser.error(f"--media {args.media}: no such file")

    def bench(stack: ExitStack, tmp: Path, database_url: str, redis_url: str) -> list[Figure]:
        settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage",
                                 arq_queue_name=bench_queue())
        apply_migrations(settings.database_url)
        media = args.media.resolve() if args.media else tmp / f"spoken-x{args.repeat}.mp4"
        if not args.media:
            build_media(SPOKEN, args.repeat, media)
        media_seconds = decoded_seconds(media)
        print(f"media: {media_seconds:.1f} s of audio; model cache {settings.model_cache_dir}", flush=True)
        load_model(settings)  # assembles the model into the shared cache once, before the worker needs it
        base, children = start_processes(stack, settings, tmp)
        print("waiting for web and worker (the worker preloads the model)...", flush=True)
        results = asyncio.run(measure(settings, args, media, tmp, base, children))
        return report(settings, media, media_seconds, results)

    return run_bench("transcription", args, bench)


if __name__ == "__main__":
    sys.exit(main())
