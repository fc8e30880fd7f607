"""scripts/test runs the suite as two pytests side by side, `-m lab` and
`-m "not lab"`: no test that starts the real-Asterisk lab may land in the
second, where it would wait for the machine's one lab (its lock) while the
first holds it, or fail beside it on the lab's fixed ports.

Collection only (a few seconds): the test ids `-m "not lab"` keeps and the
fixtures each of them uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import LAB_FIXTURES

REPO = Path(__file__).resolve().parent.parent
# Start the lab without a lab fixture (a subprocess that does): lab group too.
LAB_BY_SUBPROCESS = ("tests/test_benchmarks_smoke.py::",)

PROBE = """
import json, sys
import pytest

class Probe:
    def pytest_collection_finish(self, session):
        self.items = {i.nodeid: sorted(getattr(i, "fixturenames", ())) for i in session.items}

probe = Probe()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]],
                   plugins=[probe])
print("PROBE " + json.dumps({"code": int(code), "items": probe.items}))
"""


def collected(*args: str) -> dict[str, list[str]]:
    """The test ids pytest keeps with `args`, each with its fixture closure."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(line[len("PROBE "):])
    assert result["code"] == 0, proc.stdout[-3000:]
    return dict(result["items"])


def test_no_test_that_starts_the_lab_runs_outside_the_lab_group() -> None:
    rest = collected("-m", "not lab", "tests")
    assert len(rest) > 500  # the probe really collected the suite
    assert "tests/test_test_split.py::" + \
        "test_no_test_that_starts_the_lab_runs_outside_the_lab_group" in rest
    strays = {tid: sorted(LAB_FIXTURES.intersection(names))
              for tid, names in rest.items() if LAB_FIXTURES.intersection(names)}
    assert not strays, f"lab fixtures in the `not lab` group: {strays}"
    by_subprocess = [tid for tid in rest if tid.startswith(LAB_BY_SUBPROCESS)]
    assert not by_subprocess, f"start the lab in a subprocess, not marked lab: {by_subprocess}"


def test_a_lab_fixture_alone_puts_a_test_in_the_lab_group(tmp_path: Path) -> None:
    # No @pytest.mark.lab anywhere: tests/conftest.py marks them at collection,
    # before -m deselects (a hook that ran after it would leave them in both).
    (tmp_path / "conftest.py").write_text(
        "import pytest\n"
        "for name in ('lab', 'asterisk_lab', 'freepbx_lab'):\n"
        "    exec(f'@pytest.fixture\\ndef {name}(): pass')\n"
        "from tests.conftest import pytest_itemcollected  # noqa: F401\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "@pytest.fixture\n"
        "def through(freepbx_lab): pass\n"
        "def test_lab(lab): pass\n"
        "def test_through_a_fixture(through): pass\n"
        "@pytest.mark.parametrize('asterisk_lab', ['18'], indirect=True)\n"
        "def test_version(asterisk_lab): pass\n"
        "def test_plain(): pass\n")
    common = ("--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path))
    lab = collected("-m", "lab", *common)
    rest = collected("-m", "not lab", *common)
    assert sorted(t.split("::")[-1] for t in lab) == [
        "test_lab", "test_through_a_fixture", "test_version[18]"]
    assert [t.split("::")[-1] for t in rest] == ["test_plain"]
