"""`python -m benchmarks --smoke` runs and prints its one table with every row.

A benchmark, not a timed test: nothing here looks at a number. Rows that
need the real Asterisk lab say "not measured: <why>" where it cannot run
(not root, or another run holds the lab for more than 20 s): they are
still printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Its lab rows start the real Asterisk lab in the subprocess: it belongs with
# the lab tests (scripts/test), not in the pytest that must never wait on the
# machine's lab lock. First in the lab group's order, it finds the lock free.
pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parent.parent
ROWS = ("1a", "1b", "1c", "1ua", "1ub", "1uc", "2a", "2b", "2c", "3a", "3b", "3c",
        "4a", "4b", "4c", "5a", "5b", "6a", "6b", "6c")
MEASURED_HERE = ("1a", "1b", "1c", "3a", "3b", "3c", "5a", "5b")  # no lab needed


def test_benchmarks_smoke_prints_every_row() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke"], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\S+) +\| (.*)$", out, re.M)}
    assert "Machine: nproc" in out
    missing = [key for key in ROWS if key not in rows]
    assert not missing, f"rows missing: {missing}\n{out}\n{proc.stderr[-2000:]}"
    assert not [k for k in rows if k.endswith("!")], out  # "<name> benchmark failed"
    for key in MEASURED_HERE:
        assert "not measured" not in rows[key], out
