"""Fixtures of the chaos suite: servers of its own to kill, and the figures it prints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.servers import PostgresServer, RedisServer
from tests.helpers import print_figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_figures(terminalreporter, "tests/chaos/", "chaos figures")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.close()
