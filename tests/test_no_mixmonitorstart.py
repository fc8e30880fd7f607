"""Recordings on an Asterisk without MixMonitorStart (before 16.17, 18.3, 19).

There a MixMonitor shows on AMI only as Newexten (Application: MixMonitor)
and VarSet MIXMONITOR_FILENAME, and StopMixMonitor only as its own dialplan
step. The transcripts here are the real Asterisk 22 captures
(tests/fixtures/captures) as the service's manager user would get them
through today's dialplan/manager_miitel.conf (the unfiltered ami.log run
through the filter), with the events an older Asterisk does not send taken
out: every recording must come out exactly as from the full capture.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.calls.classify import Outcome
from asterisk_miitel.calls.mixmonitor import (
    check_condition,
    execif_branch,
    full_path,
    monitor_dir_of,
    parse_mixmonitor,
    split_args,
)
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.ops.check import filter_would_pass
from asterisk_miitel.replay import replay_bytes

from .support import DEMO_DIR, done, place_recordings, running, service_config, wait_for
from .test_classify_lab import CAPTURES, config

Block = tuple[bytes, dict[str, str]]
Pred = Callable[[Mapping[str, str]], bool]
NAMES = sorted(p.name for p in CAPTURES.iterdir() if p.is_dir())


def _parse(block: bytes) -> dict[str, str]:
    [event] = [e for e in AmiParser().feed(block) if "Event" in e]
    return dict(event)


def filtered(name: str) -> list[Block]:
    """A capture as the service's manager user gets it with today's filter."""
    out = []
    for block in transcript_events((CAPTURES / name / "ami.log").read_bytes()):
        event = _parse(block)
        if filter_would_pass(event):
            out.append((block, event))
    return out


def start_or_stop(e: Mapping[str, str]) -> bool:
    return e["Event"] in ("MixMonitorStart", "MixMonitorStop")


def our_userevent(e: Mapping[str, str]) -> bool:
    return e["Event"] == "UserEvent" and e.get("UserEvent") == "MiiTelRecording"


def filename_varset(e: Mapping[str, str]) -> bool:
    return e["Event"] == "VarSet" and e.get("Variable") == "MIXMONITOR_FILENAME"


def mixmonitor_newexten(e: Mapping[str, str]) -> bool:
    return e["Event"] == "Newexten" and e.get("Application") == "MixMonitor"


def without(blocks: list[Block], *preds: Pred) -> list[Block]:
    return [(b, e) for b, e in blocks if not any(p(e) for p in preds)]


def replay(blocks: list[Block] | bytes) -> tuple[list[Outcome], Any]:
    data = blocks if isinstance(blocks, bytes) else b"".join(b for b, _ in blocks)
    outcomes, tracker, parser = replay_bytes(data, config())
    assert parser.stats.malformed == 0 and tracker.stats.bad_events == 0
    assert not tracker.recordings, "a recording was left open"
    return outcomes, tracker


def summary(outcomes: list[Outcome]) -> list[tuple[Any, ...]]:
    """Everything MiiTel would get, and what the service would do, per recording."""
    return [(o.call_data.payload() if o.call_data else None, o.skip, o.set_aside,
             o.set_aside_code, o.audio.mode, o.audio.receive, o.audio.transmit, o.file)
            for o in outcomes]


def baseline(name: str) -> tuple[list[tuple[Any, ...]], int]:
    """What tests/test_classify_lab.py asserts for this capture (the filtered file)."""
    outcomes, tracker = replay((CAPTURES / name / "ami_miitel.log").read_bytes())
    return summary(outcomes), tracker.stats.recordings_opened


@pytest.mark.parametrize("name", NAMES)
def test_every_capture_gives_the_same_call_data_without_mixmonitorstart(name: str) -> None:
    want, opened = baseline(name)
    assert want and any(w[0] is not None or w[1] for w in want)
    full = filtered(name)
    variants = {
        # Asterisk 22 through today's filter (it also lets the ExecIf StopMixMonitor through).
        "22": full,
        # Asterisk 16.16: no MixMonitorStart, no MixMonitorStop.
        "16": without(full, start_or_stop),
        # ... and a dialplan without our MiiTelRecording UserEvent.
        "16, plain MixMonitor": without(full, start_or_stop, our_userevent),
    }
    for label, blocks in variants.items():
        outcomes, tracker = replay(blocks)
        assert summary(outcomes) == want, label
        assert tracker.stats.recordings_opened == opened, f"{label}: opened twice"
        assert tracker.stats.untracked == 0, (label, tracker.stats.problems)


@pytest.mark.parametrize("name", NAMES)
def test_only_the_varset_names_the_file(name: str) -> None:
    """No Newexten (a filter of one's own): the file from VarSet, the mode
    from our UserEvent; only MixMonitor's options (`b`) are unknown then."""
    want, opened = baseline(name)
    outcomes, tracker = replay(without(filtered(name), start_or_stop, mixmonitor_newexten))
    got = summary(outcomes)
    assert tracker.stats.recordings_opened == opened and tracker.stats.untracked == 0
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [(g[1] is None, g[2:]) for g in got] == [(w[1] is None, w[2:]) for w in want]


@pytest.mark.parametrize("name", NAMES)
def test_only_the_newexten(name: str) -> None:
    """No VarSet MIXMONITOR_FILENAME, no MixMonitorStart, no UserEvent: an
    absolute path in AppData (FreePBX) is the file; a relative one (our
    snippet, in Asterisk's monitor folder) cannot be found, and says so."""
    want, opened = baseline(name)
    outcomes, tracker = replay(
        without(filtered(name), start_or_stop, our_userevent, filename_varset))
    got = summary(outcomes)
    absolute = name.startswith("freepbx")
    if absolute:
        assert got == want and tracker.stats.recordings_opened == opened
        return
    untracked = [o for o in outcomes if o.set_aside_code == "untracked"]
    assert len(untracked) == tracker.stats.untracked >= 1
    # What is left is a voicemail message, sent on its own, as before.
    assert [g for g in got if g[3] != "untracked"] == [w for w in want if w[0] and w[0][
        "event_type"] == "AUTOMATIC_RECORD"]
    for outcome in untracked:
        assert outcome.call_data is None and outcome.set_aside_code == "untracked"
        assert outcome.set_aside is not None
        assert "no VarSet MIXMONITOR_FILENAME arrived" in outcome.set_aside
        assert "manager_miitel.conf" in outcome.set_aside
        assert "MixMonitor(miitel-" in outcome.set_aside  # which one, as the dialplan wrote it


def _evidence(e: Mapping[str, str]) -> bool:
    return (mixmonitor_newexten(e) or filename_varset(e) or our_userevent(e)
            or e["Event"] == "MixMonitorStart"
            or (e["Event"] == "VarSet" and e.get("Variable") == "MIITEL_MIXMON_ID"
                and bool(e.get("Value"))))


def _shuffled(blocks: list[Block], order: list[int], uid: str) -> list[Block]:
    """The evidence of the recording on channel `uid` arriving in `order`: each
    slot gets another of those events, stamped with the slot's time."""
    slots = [i for i, (_b, e) in enumerate(blocks) if _evidence(e) and e.get("Uniqueid") == uid]
    slots = slots[: len(order)]
    out = list(blocks)
    for slot, pick in zip(slots, order, strict=True):
        block, event = blocks[slots[pick]]
        stamp = blocks[slot][1]["Timestamp"]
        block = block.replace(f"Timestamp: {event['Timestamp']}".encode(),
                              f"Timestamp: {stamp}".encode())
        out[slot] = (block, {**event, "Timestamp": stamp})
    return out


@pytest.mark.parametrize("name", ["inbound_answered", "freepbx_queue"])
def test_all_evidence_in_any_order_opens_one_recording(name: str) -> None:
    """Asterisk 22 sends all of it; whatever the order, one recording, the same call_data."""
    want, opened = baseline(name)
    blocks = filtered(name)
    first = next(e for _b, e in blocks if filename_varset(e))
    uid = first["Uniqueid"]
    count = sum(1 for _b, e in blocks if _evidence(e) and e.get("Uniqueid") == uid)
    assert count >= 4
    for order in itertools.permutations(range(min(count, 5))):
        outcomes, tracker = replay(_shuffled(blocks, list(order), uid))
        assert tracker.stats.recordings_opened == opened, order
        assert summary(outcomes) == want, order


def test_transfers_in_any_order_without_mixmonitorstop() -> None:
    """Blind transfer: our snippet stops the first recording (StopMixMonitor in
    an ExecIf) and starts the second; without MixMonitorStop the stop is read
    from the ExecIf's Newexten, by the MixMonitor's ID."""
    want, _opened = baseline("blind_transfer")
    blocks = without(filtered("blind_transfer"), start_or_stop)
    assert any(e.get("Application") == "ExecIf" and "StopMixMonitor(0x" in e.get("AppData", "")
               for _b, e in blocks)
    rng = random.Random(17)
    uid = next(e for _b, e in blocks if filename_varset(e))["Uniqueid"]
    for _ in range(20):
        order = list(range(4))
        rng.shuffle(order)
        outcomes, tracker = replay(_shuffled(blocks, order, uid))
        assert summary(outcomes) == want, order
        assert tracker.stats.recordings_opened == 2


# -- hand-made transcripts for the cases the captures do not have -------------------------

UID = "1795470000.1"
CHAN = "PJSIP/trunk-00000001"


def ev(event: str, t: float, uid: str = UID, chan: str = CHAN, priority: str = "1",
       **headers: str) -> bytes:
    lines = [f"Event: {event}", f"Timestamp: {1795470000 + t:.6f}", f"Channel: {chan}",
             "ChannelState: 6", "ChannelStateDesc: Up", "CallerIDNum: 0312349999",
             "CallerIDName: Tanaka", "Context: from-trunk", "Exten: 0312345678",
             f"Priority: {priority}", f"Uniqueid: {uid}", f"Linkedid: {UID}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def call(*middle: bytes, hangup: bool = True) -> bytes:
    """An inbound call from the carrier to PJSIP/1001, answered and bridged."""
    peer, peer_uid = "PJSIP/1001-00000002", "1795470000.2"
    parts = [
        ev("Newchannel", 0),
        ev("Newchannel", 0.1, peer_uid, peer, Context="from-internal"),
        ev("DialBegin", 0.2, DestUniqueid=peer_uid, DestChannel=peer,
           DialString="1001"),
        *middle,
        ev("DialEnd", 1, DestUniqueid=peer_uid, DestChannel=peer, DialStatus="ANSWER"),
        ev("BridgeEnter", 1.1, BridgeUniqueid="b-1"),
        ev("BridgeEnter", 1.1, peer_uid, peer, BridgeUniqueid="b-1"),
        ev("BridgeLeave", 6, BridgeUniqueid="b-1"),
        ev("BridgeLeave", 6, peer_uid, peer, BridgeUniqueid="b-1"),
    ]
    if hangup:
        parts += [ev("Hangup", 6.1), ev("Hangup", 6.1, peer_uid, peer)]
    return b"".join(parts)


def mixmonitor(t: float, appdata: str, file: str | None, priority: str = "3",
               uid: str = UID, chan: str = CHAN) -> list[bytes]:
    """A MixMonitor step as Asterisk 16.16 sends it (no MixMonitorStart)."""
    out = [ev("Newexten", t, uid, chan, priority, Extension="0312345678",
              Application="MixMonitor", AppData=appdata)]
    if file is not None:
        out.append(ev("VarSet", t + 0.0001, uid, chan, priority,
                      Variable="MIXMONITOR_FILENAME", Value=file))
    return out


def test_a_plain_dialplan_mixmonitor_on_16_is_followed() -> None:
    data = call(*mixmonitor(0.3, "in-0312349999.wav,b", "/var/spool/asterisk/monitor/"
                            "in-0312349999.wav"))
    outcomes, tracker = replay(data)
    [outcome] = outcomes
    assert tracker.stats.recordings_opened == 1
    assert outcome.file == "/var/spool/asterisk/monitor/in-0312349999.wav"
    assert outcome.call_data is not None and outcome.set_aside is None
    payload = outcome.call_data.payload()
    assert payload["event_type"] == "INCOMING_CALL"
    assert payload["audio_channel_type"] == "MONAURAL"  # a plain .wav is mono
    assert [p["number"] for p in payload["participants"]] == ["0312349999", "1001"]


def test_legs_named_relative_to_the_monitor_folder() -> None:
    """r()/t() without a directory go where the main file went (MIXMONITOR_FILENAME tells)."""
    data = call(*mixmonitor(0.3, "rec/x.wav,br(rec/x-in.wav)t(rec/x-out.wav)",
                            "/srv/monitor/rec/x.wav"))
    [outcome], _ = replay(data)
    assert (outcome.audio.mode, outcome.audio.receive, outcome.audio.transmit) == (
        "legs", "/srv/monitor/rec/x-in.wav", "/srv/monitor/rec/x-out.wav")
    assert outcome.call_data is not None
    assert outcome.call_data.payload()["audio_channel_type"] == "STEREO"


def test_a_mixmonitor_without_a_file_name_is_set_aside_with_the_reason() -> None:
    # r()/t() only: Asterisk writes the legs but no main file and sets no
    # MIXMONITOR_FILENAME (or sets it empty, when it had a value before).
    for varset in (None, ""):
        data = call(*mixmonitor(0.3, ",br(/rec/in.wav)t(/rec/out.wav)", varset))
        [outcome], tracker = replay(data)
        assert outcome.set_aside_code == "untracked" and outcome.call_data is None
        assert outcome.set_aside is not None
        assert "was given no file name" in outcome.set_aside
        assert "Give MixMonitor a file name" in outcome.set_aside
        assert f"on {CHAN}" in outcome.set_aside
        assert tracker.stats.untracked == 1 and tracker.stats.recordings_opened == 0


def test_a_mixmonitorstart_that_never_names_its_file_is_set_aside() -> None:
    """Asterisk 22 behind a filter that drops both Newexten and VarSet."""
    data = call(ev("MixMonitorStart", 0.3, priority="3"))
    [outcome], _ = replay(data)
    assert outcome.set_aside_code == "untracked"
    assert outcome.set_aside is not None and "no VarSet MIXMONITOR_FILENAME" in outcome.set_aside
    assert outcome.key.startswith("untracked-mixmonitor#1795470000.1@")


def test_a_mixmonitor_announced_after_its_channel_hung_up_is_set_aside_with_its_file() -> None:
    late = ev("VarSet", 7, Variable="MIXMONITOR_FILENAME", Value="/rec/late.wav")
    outcomes, tracker = replay(call() + late)
    [outcome] = outcomes
    assert tracker.stats.untracked == 1
    assert (outcome.file, outcome.set_aside_code) == ("/rec/late.wav", "untracked")
    assert outcome.set_aside is not None and "after that channel hung up" in outcome.set_aside
    assert "CDR" in outcome.set_aside


def test_repeated_events_after_a_recording_closed_open_nothing() -> None:
    steps = mixmonitor(0.3, "/rec/a.wav,b", "/rec/a.wav")
    userevent = ev("UserEvent", 0.4, UserEvent="MiiTelRecording", File="/rec/a.wav",
                   Mode="mono")
    outcomes, tracker = replay(call(*steps, userevent) + b"".join(steps) + userevent)
    assert len(outcomes) == 1 and tracker.stats.recordings_opened == 1
    assert tracker.stats.untracked == 0


def test_a_mixmonitor_on_a_channel_never_seen_is_followed_with_a_note() -> None:
    """The transcript starts after the carrier's channel appeared (its Newchannel
    is missing): the recording is followed, and the call says what may be missing."""
    data = call(*mixmonitor(0.3, "/rec/b.wav,b", "/rec/b.wav"))
    newchannel = ev("Newchannel", 0)
    assert data.startswith(newchannel)
    outcomes, _ = replay(data[len(newchannel):])
    [outcome] = outcomes
    assert outcome.file == "/rec/b.wav" and outcome.set_aside is None
    assert outcome.call_data is not None
    assert outcome.call_data.payload()["event_type"] == "INCOMING_CALL"
    assert any(f"did not see {CHAN} start" in n for n in outcome.notes)


def test_append_to_the_same_file_still_open_continues_after_it() -> None:
    """FreePBX's transfer monitor: a second MixMonitor, on another channel,
    option a, on the file of the recording still open (the transferer has not
    hung up yet). It is the same file, but another conversation (issue 13):
    its own recording, opened when the first one closes, after its audio."""
    peer, peer_uid = "PJSIP/1001-00000002", "1795470000.2"
    data = call(*mixmonitor(0.3, "/rec/c.wav,ab", "/rec/c.wav"),
                *mixmonitor(2, "/rec/c.wav,ai(LOCAL_MIXMON_ID)", "/rec/c.wav", uid=peer_uid,
                            chan=peer))
    outcomes, tracker = replay(data)
    assert tracker.stats.recordings_opened == 2
    first, appended = outcomes
    assert first.key == "/rec/c.wav" and first.call_data is not None
    assert appended.key == f"/rec/c.wav#appended-{peer_uid}"
    assert appended.audio.window is not None and appended.audio.window[0] > 4.0


def test_overwritten_after_its_call_ended_is_said_not_sent_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other, other_uid = "PJSIP/1002-00000007", "1795470000.7"
    data = call(*mixmonitor(0.3, "/rec/d.wav,b", "/rec/d.wav")) + b"".join(
        mixmonitor(8, "/rec/d.wav,b", "/rec/d.wav", uid=other_uid, chan=other)
    ) + ev("Hangup", 9, other_uid, other)
    with caplog.at_level(logging.WARNING):
        outcomes, tracker = replay(data)
    assert len(outcomes) == 1 and tracker.stats.recordings_opened == 1
    assert "recording /rec/d.wav is written again by a MixMonitor on PJSIP/1002-00000007" in (
        caplog.text)
    assert "it is overwritten" in tracker.stats.problems[-1]


def test_appended_after_its_call_ended_is_its_own_recording_after_the_first() -> None:
    """Option a on a closed file (FreePBX's transfer monitor, issue 13): a new
    recording whose audio starts where the first one's ended, under its own id."""
    other, other_uid = "PJSIP/1002-00000007", "1795470000.7"
    data = call(*mixmonitor(0.3, "/rec/d.wav,b", "/rec/d.wav")) + b"".join(
        mixmonitor(8, "/rec/d.wav,ab", "/rec/d.wav", uid=other_uid, chan=other)
    ) + ev("Hangup", 9, other_uid, other)
    outcomes, tracker = replay(data)
    assert tracker.stats.recordings_opened == 2
    first, appended = outcomes
    assert first.audio.window is None and first.key == "/rec/d.wav"
    assert appended.key == f"/rec/d.wav#appended-{other_uid}"
    assert appended.audio.window is not None and appended.audio.window[1] is None
    assert appended.audio.window[0] > 1.0  # after the first recording's seconds


def _stop_step(t: float, app: str, appdata: str, priority: str) -> bytes:
    return ev("Newexten", t, priority=priority, Application=app, AppData=appdata)


def _two_recordings(*stop: bytes) -> list[Outcome]:
    id_a = ev("VarSet", 0.31, priority="3", Variable="MIITEL_MIXMON_ID", Value="0xa")
    id_b = ev("VarSet", 0.41, priority="4", Variable="MIITEL_MIXMON_ID", Value="0xb")
    data = call(*mixmonitor(0.3, "/rec/a.wav,bi(MIITEL_MIXMON_ID)", "/rec/a.wav"), id_a,
                *mixmonitor(0.4, "/rec/b.wav,bi(MIITEL_MIXMON_ID)", "/rec/b.wav", "4"), id_b,
                *stop)
    outcomes, _ = replay(data)
    return outcomes


def test_stopmixmonitor_from_its_newexten_by_id_or_the_most_recent() -> None:
    # By ID (the i() variable's VarSet told which MixMonitor is which).
    first, second = _two_recordings(_stop_step(3, "StopMixMonitor", "0xa", "5"))
    assert (first.file, first.end_reason) == ("/rec/a.wav", "stopped")
    assert first.ended_at == pytest.approx(1795470003)
    assert (second.file, second.end_reason) == ("/rec/b.wav", "hangup")
    # Inside ExecIf, as dialplan/miitel-record.conf does it.
    first, _ = _two_recordings(_stop_step(3, "ExecIf", "1?StopMixMonitor(0xb)", "5"))
    assert (first.file, first.end_reason) == ("/rec/b.wav", "stopped")
    # No ID: Asterisk stops the most recent MixMonitor on the channel.
    first, _ = _two_recordings(_stop_step(3, "StopMixMonitor", "", "5"))
    assert first.file == "/rec/b.wav" and first.end_reason == "stopped"
    # A false ExecIf condition stops nothing.
    outcomes = _two_recordings(_stop_step(3, "ExecIf", "0?StopMixMonitor(0xa)", "5"))
    assert [o.end_reason for o in outcomes] == ["hangup", "hangup"]


def test_mixmonitorstop_after_the_stops_newexten_is_the_same_stop() -> None:
    """Asterisk 22 sends both; the second must not stop the other recording."""
    outcomes = _two_recordings(_stop_step(3, "ExecIf", "1?StopMixMonitor(0xa)", "5"),
                               ev("MixMonitorStop", 3.0001, priority="5"))
    assert [(o.file, o.end_reason) for o in outcomes] == [("/rec/a.wav", "stopped"),
                                                           ("/rec/b.wav", "hangup")]
    # Without the Newexten (a filter of one's own), MixMonitorStop stops the most recent.
    outcomes = _two_recordings(ev("MixMonitorStop", 3, priority="5"))
    assert [(o.file, o.end_reason) for o in outcomes] == [("/rec/b.wav", "stopped"),
                                                           ("/rec/a.wav", "hangup")]


# -- reading AppData as Asterisk does ---------------------------------------------------------

def test_appdata_is_split_as_asterisk_splits_it() -> None:
    assert split_args("a,b(c,d),e") == ["a", "b(c,d)", "e"]
    assert split_args('"/x/a,b.wav",b') == ["/x/a,b.wav", "b"]
    assert split_args(r"/x/a\,b.wav,b") == ["/x/a,b.wav", "b"]
    assert split_args("a,b,c,d", limit=3) == ["a", "b", "c,d"]
    args = parse_mixmonitor("/r/x.wav,abr(/r/in,1.wav)t(/r/out.wav)i(ID),/bin/post ^{X},y")
    assert (args.file, args.receive, args.transmit, args.id_var) == (
        "/r/x.wav", "/r/in,1.wav", "/r/out.wav", "ID")
    assert args.appends and parse_mixmonitor("x.raw,bD").appends is False
    assert parse_mixmonitor(",r(in.wav)").file == ""


def test_file_names_as_mixmonitor_writes_them() -> None:
    assert full_path("/r/a.wav49") == "/r/a.WAV"
    assert full_path("a.wav") is None and full_path("a.wav", "/m") == "/m/a.wav"
    assert full_path("") is None
    assert monitor_dir_of("2026/x.wav", "/var/spool/asterisk/monitor/2026/x.wav") == (
        "/var/spool/asterisk/monitor")
    assert monitor_dir_of("x.wav49", "/m/x.WAV") == "/m"
    assert monitor_dir_of("/abs/x.wav", "/abs/x.wav") is None


def test_execif_runs_the_branch_its_condition_picks() -> None:
    assert execif_branch("1?StopMixMonitor(0x7f)") == ("StopMixMonitor", "0x7f")
    assert execif_branch("0?StopMixMonitor()") is None
    assert execif_branch("0?Noop(x):MixMonitor(a.wav,b)") == ("MixMonitor", "a.wav,b")
    assert execif_branch("yes?MixMonitor(/a:b.wav,b)") == ("MixMonitor", "/a:b.wav,b")
    assert execif_branch("1,MixMonitor,x") is None  # the deprecated syntax
    assert [check_condition(c) for c in ("", "0", "00", "1", " 2", "-1", "abc", "0x")] == [
        False, False, False, True, True, True, True, False]


# -- live: the service, the fake AMI server, the stand-in -----------------------------------

RECORDING = "miitel-1795472139-1795472139.4-1.raw"


def demo_events(*drop: Pred) -> list[bytes]:
    import time

    blocks = [b for b in transcript_events((DEMO_DIR / "ami.log").read_bytes())
              if not any(p(_parse(b)) for p in drop)]
    return shift_times(blocks, time.time() - 10)


async def _send(tmp: Path, events: list[bytes]) -> tuple[list[dict[str, Any]], Any]:
    async with StandIn(tmp / "miitel", port=0) as standin:
        async with FakeAmi(events) as ami:
            async with running(service_config(tmp, ami.port, standin.webhook_url)) as service:
                await wait_for(done(service))
                rows = await service.outbox.latest(["uploaded", "set_aside"], 10)
                assert service.stats.intake_errors == 0
        return standin.calls(), rows


def _comparable(call_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in call_data.items()
            if k not in ("call_starts_at", "call_answered_at", "call_ends_at")}


async def test_live_a_call_without_mixmonitorstart_is_uploaded(tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        place_recordings(tmp_path / run, [RECORDING])
    # The same call as Asterisk 22 and as Asterisk 16.16 with a plain MixMonitor send it.
    with_start, _ = await _send(tmp_path / "a", demo_events())
    without_start, rows = await _send(tmp_path / "b",
                                      demo_events(start_or_stop, our_userevent))
    assert [c["status"] for c in without_start] == ["uploaded"]
    assert [(r.state, r.file.rsplit("/", 1)[-1]) for r in rows] == [("uploaded", RECORDING)]
    [call16], [call22] = without_start, with_start
    assert call16["post_count"] == 1 and call16["put_count"] == 1
    # The times are now's (shift_times), so they differ between the two runs.
    assert _comparable(call16["call_data"]) == _comparable(call22["call_data"])
    assert call16["call_data"]["audio_channel_type"] == "STEREO" and call16["channels"] == 2


async def test_live_a_mixmonitor_that_cannot_be_followed_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    place_recordings(tmp_path, [RECORDING])
    events = demo_events(start_or_stop, our_userevent, filename_varset)
    with caplog.at_level(logging.WARNING):
        calls, rows = await _send(tmp_path, events)
    assert calls == []
    [row] = rows
    assert (row.state, row.reason_code) == ("set_aside", "untracked")
    assert row.reason is not None and "no VarSet MIXMONITOR_FILENAME arrived" in row.reason
    assert row.reason in caplog.text  # and one line in the log, with the call id
    assert f"call {row.id}: set aside" in caplog.text


# -- check: which events this Asterisk sends -------------------------------------------------

class NoSettingsAmi(FakeAmi):
    """A manager user without write = reporting: CoreSettings refused, only the banner."""

    def _answer(self, msg: dict[str, str]) -> bytes | None:
        if msg.get("Action", "").lower() == "coresettings":
            aid = msg.get("ActionID", "")
            return f"Response: Error\r\nActionID: {aid}\r\nMessage: Permission denied\r\n\r\n".encode()
        return super()._answer(msg)


async def _mixmonitor_check(tmp: Path, ami: FakeAmi) -> Any:
    from asterisk_miitel.ops.check import run_checks

    from .test_ops_check import LISTEN, by_name, make_config

    async with ami:
        results = await run_checks(make_config(tmp, ami, None), listen_seconds=LISTEN)
    return by_name(results)["MixMonitor events"]


async def test_check_says_asterisk_16_16_sends_no_mixmonitorstart(tmp_path: Path) -> None:
    events = demo_events(start_or_stop)
    result = await _mixmonitor_check(tmp_path, FakeAmi(
        events, secret="s3cret-ami", ami_version="5.0.2", asterisk_version="16.16.2"))
    assert result.ok is True
    assert "Asterisk 16.16.2 sends no MixMonitorStart/MixMonitorStop" in result.detail
    assert "uses Newexten(MixMonitor) and VarSet MIXMONITOR_FILENAME instead" in result.detail
    assert "Newexten MixMonitor x1" in result.detail and "VarSet MIXMONITOR_FILENAME x1" in (
        result.detail)


@pytest.mark.parametrize(("version", "sends"), [
    ("16.17.0", True), ("16.30.1", True), ("16.16.2", False), ("18.2.2", False),
    ("18.3.0", True), ("19.0.0", True), ("20.10.0", True), ("17.9.4", False),
    ("certified-18.9-cert4", True), ("22.10.1+dfsg+~cs6-1", True),
])
async def test_check_knows_which_versions_send_mixmonitorstart(
    tmp_path: Path, version: str, sends: bool
) -> None:
    result = await _mixmonitor_check(tmp_path, FakeAmi(
        demo_events(), secret="s3cret-ami", asterisk_version=version))
    assert result.ok is True
    assert (f"Asterisk {version} sends MixMonitorStart and MixMonitorStop" in result.detail) is sends
    assert ("sends no MixMonitorStart" in result.detail) is not sends


async def test_check_guesses_from_the_banner_without_coresettings(tmp_path: Path) -> None:
    result = await _mixmonitor_check(tmp_path, NoSettingsAmi(
        demo_events(start_or_stop), secret="s3cret-ami", ami_version="5.0.2"))
    assert result.ok is None and "AMI 5.0.2: Asterisk 16?" in result.detail
    assert "from 16.17, 18.3 and 19" in result.detail


async def test_check_fails_when_mixmonitor_runs_but_its_varset_is_filtered(
    tmp_path: Path,
) -> None:
    result = await _mixmonitor_check(tmp_path, FakeAmi(
        demo_events(start_or_stop, filename_varset), secret="s3cret-ami",
        ami_version="5.0.2", asterisk_version="16.16.2"))
    assert result.ok is False and "no VarSet MIXMONITOR_FILENAME arrived" in result.detail
    assert "manager_miitel.conf" in result.detail


# -- replay: says so, never "no recordings" -------------------------------------------------

def test_replay_reports_a_mixmonitor_it_cannot_follow(tmp_path: Path) -> None:
    from .test_cli import cli, write_config

    transcript = tmp_path / "ast16.log"
    blocks = without(filtered("inbound_answered"), start_or_stop, our_userevent, filename_varset)
    transcript.write_bytes(b"Asterisk Call Manager/5.0.2\r\n" + b"".join(b for b, _ in blocks))
    result = cli("replay", str(transcript), "--config", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no call_data to print
    assert "no recordings" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "cannot follow" in ln]
    assert line.startswith("# ") and "would be set aside" in line
    assert "MixMonitor(miitel-1795473765-1795473765.4-1.raw,bDi(MIITEL_MIXMON_ID)) on " \
           "PJSIP/trunk-00000004" in line
    assert "no VarSet MIXMONITOR_FILENAME arrived" in line and "manager_miitel.conf" in line
    # The same call through the VarSet: followed and printed as call_data.
    transcript.write_bytes(b"".join(b for b, _ in without(filtered("inbound_answered"),
                                                          start_or_stop, our_userevent)))
    result = cli("replay", str(transcript), "--config", str(write_config(tmp_path)))
    assert result.returncode == 0 and "cannot follow" not in result.stderr
    [payload] = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert '"event_type": "INCOMING_CALL"' in payload


def test_a_recording_found_by_getvar_is_not_reported_by_its_late_mixmonitorstart() -> None:
    """After a reconnect the service asks live channels for MIXMONITOR_FILENAME;
    the MixMonitorStart held back meanwhile is that same recording."""
    from asterisk_miitel.calls.state import Recording
    from asterisk_miitel.calls.tracker import CallTracker

    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    parser = AmiParser()

    def feed(block: bytes) -> None:
        for event in parser.feed(block):
            tracker.feed(event, 0.0)

    feed(ev("Newchannel", 0))
    assert tracker.discovered(UID, "/rec/found.wav", 1795470001.0) is not None
    feed(ev("MixMonitorStart", 0.5, priority="3") + ev("Hangup", 3))
    assert [(r.file, r.untracked) for r in closed] == [("/rec/found.wav", None)]
    assert tracker.stats.untracked == 0


def _asterisk_split(data: str, delim: str, remove: bool, limit: int) -> list[str]:
    """app.c's __ast_app_separate_args, transcribed loop for loop (a list of
    characters for the C string; `limit` is the args array's size)."""
    buf = list(data)
    arraylen = limit or len(data) + 2
    out: list[str] = []
    scan = 0
    paren = bracket = 0
    quote = False
    wasdelim = -1
    while scan < len(buf) and len(out) < arraylen - 1:
        start = scan
        end = None
        while scan < len(buf):
            c = buf[scan]
            if c == "(":
                paren += 1
            elif c == ")":
                paren = max(0, paren - 1)
            elif c == "[":
                bracket += 1
            elif c == "]":
                bracket = max(0, bracket - 1)
            elif c == '"' and delim != '"':
                quote = not quote
                if remove:
                    del buf[scan]
                    scan -= 1
            elif c == "\\":
                if remove:
                    del buf[scan]
                else:
                    scan += 1
            elif c == delim and not paren and not quote and not bracket:
                wasdelim = end = scan
                scan += 1
                break
            scan += 1
        out.append("".join(buf[start:end if end is not None else len(buf)]))
    if scan < len(buf) or (scan > 0 and scan - 1 == wasdelim):
        out.append("".join(buf[scan:]))
    return out


@given(st.text(alphabet='ab,:()[]"\\', max_size=24), st.sampled_from([",", ":"]),
       st.booleans(), st.integers(0, 3))
def test_split_args_is_asterisks_split(data: str, delim: str, remove: bool, limit: int) -> None:
    # A backslash as the very last character makes app.c read past the string's end.
    assume(not data.endswith("\\"))
    assert split_args(data, delim, remove=remove, limit=limit) == _asterisk_split(
        data, delim, remove, limit)


# -- check against the real Asterisk 16.16.2 (the lab) -----------------------------------

@pytest.mark.lab
@pytest.mark.parametrize("asterisk_lab", ["16"], indirect=True, ids=["ast16"])
async def test_check_on_a_real_asterisk_16(asterisk_lab: Any, tmp_path: Path) -> None:
    """`check` logged in as the lab's least-privileged user while a plain
    dialplan MixMonitor records a call: 16.16.2 says it has no MixMonitorStart,
    and the filter lets through the Newexten and VarSet the service uses instead."""
    import asyncio

    from asterisk_miitel.config import Config
    from asterisk_miitel.ops.check import run_checks

    from .lab.scenarios import SCENARIOS, Runner

    lab = asterisk_lab
    lab.wait_idle()
    config = Config(
        ami={"host": lab.ami_host, "port": lab.ami_port, "username": lab.miitel_username,
             "secret": lab.miitel_secret},
        outbox={"path": str(tmp_path / "outbox.sqlite3")},
        recordings={"work_dir": str(tmp_path / "work"), "dirs": [str(lab.recordings_dir)],
                    "min_free_mb": 0},
    )
    runner = Runner(lab)

    def play() -> None:
        import time

        time.sleep(0.5)  # logged in and listening by then
        SCENARIOS["plain_mixmonitor"][1](lab, runner, duration_ms=1500)
        runner.wait_all()

    try:
        results, _ = await asyncio.gather(run_checks(config, listen_seconds=6.0),
                                          asyncio.to_thread(play))
    finally:
        runner.kill_all()
        lab.wait_idle(timeout=30)
    got = {r.name: r for r in results}
    assert got["AMI login"].ok and "Asterisk Call Manager 5.0.2" in got["AMI login"].detail
    assert got["Asterisk version"].ok and "16.16.2" in got["Asterisk version"].detail
    events = got["MixMonitor events"]
    assert events.ok is True, events.detail
    assert "Asterisk 16.16.2 sends no MixMonitorStart/MixMonitorStop" in events.detail
    assert "Newexten MixMonitor x1" in events.detail
    assert "VarSet MIXMONITOR_FILENAME x1" in events.detail
    assert "MixMonitorStart" not in events.detail.partition("seen while listening")[2]
    assert got["AMI event filter"].ok is True, got["AMI event filter"].detail


@pytest.fixture
def env16(asterisk_lab: Any, tmp_path: Path) -> Any:
    from .e2e import E2E

    with E2E(asterisk_lab, tmp_path) as world:
        yield world


@pytest.mark.lab
@pytest.mark.parametrize("asterisk_lab", ["16"], indirect=True, ids=["ast16"])
def test_blind_transfer_on_16_ends_the_first_recording_at_its_stopmixmonitor(env16: Any) -> None:
    """Without MixMonitorStop, our snippet's StopMixMonitor (in an ExecIf, when the
    transferred customer runs the dialplan again) is seen only as its Newexten:
    the first recording must end there, not at the customer's hangup."""
    from .e2e import answer_at, bye_at, check_times, invite_at, outside, refer_at, user
    from .lab.scenarios import CUSTOMER
    from .test_e2e_versions import check_legs, recorded_on

    name, number = CUSTOMER
    env = env16
    env.play("blind_transfer")
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    first, second = env.sent(2)
    events = env.events()
    assert not [m for m in events if m.event in ("MixMonitorStart", "MixMonitorStop")]
    assert [m for m in events if m.event == "Newexten" and m.get("Application") == "ExecIf"
            and m.get("AppData", "").startswith("1?StopMixMonitor(")]

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(number, "FROM", "left", name),
                                    user("1001", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(transferer),
                end=refer_at(transferer))
    recorded_on(env, first, "trunk")
    check_legs(env, first, "FROM", min_active=2.0)

    data = second["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [user("1001", "FROM", "left"), user("1002", "TO", "right")]
    check_times(data, start=refer_at(transferer), answer=answer_at(target), end=bye_at(caller))
    check_legs(env, second, "FROM", min_active=6.0)
    assert env.recording_for(first).uniqueid == env.recording_for(second).uniqueid
