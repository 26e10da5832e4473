"""The fuzz suite prints what it sent and found at the end of the run."""

from __future__ import annotations

from typing import Any

from tests.helpers import print_figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_figures(terminalreporter, "tests/fuzz/", "fuzz figures")
