"""`python -m benchmarks [--smoke] [--only NAME ...] [--profile] [--json FILE]`.

Runs every benchmark and prints ONE table (Markdown), then the machine and
the details (breakdowns, profiles). `--smoke` runs each benchmark small and
short, to prove they work (tests/test_benchmarks_smoke.py runs it in CI).
The exit status is 0 even when a target is missed: a benchmark reports, it
does not judge a build.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict

from .common import Row, Section, machine, render

NAMES = ("throughput", "memory", "upload", "lab")


def _run_one(name: str, smoke: bool, profile: bool) -> Section:
    if name == "throughput":
        from . import throughput

        return throughput.run(smoke, profile)
    if name == "memory":
        from . import memory

        return memory.run(smoke)
    if name == "upload":
        from . import upload

        return upload.run(smoke)
    from . import labbench

    return labbench.run(smoke)


def _order(row: Row) -> tuple[int, str]:
    digits = re.match(r"\d+", row.key)
    return (int(digits.group(0)) if digits else 99, row.key)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="short runs that prove each works")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES), metavar="NAME",
                        help=f"run only these ({', '.join(NAMES)})")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile of both throughput paths under the table")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    details: list[str] = []
    started = time.monotonic()
    for name in NAMES:
        if name not in args.only:
            continue
        t0 = time.monotonic()
        print(f"[benchmarks] {name}...", file=sys.stderr, flush=True)
        try:
            section = _run_one(name, args.smoke, args.profile)
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            section = Section(rows=[Row(f"{name}!", f"{name} benchmark failed", repr(exc)[:120])])
        rows += section.rows
        details += [f"[{name}] {line}" if not line.startswith(("---", " ")) else line
                    for line in section.details]
        print(f"[benchmarks] {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

    rows.sort(key=_order)  # 1..6 as the issue numbers them, whatever ran first
    mode = "smoke (short runs: numbers are not the benchmark's)" if args.smoke else "full"
    out(f"## Benchmark results ({mode})")
    out("")
    out(render(rows))
    out("")
    out(f"Machine: {machine()}")
    out(f"Total time: {time.monotonic() - started:.0f} s")
    if details:
        out("")
        out("Details:")
        for line in details:
            out(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": machine(), "smoke": args.smoke,
                       "rows": [asdict(r) for r in rows], "details": details}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
