"""pytest fixtures for the real-Asterisk lab.

Wire them into tests/conftest.py with either of:

    pytest_plugins = ["tests.lab.fixtures"]
    from tests.lab.fixtures import freepbx_lab, lab  # noqa: F401

``lab`` (session scope) yields a started :class:`tests.lab.Lab` (plain
dialplan); ``freepbx_lab`` (function scope) switches the same Asterisk to the
FreePBX-style dialplan for one test and back afterwards. Where the lab cannot
run (not Linux, not root) they skip with the reason, except under CI=true,
where they fail: CI must run the real-Asterisk tests.

The Lab behind them is one per process, shared by every fixture definition
that refers to these functions (the plugin and a direct import may both
register them), so Asterisk is started once and stopped after the last user.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import NoReturn

import pytest

from . import rootfs
from .lab import Lab
from .rootfs import LabError, unavailable_reason

# What the report header said about the Asterisk under test (tests/conftest.py).
HEADER_VERSION = pytest.StashKey[str]()
RAN_AGAINST = pytest.StashKey[str]()

_shared: Lab | None = None
_users = 0
_guard = threading.Lock()


def _not_here(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true but the Asterisk lab cannot run: {reason}", pytrace=False)
    pytest.skip(f"Asterisk lab not available: {reason}")


def acquire() -> Lab:
    """The process's lab, started on first use (skip/fail as the fixtures do)."""
    global _shared, _users
    reason = unavailable_reason()
    if reason:
        _not_here(reason)
    with _guard:
        if _shared is None:
            lab = Lab()
            try:
                lab.start()
            except LabError as exc:
                pytest.fail(f"the Asterisk lab did not start: {exc}", pytrace=False)
            _shared = lab
        _users += 1
        return _shared


def release() -> None:
    global _shared, _users
    with _guard:
        _users -= 1
        if _users <= 0 and _shared is not None:
            _shared.stop()
            _shared = None
            _users = 0


def report_header(config: pytest.Config) -> str:
    """pytest's report header line: the Asterisk the lab runs (its cached root's)."""
    reason = unavailable_reason()
    if reason:
        config.stash[HEADER_VERSION] = ""
        return f"asterisk lab: not available here ({reason})"
    root = rootfs.root_path()
    version = str(rootfs.root_info(root).get("asterisk") or "") if rootfs.is_built(root) else ""
    config.stash[HEADER_VERSION] = version
    if not version:
        return "asterisk lab: Debian sid root not built yet (built on first use, ~45 s)"
    return f"asterisk lab: {version} (Debian sid root {root})"


def summary_line(config: pytest.Config) -> str | None:
    """For the end of the run (shown even with -q): the Asterisk the lab tests used."""
    version = config.stash.get(RAN_AGAINST, None)
    return f"real-Asterisk tests ran against Asterisk {version}" if version else None


def announce_version(the_lab: Lab, config: pytest.Config) -> None:
    """Name the Asterisk the run used, once, unless the report header already did."""
    config.stash[RAN_AGAINST] = the_lab.asterisk_version or "?"
    said = config.stash.get(HEADER_VERSION, "")
    if said and the_lab.asterisk_version and the_lab.asterisk_version in said:
        return
    config.stash[HEADER_VERSION] = f"Asterisk {the_lab.asterisk_version}"
    config.stash[RAN_AGAINST] = the_lab.asterisk_version or "?"
    line = f"asterisk lab: Asterisk {the_lab.asterisk_version} (running)"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A running lab Asterisk (plain dialplan), shared by the whole session."""
    the_lab = acquire()
    announce_version(the_lab, request.config)
    try:
        the_lab.use_flavour("plain")
        yield the_lab
    finally:
        release()


@pytest.fixture
def freepbx_lab(lab: Lab) -> Iterator[Lab]:
    """The same Asterisk running the FreePBX-style dialplan, for one test."""
    lab.use_flavour("freepbx")
    try:
        yield lab
    finally:
        lab.wait_idle()
        lab.use_flavour("plain")
