"""Many distinct calls from one captured call, for load tests and benchmarks.

A captured transcript is cut into its calls' events; each copy gets fresh
Uniqueids, Linkedids, channel sequence numbers, bridge ids and recording
file names, so thousands of copies can run at once without colliding.
Copies are then interleaved as a busy PBX would send them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator

from .fake_server import transcript_events

_UNIQUEID = re.compile(rb"\b(\d{9,11})\.(\d+)\b")
_CHANNEL_SEQ = re.compile(rb"-([0-9a-f]{8})(;[12])?\b")
_BRIDGE = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_SKIP = (b"Event: FullyBooted", b"Event: SuccessfulAuth", b"Event: Reload")


def call_events(transcript: bytes) -> list[bytes]:
    """The events of a transcript that belong to calls (login noise dropped)."""
    return [e for e in transcript_events(transcript) if not e.startswith(_SKIP)]


def renumber(events: list[bytes], copy: int) -> list[bytes]:
    """A copy of a call with ids no other copy shares."""
    base = 1_000_000_000 + copy * 1000

    def uid(m: re.Match[bytes]) -> bytes:
        return b"%d.%d" % (base + int(m.group(2)) % 1000, copy * 1000 + int(m.group(2)) % 1000)

    def seq(m: re.Match[bytes]) -> bytes:
        value = (copy * 4096 + int(m.group(1), 16) % 4096) & 0xFFFFFFFF
        return b"-%08x" % value + (m.group(2) or b"")

    def bridge(m: re.Match[bytes]) -> bytes:
        return b"%08x" % copy + m.group(0)[8:]

    out = []
    for event in events:
        lines = event.split(b"\r\n")
        for i, line in enumerate(lines):
            if line.startswith(b"Timestamp: "):
                continue  # times stay as captured
            line = _UNIQUEID.sub(uid, line)
            line = _CHANNEL_SEQ.sub(seq, line)
            lines[i] = _BRIDGE.sub(bridge, line)
        out.append(b"\r\n".join(lines))
    return out


def interleave(
    calls: Iterable[list[bytes]], seed: int = 0, concurrency: int = 1000
) -> Iterator[bytes]:
    """Merge calls' events, each call in its own order, up to `concurrency` at once.

    `calls` may be lazy: only `concurrency` calls are held at a time."""
    rng = random.Random(seed)
    pending = iter(calls)
    active: list[list[bytes]] = []
    positions: list[int] = []
    exhausted = False
    while active or not exhausted:
        while not exhausted and len(active) < concurrency:
            nxt = next(pending, None)
            if nxt is None:
                exhausted = True
                break
            active.append(nxt)
            positions.append(0)
        if not active:
            break
        i = rng.randrange(len(active))
        yield active[i][positions[i]]
        positions[i] += 1
        if positions[i] >= len(active[i]):
            active[i] = active[-1]
            positions[i] = positions[-1]
            active.pop()
            positions.pop()


def synth_stream(transcript: bytes, copies: int, seed: int = 0, concurrency: int = 1000) -> bytes:
    """`copies` renumbered copies of the transcript's calls, interleaved, as one byte stream."""
    base = call_events(transcript)
    calls = [renumber(base, c) for c in range(copies)]
    return b"".join(interleave(calls, seed, concurrency))
