"""A raw AMI transcript -> the call_data each recording would produce.

This is how users check their PBX before turning uploads on (`asterisk-miitel
replay FILE`), and how the classifier is tested: the same parser, tracker and
classifier as `run`, with no socket.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .ami.parser import AmiParser
from .calls.classify import Context, Outcome, classify
from .calls.tracker import CallTracker
from .config import Config

REPLAY_PBX_ID = "replay"
CHUNK = 64 * 1024


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def replay_bytes(
    data: bytes, config: Config, *, pbx_id: str | None = None, start_time: float = 0.0
) -> tuple[list[Outcome], CallTracker, AmiParser]:
    """Every closed recording's outcome, in order of call end.

    Events without a `Timestamp` header (timestampevents off) get `start_time`
    plus a millisecond per event, so replays are deterministic.
    """
    outcomes: list[Outcome] = []
    tracker, parser = replay_stream(
        io.BytesIO(data), config, outcomes.append, pbx_id=pbx_id, start_time=start_time
    )
    return outcomes, tracker, parser


def replay_stream(
    stream: BinaryIO,
    config: Config,
    emit: Callable[[Outcome], None],
    *,
    pbx_id: str | None = None,
    start_time: float = 0.0,
    total: int = 0,
    progress: Progress | None = None,
) -> tuple[CallTracker, AmiParser]:
    """Read a transcript in chunks; `emit` each outcome as its call ends."""
    ctx = Context(config, pbx_id or config.pbx.id or REPLAY_PBX_ID, config.pbx.tz())
    tracker = CallTracker(lambda rec: emit(classify(rec, ctx)))
    parser = AmiParser()
    n = 0
    done = 0
    while chunk := stream.read(CHUNK):
        for event in parser.feed(chunk):
            if "Event" in event:
                tracker.feed(event, start_time + n * 0.001)
                n += 1
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return tracker, parser


def replay_file(path: str, config: Config, **kw: object) -> list[Outcome]:
    with open(path, "rb") as fh:
        data = fh.read()
    start = kw.pop("start_time", None)
    if start is None:
        start = os.path.getmtime(path) - 3600.0
    outcomes, _tracker, _parser = replay_bytes(data, config, start_time=float(start), **kw)  # type: ignore[arg-type]
    return outcomes


def iter_lines(outcome: Outcome, explain: bool) -> Iterator[str]:
    if explain:
        for line in outcome.explain:
            yield f"# {line}"
        for note in outcome.notes:
            yield f"# note: {note}"
        if outcome.skip:
            yield f"# skipped: {outcome.skip}"
        if outcome.set_aside:
            yield f"# would be set aside: {outcome.set_aside}"
