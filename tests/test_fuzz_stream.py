"""Fuzz: whatever junk arrives between the events of real calls, and however
TCP cuts the stream, every good call reaches MiiTel exactly once.

The stream is what the `miitel` user saw of real Asterisk 22 calls
(tests/fixtures/captures/*/ami_miitel.log), each call renumbered so that
every example has calls of its own, with random bytes, oversized messages,
invalid UTF-8 and truncated events (of another call) between any two events.
It goes, in random TCP reads, through the service's whole path: our AMI
protocol (parser) -> tracker -> intake -> SQLite outbox -> sender -> the
MiiTel stand-in over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from asterisk_miitel.ami.fake_server import shift_times
from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.ami.protocol import MiitelAmiProtocol
from asterisk_miitel.ami.synth import call_events, renumber
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service

from .support import FIXTURES, HANAKO, JIRO, TARO, service_config, wait_for

CAPTURES = FIXTURES / "captures"
GOOD = ("ext2ext", "outbound", "inbound_answered", "japanese_name")
LAB_MONITOR = "/tmp/asterisk-miitel-lab-y9q3vxzm/spool/monitor"  # where the lab recorded
BASES = {name: call_events((CAPTURES / name / "ami_miitel.log").read_bytes()) for name in GOOD}
JUNK_CALL = renumber(call_events((CAPTURES / "queue" / "ami_miitel.log").read_bytes()), 999)
_FILE = re.compile(rb"Value: (/\S+\.raw)\r\n")
_copies = iter(range(1, 1_000_000))  # every example's calls have ids of their own
USERS = {
    "1001": {"miitel_user_id": TARO, "name": "Suzuki Ichiro", "endpoints": ["desk-suzuki"]},
    "1002": {"miitel_user_id": HANAKO, "name": "Ishikawa Jiro"},
    "1003": {"miitel_user_id": JIRO, "name": "Ueda Saburo"},
}


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def junk(kind: str, size: int, pick: int) -> bytes:
    """One piece of bad input, always ending where a message would (CRLF CRLF):
    AMI has no other framing, so junk without an end would eat the next event."""
    if kind == "random":
        body = random.Random(pick).randbytes(size % 600).replace(b"\r\n\r\n", b"\r\n")
        return body + b"\r\n\r\n"
    if kind == "oversized":
        return (b"Event: VarSet\r\nVariable: MIXMONITOR_FILENAME\r\nValue: /x/"
                + b"y" * (65_000 + size * 40) + b".raw\r\n\r\n")
    event = JUNK_CALL[pick % len(JUNK_CALL)]
    if kind == "invalid_utf8":
        head, _, rest = event.partition(b"\r\n")
        return head + b"\r\nNote: \xff\xfe\xc3(\r\n" + rest
    # truncated: an event of another call, cut short (as a damaged message)
    cut = 1 + size % max(1, len(event) - 5)
    return event[:cut].rstrip(b"\r\n") + b"\r\n\r\n"


junk_piece = st.tuples(
    st.sampled_from(["random", "oversized", "invalid_utf8", "truncated"]),
    st.integers(0, 5000), st.integers(0, 10_000),
)


# Each example runs the whole service (~2.5 s): a few, fixed (derandomized), and
# not shrunk on failure (the failing example is printed as found).
@settings(max_examples=7, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    junk_at=st.lists(st.tuples(st.integers(0, 10_000), junk_piece), min_size=1, max_size=25),
    reads=st.lists(st.integers(1, 90_000), min_size=1, max_size=40),
    order=st.permutations(GOOD),
)
def test_every_good_call_is_sent_once_whatever_comes_between(
    tmp_path_factory: Any, junk_at: list[tuple[int, tuple[str, int, int]]],
    reads: list[int], order: list[str],
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    calls = []
    for name in order:
        events = shift_times(renumber(BASES[name], next(_copies)), time.time() - 60)
        files = {m.group(1).decode() for e in events for m in _FILE.finditer(e)}
        for f in files:  # the capture's recording, under the copy's name
            (tmp / "monitor").mkdir(exist_ok=True)
            src = next((CAPTURES / name).glob("*.raw"))
            shutil.copy(src, tmp / "monitor" / os.path.basename(f))
        calls.append((events, files))
    parts: list[tuple[bytes, int]] = [(e, 0) for evs, _ in calls for e in evs]
    for at, piece in sorted(junk_at, reverse=True):
        # Also cut a read 1 to 4 bytes before the junk's end (its CRLF CRLF
        # straddles two reads: how the oversized-message bug hid).
        parts.insert(at % (len(parts) + 1), (junk(*piece), 1 + piece[1] % 4))
    stream = b"Asterisk Call Manager/11.0.0\r\n"
    cuts = set()
    for part, back in parts:
        stream += part
        if back:
            cuts.add(len(stream) - back)
    good = {f for _, files in calls for f in files}
    good_events = [_key(m) for evs, _ in calls for e in evs for m in AmiParser().feed(e)]
    asyncio.run(_run(tmp, stream, _reads(len(stream), reads, cuts), good, good_events))


def _key(event: dict[str, str]) -> tuple[str, ...]:
    return tuple(event.get(k, "") for k in ("Event", "Timestamp", "Uniqueid", "Variable"))


def _reads(total: int, sizes: list[int], cuts: set[int]) -> list[int]:
    """Read boundaries: random sizes, plus every position in `cuts`."""
    points, pos, i = set(cuts), 0, 0
    while pos < total:
        pos += sizes[i % len(sizes)]
        i += 1
        points.add(min(pos, total))
    return sorted(p for p in points if 0 < p <= total)


async def _run(tmp: Path, stream: bytes, ends: list[int], good: set[str],
               good_events: list[tuple[str, ...]]) -> None:
    async with StandIn(tmp / "miitel", port=0) as standin:
        config = service_config(
            tmp, 1, standin.webhook_url,
            users=USERS,
            recordings={"path_map": {LAB_MONITOR: str(tmp / "monitor")}, "dirs": [LAB_MONITOR]},
            numbers={"outside_line_prefix": "0"},
        )
        service = Service(config, listen=False)
        await service.start()
        try:
            delivered: list[tuple[str, ...]] = []

            def sink(event: dict[str, str], at: float) -> None:
                delivered.append(_key(event))
                service.tracker.feed(event, at)
            proto = MiitelAmiProtocol(sink)
            proto.connection_made(_Transport())  # type: ignore[arg-type]
            pos = 0
            for end in [*ends, len(stream)]:  # the stream in TCP reads
                if end > pos:
                    proto.data_received(stream[pos:end])
                    pos = end
                    await asyncio.sleep(0)

            async def rows() -> list[Any]:
                return [r for i in await service.outbox.all_ids()
                        if (r := await service.outbox.get(i)) is not None]

            async def sent() -> bool:
                return {r.file for r in await rows() if r.state == "uploaded"} >= good
            seen = set(delivered)
            assert [k for k in good_events if k not in seen] == [], "good events lost"
            try:
                await wait_for(sent, 20)
            finally:
                queued = await rows()
            await asyncio.sleep(0.2)  # a second POST would show now
        finally:
            await service.stop()
    mine = [r for r in queued if r.file in good]
    assert sorted(r.file for r in mine) == sorted(good), "a good call lost, or queued twice"
    assert all(r.state == "uploaded" for r in mine), [(r.file, r.state, r.reason) for r in mine]
    posted = {c["call_data_id"]: c for c in standin.calls()}
    assert all(posted[r.id]["status"] == "uploaded" for r in mine)
    assert all(c["post_count"] == 1 for c in posted.values()), "a call sent twice"
