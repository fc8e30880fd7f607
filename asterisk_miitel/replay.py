"""A raw AMI transcript -> the call_data each recording would produce.

This is how users check their PBX before turning uploads on (`asterisk-miitel
replay FILE`), and how the classifier is tested: the same parser, tracker and
classifier as `run`, with no socket.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .ami.parser import AmiParser
from .calls.classify import Context, Outcome, classify
from .calls.state import Recording
from .calls.tracker import CallTracker
from .config import Config

REPLAY_PBX_ID = "replay"
CHUNK = 64 * 1024


def replay_bytes(
    data: bytes, config: Config, *, pbx_id: str | None = None, start_time: float = 0.0
) -> tuple[list[Outcome], CallTracker, AmiParser]:
    """Every closed recording's outcome, in order of call end.

    Events without a `Timestamp` header (timestampevents off) get `start_time`
    plus a millisecond per event, so replays are deterministic.
    """
    ctx = Context(config, pbx_id or config.pbx.id or REPLAY_PBX_ID, config.pbx.tz())
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    parser = AmiParser()
    n = 0
    for i in range(0, len(data), CHUNK):
        for event in parser.feed(data[i : i + CHUNK]):
            if "Event" in event:
                tracker.feed(event, start_time + n * 0.001)
                n += 1
    return [classify(rec, ctx) for rec in closed], tracker, parser


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
