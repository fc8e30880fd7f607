"""Shared fixtures."""

from __future__ import annotations

import pytest

from asterisk_miitel.config import Config

from .support import lab_config

# The real Asterisk lab (tests/lab): `lab` and `freepbx_lab` fixtures.
pytest_plugins = ["tests.lab.fixtures"]


@pytest.fixture
def config() -> Config:
    return lab_config()


def pytest_report_header(config: pytest.Config) -> str:
    """Name the Asterisk the real-lab tests run against."""
    from tests.lab.fixtures import report_header

    return report_header(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Asterisk the real-lab tests ran against, even with -q."""
    from tests.lab.fixtures import summary_line

    line = summary_line(terminalreporter.config)
    if line:
        terminalreporter.write_line(line)
