"""Shared fixtures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from asterisk_miitel.config import Config
from asterisk_miitel.miitel.standin import StandIn

from .support import lab_config

# The real Asterisk lab (tests/lab): `lab` and `freepbx_lab` fixtures.
pytest_plugins = ["tests.lab.fixtures"]


@pytest.fixture
def config() -> Config:
    return lab_config()


@pytest.fixture
async def standin(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A MiiTel stand-in over real HTTP on a free port (modules may define their own)."""
    async with StandIn(tmp_path / "miitel", port=0) as s:
        yield s


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate and key for `localhost`, signed by nobody anyone trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


# The fixtures that start the machine's one real-Asterisk lab (tests/lab/fixtures.py).
LAB_FIXTURES = frozenset({"lab", "asterisk_lab", "freepbx_lab"})


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark `lab` every test whose fixtures start the lab, even through another
    fixture: scripts/test runs `-m lab` in its own pytest beside `-m "not lab"`,
    and a lab test left in the other one would wait there for the machine's lab
    lock. This runs as each item is collected, so before `-m` deselects."""
    if LAB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.lab)


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
