"""Find recorded calls the service never saw, rebuild them from the CDR and
queue them like any other call: on start and after an AMI outage (catch-up,
source "catchup") or over a date range (`backfill`, source "backfill").

Nothing twice: a recording the outbox already has (the same file, the same
file name, or the same call_data_id, which live tracking derives from the
same path) is left alone, and one that live tracking is still following is
not touched. Nothing silently dropped: every recording found is queued,
skipped with a reason, set aside with a reason, or reported (a file no CDR
row explains, a CDR row whose recording is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from ..calls.classify import Context, call_data_id, classify, recording_key
from ..config import Config
from ..intake import IntakeCounter, admit, count_queued, log_outcome
from ..outbox.states import Source
from ..outbox.store import Outbox
from ..recordings import map_path
from .config import CatchupConfig, freepbx_database_url, zone
from .files import FileIndex, Message, find_voicemail, scan_recordings
from .rebuild import Assembler, BuildContext, CallBuilder, Rebuilt
from .sources import CdrSource, SourceError
from .sources.csv import CsvSource
from .sources.sql import SqlSource

log = logging.getLogger("asterisk_miitel.catchup")
calls_log = logging.getLogger("asterisk_miitel.calls")

META_SEEN = "catchup.seen_until"  # Asterisk-clock time up to which AMI was followed
META_PENDING = "catchup.pending"  # {"since", "until"}: a window not yet caught up
META_LAST = "catchup.last_run"  # the last run's summary (for `status`)

Progress = Callable[["CatchUpReport"], None]
Emit = Callable[[dict[str, Any]], None]


@dataclass
class CatchUpReport:
    source: Source  # "catchup" | "backfill"
    since: float
    until: float
    cdr: str = ""
    rows: int = 0
    calls: int = 0  # clusters of rows (one call, transfers included)
    recordings: int = 0  # recordings rebuilt in the window
    queued: Counter[str] = field(default_factory=Counter)  # by event_type
    set_aside: Counter[str] = field(default_factory=Counter)  # by reason code
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    known: int = 0  # already in the outbox (seen live or by an earlier run)
    live: int = 0  # still followed by live tracking
    problems: list[str] = field(default_factory=list)
    unexplained: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    finished: bool = False
    dry_run: bool = False
    source_failed: bool = False  # the CDR could not be read: the window stays pending
    position: float | None = None  # how far the CDR has been read (a row's time)

    @property
    def sent(self) -> int:
        return sum(self.queued.values())

    def summary_lines(self) -> list[str]:
        verb = "would queue" if self.dry_run else "queued"
        out = [
            f"{self.source} {_iso(self.since)} .. {_iso(self.until)} from {self.cdr or 'no CDR'}: "
            f"{self.rows} CDR rows, {self.calls} calls, {self.recordings} recordings "
            f"in {self.seconds:.1f} s",
            f"  {verb}: {self.sent}" + "".join(
                f"\n    {k:<20} {v}" for k, v in sorted(self.queued.items())),
            f"  already known (sent live or earlier): {self.known}",
        ]
        if self.live:
            out.append(f"  still being recorded (left to live tracking): {self.live}")
        if self.set_aside:
            out.append(f"  set aside: {sum(self.set_aside.values())}" + "".join(
                f"\n    {k:<20} {v}" for k, v in sorted(self.set_aside.items())))
        if self.skipped:
            out.append(f"  skipped: {sum(self.skipped.values())}" + "".join(
                f"\n    {v:>4}  {k}" for k, v in self.skipped.most_common()))
        if self.unexplained:
            out.append(f"  recordings no CDR row explains (not sent): {len(self.unexplained)}")
            out += [f"    {path}: {why}" for path, why in self.unexplained[:20]]
            if len(self.unexplained) > 20:
                out.append(f"    ... and {len(self.unexplained) - 20} more")
        if self.problems:
            out.append(f"  problems: {len(self.problems)}")
            out += [f"    {p}" for p in self.problems[:20]]
        return out

    def as_meta(self) -> dict[str, Any]:
        return {"source": self.source, "since": self.since, "until": self.until,
                "at": time.time(), "queued": dict(self.queued), "known": self.known,
                "set_aside": dict(self.set_aside), "skipped": sum(self.skipped.values()),
                "unexplained": len(self.unexplained), "problems": self.problems[:5],
                "finished": self.finished}


def make_source(config: Config, cc: CatchupConfig) -> CdrSource | None:
    tz = config.pbx.tz()
    kind = cc.source
    url = cc.database_url.get_secret_value() if cc.database_url is not None else None
    if kind == "auto":
        url = url or freepbx_database_url()  # FreePBX writes no Master.csv
        kind = "sql" if url else "csv"
    if kind == "none":
        return None
    if kind == "sql":
        if url is None:
            raise SourceError("[catchup] source = \"sql\" needs database_url")
        return SqlSource(url, cc.table,
                         zone(cc.sql_timezone, tz), max_call_hours=cc.max_call_hours)
    return CsvSource(cc.cdr_csv, zone(cc.csv_timezone, tz), columns=cc.csv_columns or None,
                     max_call_hours=cc.max_call_hours,
                     map_path=lambda p: map_path(p, config))


class CatchUp:
    """One run over [since, until].

    `counter`: where the calls it queues are counted for /metrics (intake.py);
    the service passes its own, `backfill` none."""

    def __init__(self, config: Config, outbox: Outbox | None, pbx_id: str, *,
                 source: Source = "catchup", dry_run: bool = False,
                 is_live: Callable[[str], bool] | None = None,
                 emit: Emit | None = None, progress: Progress | None = None,
                 cdr: CdrSource | None = None, cc: CatchupConfig | None = None,
                 counter: IntakeCounter | None = None) -> None:
        self.config = config
        self.cc = cc or config.catchup
        self.counter = counter
        self.outbox = outbox
        self.pbx_id = pbx_id
        self.source = source
        self.dry_run = dry_run
        self.is_live = is_live or (lambda _file: False)
        self.emit = emit
        self.progress = progress
        self._cdr = cdr
        self.ctx = Context(config, pbx_id, config.pbx.tz())
        self._known_files: set[str] = set()
        self._known_names: set[str] = set()
        self._vm_rows: list[tuple[str, float]] = []

    async def run(self, since: float, until: float) -> CatchUpReport:
        t0 = time.monotonic()
        report = CatchUpReport(self.source, since, until, dry_run=self.dry_run)
        cdr = self._cdr
        if cdr is None:
            try:
                cdr = make_source(self.config, self.cc)
            except SourceError as exc:
                report.problems.append(str(exc))
                report.source_failed = True
        report.cdr = cdr.describe() if cdr is not None else ""
        tz = self.config.pbx.tz()
        files = await asyncio.to_thread(scan_recordings, self.config, since, until, tz,
                                        self.cc.max_call_hours)
        report.problems += files.problems
        await self._load_known(since)
        build = BuildContext(
            config=self.config, files=files,
            monitor_dir=(self.config.recordings.dirs or ["/var/spool/asterisk/monitor"])[0],
            freepbx_options=self.cc.freepbx_rec_options,
            voicemail=self._voicemail_lookup,
            exists=lambda p: os.path.exists(map_path(p, self.config)),
        )
        work: asyncio.Queue[Rebuilt | None] = asyncio.Queue(maxsize=4 * self.cc.concurrency)
        workers = [asyncio.create_task(self._worker(work, report, since, until))
                   for _ in range(self.cc.concurrency)]
        try:
            if cdr is not None:
                await self._read(cdr, build, work, report, since, until)
        except SourceError as exc:
            report.problems.insert(0, str(exc))
            report.source_failed = True
            log.error("%s: %s", self.source, exc)
        finally:
            for _ in workers:
                await work.put(None)
            await asyncio.gather(*workers)
            if cdr is not None and self._cdr is None:
                with contextlib.suppress(Exception):
                    await cdr.close()
        if cdr is not None:
            report.problems += cdr.problems
        report.finished = not report.source_failed
        self._unexplained(files, build, report, since, until)
        report.seconds = time.monotonic() - t0
        if self.progress is not None:
            self.progress(report)
        return report

    async def _read(self, cdr: CdrSource, build: BuildContext,
                    work: asyncio.Queue[Rebuilt | None], report: CatchUpReport,
                    since: float, until: float) -> None:
        assembler = Assembler(cdr.order)
        last_progress = 0.0
        async for row in cdr.scan(since, until):
            report.rows += 1
            report.position = row.end if cdr.order == "end" else row.start
            assembler.add(row)
            if len(assembler) > 64 or report.rows % 256 == 0:
                for cluster in assembler.complete():
                    await self._cluster(cluster.rows, build, work, report, since, until)
            if self.progress is not None and time.monotonic() - last_progress > 0.2:
                last_progress = time.monotonic()
                self.progress(report)
        for cluster in assembler.complete(final=True):
            await self._cluster(cluster.rows, build, work, report, since, until)

    async def _cluster(self, rows: list[Any], build: BuildContext,
                       work: asyncio.Queue[Rebuilt | None], report: CatchUpReport,
                       since: float, until: float) -> None:
        if max(r.end for r in rows) < since - 1:
            return
        report.calls += 1
        try:
            rebuilt = await asyncio.to_thread(lambda: CallBuilder(rows, build).recordings())
        except Exception as exc:  # a row shape nobody foresaw: say which, go on
            origin = rows[0].origin or rows[0].uniqueid
            report.problems.append(f"rows from {origin}: could not be rebuilt "
                                   f"({type(exc).__name__}: {exc})")
            log.exception("%s: could not rebuild the call of %s", self.source, origin)
            return
        for item in rebuilt:
            if not since - 1 <= item.ended <= until + 1:
                continue
            await work.put(item)

    async def _worker(self, work: asyncio.Queue[Rebuilt | None], report: CatchUpReport,
                      since: float, until: float) -> None:
        while (item := await work.get()) is not None:
            try:
                await self._one(item, report)
            except Exception as exc:
                report.problems.append(f"{item.file}: {type(exc).__name__}: {exc}")
                log.exception("%s: %s", self.source, item.file)

    async def _one(self, item: Rebuilt, report: CatchUpReport) -> None:
        report.recordings += 1
        if item.problem is not None or item.rec is None:
            report.problems.append(item.problem or f"{item.file}: cannot be rebuilt")
            return
        rec = item.rec
        if any(self.is_live(f) for f in item.files):
            report.live += 1
            return
        if await self._known(rec.file, recording_key(rec), item):
            report.known += 1
            return
        outcome = classify(rec, self.ctx)
        # The same row live tracking writes ([send] rules, id, state): intake.py.
        call = admit(outcome, self.source, pbx_id=self.pbx_id, config=self.config)
        hint = f" ({'; '.join(item.hints)})" if item.hints else ""
        if call.state == "skipped":
            report.skipped[call.reason or ""] += 1
        elif call.state == "set_aside":
            report.set_aside[call.reason_code or "users"] += 1
        # [send] rules keep call_data (they only add the skip)
        what = outcome.call_data.event_type.value if outcome.call_data else "call"
        if self.dry_run:
            if outcome.call_data is not None and call.state == "waiting_recording":
                report.queued[what] += 1
                if self.emit is not None:
                    self.emit(outcome.call_data.payload())
            return
        assert self.outbox is not None
        added = await self.outbox.add(call)
        self._known_files.add(rec.file)
        if not added:
            report.known += 1
            return
        count_queued(call, self.counter)
        if call.state == "waiting_recording":
            report.queued[what] += 1
            calls_log.info("call %s: caught up (%s, %s) from the CDR%s", call.id, what,
                           self.source, hint)
        else:
            log_outcome(call)

    # -- what the outbox already has -----------------------------------------------------

    async def _load_known(self, since: float) -> None:
        if self.outbox is None:
            return
        for file, ended in await self.outbox.files_ended_since(since - 86400):
            self._known_files.add(file)
            self._known_names.add(PurePosixPath(file).name)
            if "/voicemail/" in file and ended is not None:
                self._vm_rows.append((file, float(ended)))

    async def _known(self, file: str, key: str, item: Rebuilt) -> bool:
        if self.outbox is None:
            return False
        call_id = call_data_id(self.pbx_id, key)
        if await self.outbox.get(call_id) is not None:
            return True
        rec = item.rec
        assert rec is not None
        if rec.voicemail_only:
            # The same message sent live, then moved out of INBOX (listened to):
            # same box, same end second.
            box = file.rsplit("/", 2)[0]
            return any(f.startswith(box + "/") and abs(ended - item.ended) <= 2
                       for f, ended in self._vm_rows)
        if file in self._known_files:
            return True
        # The same recording under another spelling of its folder: its name
        # holds the channel's uniqueid and start, so it is the same file.
        return PurePosixPath(file).name in self._known_names and rec.mode != "unknown"

    # -- files without a CDR row ---------------------------------------------------------

    def _voicemail_lookup(self, box: str, channel: str, start: float, end: float
                          ) -> Message | None:
        return find_voicemail(self.config, box, channel, start, end, self.cc.voicemail_dirs)

    def _unexplained(self, files: FileIndex, build: BuildContext, report: CatchUpReport,
                     since: float, until: float) -> None:
        for found in files.files.values():
            if found.path in build.used or found.kind in ("leg_in", "leg_out"):
                continue
            if found.started is None or not since <= found.started <= until:
                continue
            if found.path in self._known_files or (
                    found.kind != "other" and found.name in self._known_names):
                continue
            if self.is_live(found.path):
                continue
            if found.kind == "other":
                why = "not named by our dialplan or FreePBX, and no CDR recordingfile names it"
            elif found.uid:
                why = f"no CDR row has its channel's uniqueid {found.uid}"
                if report.cdr.startswith("cdr_csv"):
                    why += " (cdr.conf [csv] loguniqueid=yes?)"
            else:
                why = "no CDR row names it"
            if found.size == 0:
                why += "; the file is empty"
            report.unexplained.append((found.path, why))
        report.unexplained.sort()
        for path, why in report.unexplained:
            log.warning("%s: recording %s not sent: %s", self.source, path, why)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- inside the service ----------------------------------------------------------------


class CatchUpTask:
    """The service's catch-up: remembers how far AMI was followed, and on each
    (re)connection rebuilds what ended since then.

    Wiring (asterisk_miitel/service.py): see docs/CATCHUP.md, "For the service".
    """

    def __init__(self, config: Config, outbox: Outbox, *,
                 pbx_id: Callable[[], Awaitable[str]],
                 is_live: Callable[[str], bool] | None = None,
                 cc: CatchupConfig | None = None,
                 spawn: Callable[[str, Callable[[], Awaitable[None]]], asyncio.Task[None]]
                 | None = None,
                 counter: IntakeCounter | None = None) -> None:
        self.config = config
        # The service's Supervisor.start: a run that fails on a bug starts again.
        self._spawn = spawn
        self.cc = cc or config.catchup
        # The service's metrics: caught-up calls count in /metrics like live ones.
        self.counter = counter
        self.outbox = outbox
        self._pbx_id = pbx_id
        self.is_live = is_live
        self.ready = False  # a window is recorded: seen_until may advance
        self.last: CatchUpReport | None = None
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    async def heartbeat(self, asterisk_now: float, connected: bool) -> None:
        """While AMI is followed, every event up to now has been seen."""
        if connected and self.ready:
            await self.outbox.set_meta(META_SEEN, repr(asterisk_now))

    def disconnected(self) -> None:
        self.ready = False

    async def connected(self, asterisk_now: float) -> None:
        """AMI is up (again): catch up from the last moment it was followed."""
        if not self.cc.enabled:
            self.ready = True
            return
        seen = await self.outbox.get_meta(META_SEEN)
        pending = _load(await self.outbox.get_meta(META_PENDING))
        if seen is None and not pending:
            log.info("catch-up: first start, nothing to catch up (use `asterisk-miitel "
                     "backfill` for calls from before)")
        else:
            lookback = asterisk_now - self.cc.max_lookback_hours * 3600
            since = float(seen) - self.cc.margin_seconds if seen is not None else asterisk_now
            if pending:
                since = min(since, float(pending["since"]))
            if since < lookback:
                log.warning("catch-up: the service was away since %s; looking back only %.0f h "
                            "([catchup] max_lookback_hours): `backfill` the rest",
                            _iso(since), self.cc.max_lookback_hours)
                since = lookback
            until = max(asterisk_now, float(pending["until"]) if pending else 0.0)
            await self.outbox.set_meta(META_PENDING, json.dumps({"since": since,
                                                                 "until": until}))
            if self._task is None or self._task.done():
                self._task = (self._spawn("catchup", self._run_pending) if self._spawn
                              else asyncio.create_task(self._run_pending(), name="catchup"))
        await self.outbox.set_meta(META_SEEN, repr(asterisk_now))
        self.ready = True

    async def _run_pending(self) -> None:
        await asyncio.sleep(self.cc.settle_seconds)
        while True:
            text = await self.outbox.get_meta(META_PENDING)
            window = _load(text)
            if not window:
                return
            report = await self.run(float(window["since"]), float(window["until"]))
            if not report.finished:
                return  # kept: the next connection tries again
            if await self.outbox.get_meta(META_PENDING) == text:
                await self.outbox.set_meta(META_PENDING, "")
                break
            # AMI dropped and came back meanwhile: the window grew, run it again
        if self.cc.second_pass_seconds > 0:
            # CDR back ends that write in batches: look at the same window again.
            await asyncio.sleep(self.cc.second_pass_seconds)
            await self.run(float(window["since"]), float(window["until"]), quiet=True)

    async def run(self, since: float, until: float, quiet: bool = False) -> CatchUpReport:
        pbx_id = await self._pbx_id()
        report = await CatchUp(self.config, self.outbox, pbx_id, source="catchup",
                               is_live=self.is_live, cc=self.cc,
                               counter=self.counter).run(since, until)
        self.runs += 1
        self.last = report
        await self.outbox.set_meta(META_LAST, json.dumps(report.as_meta()))
        if quiet and not report.sent and not report.unexplained and not report.problems:
            return report
        level = logging.WARNING if report.problems or report.unexplained else logging.INFO
        for line in report.summary_lines():
            log.log(level, "%s", line)
        return report

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _load(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def status_lines(outbox: Outbox) -> list[str]:
    """For `status`: calls caught up or backfilled, and the last catch-up."""
    lines: list[str] = []
    by_source: dict[str, list[str]] = {}
    for source, state, n in await outbox.states_by_source(("catchup", "backfill")):
        by_source.setdefault(source, []).append(f"{state} {n}")
    for source, parts in by_source.items():
        label = "caught up" if source == "catchup" else "backfilled"
        lines.append(f"{label}: " + ", ".join(parts))
    last = _load(await outbox.get_meta(META_LAST))
    if last:
        lines.append(
            f"last catch-up {_iso(float(last['since']))} .. {_iso(float(last['until']))}: "
            f"queued {sum(last.get('queued', {}).values())}, known {last.get('known', 0)}, "
            f"unexplained recordings {last.get('unexplained', 0)}"
            + (f", problems: {'; '.join(last['problems'])}" if last.get("problems") else ""))
    pending = _load(await outbox.get_meta(META_PENDING))
    if pending:
        lines.append(f"catch-up pending for {_iso(float(pending['since']))} .. "
                     f"{_iso(float(pending['until']))}")
    return lines
