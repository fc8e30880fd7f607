"""The lab's Asterisk-from-source builds (tests/lab/build.py): cache rules and failures.

A stand-in source tarball (a `configure` and a Makefile that only write the
files a build leaves) runs the real build steps in seconds: offline in their
own network namespace, under the lock, renamed into place, keyed by tarball
and options, older builds of the version pruned, and a failing step reported
with its log.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tests.lab import build
from tests.lab.rootfs import LabBuildError, LabError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="the build runs in its own network namespace (unshare --net: Linux, root)")

VERSION = "20.10.0"
MAKEFILE = """\
PREFIX := $(shell cat prefix)
all:
\t@echo built
menuselect.makeopts:
\t@echo menuselect > menuselect.makeopts
install:
\tmkdir -p $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/lib/asterisk/modules
\tmkdir -p $(DESTDIR)$(PREFIX)/var/lib/asterisk/sounds
\tprintf '#!/bin/sh\\necho "Asterisk %s"\\n' $(VERSION) > $(DESTDIR)$(PREFIX)/sbin/asterisk
\tchmod +x $(DESTDIR)$(PREFIX)/sbin/asterisk
\tcd $(DESTDIR)$(PREFIX)/lib/asterisk/modules && touch $(MODULES)
"""
CONFIGURE_OK = """\
#!/bin/sh
# records --prefix=... for the Makefile; fails if it could reach the network
for a in "$@"; do case "$a" in --prefix=*) echo "${a#--prefix=}" > prefix;; esac; done
if ip -o link 2>/dev/null | grep -v ' lo:' | grep -q 'state UP'; then
  echo "configure: error: a network is reachable"; exit 7
fi
echo "$@" > configure.args
"""
MENUSELECT = "#!/bin/sh\necho \"$@\" >> menuselect.calls\n"


def tarball(folder: Path, *, configure: str = CONFIGURE_OK, marker: str = "") -> Path:
    """asterisk-<VERSION>.tar.xz with the stand-in build files."""
    modules = " ".join(f"{m}.so" for m in build.REQUIRED_MODULES)
    files = {
        "configure": (configure, 0o755),
        "Makefile": (MAKEFILE.replace("$(VERSION)", VERSION).replace("$(MODULES)", modules)
                     + f"# {marker}\n", 0o644),
        "menuselect/menuselect": (MENUSELECT, 0o755),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"asterisk-{VERSION}.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"asterisk-{VERSION}/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "sources"
    monkeypatch.setenv("ASTERISK_MIITEL_LAB_SOURCES", str(folder))
    monkeypatch.setattr(build, "ensure_build_packages", lambda: None)  # no apt-get here
    return folder


def test_builds_once_then_reuses_and_prunes_when_the_source_changes(
        sources: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tarball(sources)
    first = build.ensure_build("20", cache=cache)
    assert first.name.startswith(f"ast-{VERSION}-") and first.parent == cache
    info = build.build_info(first)
    assert info["asterisk"] == f"Asterisk {VERSION}" and info["version"] == VERSION
    assert build.is_built(first) and build.cached_prefix("20", cache=cache) == first
    # the prompts are Debian's, linked in
    assert (first / "var/lib/asterisk/sounds").resolve() == build.SOUNDS_DIR.resolve()
    # offline and with our options (the stand-in configure fails if it sees a network)
    log = (first / "build.log").read_text()
    assert "--without-pjproject" in log and "--disable-category MENUSELECT_CORE_SOUNDS" in log
    assert "--enable chan_sip" in log and "--enable app_macro" in log
    assert not list(cache.glob("*.building-*"))
    # the same again: reused, not rebuilt
    stamp = (cache / f"{first.name}.json").stat().st_mtime_ns
    assert build.ensure_build("20.10.0", cache=cache) == first
    assert (cache / f"{first.name}.json").stat().st_mtime_ns == stamp
    # another tarball for the version: a new build, the old one pruned
    tarball(sources, marker="changed")
    second = build.ensure_build("20", cache=cache)
    assert second != first and build.is_built(second)
    assert not first.exists() and not (cache / f"{first.name}.json").exists()


def test_a_failing_step_says_which_with_its_log_and_leaves_nothing_half_built(
        sources: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tarball(sources, configure="#!/bin/sh\necho 'checking for gcc... no'\n"
                               "echo 'configure: error: no acceptable C compiler'\nexit 77\n")
    with pytest.raises(LabBuildError) as caught:
        build.ensure_build("20", cache=cache)
    text = str(caught.value)
    assert f"could not build Asterisk {VERSION}: configure failed (exit 77)" in text
    assert "no acceptable C compiler" in text  # the log's tail
    failed = cache / f"ast-{VERSION}.failed.log"
    assert str(failed) in text and "no acceptable C compiler" in failed.read_text()
    assert [p.name for p in cache.iterdir() if p.name.startswith("ast-")] == [failed.name]
    assert build.cached_prefix("20", cache=cache) is None


def test_a_missing_tarball_or_an_unknown_version_is_a_clear_error(
        sources: Path, tmp_path: Path) -> None:
    with pytest.raises(LabError, match=f"the Asterisk {VERSION} source .* is missing"):
        build.ensure_build("20", cache=tmp_path)
    assert "missing" in (build.missing_source("20") or "")
    with pytest.raises(ValueError, match="not '19'"):
        build.resolve("19")
    assert build.resolve("18") == "18.26.4" and build.resolve("16.16.2") == "16.16.2"


def test_the_key_covers_version_options_and_tarball(sources: Path) -> None:
    tarball(sources)
    key = build.BuildSpec(VERSION).key()
    assert key == build.BuildSpec(VERSION).key()
    assert key != build.BuildSpec(VERSION, configure=("--without-pjproject",)).key()
    assert key != build.BuildSpec(VERSION, enable=("chan_sip",)).key()
    tarball(sources, marker="other")
    assert key != build.BuildSpec(VERSION).key()
    assert json.dumps(build.VERSIONS) == '{"16": "16.16.2", "18": "18.26.4", "20": "20.10.0"}'


@pytest.mark.parametrize(("status", "installed"), [
    ("install ok installed", True),
    ("unknown ok not-installed", False),  # known to apt, never installed: a fresh machine
    ("deinstall ok config-files", False),
    ("install ok half-installed", False),
    ("", False),
])
def test_a_build_package_counts_as_installed_only_when_dpkg_says_so(
        status: str, installed: bool) -> None:
    # A fresh CI machine reads `unknown ok not-installed` for libedit-dev: it
    # must be installed before configure, which otherwise stops at libedit.
    assert build.is_installed_status(status) is installed
