from __future__ import annotations

import pytest

from .verdicts import summary_lines


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = summary_lines(config)
    if lines:
        terminalreporter.section("Autobahn cases 1-7, 10 and 12-13")
        for line in lines:
            terminalreporter.write_line(line)
