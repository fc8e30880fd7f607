"""A recording cut where its channel's conversation partner changed (issue 13).

On the real Asterisk 22 captures (tests/fixtures/captures) and on synthetic
event streams for the shapes the lab did not capture: a transfer back to
the first user, a hold, a conference join, a blind transfer with no new
recording, a second MixMonitor on the same channel, an outgoing call handed
on, a transfer to an outside number. Each in both `[transfers] report`
modes where they differ.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.calls.classify import (
    Context,
    Outcome,
    classify,
    classify_segments,
    segment_key,
)
from asterisk_miitel.calls.segments import cut_times, pieces
from asterisk_miitel.calls.snapshot import dump_recording, load_recording
from asterisk_miitel.calls.state import Recording
from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.config import Config
from asterisk_miitel.outbox.audio import AudioPlan

from .support import lab_config
from .test_classify_lab import CAPTURES, USERS

T0 = 1795470000.0
TRUNK = ("PJSIP/trunk-00000001", "1.1", "from-pstn", "0312349999", "Tanaka")


def cfg(report: str = "literal") -> Config:
    return lab_config(users=USERS, transfers={"report": report})


def ctx(report: str = "literal") -> Context:
    config = cfg(report)
    return Context(config, "lab", config.pbx.tz())


class Call:
    """A synthetic AMI stream fed straight into a tracker."""

    def __init__(self) -> None:
        self.closed: list[Recording] = []
        self.tracker = CallTracker(self.closed.append)
        self.names: dict[str, str] = {}

    def ev(self, name: str, t: float, uid: str = "", **fields: Any) -> None:
        event = {"Event": name, "Timestamp": f"{T0 + t:.6f}", **fields}
        if uid:
            event["Uniqueid"] = uid
            event.setdefault("Channel", self.names[uid])
            event.setdefault("Linkedid", "1.1")
        self.tracker.feed(event, T0 + t)

    def channel(self, t: float, name: str, uid: str, context: str, num: str,
                cid_name: str = "", exten: str = "s") -> None:
        self.names[uid] = name
        self.ev("Newchannel", t, uid, Context=context, Exten=exten, CallerIDNum=num,
                CallerIDName=cid_name, ChannelStateDesc="Ring")

    def dial(self, t: float, caller: str, dest: str, dial_string: str) -> None:
        self.ev("DialBegin", t, caller, DestUniqueid=dest, DestChannel=self.names[dest],
                DialString=dial_string)
        self.ev("DialEnd", t + 0.01, caller, DestUniqueid=dest, DialStatus="ANSWER")

    def record(self, t: float, uid: str, file: str) -> None:
        self.ev("UserEvent", t, uid, UserEvent="MiiTelRecording", File=file, Mode="interleaved")

    def enter(self, t: float, uid: str, bridge: str) -> None:
        self.ev("BridgeEnter", t, uid, BridgeUniqueid=bridge)

    def leave(self, t: float, uid: str, bridge: str) -> None:
        self.ev("BridgeLeave", t, uid, BridgeUniqueid=bridge)

    def hangup(self, t: float, uid: str) -> None:
        self.ev("Hangup", t, uid)

    def blind(self, t: float, transferer: str, transferee: str, exten: str) -> None:
        self.ev("BlindTransfer", t, "", Result="Success", Extension=exten,
                TransfererUniqueid=transferer, TransfererChannel=self.names[transferer],
                TransfereeUniqueid=transferee, TransfereeChannel=self.names[transferee])


def customer_calls_1001(c: Call, file: str = "/rec/c.raw") -> None:
    """The customer calls in, 1001 answers at 1 s; recorded on the trunk channel."""
    name, uid, context, num, cid = TRUNK
    c.channel(0, name, uid, context, num, cid, exten="0312345678")
    c.record(0.1, uid, file)
    c.channel(0.2, "PJSIP/1001-00000002", "1.2", "from-internal", "1001")
    c.dial(0.2, uid, "1.2", "PJSIP/1001")
    c.enter(1, "1.2", "b1")
    c.enter(1, uid, "b1")


def blind_transfer(c: Call, t: float, transferer: str, target: str, target_uid: str,
                   bridge_from: str, bridge_to: str, *, context: str = "from-internal",
                   num: str = "") -> None:
    """`transferer` REFERs the customer to `target`: it leaves and hangs up, the
    customer's channel dials the target and is bridged with it 1 s later."""
    c.blind(t, transferer, "1.1", target)
    c.leave(t, transferer, bridge_from)
    c.hangup(t + 0.01, transferer)
    c.leave(t + 0.02, "1.1", bridge_from)
    name = (f"PJSIP/{target}-0000{target_uid[-2:].replace('.', '0')}" if context ==
            "from-internal" else f"PJSIP/trunk-0000{target_uid[-2:].replace('.', '0')}")
    c.channel(t + 0.1, name, target_uid, context, num or target)
    c.dial(t + 0.1, "1.1", target_uid, f"PJSIP/{target}")
    c.enter(t + 1, target_uid, bridge_to)
    c.enter(t + 1, "1.1", bridge_to)


def parties(outcome: Outcome) -> list[tuple[str, str, str]]:
    assert outcome.call_data is not None, outcome.explain
    return [(p.type, p.stereo_lr, p.number) for p in outcome.call_data.participants]


def event_type(outcome: Outcome) -> str:
    assert outcome.call_data is not None, outcome.explain
    return outcome.call_data.event_type.value


def tags(outcome: Outcome) -> list[str]:
    assert outcome.call_data is not None
    return [t.value for t in outcome.call_data.tags]


# -- the real captures ----------------------------------------------------------------


def _recordings(name: str) -> list[Recording]:
    c = Call()
    events = [e for e in AmiParser().feed((CAPTURES / name / "ami_miitel.log").read_bytes())
              if "Event" in e]
    for n, event in enumerate(events):
        c.tracker.feed(event, n * 0.001)
    return c.closed


def test_attended_transfer_capture_is_cut_where_the_target_joined() -> None:
    customer, consult = _recordings("attended_transfer")
    # AttendedTransfer at 1795473849.900660; the Local ;1 half entered the
    # customer's bridge at .900576 (the BridgeEnter that moved 1003 in).
    [cut] = cut_times(customer)
    assert cut == pytest.approx(1795473849.900576)
    first, second = pieces(customer)
    assert [c.name for c in first.right] == ["PJSIP/1002-00000014"]
    assert [c.name for c in second.right] == ["PJSIP/1003-00000015"]
    # The hold (1002 away consulting, 43.59 s -> 49.90 s) stays in the first
    # piece. MixMonitor's b option writes only while the trunk channel is in
    # a bridge (from 40.066049, its BridgeEnter; alone in it on hold too).
    bridged = cut - 1795473840.066049
    assert first.window == (0.0, pytest.approx(bridged))
    assert second.window == (pytest.approx(bridged), None)
    assert first.duplicate_of is None and second.duplicate_of is None
    # The consultation's Local ;2 half: 1002 with 1003, then the customer with
    # 1003, which the customer's own recording already holds.
    one, two = pieces(consult)
    assert [c.name for c in one.left] == ["PJSIP/1002-00000014"]
    assert [c.name for c in two.left] == ["PJSIP/trunk-00000013"]
    assert two.duplicate_of == customer.file
    # the Local half was bridged only from 1003's answer (44.104164): 0.51 s of
    # ringing are not in its b-option file, so the cut is 5.80 s into it, not 6.31
    assert one.window == (0.0, pytest.approx(cut - 1795473844.104164))


def test_attended_transfer_capture_plans_each_piece_and_its_length() -> None:
    customer, _ = _recordings("attended_transfer")
    first, second = classify_segments(customer, ctx())
    # The length check's reference includes the hold: ~9.83 s bridged
    # (answer to cut) against a 9.84 s piece, not 3.5 s of talk (the file is
    # 16.02 s, which made the old "longer than bridged" warning).
    assert first.audio.expected_duration == pytest.approx(9.83, abs=0.02)
    assert first.audio.window is not None
    assert first.audio.window[1] == pytest.approx(9.84, abs=0.01)
    assert second.audio.expected_duration == pytest.approx(6.18, abs=0.02)
    assert first.call_data_id == classify(customer, ctx()).call_data_id  # piece 1 keeps the id
    assert second.call_data_id != first.call_data_id
    assert second.key == segment_key(customer, 1) == customer.file + "#2"
    spec = AudioPlan.from_dict(second.audio.as_dict()).spec()
    assert spec.window == second.audio.window


def test_attended_transfer_capture_speakers() -> None:
    customer, consult = _recordings("attended_transfer")
    first, second = classify_segments(customer, ctx("speakers"))
    assert event_type(first) == "INCOMING_CALL"
    assert parties(first) == [("FROM", "left", "0312349999"), ("TO", "right", "1002")]
    # The customer's conversation with 1003: the customer's own call with 1003.
    assert event_type(second) == "INCOMING_CALL"
    assert parties(second) == [("FROM", "left", "0312349999"), ("TO", "right", "1003")]
    assert tags(second) == ["transferred by 1002"]
    assert any("rule transfers.report = speakers" in line for line in second.explain)
    # The consultation is 1002's own talk with 1003 in both modes.
    consult_piece = classify_segments(consult, ctx("speakers"))[0]
    assert event_type(consult_piece) == "EXTENSION_TRANSFER"
    assert parties(consult_piece) == [("FROM", "left", "1002"), ("TO", "right", "1003")]


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.iterdir() if p.is_dir()))
def test_every_other_capture_is_one_piece_exactly_as_before(name: str) -> None:
    if name == "attended_transfer":
        return  # above
    for rec in _recordings(name):
        got = classify_segments(rec, ctx())
        assert len(got) == 1
        assert got[0] == classify(rec, ctx())


# -- synthetic shapes ---------------------------------------------------------------


def test_hold_outside_the_bridge_stays_one_piece() -> None:
    c = Call()
    customer_calls_1001(c)
    c.leave(3, "1.2", "b1")  # 1001 parks / consults: the customer hears music
    c.enter(6, "1.2", "b1")  # and comes back
    c.hangup(9, "1.1")
    [rec] = c.closed
    assert cut_times(rec) == []
    [outcome] = classify_segments(rec, ctx())
    assert event_type(outcome) == "INCOMING_CALL" and outcome.audio.window is None
    # bridged 1 s -> 9 s with the hold, not 5 s of talk
    assert outcome.audio.expected_duration == pytest.approx(8.0)


def test_a_party_joining_beside_is_not_a_cut() -> None:
    c = Call()
    customer_calls_1001(c)
    c.channel(3, "PJSIP/1002-00000003", "1.3", "from-internal", "1002")
    c.enter(4, "1.3", "b1")  # a three-way conference
    c.hangup(9, "1.1")
    [rec] = c.closed
    assert cut_times(rec) == [] and len(classify_segments(rec, ctx())) == 1


def test_blind_transfer_without_a_new_recording() -> None:
    """FreePBX after a transfer (REC_STATUS=NO): the first recording runs on."""
    c = Call()
    customer_calls_1001(c)
    blind_transfer(c, 4, "1.2", "1002", "1.3", "b1", "b2")
    c.hangup(12, "1.1")
    [rec] = c.closed
    assert cut_times(rec) == [pytest.approx(T0 + 5)]
    first, second = classify_segments(rec, ctx())
    assert event_type(first) == "INCOMING_CALL"
    assert parties(first) == [("FROM", "left", "0312349999"), ("TO", "right", "1001")]
    assert first.audio.window == (pytest.approx(0.0), pytest.approx(4.9))
    assert event_type(second) == "EXTENSION_TRANSFER"
    assert parties(second) == [("FROM", "left", "1001"), ("TO", "right", "1002")]
    assert second.audio.window == (pytest.approx(4.9), None)
    assert second.call_data is not None
    assert second.call_data.call_starts_at.timestamp() == pytest.approx(T0 + 5)
    _, second_s = classify_segments(rec, ctx("speakers"))
    assert event_type(second_s) == "INCOMING_CALL"
    assert parties(second_s) == [("FROM", "left", "0312349999"), ("TO", "right", "1002")]
    assert tags(second_s) == ["transferred by 1001"]


def test_transfer_back_to_the_first_user_is_three_pieces() -> None:
    c = Call()
    customer_calls_1001(c)
    blind_transfer(c, 4, "1.2", "1002", "1.3", "b1", "b2")
    # 1002 sends the customer back to 1001 (a new channel for 1001)
    blind_transfer(c, 8, "1.3", "1001", "1.4", "b2", "b3")
    c.hangup(14, "1.1")
    [rec] = c.closed
    assert cut_times(rec) == [pytest.approx(T0 + 5), pytest.approx(T0 + 9)]
    out = classify_segments(rec, ctx())
    assert [parties(o)[1][2] for o in out] == ["1001", "1002", "1001"]
    assert [event_type(o) for o in out] == ["INCOMING_CALL", "EXTENSION_TRANSFER",
                                           "EXTENSION_TRANSFER"]
    assert parties(out[2])[0] == ("FROM", "left", "1002")  # 1002 transferred it back
    assert len({o.call_data_id for o in out}) == 3
    speakers = classify_segments(rec, ctx("speakers"))
    assert [event_type(o) for o in speakers] == ["INCOMING_CALL"] * 3
    assert [tags(o) for o in speakers] == [[], ["transferred by 1001"],
                                           ["transferred by 1002"]]


def test_a_second_recording_on_the_channel_takes_the_new_conversation() -> None:
    """A dialplan that starts a new MixMonitor after a blind transfer without
    stopping the first: the conversation is sent once, from the new one."""
    c = Call()
    customer_calls_1001(c)
    c.blind(4, "1.2", "1.1", "1002")
    c.leave(4, "1.2", "b1")
    c.hangup(4.01, "1.2")
    c.leave(4.02, "1.1", "b1")
    c.record(4.05, "1.1", "/rec/c2.raw")
    c.channel(4.1, "PJSIP/1002-00000003", "1.3", "from-internal", "1002")
    c.dial(4.1, "1.1", "1.3", "PJSIP/1002")
    c.enter(5, "1.3", "b2")
    c.enter(5, "1.1", "b2")
    c.hangup(12, "1.1")
    old, new = sorted(c.closed, key=lambda r: r.started)
    first, dup = classify_segments(old, ctx())
    assert event_type(first) == "INCOMING_CALL" and dup.skip is not None
    assert "/rec/c2.raw" in dup.skip
    [mine] = classify_segments(new, ctx())
    assert event_type(mine) == "EXTENSION_TRANSFER" and mine.audio.window is None


def test_outgoing_call_handed_to_a_colleague() -> None:
    """1001 calls a customer and transfers them to 1002: in speakers mode,
    1002's outgoing call."""
    c = Call()
    c.channel(0, "PJSIP/1001-00000001", "1.1", "from-internal", "1001", exten="0312349999")
    c.record(0.1, "1.1", "/rec/o.raw")
    c.channel(0.2, "PJSIP/trunk-00000002", "1.2", "from-pstn", "0312349999")
    c.dial(0.2, "1.1", "1.2", "PJSIP/0312349999@trunk")
    c.enter(1, "1.2", "b1")
    c.enter(1, "1.1", "b1")
    # the customer's trunk channel is the one recorded from here on
    c.record(3.9, "1.2", "/rec/o2.raw")
    c.blind(4, "1.1", "1.2", "1002")
    c.leave(4, "1.1", "b1")
    c.hangup(4.01, "1.1")
    c.leave(4.02, "1.2", "b1")
    c.channel(4.1, "PJSIP/1002-00000003", "1.3", "from-internal", "1002")
    c.dial(4.1, "1.2", "1.3", "PJSIP/1002")
    c.enter(5, "1.3", "b2")
    c.enter(5, "1.2", "b2")
    c.hangup(12, "1.2")
    rec = next(r for r in c.closed if r.file == "/rec/o2.raw")
    out = classify_segments(rec, ctx("speakers"))
    last = out[-1]
    assert event_type(last) == "OUTGOING_CALL"
    # the customer's channel recorded: its own audio left; 1002 on the right
    assert parties(last) == [("FROM", "right", "1002"), ("TO", "left", "0312349999")]
    assert tags(last) == ["transferred by 1001"]
    # literal: filed under 1001 who transferred, on the customer's side
    literal = classify_segments(rec, ctx())[-1]
    assert event_type(literal) == "EXTENSION_TRANSFER"
    assert parties(literal) == [("FROM", "left", "1001"), ("TO", "right", "1002")]


def test_transfer_to_an_outside_number_leaves_no_user() -> None:
    c = Call()
    customer_calls_1001(c)
    blind_transfer(c, 4, "1.2", "00901234567", "1.3", "b1", "b2", context="from-pstn",
                   num="0901234567")
    c.hangup(12, "1.1")
    [rec] = c.closed
    _, literal = classify_segments(rec, ctx())
    assert event_type(literal) == "OUTGOING_TRANSFER"
    assert parties(literal) == [("FROM", "left", "1001"), ("TO", "right", "0901234567")]
    _, speakers = classify_segments(rec, ctx("speakers"))
    assert event_type(speakers) == "AUTOMATIC_TRANSFER"
    assert parties(speakers) == [("FROM", "left", "0312349999"),
                                 ("TO", "right", "0901234567")]
    assert tags(speakers) == ["transferred by 1001"]
    assert speakers.set_aside is None


def test_pieces_survive_the_journal() -> None:
    c = Call()
    customer_calls_1001(c)
    blind_transfer(c, 4, "1.2", "1002", "1.3", "b1", "b2")
    c.hangup(12, "1.1")
    [rec] = c.closed
    again = load_recording(dump_recording(rec))
    again.ended, again.end_reason = rec.ended, rec.end_reason
    assert cut_times(again) == cut_times(rec)
    assert [o.call_data_id for o in classify_segments(again, ctx())] == [
        o.call_data_id for o in classify_segments(rec, ctx())]


@pytest.mark.parametrize("before_hangup", [False, True])
def test_freepbx_attended_transfer_with_the_appending_mixmonitor(before_hangup: bool) -> None:
    """FreePBX 17: 1002's own recording, the consultation recorded on the
    Local ;2 half, and on AttendedTransfer a MixMonitor over AMI (no
    dialplan step: only its VarSet) appending to 1002's file on the customer's
    channel. Every conversation once, each from where it was recorded."""
    c = Call()
    name, uid, context, num, cid = TRUNK
    c.channel(0, name, uid, context, num, cid, exten="0312345678")
    c.channel(0.2, "PJSIP/1002-00000002", "1.2", "from-internal", "1002")
    c.dial(0.2, uid, "1.2", "PJSIP/1002")
    c.record(0.5, "1.2", "/rec/a.raw")
    c.enter(1, "1.2", "b1")
    c.enter(1, uid, "b1")
    # 1002 dials *2 1003: the customer is held, 1002 consults over a Local pair
    c.leave(3, "1.2", "b1")
    c.channel(3, "Local/1003@from-internal-00000001;1", "1.3", "from-internal", "1002")
    c.channel(3, "Local/1003@from-internal-00000001;2", "1.4", "from-internal", "1002",
              exten="1003")
    c.enter(3.01, "1.3", "b2")
    c.enter(3.01, "1.2", "b2")
    c.record(3.02, "1.4", "/rec/l.raw")
    c.channel(3.05, "PJSIP/1003-00000005", "1.5", "from-internal", "1003")
    c.dial(3.05, "1.4", "1.5", "PJSIP/1003")
    c.enter(3.5, "1.5", "b3")
    c.enter(3.5, "1.4", "b3")
    # 1002 hangs up: the transfer completes, the Local ;1 half joins the customer
    c.leave(9, "1.3", "b2")
    c.enter(9, "1.3", "b1")
    c.leave(9, "1.2", "b2")
    c.ev("AttendedTransfer", 9.0, "", Result="Success",
         OrigTransfererUniqueid="1.2", OrigTransfererChannel="PJSIP/1002-00000002",
         SecondTransfererUniqueid="1.2", SecondTransfererChannel="PJSIP/1002-00000002",
         TransfereeUniqueid=uid, TransfereeChannel=name, DestType="Bridge")
    # FreePBX's monitor asks Asterisk first (core show channel), so its
    # MixMonitor comes after 1002's hangup, or just before it
    if before_hangup:
        c.ev("VarSet", 9.0005, uid, Variable="MIXMONITOR_FILENAME", Value="/rec/a.raw")
        c.ev("MixMonitorStart", 9.0005, uid)
    c.hangup(9.001, "1.2")
    if not before_hangup:
        c.ev("VarSet", 9.05, uid, Variable="MIXMONITOR_FILENAME", Value="/rec/a.raw")
        c.ev("MixMonitorStart", 9.05, uid)
    c.leave(15, uid, "b1")
    c.leave(15, "1.3", "b1")
    c.hangup(15, uid)
    c.hangup(15, "1.3")
    c.leave(15, "1.4", "b3")
    c.leave(15, "1.5", "b3")
    c.hangup(15, "1.4")
    c.hangup(15, "1.5")
    got = {}
    for rec in c.closed:
        for o in classify_segments(rec, ctx()):
            got[o.key] = o
    assert sorted(got) == ["/rec/a.raw", "/rec/a.raw#2", f"/rec/a.raw#appended-{uid}",
                           "/rec/l.raw", "/rec/l.raw#2"]
    first = got["/rec/a.raw"]  # 1002's own channel: 1002 left, the customer right
    assert event_type(first) == "INCOMING_CALL"
    assert parties(first) == [("FROM", "right", "0312349999"), ("TO", "left", "1002")]
    assert got["/rec/a.raw#2"].skip and "/rec/l.raw" in got["/rec/a.raw#2"].skip
    # 1002's own recording is cut when 1002 left the customer to consult (3 s),
    # not when 1003 answered (3.5 s): the ringback 1002 heard is the consultation's
    own = next(r for r in c.closed if r.file == "/rec/a.raw" and r.appended_at is None)
    assert pieces(own)[0].window == (0.0, pytest.approx(2.5))
    consult = got["/rec/l.raw"]
    assert event_type(consult) == "EXTENSION_TRANSFER"
    assert parties(consult) == [("FROM", "left", "1002"), ("TO", "right", "1003")]
    assert got["/rec/l.raw#2"].skip and "/rec/a.raw" in got["/rec/l.raw#2"].skip
    moved = got[f"/rec/a.raw#appended-{uid}"]
    assert event_type(moved) == "EXTENSION_TRANSFER"
    assert parties(moved) == [("FROM", "left", "1002"), ("TO", "right", "1003")]
    # its audio: after the 8.5 s 1002's recording wrote into the file
    assert moved.audio.window == (pytest.approx(8.501), None)
    speakers = next(o for o in classify_segments(
        next(r for r in c.closed if r.appended_at is not None), ctx("speakers")))
    assert event_type(speakers) == "INCOMING_CALL"
    assert parties(speakers) == [("FROM", "left", "0312349999"), ("TO", "right", "1003")]
    assert tags(speakers) == ["transferred by 1002"]


def test_replay_explain_shows_the_pieces_and_the_speakers_rule(tmp_path: Path) -> None:
    users = "\n".join(f'"{ext}" = {{ miitel_user_id = "{u["miitel_user_id"]}" }}'
                      for ext, u in USERS.items())
    config = tmp_path / "config.toml"
    config.write_text(f'[pbx]\nid = "t"\n[transfers]\nreport = "speakers"\n[users]\n{users}\n')
    result = subprocess.run(
        [sys.executable, "-m", "asterisk_miitel", "replay",
         str(CAPTURES / "attended_transfer" / "ami_miitel.log"), "--explain",
         "--config", str(config)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "piece 2: PJSIP/trunk-00000013 + PJSIP/1003-00000015" in result.stdout
    assert "rule transfers.report = speakers" in result.stdout
    assert "is also in recording" in result.stdout


def test_replay_says_stereo_for_a_raw_whose_mode_it_cannot_see() -> None:
    """Only VarSet MIXMONITOR_FILENAME names the file (no MiiTelRecording, no
    AppData): the upload reads a .raw as D stereo, and so does replay now,
    keeping the tracker's sides (it answered MONAURAL, FROM left)."""
    c = Call()
    name, uid = TRUNK[0], TRUNK[1]
    c.channel(0, "PJSIP/1001-00000002", "1.2", "from-internal", "1001", exten="0312349999")
    c.ev("VarSet", 0.1, "1.2", Variable="MIXMONITOR_FILENAME", Value="/rec/x.raw")
    c.channel(0.2, name, uid, "from-pstn", "")
    c.dial(0.2, "1.2", uid, "PJSIP/0312349999@trunk")
    c.enter(1, uid, "b1")
    c.enter(1, "1.2", "b1")
    c.hangup(5, "1.2")
    [rec] = c.closed
    assert rec.mode == "unknown"
    [outcome] = classify_segments(rec, ctx())
    assert outcome.call_data is not None
    assert outcome.call_data.audio_channel_type == "STEREO"
    assert parties(outcome) == [("FROM", "left", "1001"), ("TO", "right", "0312349999")]
    wav = Call()
    wav.channel(0, "PJSIP/1001-00000002", "1.2", "from-internal", "1001")
    wav.ev("VarSet", 0.1, "1.2", Variable="MIXMONITOR_FILENAME", Value="/rec/x.sln")
    wav.hangup(2, "1.2")
    assert classify_segments(wav.closed[0], ctx())[0].audio.channel_type == "MONAURAL"


@pytest.mark.parametrize("new_recording", [True, False])
def test_a_queue_agent_transfers_the_customer(new_recording: bool) -> None:
    """The agent 1002 answered through the queue's Local pair and REFERs the
    customer to 1001: the REFER moves the Local half that stood for the
    customer. With our dialplan that half records the new conversation;
    without (REC_STATUS=NO) the customer's recording is cut."""
    c = Call()
    name, uid, context, num, cid = TRUNK
    c.channel(0, name, uid, context, num, cid, exten="0312345679")
    c.record(0.1, uid, "/rec/q.raw")
    c.ev("QueueCallerJoin", 0.2, uid, Queue="support")
    c.channel(0.3, "Local/1002@queue-members-00000001;1", "1.3", "queue-members", "")
    c.channel(0.3, "Local/1002@queue-members-00000001;2", "1.4", "queue-members", "",
              exten="1002")
    c.dial(0.3, uid, "1.3", "Local/1002@queue-members/n")
    c.channel(0.4, "PJSIP/1002-00000005", "1.5", "from-internal", "1002")
    c.dial(0.4, "1.4", "1.5", "PJSIP/1002")
    c.enter(1, "1.5", "b2")
    c.enter(1, "1.4", "b2")
    c.enter(1, "1.3", "b1")
    c.enter(1, uid, "b1")
    c.blind(4, "1.5", "1.4", "1001")
    c.leave(4, "1.5", "b2")
    c.hangup(4.01, "1.5")
    c.leave(4.02, "1.4", "b2")
    if new_recording:
        c.record(4.05, "1.4", "/rec/q2.raw")
    c.channel(4.1, "PJSIP/desk-suzuki-00000006", "1.6", "from-internal", "1001")
    c.dial(4.1, "1.4", "1.6", "PJSIP/desk-suzuki")
    c.enter(5, "1.6", "b3")
    c.enter(5, "1.4", "b3")
    c.hangup(10, uid)
    c.hangup(10, "1.3")
    c.hangup(10, "1.4")
    c.hangup(10, "1.6")
    for report, want_type, want in (
        ("literal", "EXTENSION_TRANSFER", [("FROM", "left", "1002"), ("TO", "right", "1001")]),
        ("speakers", "INCOMING_CALL", [("FROM", "left", "0312349999"),
                                       ("TO", "right", "1001")]),
    ):
        out = [o for rec in c.closed for o in classify_segments(rec, ctx(report))]
        sent = [o for o in out if o.call_data is not None]
        assert [parties(o)[1][2] for o in sent[:1]] == ["1002"]
        assert event_type(sent[0]) == "INCOMING_CALL"
        assert sent[0].call_data is not None and sent[0].call_data.queue_name == "support"
        assert len(sent) == 2, [o.explain for o in out]
        moved = sent[1]
        assert event_type(moved) == want_type and parties(moved) == want, moved.explain
        assert tags(moved) == (["transferred by 1002"] if report == "speakers" else [])
        skipped = [o for o in out if o.skip]
        assert len(skipped) == (1 if new_recording else 0)


def test_with_option_b_a_cut_is_placed_by_the_time_in_a_bridge() -> None:
    """MixMonitor b writes only while the recorded channel is in a bridge: a
    blind transfer's ringing (the customer out of any bridge, 4.02 s -> 5 s)
    is not in the file, so the second conversation starts 3.02 s into it."""
    c = Call()
    customer_calls_1001(c)
    c.ev("Newexten", 0.1, "1.1", Application="MixMonitor", AppData="/rec/c.raw,bD",
         Context="from-pstn", Exten="0312345678", Priority="2")
    blind_transfer(c, 4, "1.2", "1002", "1.3", "b1", "b2")
    c.hangup(12, "1.1")
    [rec] = c.closed
    assert rec.bridged_only
    first, second = pieces(rec)
    assert first.window == (0.0, pytest.approx(3.02))  # bridged 1 s -> 4.02 s
    assert second.window == (pytest.approx(3.02), None)
    rec.bridged_only = False  # without b every second is in the file
    assert pieces(rec)[1].window == (pytest.approx(4.9), None)


def test_attended_transfer_event_a_few_ms_after_the_bridge_enter() -> None:
    """On a busy PBX AttendedTransfer can come some ms after the BridgeEnter
    that moved the target's Local half in (the lab saw both orders): the
    piece is still the transfer's."""
    c = Call()
    customer_calls_1001(c)
    c.leave(3, "1.2", "b1")
    c.channel(3, "Local/1003@from-internal-00000001;1", "1.3", "from-internal", "1001")
    c.channel(3, "Local/1003@from-internal-00000001;2", "1.4", "from-internal", "1001",
              exten="1003")
    c.enter(3.01, "1.3", "b2")
    c.enter(3.01, "1.2", "b2")
    c.channel(3.05, "PJSIP/1003-00000005", "1.5", "from-internal", "1003")
    c.dial(3.05, "1.4", "1.5", "PJSIP/1003")
    c.enter(3.5, "1.5", "b3")
    c.enter(3.5, "1.4", "b3")
    c.leave(9, "1.3", "b2")
    c.enter(9, "1.3", "b1")
    c.leave(9, "1.2", "b2")
    c.ev("AttendedTransfer", 9.03, "", Result="Success",
         OrigTransfererUniqueid="1.2", OrigTransfererChannel="PJSIP/1001-00000002",
         SecondTransfererUniqueid="1.2", SecondTransfererChannel="PJSIP/1001-00000002",
         TransfereeUniqueid="1.1", TransfereeChannel=TRUNK[0], DestType="Bridge")
    c.hangup(9.04, "1.2")
    c.hangup(15, "1.1")
    rec = next(r for r in c.closed if r.file == "/rec/c.raw")
    _, second = classify_segments(rec, ctx())
    assert event_type(second) == "EXTENSION_TRANSFER"
    assert parties(second) == [("FROM", "left", "1001"), ("TO", "right", "1003")]
    _, second = classify_segments(rec, ctx("speakers"))
    assert tags(second) == ["transferred by 1001"]
