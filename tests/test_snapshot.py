"""Journal snapshots: a call cut by a service restart at any event resumes
(or is finished) with the same call_data as if nothing had happened."""

from __future__ import annotations

import json

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi, transcript_events
from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.calls.classify import Context, classify
from asterisk_miitel.calls.journal import Journal
from asterisk_miitel.calls.restore import estimate_answer, restore
from asterisk_miitel.calls.snapshot import dump_recording, load_recording
from asterisk_miitel.calls.state import Recording
from asterisk_miitel.calls.tracker import CallTracker

from .support import DEMO_DIR, FIXTURES, lab_config, service_config

EVENTS = [e for e in transcript_events((DEMO_DIR / "ami.log").read_bytes())
          if not e.startswith((b"Event: FullyBooted", b"Event: SuccessfulAuth"))]


def parse(blocks: list[bytes]) -> list[dict[str, str]]:
    return AmiParser().feed(b"".join(blocks))


def reference(tmp_path) -> dict:  # type: ignore[no-untyped-def]
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    for ev in parse(EVENTS):
        tracker.feed(ev, 0.0)
    ctx = Context(service_config(tmp_path, 1, None), "snap")
    [rec] = closed
    return classify(rec, ctx).call_data.payload()


def test_snapshot_round_trip_is_json_and_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snaps: list[dict] = []
    tracker = CallTracker(lambda r: None, on_changed=lambda r: snaps.append(dump_recording(r)))
    for ev in parse(EVENTS):
        tracker.feed(ev, 0.0)
    assert snaps
    for snap in snaps:
        text = json.dumps(snap)
        assert len(text) < 4000
        rec = load_recording(json.loads(text))
        assert rec.file == snap["file"]


CAPTURES = sorted(p for p in (FIXTURES / "captures").glob("*/ami_miitel.log"))


def events_of(path) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [e for e in transcript_events(path.read_bytes())
            if not e.startswith((b"Event: FullyBooted", b"Event: SuccessfulAuth"))]


def persist(journal: Journal, stored: dict[str, dict]) -> None:
    """What the service's journal writer does: apply the pending writes."""
    for key, data in journal.take().items():
        if data is None:
            stored.pop(key, None)
        else:
            stored[key] = json.loads(json.dumps(data))


def asterisk_after(events: list[bytes], cut: int) -> tuple[list[dict[str, str]], FakeAmi]:
    """What CoreShowChannels lists once the first `cut` events have happened
    (and the fake Asterisk, for its channel variables)."""
    fake = FakeAmi(events)
    fake.skip(cut)
    reply = fake._answer({"Action": "CoreShowChannels", "ActionID": "1"}) or b""
    return [m for m in parse([reply]) if m.get("Event") == "CoreShowChannel"], fake


def run_with_restart(events: list[bytes], cut: int | None, ctx: Context) -> dict[str, dict]:
    """call_data by recording file; with `cut`, the service restarts after that event
    (the journal as the service keeps it; nothing happens while it is down)."""
    out: dict[str, dict] = {}
    journal = Journal()
    stored: dict[str, dict] = {}

    def closed(rec: Recording) -> None:
        journal.closed(rec)
        stored.pop(rec.file, None)  # deleted with the call's queueing
        outcome = classify(rec, ctx)
        out[rec.file] = outcome.call_data.payload() if outcome.call_data else {"skip": True}

    first = CallTracker(closed, on_changed=journal.changed, on_gone=journal.gone)
    stop = len(events) if cut is None else cut
    for ev in parse(events[:stop]):
        first.feed(ev, 0.0)
        persist(journal, stored)
    if cut is None:
        return out
    live, _fake = asterisk_after(events, cut)
    journal = Journal()
    second = CallTracker(closed, on_changed=journal.changed, on_gone=journal.gone)
    second.reconcile(live, 0.0)
    _adopted, finished, bad = restore(
        [(k, v, 0.0) for k, v in stored.items()], second, journal, {m["Uniqueid"] for m in live},
        pbx_restarted=False, last_alive=None, now=0.0)
    assert not finished and not bad  # nothing ended while down: all resumed
    for ev in parse(events[cut:]):
        second.feed(ev, 0.0)
    return out


CASES = [(path, cut) for path in CAPTURES for cut in range(1, len(events_of(path)), 2)]


@pytest.mark.parametrize(("path", "cut"), CASES, ids=[f"{p.parent.name}-{c}" for p, c in CASES])
def test_restart_after_any_event_gives_the_same_calls(tmp_path, path, cut: int) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(lab_config(), "snap")
    events = events_of(path)
    expected = run_with_restart(events, None, ctx)
    got = run_with_restart(events, cut, ctx)
    assert set(got) == set(expected)
    for file, payload in expected.items():
        for key in ("event_type", "participants", "circuit_number", "call_data_id",
                    "queue_name", "groupname", "tags"):
            assert got[file].get(key) == payload.get(key), (file, key)


def run_burst_with_kill(events: list[bytes], cut: int, lag: int, ctx: Context) -> dict[str, str]:
    """Like a kill -9: the first life processed events up to `cut`, but its
    journal was last written `lag` events earlier; what Asterisk did in
    between is only in CoreShowChannels and the channels' variables."""
    out: dict[str, str] = {}
    journal = Journal()
    stored: dict[str, dict] = {}

    def closed(rec: Recording) -> None:
        if rec.resumed and rec.left and not rec.right and rec.ended is not None:
            estimate_answer(rec, rec.ended, 5.0)  # the demo recording holds 5 s of audio
        journal.closed(rec)
        stored.pop(rec.file, None)
        outcome = classify(rec, ctx)
        out[rec.file] = (outcome.call_data.event_type if outcome.call_data
                         else outcome.skip or outcome.set_aside or "?")

    first = CallTracker(closed, on_changed=journal.changed, on_gone=journal.gone)
    parsed = parse(events)
    for i, ev in enumerate(parsed[:cut]):
        first.feed(ev, float(i))
        if i < cut - lag:
            persist(journal, stored)
    live, fake = asterisk_after(events, cut)
    journal = Journal()
    second = CallTracker(closed, on_changed=journal.changed, on_gone=journal.gone)
    second.reconcile(live, float(cut))
    _adopted, finished, _bad = restore(
        [(k, v, float(cut)) for k, v in stored.items()], second, journal, {m["Uniqueid"] for m in live},
        pbx_restarted=False, last_alive=None, now=float(cut), audio_seconds=lambda r: 5.0)
    for rec in finished:
        closed(rec)
    for m in live:  # what the service asks with Getvar MIXMONITOR_FILENAME
        ch = second.channels.get(m["Uniqueid"])
        file = fake._vars.get(m["Channel"], {}).get("MIXMONITOR_FILENAME")
        if ch is not None and not ch.recordings and file and file not in out:
            second.discovered(m["Uniqueid"], file, float(cut))
    for i, ev in enumerate(parsed[cut:], start=cut):
        second.feed(ev, float(i))
    return out


@pytest.mark.parametrize("lag", [0, 2, 5])
def test_kill_at_any_event_of_a_burst_loses_no_call(tmp_path, lag: int) -> None:  # type: ignore[no-untyped-def]
    from .test_kill import burst

    ctx = Context(service_config(tmp_path, 1, None), "kill")
    events, files = burst(8)
    expected = run_burst_with_kill(events, len(events), 0, ctx)
    assert sorted(expected) == files and set(expected.values()) == {"INCOMING_CALL"}
    for cut in range(1, len(events)):
        got = run_burst_with_kill(events, cut, lag, ctx)
        assert got == expected, f"restart after event {cut}"
