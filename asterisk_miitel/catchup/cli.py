"""`asterisk-miitel backfill --since DATE [--until DATE] [--dry-run]`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import date, datetime, timedelta
from typing import TextIO

from ..config import Config
from ..outbox.store import Outbox
from .config import CatchupConfig
from .runner import CatchUp, CatchUpReport


class BackfillError(Exception):
    """A bad argument; one line for the user."""


def parse_when(text: str, config: Config, *, end: bool = False) -> float:
    """`2026-11-01`, `2026-11-01T09:30`, `2026-11-01 09:30:00+09:00` -> epoch.

    A date alone is that day's midnight in the PBX's zone ([pbx] timezone);
    as --until it means the end of that day.
    """
    tz = config.pbx.tz()
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            moment = datetime(day.year, day.month, day.day)
            if end:
                moment += timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BackfillError(f"{text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return moment.timestamp()


class Progress:
    """A bar on a terminal (stderr), else a line every `every` seconds."""

    def __init__(self, stream: TextIO, every: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every
        self._last = 0.0
        self._t0 = time.monotonic()

    def __call__(self, report: CatchUpReport) -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else self.every):
            return
        self._last = now
        text = (f"{report.rows} CDR rows, {report.calls} calls, {report.recordings} recordings: "
                f"{report.sent} {'to send' if report.dry_run else 'queued'}, "
                f"{report.known} known, {sum(report.skipped.values())} skipped")
        if self.tty:
            width = 24
            span = max(1.0, report.until - report.since)
            done = min(1.0, max(0.0, (self._position(report) - report.since) / span))
            bar = "#" * int(done * width)
            self.stream.write(f"\r[{bar:<{width}}] {done:4.0%} {text}\x1b[K")
        else:
            self.stream.write(f"backfill: {time.monotonic() - self._t0:.0f} s: {text}\n")
        self.stream.flush()

    @staticmethod
    def _position(report: CatchUpReport) -> float:
        return report.position if report.position is not None else report.since

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


async def backfill(config: Config, since: float, until: float, *, dry_run: bool,
                   out: TextIO, err: TextIO, pbx_id: str | None = None,
                   cc: CatchupConfig | None = None) -> CatchUpReport:
    progress = Progress(err)

    def emit(payload: dict[str, object]) -> None:
        out.write(json.dumps(payload, ensure_ascii=False) + "\n")

    outbox = Outbox(config.outbox.path)
    await outbox.open()
    try:
        pbx = pbx_id or config.pbx.id or await outbox.get_meta("pbx_id")
        if not pbx:
            raise BackfillError(
                "the PBX id (part of every call_data_id) is not known yet: set [pbx] id, or "
                "run the service once so it learns Asterisk's SystemName")
        runner = CatchUp(config, outbox, pbx, source="backfill", dry_run=dry_run,
                         emit=emit, progress=progress, cc=cc)
        report = await runner.run(since, until)
    finally:
        progress.close()
        await outbox.close()
    return report


def backfill_main(config: Config, since: str, until: str | None, dry_run: bool, *,
                  out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                  cc: CatchupConfig | None = None) -> int:
    """The `backfill` command. Exit 0 when every recording was accounted for,
    1 when some could not be read or rebuilt (the summary says which), 2 for
    a bad argument."""
    try:
        lo = parse_when(since, config)
        hi = parse_when(until, config, end=True) if until else time.time()
        if hi <= lo:
            raise BackfillError("--until must be after --since")
        report = asyncio.run(backfill(config, lo, hi, dry_run=dry_run, out=out, err=err,
                                      cc=cc))
    except BackfillError as exc:
        err.write(f"asterisk-miitel backfill: {exc}\n")
        return 2
    for line in report.summary_lines():
        err.write(line + "\n")
    if not dry_run and report.sent:
        err.write(f"{report.sent} call(s) queued in {config.outbox.path}: the running service "
                  "(`asterisk-miitel run`) sends them\n")
    if dry_run:
        err.write("dry run: nothing was queued; the call_data above (stdout, one JSON per "
                  "line) is what would be sent\n")
    return 1 if report.problems else 0
