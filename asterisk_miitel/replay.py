"""A raw AMI transcript -> the call_data each recording would produce.

This is how users check their PBX before turning uploads on (`asterisk-miitel
replay FILE`), and how the classifier is tested: the same parser, tracker and
classifier as `run`, with no socket.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .ami.parser import AmiParser
from .calls.classify import Context, Outcome, classify_segments
from .calls.state import Recording
from .calls.tracker import CallTracker
from .config import Config

REPLAY_PBX_ID = "replay"
CHUNK = 64 * 1024


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


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
    stream: Readable,
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

    def closed(rec: Recording) -> None:
        for outcome in classify_segments(rec, ctx):  # one per conversation
            emit(outcome)

    tracker = CallTracker(closed)
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


def verdict(outcome: Outcome, config: Config) -> tuple[str, str | None]:
    """What `run` would do with this recording: ("send" | "set_aside" | "skip", why).

    The same order as the service: classify()'s skip and set-aside, then the
    [send] rules, which win over a set-aside (nobody acts on a call not sent).
    """
    from .ops.policy import decide

    if outcome.skip:
        return "skip", outcome.skip
    if outcome.call_data is not None:
        rule = decide(outcome.call_data.payload(), list(outcome.extensions), config.send,
                      rules=config.numbers.rules())
        if rule is not None:
            return "skip", rule
    if outcome.set_aside:
        return "set_aside", outcome.set_aside
    return "send", None


def iter_lines(outcome: Outcome, explain: bool, config: Config | None = None) -> Iterator[str]:
    """`--explain`: every rule, note and verdict. Plain: only the calls that would
    not be sent, so they stand out beside the JSON lines."""
    what, why = verdict(outcome, config) if config is not None else (
        "skip" if outcome.skip else "set_aside" if outcome.set_aside else "send",
        outcome.skip or outcome.set_aside)
    name = outcome.call_data_id or outcome.file or outcome.key
    if explain:
        for line in outcome.explain:
            yield f"# {line}"
        for note in outcome.notes:
            yield f"# note: {note}"
        if what == "skip":
            yield f"# skipped: {why}"
        if what == "set_aside":
            yield f"# would be set aside ({outcome.set_aside_code}): {why}"
    elif what == "set_aside" and outcome.set_aside_code == "untracked":
        yield f"# {name}: a MixMonitor the service cannot follow, would be set aside: {why}"
    elif what == "set_aside":
        yield f"# {name}: would be set aside ({outcome.set_aside_code}): {why}"
    elif what == "skip":
        yield f"# {name}: would be skipped: {why}"


@dataclass
class Tally:
    """How many recordings of a transcript would be sent, set aside or skipped."""

    counts: dict[str, int] = field(default_factory=lambda: {"send": 0, "set_aside": 0,
                                                            "skip": 0})

    def add(self, what: str) -> None:
        self.counts[what] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        return (f"{self.total} recording(s): {c['send']} would be sent, {c['set_aside']} set "
                f"aside, {c['skip']} skipped")


def transcript_problem(tracker: CallTracker, parser: AmiParser, size: int) -> str | None:
    """Why this input is not something to replay, or None."""
    if size == 0:
        return ("is empty: nothing to replay (record the PBX with `asterisk-miitel capture "
                "--minutes 10` while making a few calls)")
    if tracker.stats.events:
        return None
    if parser.version is None and not parser.stats.messages:
        return ("is not an AMI transcript: no `Event:` messages in it. Replay reads what the "
                "AMI socket sends (`Event: Newchannel` ... blocks, as `asterisk-miitel capture` "
                "records them), not Asterisk's full log or a CDR")
    return ("has no AMI events (only the banner or action responses): was it recorded with "
            "`read = call,dialplan,agent,user` for the AMI user, during calls?")
