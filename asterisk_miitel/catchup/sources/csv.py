"""cdr_csv's Master.csv (and copies rotated beside it, .gz too).

cdr_csv quotes every text field with `"` and doubles a `"` inside it; numbers
are bare; an unset time is an empty field. The column layout depends on
cdr.conf [csv]: 16 columns, then uniqueid (loguniqueid), userfield
(loguserfield), then peeraccount, linkedid, sequence (newcdrcolumns). Times
are UTC with usegmtime=yes (Debian's shipped setting), else local time.

Rows are written when a call's channels hang up, so the file is in about
end-of-call order: catch-up reads only its tail.
"""

from __future__ import annotations

import asyncio
import csv
import glob
import gzip
import io
import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import tzinfo

from ..config import CSV_BASE
from ..rows import CdrRow, parse_time, to_int
from . import SourceError

_UNIQUEID = re.compile(r"^(?:[\w.-]+-)?\d+\.\d+$")
TAIL_BLOCK = 1 << 20


class CsvSource:
    order = "end"

    def __init__(self, paths: list[str], tz: tzinfo | None, *, columns: list[str] | None = None,
                 max_call_hours: float = 12.0, map_path: object = None) -> None:
        self.patterns = paths
        self.tz = tz
        self.columns = list(columns or ())
        self.max_call = max_call_hours * 3600
        self._problems: list[str] = []
        self.bad_lines = 0
        self.rows_read = 0
        self._map = map_path if callable(map_path) else (lambda p: p)

    @property
    def problems(self) -> list[str]:
        return self._problems

    def describe(self) -> str:
        return "cdr_csv " + ", ".join(self.patterns)

    def files(self) -> list[str]:
        """The files to read, oldest first (Master.csv.2.gz, Master.csv.1, Master.csv)."""
        found: list[str] = []
        for pattern in self.patterns:
            host = str(self._map(pattern))  # type: ignore[operator]
            matches = sorted(glob.glob(host)) if glob.has_magic(host) else [host]
            for path in matches:
                if os.path.isfile(path) and path not in found:
                    found.append(path)
        found.sort(key=_age_key)
        return found

    async def scan(self, since: float, until: float) -> AsyncIterator[CdrRow]:
        files = self.files()
        if not files:
            raise SourceError(
                f"no cdr_csv file at {', '.join(self.patterns)}: is cdr_csv loaded "
                "(modules.conf) and [catchup] cdr_csv the right path? (Debian: "
                "/var/log/asterisk/cdr-csv/Master.csv)")
        lo = since - self.max_call
        queue: asyncio.Queue[list[CdrRow] | BaseException | None] = asyncio.Queue(4)
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                for path in files:
                    batch: list[CdrRow] = []
                    for row in self._read(path, lo, until):
                        batch.append(row)
                        if len(batch) >= 500:
                            asyncio.run_coroutine_threadsafe(queue.put(batch), loop).result()
                            batch = []
                    if batch:
                        asyncio.run_coroutine_threadsafe(queue.put(batch), loop).result()
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
            except BaseException as exc:  # handed to the reader
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()

        task = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, OSError):
                        raise SourceError(f"cannot read cdr_csv: {item}") from item
                    raise item
                for row in item:
                    yield row
        finally:
            while not task.done():  # let the thread finish its put
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    await asyncio.sleep(0.01)
            await task

    async def close(self) -> None:
        return None

    # -- reading (in a thread) ----------------------------------------------------------

    def _read(self, path: str, lo: float, hi: float) -> Iterator[CdrRow]:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as raw:
                yield from self._parse(io.TextIOWrapper(raw, "utf-8", errors="replace",
                                                        newline=""), path, 0, lo, hi)
            return
        with open(path, "rb") as raw:
            offset = self._tail_offset(raw, lo)
            raw.seek(offset)
            text = io.TextIOWrapper(raw, "utf-8", errors="replace", newline="")
            yield from self._parse(text, path, offset, lo, hi)

    def _tail_offset(self, raw: io.BufferedReader, lo: float) -> int:
        """Where rows that can matter begin: back from the end, block by block,
        until a whole block holds only rows that ended before `lo` - 1 h."""
        size = raw.seek(0, os.SEEK_END)
        pos = size
        while pos > 0:
            pos = max(0, pos - TAIL_BLOCK)
            raw.seek(pos)
            block = raw.read(TAIL_BLOCK)
            if pos > 0:
                cut = block.find(b"\n")
                if cut < 0:
                    continue
                block = block[cut + 1:]
                start = pos + cut + 1
            else:
                start = 0
            ends = [r.end for r in self._parse(io.StringIO(block.decode("utf-8", "replace")),
                                               "", 0, float("-inf"), float("inf"), quiet=True)]
            if ends and max(ends) < lo - 3600:
                return start
        return 0

    def _parse(self, text: io.TextIOBase, path: str, offset: int, lo: float, hi: float,
               quiet: bool = False) -> Iterator[CdrRow]:
        reader = csv.reader(text)
        name = os.path.basename(path)
        for fields in reader:
            if not fields:
                continue
            try:
                row = self.row(fields)
            except (ValueError, IndexError) as exc:
                if not quiet:
                    self.bad_lines += 1
                    if self.bad_lines <= 5:
                        self._problems.append(
                            f"{name} line {reader.line_num} (from byte {offset}): not a CDR "
                            f"row ({exc}); skipped")
                continue
            if row.end < lo or row.start > hi:
                continue
            if not quiet:
                self.rows_read += 1
                row.origin = f"{name}:{reader.line_num}"
            yield row

    def layout(self, n: int, fields: list[str]) -> list[str]:
        if self.columns:
            return self.columns
        base = list(CSV_BASE)
        if n == 16:
            return base
        if n == 17:
            return [*base, "uniqueid" if _UNIQUEID.match(fields[16]) else "userfield"]
        if n == 18:
            return [*base, "uniqueid", "userfield"]
        if n == 19:  # newcdrcolumns without uniqueid/userfield
            return [*base, "peeraccount", "linkedid", "sequence"]
        if n == 20:
            extra = "uniqueid" if _UNIQUEID.match(fields[16]) else "userfield"
            return [*base, extra, "peeraccount", "linkedid", "sequence"]
        if n == 21:
            return [*base, "uniqueid", "userfield", "peeraccount", "linkedid", "sequence"]
        raise ValueError(f"{n} columns: set [catchup] csv_columns")

    def row(self, fields: list[str]) -> CdrRow:
        cols = self.layout(len(fields), fields)
        if len(cols) != len(fields):
            raise ValueError(f"{len(fields)} columns, csv_columns names {len(cols)}")
        v = dict(zip(cols, fields, strict=True))
        start = parse_time(v["start"], self.tz)
        end = parse_time(v["end"], self.tz)
        if start is None:
            raise ValueError("no start time")
        seq = v.get("sequence")
        return CdrRow(
            start=start,
            end=end if end is not None else start,
            answer=parse_time(v.get("answer", ""), self.tz),
            clid=v.get("clid", ""), src=v.get("src", ""), dst=v.get("dst", ""),
            dcontext=v.get("dcontext", ""), channel=v.get("channel", ""),
            dstchannel=v.get("dstchannel", ""), lastapp=v.get("lastapp", ""),
            lastdata=v.get("lastdata", ""), duration=to_int(v.get("duration", 0)),
            billsec=to_int(v.get("billsec", 0)), disposition=v.get("disposition", ""),
            accountcode=v.get("accountcode", ""), uniqueid=v.get("uniqueid", ""),
            userfield=v.get("userfield", ""), linkedid=v.get("linkedid", ""),
            sequence=to_int(seq) if seq not in (None, "") else None,
        )


def _age_key(path: str) -> tuple[int, str]:
    """Rotated copies first, highest number (oldest) first: logrotate's naming."""
    m = re.search(r"\.(\d+)(\.gz)?$", path)
    return (-int(m.group(1)) if m else 0, path)
