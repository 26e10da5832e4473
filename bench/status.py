"""Status polling benchmark: `GET /api/video/transcribe/status` with a token against a bare aiohttp
handler answering the same JSON body, same process count, same load generator (wrk), in one run.

    python bench/status.py [--processes N] [--connections 64] [--duration 10] [--rounds 3] [--quick]

Uses DATABASE_URL / REDIS_URL when set, else embedded servers in a temp folder. The polled video is
real: created and uploaded through the API, so it is PROCESSING (no worker runs). Targets: the real
route at least 0.5 of the bare one's requests per second, and its p99 under 20 ms at 64 connections.
The real route is measured as configured by default, and once more with the opt-in
STATUS_CACHE_FENCE=true (strict read-after-commit), to show what that costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.common import (  # noqa: E402
    ROOT, SPOKEN, add_common_arguments, bench_queue, BenchError, capvid_env, cpu_seconds, Figure, new_token,
    run_bench, spawn, wait_http, WRK_INSTALL, wrk_binary,
)
from config import Settings, load_settings  # noqa: E402
from service.dev import free_port  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402

NAME = "status polling"
RATIO_TARGET = 0.5
P99_TARGET_MS = 20.0
ROUTE = "/api/video/transcribe/status"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def parse_wrk(output: str) -> WrkResult:
    """wrk's --latency report: `Requests/sec:`, the latency distribution, errors and non-2xx answers."""
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if not match:
            raise BenchError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match[1]) * UNITS[match[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if not rate or not total:
        raise BenchError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkResult(float(rate[1]), latency("50"), latency("99"), int(total[1]),
                     errors + (int(non_2xx[1]) if non_2xx else 0))


def wrk(url: str, token: str, args: argparse.Namespace, seconds: float) -> WrkResult:
    command = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency",
               "-H", f"Authorization: Bearer {token}", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if result.errors:
        raise BenchError(f"wrk saw {result.errors} errors or non-2xx answers from {url}:\n{done.stdout}")
    return result


async def polled_video(base: str, token: str) -> tuple[str, bytes]:
    """A video uploaded through the API (PROCESSING), and the exact body the status route answers."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(f"{base}/api/video", json={"name": "polled"}) as response:
            if response.status != 201:
                raise BenchError(f"POST /api/video: {response.status} {await response.text()}")
            video_id: str = (await response.json())["id"]
        async with http.put(f"{base}/api/video/upload", params={"videoId": video_id}, data=SPOKEN.read_bytes(),
                            headers={"Content-Type": "video/mp4"}) as response:
            if response.status != 200:
                raise BenchError(f"PUT /api/video/upload: {response.status} {await response.text()}")
        async with http.get(f"{base}{ROUTE}", params={"videoId": video_id}) as response:
            body = await response.read()
            if response.status != 200 or b"PROCESSING" not in body:
                raise BenchError(f"GET {ROUTE}: {response.status} {body!r}")
    return video_id, body


def start_real(stack: ExitStack, settings: Settings, tmp: Path, processes: int,
               fenced: bool = False) -> list["subprocess.Popen[bytes]"]:
    """`capvid web` itself for one process; for several, the same app on one port with SO_REUSEPORT."""
    env = capvid_env(settings, STATUS_CACHE_FENCE=str(fenced).lower())
    label = "fenced" if fenced else "web"
    if processes == 1:
        return [spawn(stack, [sys.executable, "-m", "service.cli", "web"], env, tmp / f"{label}-0.log")]
    # `capvid web` exactly (its logging set-up too), with SO_REUSEPORT added to its run_app call.
    code = ("import functools, sys; from aiohttp import web; "
            "web.run_app = functools.partial(web.run_app, reuse_port=True); "
            "from service.cli import main; sys.exit(main(['web']))")
    return [spawn(stack, [sys.executable, "-c", code], env, tmp / f"{label}-{n}.log") for n in range(processes)]


def start_bare(stack: ExitStack, port: int, body: bytes, tmp: Path, processes: int) -> list["subprocess.Popen[bytes]"]:
    argv = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(port), "--body", body.decode()]
    if processes > 1:
        argv.append("--reuse-port")
    return [spawn(stack, argv, dict(os.environ), tmp / f"bare-{n}.log") for n in range(processes)]


def measure(urls: dict[str, str], pids: dict[str, list[int]], token: str,
            args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    results: dict[str, list[WrkResult]] = {side: [] for side in urls}
    for url in urls.values():
        wrk(url, token, args, args.warmup)  # connections, caches, the pool: warm before timing
    for number in range(1, args.rounds + 1):
        # Alternate the order each round, so drifting machine load falls on every side alike.
        for side in tuple(urls)[:: 1 if number % 2 else -1]:
            before = sum(cpu_seconds(pid) for pid in pids[side])
            result = wrk(urls[side], token, args, args.duration)
            busy = (sum(cpu_seconds(pid) for pid in pids[side]) - before) / args.duration
            results[side].append(result)
            print(f"  round {number}/{args.rounds} {side:>6}: {result.requests_per_second:>9,.0f} req/s, "
                  f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; server CPU {busy:.0%} of a core",
                  flush=True)
    return results


def figures(results: dict[str, list[WrkResult]], args: argparse.Namespace) -> list[Figure]:
    real_rate = statistics.median(r.requests_per_second for r in results["real"])
    bare_rate = statistics.median(r.requests_per_second for r in results["bare"])
    real_p99 = statistics.median(r.p99_ms for r in results["real"])
    bare_p99 = statistics.median(r.p99_ms for r in results["bare"])
    fenced_rate = statistics.median(r.requests_per_second for r in results["fenced"])
    fenced_p99 = statistics.median(r.p99_ms for r in results["fenced"])
    ratio = real_rate / bare_rate
    where = f"{args.connections} conn., {args.processes} proc."
    return [
        Figure.compare(NAME, f"GET {ROUTE}: requests/s ({where})", real_rate, bare_rate, "req/s",
                       "bare aiohttp", f"ratio >= {RATIO_TARGET}", ratio >= RATIO_TARGET),
        Figure.compare(NAME, f"GET {ROUTE}: p99 latency ({where})", real_p99, bare_p99, "ms",
                       "bare aiohttp", f"< {P99_TARGET_MS:g} ms", real_p99 < P99_TARGET_MS),
        # The opt-in fence (STATUS_CACHE_FENCE=true) shown beside the default: what strictness costs.
        Figure.compare(NAME, f"the same with STATUS_CACHE_FENCE=true: requests/s ({where})", fenced_rate,
                       bare_rate, "req/s", "bare aiohttp"),
        Figure.compare(NAME, f"the same with STATUS_CACHE_FENCE=true: p99 latency ({where})", fenced_p99,
                       bare_p99, "ms", "bare aiohttp"),
    ]


async def prepare(settings: Settings, stack: ExitStack, tmp: Path,
                  args: argparse.Namespace) -> tuple[dict[str, str], dict[str, list[int]], str]:
    token = await new_token(settings)
    real = start_real(stack, settings, tmp, args.processes)
    base = f"http://127.0.0.1:{settings.port}"
    for n, child in enumerate(real):
        await wait_http(f"{base}/readyz", child, tmp / f"web-{n}.log")
    video_id, body = await polled_video(base, token)
    fenced_settings = settings.model_copy(update={"port": free_port()})
    fenced = start_real(stack, fenced_settings, tmp, args.processes, fenced=True)
    fenced_base = f"http://127.0.0.1:{fenced_settings.port}"
    for n, child in enumerate(fenced):
        await wait_http(f"{fenced_base}/readyz", child, tmp / f"fenced-{n}.log")
    bare_port = free_port()
    bare = start_bare(stack, bare_port, body, tmp, args.processes)
    for n, child in enumerate(bare):
        await wait_http(f"http://127.0.0.1:{bare_port}/readyz", child, tmp / f"bare-{n}.log")
    query = f"{ROUTE}?videoId={video_id}"
    urls = {"real": f"{base}{query}", "bare": f"http://127.0.0.1:{bare_port}{query}",
            "fenced": f"{fenced_base}{query}"}
    pids = {"real": [c.pid for c in real], "bare": [c.pid for c in bare], "fenced": [c.pid for c in fenced]}
    return urls, pids, token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=1, help="web processes of each side (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; --quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of untimed wrk first (default 2; --quick 1)")
    parser.add_argument("--rounds", type=int, help="timed wrk runs per side, alternating (default 3; --quick 1)")
    parser.add_argument("--wrk", default=wrk_binary(), help="the wrk binary (default: wrk on PATH)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if min(args.processes, args.connections, args.threads, args.rounds) < 1:
        parser.error("counts must be at least 1")
    if args.wrk is None or not Path(args.wrk).is_file():
        parser.error(f"wrk not found ({args.wrk or 'not on PATH'}); Debian: {WRK_INSTALL}")

    def bench(stack: ExitStack, tmp: Path, database_url: str, redis_url: str) -> list[Figure]:
        settings = load_settings(database_url=database_url, redis_url=redis_url, storage_dir=tmp / "storage",
                                 arq_queue_name=bench_queue(), port=free_port())
        apply_migrations(settings.database_url)
        urls, pids, token = asyncio.run(prepare(settings, stack, tmp, args))
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, {args.rounds} round(s) "
              f"per side, {args.processes} process(es) each", flush=True)
        return figures(measure(urls, pids, token, args), args)

    return run_bench("status", args, bench)


if __name__ == "__main__":
    sys.exit(main())
