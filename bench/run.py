"""Every benchmark in one command, and one table of their figures.

    python -m bench [--quick] [--only status,jobs] [--markdown results.md]

Uses DATABASE_URL / REDIS_URL when set (use scratch ones: the benchmarks write users, videos and a
million seeded views), else starts embedded PostgreSQL and Redis once for all of them. Each benchmark
runs in its own process (`python bench/<name>.py`, runnable alone too) one after the other, so none
shares the machine with another. Exits non-zero when a benchmark could not measure; a missed target
is a figure, not an error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT, Figure, machine, markdown_table, print_table, read_figures, server_versions, start_servers, temp_folder,
    WRK_INSTALL, wrk_binary,
)

# In the order they run: the issue's own first, the heaviest on CPU (whisper) after them.
BENCHES = ["status", "jobs", "streams", "transcription", "delete", "analytics"]


def run_one(name: str, args: argparse.Namespace, env: dict[str, str], tmp: Path) -> tuple[list[Figure], str | None]:
    """Run bench/<name>.py; its figures, or why there are none."""
    out = tmp / f"{name}.json"
    command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--json", str(out)]
    if args.quick:
        command.append("--quick")
    if args.keep:
        command.append("--keep")
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=ROOT)
    print(f"=== {name}: {time.monotonic() - started:.0f} s, exit status {done.returncode}", flush=True)
    if not out.exists():
        return [], f"exit status {done.returncode}, no figures"
    return read_figures(out), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 3 minutes in all)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--markdown", type=Path, help="also write the machine and the table as Markdown here")
    parser.add_argument("--keep", action="store_true", help="keep every benchmark's temp folder (process logs)")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else BENCHES
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"--only: no benchmark named {', '.join(sorted(unknown))}")
    if "status" in chosen and wrk_binary() is None:
        # Said before anything runs: the table would otherwise end minutes later without the status figures.
        others = ",".join(name for name in chosen if name != "status")
        parser.error(f"the status benchmark needs wrk, which is not installed: {WRK_INSTALL} (Debian), "
                     f"or leave it out: --only {others}")
    started = time.monotonic()
    figures: list[Figure] = []
    failed: dict[str, str] = {}
    with ExitStack() as stack:
        tmp = temp_folder(stack, "run", keep=False)
        database_url, redis_url = start_servers(stack, tmp)
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        versions = server_versions(database_url, redis_url)
        for name in chosen:
            found, error = run_one(name, args, env, tmp)
            figures += found
            if error:
                failed[name] = error
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick" if args.quick else "full"
    summary = (f"{when}, {mode} run, {time.monotonic() - started:.0f} s; machine: {machine()}; {versions}; "
               f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"\n{summary}\n")
    print_table(figures)
    for name, error in failed.items():
        print(f"{name}: FAILED ({error})")
    if args.markdown:
        failures = "".join(f"\n- {name}: failed ({error})" for name, error in failed.items())
        args.markdown.write_text(f"{summary}\n\n{markdown_table(figures)}\n{failures}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
