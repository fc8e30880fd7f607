"""Big AMI streams from the real captures (tests/fixtures/captures), quickly.

`asterisk_miitel.ami.synth.renumber` runs three regexes over every line of a
call: about 0.7 ms per call, so 100,000 calls would cost more time than the
code under test. `CallTemplate` runs those regexes once per captured call and
keeps where the ids are; a copy is then one `bytes % tuple` per event (about
40x faster). Every template is checked against `synth.renumber` for a few
copy numbers when it is built, so the streams are byte for byte what synth
makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from asterisk_miitel.ami import synth
from asterisk_miitel.config import Config

from .common import REPO

# The same interleaving the tests use (lazy: only `concurrency` calls held).
interleave = synth.interleave

CAPTURES = REPO / "tests" / "fixtures" / "captures"
FILTERED = "ami_miitel.log"  # what the service's `miitel` user receives
UNFILTERED = "ami.log"  # the admin session: every event
CHUNK = 64 * 1024  # bytes per data_received(): a busy socket's read

# The ids synth renumbers, in the order it substitutes them.
_KINDS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("uid", synth._UNIQUEID),
    ("seq", synth._CHANNEL_SEQ),
    ("bridge", synth._BRIDGE),
)
_MARK = re.compile(rb"\x00(\d+)\x00")
_CHECK_COPIES = (0, 1, 7, 4242, 99_999)

# The lab PBX's users, as the classifier tests read the captures (tests/support.py).
USERS: dict[str, dict[str, Any]] = {
    "1001": {"miitel_user_id": "9b1d82f5-9845-4158-9c7b-75e7c235d8e7", "name": "Suzuki Ichiro",
             "endpoints": ["desk-suzuki"]},
    "1002": {"miitel_user_id": "5d7c3e1a-2b4f-4c6d-8e9f-0a1b2c3d4e5f", "name": "Ishikawa Jiro"},
    "1003": {"miitel_user_id": "0f1e2d3c-4b5a-4968-8776-655443322110", "name": "Ueda Saburo"},
}


def lab_config() -> Config:
    return Config.model_validate({"users": USERS, "numbers": {"outside_line_prefix": "0"},
                                  "pbx": {"id": "bench", "timezone": "Asia/Tokyo"}})


def capture_names() -> list[str]:
    return sorted(p.name for p in CAPTURES.iterdir() if (p / FILTERED).is_file())


def capture_events(name: str, stream: str = FILTERED) -> list[bytes]:
    """One capture's call events (login noise dropped), raw CRLF blocks."""
    return synth.call_events((CAPTURES / name / stream).read_bytes())


@dataclass(frozen=True, slots=True)
class _Slot:
    kind: str
    number: int  # the Uniqueid's sequence, or the channel sequence number
    tail: bytes  # ";1"/";2" after a channel sequence, the bridge id after its first 8 digits


class CallTemplate:
    """A captured call with its ids as holes: `copy(n)` == `synth.renumber(events, n)`."""

    def __init__(self, events: Sequence[bytes]) -> None:
        self.events = list(events)
        self._slots: list[_Slot] = []
        self._formats: list[tuple[bytes, tuple[int, ...]]] = []
        index: dict[_Slot, int] = {}
        for event in self.events:
            lines = event.split(b"\r\n")
            for i, line in enumerate(lines):
                if line.startswith(b"Timestamp: "):
                    continue  # synth keeps times as captured
                for kind, pattern in _KINDS:
                    line = pattern.sub(partial(self._hole, index, kind), line)
                lines[i] = line
            marked = b"\r\n".join(lines).replace(b"%", b"%%")
            holes = tuple(int(h) for h in _MARK.findall(marked))
            self._formats.append((_MARK.sub(b"%s", marked), holes))
        self.exact = all(self.copy(n) == synth.renumber(self.events, n) for n in _CHECK_COPIES)

    def _hole(self, index: dict[_Slot, int], kind: str, m: re.Match[bytes]) -> bytes:
        if kind == "uid":
            slot = _Slot(kind, int(m.group(2)), b"")
        elif kind == "seq":
            slot = _Slot(kind, int(m.group(1), 16), m.group(2) or b"")
        else:
            slot = _Slot(kind, 0, m.group(0)[8:])
        if slot not in index:
            index[slot] = len(self._slots)
            self._slots.append(slot)
        return b"\x00%d\x00" % index[slot]

    def copy(self, n: int) -> list[bytes]:
        """The call with ids no other copy shares (synth's numbering)."""
        base = 1_000_000_000 + n * 1000
        values: list[bytes] = []
        for s in self._slots:
            if s.kind == "uid":
                values.append(b"%d.%d" % (base + s.number % 1000, n * 1000 + s.number % 1000))
            elif s.kind == "seq":
                values.append(b"-%08x" % ((n * 4096 + s.number % 4096) & 0xFFFFFFFF) + s.tail)
            else:
                values.append(b"%08x" % n + s.tail)
        return [fmt % tuple(values[h] for h in holes) for fmt, holes in self._formats]


def templates(stream: str = FILTERED, names: Iterable[str] | None = None) -> list[CallTemplate]:
    out = []
    for name in names or capture_names():
        t = CallTemplate(capture_events(name, stream))
        if not t.exact:  # never seen; the benchmark would measure the wrong stream
            raise RuntimeError(f"{name}: the fast renumbering differs from synth.renumber")
        out.append(t)
    return out


def copies(tpls: Sequence[CallTemplate], count: int, first: int = 0,
           cut: Callable[[list[bytes]], list[bytes]] | None = None) -> Iterator[list[bytes]]:
    """`count` calls cycling through the captures, each with its own copy number."""
    for n in range(first, first + count):
        events = tpls[n % len(tpls)].copy(n)
        yield cut(events) if cut is not None else events


def chunked(blocks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Events cut into reads of `size` bytes, regardless of message borders (as TCP does)."""
    buf = bytearray()
    for block in blocks:
        buf += block
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def until_first_hangup(events: list[bytes]) -> list[bytes]:
    """A call cut just before its first Hangup: channels up, bridged, recording."""
    for i, event in enumerate(events):
        if event.startswith(b"Event: Hangup\r\n"):
            return events[:i]
    return events


def count_events(data: bytes | Path) -> int:
    blob = data.read_bytes() if isinstance(data, Path) else data
    return blob.count(b"\r\n\r\n")


class FullPath:
    """Our path past the parser: a tracker whose closed recordings are
    classified and turned into the call_data JSON, as the service does."""

    def __init__(self) -> None:
        from asterisk_miitel.calls.classify import Context, classify
        from asterisk_miitel.calls.tracker import CallTracker

        config = lab_config()
        ctx = Context(config, "bench", config.pbx.tz())
        self.call_data = 0

        def closed(rec: Any) -> None:
            outcome = classify(rec, ctx)
            if outcome.call_data is not None:
                outcome.call_data.payload()
                self.call_data += 1

        self.tracker = CallTracker(closed)
