"""`capvid ...` in a subprocess, without blocking the test's event loop (it serves the app the CLI calls)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT = 120


async def capvid_cli(url: str | None, token: str | None, cwd: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CAPVID_URL", "CAPVID_TOKEN")}
    env["PYTHONPATH"] = str(ROOT)
    if url is not None:
        env["CAPVID_URL"] = url
    if token is not None:
        env["CAPVID_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
