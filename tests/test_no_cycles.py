"""A finished call is freed by plain reference counting: no gc.collect() in
the event path, and no cyclic garbage waiting for CPython's rare full
collections (the memory benchmark's RSS growth). A closed recording that is
still waiting to be classified keeps its whole call readable."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.ami.synth import call_events, interleave, renumber
from asterisk_miitel.calls.classify import Context, classify_segments
from asterisk_miitel.calls.journal import Journal
from asterisk_miitel.calls.state import Channel, MixMonitorRun, Recording, Segment, Transfer
from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.miitel.standin import StandIn

from .support import FIXTURES, done, lab_config, place_recordings, running, service_config, wait_for
from .test_kill import burst

CAPTURES = FIXTURES / "captures"
STATE_TYPES = (Channel, Recording, Segment, Transfer, MixMonitorRun)


def live_state() -> int:
    """Call-state objects alive (reachable or not: with the collector off,
    unreachable cycles stay)."""
    return sum(isinstance(o, STATE_TYPES) for o in gc.get_objects())


def count(kind: type) -> int:
    return sum(isinstance(o, kind) for o in gc.get_objects())


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def stream(copies: int = 3) -> bytes:
    """Every capture (transfers, queues, ring groups, voicemail, FreePBX), both
    the filtered and the unfiltered stream, renumbered and interleaved."""
    calls = []
    for n, capture in enumerate(sorted(CAPTURES.iterdir())):
        for name in ("ami_miitel.log", "ami.log"):
            if (capture / name).is_file():
                base = call_events((capture / name).read_bytes())
                calls += [renumber(base, 100 * n + 10 * c + len(name)) for c in range(copies)]
    return b"".join(interleave(calls, seed=5, concurrency=25))


def feed(data: bytes, on_closed: Callable[[Recording], None], journal: Journal) -> CallTracker:
    tracker = CallTracker(on_closed, on_changed=journal.changed, on_gone=journal.gone)
    parser = AmiParser()
    for n, msg in enumerate(parser.feed(data)):
        tracker.feed(msg, n * 0.001)
    assert not tracker.channels and not tracker.recordings  # every call finished
    return tracker


def outcomes(rec: Recording) -> list[str]:
    config = lab_config()
    ctx = Context(config, "test", config.pbx.tz())
    return [json.dumps([o.file, o.call_data.payload() if o.call_data else None, o.skip,
                        o.set_aside, o.explain], sort_keys=True, default=str)
            for o in classify_segments(rec, ctx)]


def test_finished_calls_are_freed_without_the_cyclic_collector() -> None:
    data = stream()
    built: list[str] = []
    journal = Journal()

    def closed(rec: Recording) -> None:  # as the service does, then the recording is dropped
        journal.closed(rec)
        built.extend(outcomes(rec))

    with collector_off():
        before = live_state()
        tracker = feed(data, closed, journal)
        left = live_state() - before
    assert len(built) > 100
    assert tracker.stats.recordings_closed > 100
    journal.take()  # what it keeps is plain data (dicts for the outbox), never the objects
    assert left == 0, f"{left} Channel/Recording/... objects outlived their finished calls"


def test_a_recording_waiting_to_be_classified_keeps_its_call_whole() -> None:
    data = stream(copies=2)
    at_once: list[str] = []
    feed(data, lambda rec: at_once.extend(outcomes(rec)), Journal())
    with collector_off():
        before = live_state()
        queued: list[Recording] = []  # the service's queue: classified after the calls ended
        feed(data, queued.append, Journal())
        later = [o for rec in queued for o in outcomes(rec)]
        assert live_state() > before  # the queue holds them
        queued.clear()  # (the tracker, itself a cycle, still has queued.append)
        left = live_state() - before
    assert later == at_once  # nothing was cut while a recording could still read it
    assert left == 0


async def test_the_service_intake_keeps_no_finished_call(tmp_path: Path) -> None:
    events, files = burst(6)
    place_recordings(tmp_path, files)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(events) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url)
        with collector_off():
            before_recordings, before_channels = count(Recording), count(Channel)
            async with running(config) as service:
                await wait_for(done(service, 6), 30)
                recordings = count(Recording) - before_recordings
                channels = count(Channel) - before_channels
    assert service.stats.closed == 6
    # The intake's loop variable still has the latest recording until the next
    # one arrives: at most that call (two channels) is left.
    assert recordings <= 1
    assert channels <= 2


@pytest.mark.parametrize("kind", ["blind_transfer", "attended_transfer", "freepbx_queue"])
def test_a_call_is_freed_only_after_its_last_recording(kind: str) -> None:
    base = call_events((CAPTURES / kind / "ami_miitel.log").read_bytes())
    held: list[Recording] = []
    with collector_off():
        before = live_state()
        feed(b"".join(base), held.append, Journal())
        assert held
        first = held[0]
        # Every channel it saw is still linked as it was: who dialled whom.
        assert any(c.dialled_by is not None for c in first.seen)
        held.clear()
        del first
        left = live_state() - before
    assert left == 0
