"""pytest fixtures for the real-Asterisk lab.

Wire them into tests/conftest.py with either of:

    pytest_plugins = ["tests.lab.fixtures"]
    from tests.lab.fixtures import freepbx_lab, lab  # noqa: F401

``lab`` (session scope) yields a started :class:`tests.lab.Lab` (plain
dialplan, Asterisk 22); ``freepbx_lab`` (function scope) switches the same
Asterisk to the FreePBX-style dialplan for one test and back afterwards.
``asterisk_lab`` is the lab on another Asterisk, chosen by indirect
parametrization (the test id then names the version, e.g. ``[ast18]``):

    @pytest.mark.parametrize("asterisk_lab", ["18", "20"], indirect=True,
                             ids=["ast18", "ast20"], scope="module")
    def test_x(asterisk_lab): ...

Where the lab cannot run (not Linux, not root, a source tarball missing)
they skip with the reason, except under CI=true, where they fail: CI must
run the real-Asterisk tests. A build or start failure fails the test.

The machine runs one lab at a time (fixed ports and sipp addresses), so the
process keeps one Lab per Asterisk version and at most one of them running:
asking for another version stops the running one (between tests, when it is
idle), and a test that uses ``lab`` after that gets Asterisk 22 back (started
again in about a second). The Labs are shared by every fixture definition
that refers to these functions (the plugin and a direct import may both
register them), and stopped after the last user.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import NoReturn

import pytest

from . import build, rootfs
from .lab import Lab
from .rootfs import LabBuildError, LabError, unavailable_reason

# What the report header said about the Asterisk under test (tests/conftest.py).
HEADER_VERSION = pytest.StashKey[str]()
RAN_AGAINST = pytest.StashKey[str]()

_labs: dict[str, Lab] = {}  # by Asterisk version ("22", "18", ...); one runs at a time
_users = 0  # users of the session's Asterisk 22 lab (`lab`)
_guard = threading.RLock()


def _not_here(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true but the Asterisk lab cannot run: {reason}", pytrace=False)
    pytest.skip(f"Asterisk lab not available: {reason}")


def running_lab(asterisk: str = "22") -> Lab:
    """The process's lab on this Asterisk, running (any other version stopped first)."""
    reason = unavailable_reason()
    if reason:
        _not_here(reason)
    key = "22" if asterisk.split(".")[0] == "22" else build.resolve(asterisk).split(".")[0]
    if key != "22":
        missing = build.missing_source(key)
        if missing:
            _not_here(missing)
    with _guard:
        lab = _labs.get(key)
        if lab is None:
            lab = _labs[key] = Lab(asterisk=key)
        if lab.running:
            return lab
        for other in _labs.values():
            if other is not lab:
                other.stop()
        lab.stop()  # one that died: clean up before starting again
        try:
            lab.start()
        except LabBuildError as exc:
            pytest.fail(f"the Asterisk lab could not build Asterisk {key}: {exc}",
                        pytrace=False)
        except LabError as exc:
            pytest.fail(f"the Asterisk lab did not start: {exc}", pytrace=False)
        return lab


def acquire() -> Lab:
    """The process's Asterisk 22 lab, started on first use (skip/fail as the fixtures do)."""
    global _users
    with _guard:
        lab = running_lab("22")
        _users += 1
        return lab


def release() -> None:
    global _users
    with _guard:
        _users -= 1
        if _users <= 0:
            stop_all()
            _users = 0


def stop_all() -> None:
    """Stop every lab this process started (the end of the session)."""
    with _guard:
        for lab in _labs.values():
            lab.stop()
        _labs.clear()


def report_header(config: pytest.Config) -> str:
    """pytest's report header line: the Asterisk the lab runs (its cached root's)."""
    reason = unavailable_reason()
    if reason:
        config.stash[HEADER_VERSION] = ""
        return f"asterisk lab: not available here ({reason})"
    root = rootfs.root_path()
    version = str(rootfs.root_info(root).get("asterisk") or "") if rootfs.is_built(root) else ""
    config.stash[HEADER_VERSION] = version
    built = []
    for major in build.VERSIONS:
        prefix = build.cached_prefix(major)
        built.append(f"{build.VERSIONS[major]} " + ("built" if prefix else "not built yet"))
    others = f"; from source: {', '.join(built)}"
    if not version:
        return ("asterisk lab: Debian sid root not built yet (built on first use, ~45 s)"
                + others)
    return f"asterisk lab: {version} (Debian sid root {root}){others}"


def summary_line(config: pytest.Config) -> str | None:
    """For the end of the run (shown even with -q): the Asterisks the lab tests used."""
    version = config.stash.get(RAN_AGAINST, None)
    return f"real-Asterisk tests ran against Asterisk {version}" if version else None


def announce_version(the_lab: Lab, config: pytest.Config) -> None:
    """Name each Asterisk the run used, once, unless the report header already did."""
    this = the_lab.asterisk_version or "?"
    ran = [v for v in config.stash.get(RAN_AGAINST, "").split(", ") if v]
    if this not in ran:
        ran.append(this)
    config.stash[RAN_AGAINST] = ", ".join(ran)
    said = config.stash.get(HEADER_VERSION, "")
    if said and the_lab.asterisk_version and the_lab.asterisk_version in said:
        return
    config.stash[HEADER_VERSION] = f"{said}; Asterisk {this}" if said else f"Asterisk {this}"
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


@pytest.fixture(autouse=True)
def _lab_running(request: pytest.FixtureRequest) -> None:
    """A test that uses `lab` gets Asterisk 22 running, even if a test before it
    switched the machine's one lab to another version."""
    if "lab" in request.fixturenames and _users > 0:
        running_lab("22")


@pytest.fixture(scope="session")
def _other_versions() -> Iterator[None]:
    yield
    with _guard:
        for key in [k for k in _labs if k != "22"]:
            _labs.pop(key).stop()


@pytest.fixture
def asterisk_lab(request: pytest.FixtureRequest, _other_versions: None) -> Lab:
    """The lab (plain dialplan) on the Asterisk given by indirect parametrization:
    "16", "18", "20" (built from ../shared/asterisk) or "22"."""
    version = str(getattr(request, "param", "22"))
    the_lab = running_lab(version)
    announce_version(the_lab, request.config)
    the_lab.use_flavour("plain")
    return the_lab


@pytest.fixture
def freepbx_lab(lab: Lab) -> Iterator[Lab]:
    """The same Asterisk running the FreePBX-style dialplan, for one test."""
    lab.use_flavour("freepbx")
    try:
        yield lab
    finally:
        lab.wait_idle()
        lab.use_flavour("plain")
