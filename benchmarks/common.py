"""The one results table, the machine it ran on, and small helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


@dataclass
class Row:
    """One line of the table.

    `met` is True/False when the row has a target, None when it is context
    (a breakdown, the other side of a ratio). A benchmark that could not run
    here says why in `value` and leaves `met` None: the row is still printed,
    so a reader (and the smoke test) sees every measurement the suite knows.
    """

    key: str  # stable id, e.g. "1c"; the smoke test looks for every one
    what: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Section:
    """What one benchmark module reports: rows, plus lines printed under the table."""

    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, *args: object, **kwargs: object) -> Row:
        row = Row(*args, **kwargs)  # type: ignore[arg-type]
        self.rows.append(row)
        return row

    def skip(self, keys: Sequence[tuple[str, str, str]], reason: str) -> None:
        """Rows (key, what, target) that could not be measured here."""
        for key, what, target in keys:
            self.rows.append(Row(key, what, f"not measured: {reason}", target, None))


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: ""}[met]


def render(rows: Sequence[Row]) -> str:
    """A Markdown table (it is pasted into docs/BENCHMARKS.md as printed)."""
    head = ("#", "measurement", "result", "target", "met", "notes")
    body = [(r.key, r.what, r.value, r.target, verdict(r.met), r.note) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)


def machine() -> str:
    """nproc, CPU model, memory, kernel, Python: what the numbers came from."""
    cpu = "unknown CPU"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for text in Path("/proc/meminfo").read_text().splitlines():
            if text.startswith("MemTotal:"):
                mem = f", {int(text.split()[1]) // 1024 // 1024 + 1} GB RAM"
                break
    except OSError:
        pass
    return (f"nproc {os.cpu_count()}, {cpu}{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()} ({sys.implementation.name})")


def rss_now() -> int:
    """This process's resident set size, bytes (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss(pid: int | str = "self") -> int:
    """A process's peak resident set size so far, bytes: VmHWM of its memory map.

    Not getrusage's ru_maxrss: on Linux a child started with fork/vfork + exec
    inherits its parent's high-water mark there (exec folds the old map's peak
    into it), so a small client started by a big benchmark process reported
    530 MB. VmHWM belongs to the map exec created.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # after the ")" closing comm: state is field 3, utime 14 and stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples it is a real sample)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def python_env() -> dict[str, str]:
    """The environment for a child Python that must import this repo's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_python(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m ...` from the repo, output captured."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env=python_env(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s"


def fmt_mb(size: float) -> str:
    return f"{size / MB:.1f} MB"
