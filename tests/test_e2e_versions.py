"""Issues 16 and 17: the real-Asterisk scenarios on Asterisk 16.16.2, 18.26.4 and 20.10.0.

The lab builds these from ../shared/asterisk (tests/lab/build.py, cached) and
runs them with chan_sip (tests/lab/conf/sip.conf: the same phones, trunk and
dialplan as the Asterisk 22 lab). None of them has MixMonitor's D option, so
our plain-Asterisk snippet (dialplan/miitel-record.conf) must choose the legs
mode by itself (`miitel-record-mode`): MixMonitor writes a mono mix plus the
r() and t() legs, which the service merges into the stereo file it uploads.
Each test checks what a user cares about, as tests/test_e2e.py does on 22:
the call_data, the right person on each side of the uploaded file (by
energy, and against the legs Asterisk wrote), and its length against the
time Asterisk says the parties were bridged.

18 and 20 play inbound, outbound, extension, queue with a tag, voicemail and
a blind transfer; 16.16.2 (before the MixMonitorStart AMI event) the basic
set: inbound, outbound, extension, a plain dialplan MixMonitor without our
snippet, and our snippet in legs mode. Test ids name the version (ast16,
ast18, ast20): `./scripts/test -k "ast18 or ast20"` runs just those.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab
from tests.lab.analysis import Recording, bridged_seconds, hangup_time
from tests.lab.audio import AudioInfo, analyse
from tests.lab.scenarios import CUSTOMER

from .e2e import (
    E2E,
    answer_at,
    bye_at,
    check_file,
    check_length,
    check_sides,
    check_times,
    invite_at,
    outside,
    party,
    presented_number,
    refer_at,
    user,
)

pytestmark = pytest.mark.lab

NAME, NUMBER = CUSTOMER
FULL = ("18", "20")  # the scenario set of issue 16
BASIC = ("16", "18", "20")  # the basic set, also on 16.16.2 (issue 17)


def on(*versions: str) -> pytest.MarkDecorator:
    """Run the test on these Asterisk versions, grouped by version (one start each)."""
    return pytest.mark.parametrize("asterisk_lab", versions, indirect=True,
                                   ids=[f"ast{v}" for v in versions], scope="module")


@pytest.fixture
def env(asterisk_lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    with E2E(asterisk_lab, tmp_path) as world:
        yield world


def check_legs(env: E2E, call: dict[str, Any], talker: str, min_active: float) -> AudioInfo:
    """The uploaded stereo file is our legs recording merged: the talker's side carries
    the speech, the other is silent, and it lasts as long as the parties were bridged."""
    rec = env.recording_for(call)
    data = call["call_data"]
    # chosen by miitel-record-mode from ${VERSION()}: no D option before 20.11
    assert rec.mode == "legs", rec
    assert Path(rec.file).suffix == ".wav"
    info = check_file(call)
    assert data["audio_channel_type"] == "STEREO"
    check_sides(info, data, talker, min_active=min_active)
    # the legs were merged (the service deletes them after the upload): the stereo file
    # lasts as long as MixMonitor's own mono mix, which stays
    assert Path(rec.receive).name == Path(rec.file).stem + "-in.wav"
    assert Path(rec.transmit).name == Path(rec.file).stem + "-out.wav"
    mix = analyse(rec.file)
    assert mix.channels == 1 and abs(mix.seconds - info.seconds) < 0.1, (mix, info)
    check_length(info, env.bridged(rec))
    return info


def recorded_on(env: E2E, call: dict[str, Any], device: str) -> Recording:
    rec = env.recording_for(call)
    assert rec.channel.startswith(f"{env.lab.device(device)}-"), rec.channel
    return rec


# -- the basic set: 16, 18 and 20 ------------------------------------------------------------
@on(*BASIC)
def test_inbound_answered(env: E2E) -> None:
    env.play("inbound_answered", duration_ms=3000)
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    # the carrier's channel is recorded: the customer left, the user right
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    assert data["circuit_number"] == "0312345678"
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    recorded_on(env, call, "trunk")
    check_legs(env, call, "TO", min_active=2.5)  # 1001 talked, the customer was silent


@on(*BASIC)
def test_outbound_call_to_the_carrier(env: E2E) -> None:
    env.play("outbound", duration_ms=3000)
    caller, carrier = env.runner.results["caller"], env.runner.results["callee"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "OUTGOING_CALL"
    assert data["participants"] == [user("1001", "FROM", "left"),
                                    outside("0312345678", "TO", "right")]
    assert data["circuit_number"] == presented_number(carrier) == "1001"
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    recorded_on(env, call, "1001")
    check_legs(env, call, "FROM", min_active=2.5)


@on(*BASIC)
def test_extension_to_extension(env: E2E) -> None:
    env.play("ext2ext", duration_ms=3000)
    caller, callee = env.runner.results["caller"], env.runner.results["callee"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "EXTENSION"
    assert data["participants"] == [user("1001", "FROM", "left"), user("1002", "TO", "right")]
    assert data["circuit_number"] is None
    check_times(data, start=invite_at(caller), answer=answer_at(callee), end=bye_at(caller))
    recorded_on(env, call, "1001")
    check_legs(env, call, "FROM", min_active=2.5)


@on(*BASIC)
def test_our_snippet_picks_the_legs_mode_by_itself(asterisk_lab: Lab) -> None:
    # miitel-record-mode reads ${VERSION()}: none of these has MixMonitor's D option
    lab = asterisk_lab
    mark = lab.mark()
    lab.originate("Local/record-mode@lab-tests", application="Wait", data="1")
    said = lab.wait_event(lambda m: m.get("UserEvent") == "LabRecordMode", since=mark)
    assert said.get("Version") == lab.asterisk_version
    assert said.get("Version").split(".")[0] == lab.asterisk
    assert said.get("Mode") == "legs"
    lab.wait_idle()


@on(*BASIC)
def test_plain_dialplan_mixmonitor_without_our_snippet(env: E2E) -> None:
    # MixMonitor(in-${UNIQUEID}.wav,b) straight in the dialplan: no MiiTelRecording; on
    # 16.16.2 no MixMonitorStart either: only its Newexten and VarSet MIXMONITOR_FILENAME
    env.play("plain_mixmonitor", duration_ms=3000)
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["audio_channel_type"] == "MONAURAL"
    assert [(p["type"], p["number"]) for p in data["participants"]] == [
        ("FROM", NUMBER), ("TO", "1001")]
    assert data["participants"][1]["miitel_user_id"] == user("1001", "TO", "right")[
        "miitel_user_id"]
    assert data["circuit_number"] == "0312345684"
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    rec = recorded_on(env, call, "trunk")
    assert Path(rec.file).name == f"in-{rec.uniqueid}.wav" and rec.mode == ""
    if env.lab.asterisk == "16":  # before 16.17: the event does not exist
        assert not [m for m in env.events() if m.event == "MixMonitorStart"]
    info = check_file(call)
    assert info.channels == 1 and info.left.active_seconds >= 2.5  # 1001's voice
    assert Path(call["file"]).read_bytes() == Path(rec.file).read_bytes()
    check_length(info, env.bridged(rec))


# -- the rest of issue 16's set: 18 and 20 ---------------------------------------------------
@on(*FULL)
def test_queue_call_with_a_tag(env: E2E) -> None:
    env.play("queue", duration_ms=3000)
    caller, member = env.runner.results["caller"], env.runner.results["member 1002"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert (data["queue_name"], data["groupname"]) == ("Support", None)
    assert data["tags"] == [{"value": "support-queue"}]
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    assert data["circuit_number"] == "0312345679"
    check_times(data, start=invite_at(caller), answer=answer_at(member), end=bye_at(caller))
    recorded_on(env, call, "trunk")
    check_legs(env, call, "FROM", min_active=2.5)


@on(*FULL)
def test_inbound_unanswered_reaches_voicemail(env: E2E) -> None:
    env.play("inbound_voicemail")
    caller = env.runner.results["caller"]
    [call] = env.sent(1, skipped=1)
    data = call["call_data"]
    assert data["event_type"] == "AUTOMATIC_RECORD"
    assert data["audio_channel_type"] == "MONAURAL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1003", "TO", "right")]
    assert data["circuit_number"] == "0312345682"
    check_times(data, start=invite_at(caller), answer=None, end=bye_at(caller))
    [message] = env.variable("VM_MESSAGEFILE")
    assert Path(call["file"]).read_bytes() == Path(message + ".wav").read_bytes()
    info = check_file(call)
    assert info.channels == 1 and info.left.active_seconds >= 5.0
    spoke = bye_at(caller) - (answer_at(caller) + 14.0)  # silent through the greeting
    assert abs(info.seconds - spoke) < 0.5, (info.seconds, spoke)
    # our legs recording of the unanswered Dial (option b) holds nothing: not sent
    [rec] = env.recordings()
    assert rec.mode == "legs"
    [skipped] = [r for r in env.outbox() if r.file == rec.file]
    assert (skipped.state, skipped.posts) == ("skipped", 0)
    assert skipped.reason == "the caller's voicemail message is sent instead of this recording"


@on(*FULL)
def test_blind_transfer_to_another_extension(env: E2E) -> None:
    env.play("blind_transfer")
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    first, second = env.sent(2)

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    assert data["circuit_number"] == "0312345678"
    check_times(data, start=invite_at(caller), answer=answer_at(transferer),
                end=refer_at(transferer))
    recorded_on(env, first, "trunk")
    check_legs(env, first, "FROM", min_active=2.0)  # the customer talks throughout

    data = second["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [user("1001", "FROM", "left"), user("1002", "TO", "right")]
    assert data["circuit_number"] is None
    check_times(data, start=refer_at(transferer), answer=answer_at(target), end=bye_at(caller))
    check_legs(env, second, "FROM", min_active=6.0)
    # both recordings are of the customer's channel, one after the other
    assert env.recording_for(first).uniqueid == env.recording_for(second).uniqueid


@on(*FULL)
def test_attended_transfer_keeps_the_legs_in_sync_through_the_hold(env: E2E) -> None:
    # 1002 answers the customer, consults 1003 (*2 1003 by SIP INFO) while the customer is
    # on hold alone in its bridge, hangs up: 1003 has the customer. Only 1002 talks. The
    # customer's legs recording is cut where 1003 joined (README, Transfers): each piece
    # must be as long as its conversation, the hold inside the first, so the r() and t()
    # legs stayed in step through the hold and the transfer.
    env.play("attended_transfer", talker="transferer")
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    calls = env.sent(3, skipped=1)  # the Local half's copy of C with 1003 is not sent twice
    [first] = [c for c in calls if c["call_data"]["event_type"] == "INCOMING_CALL"
               and "#" not in c["call_data_id"]]
    [consult] = [c for c in calls if "#" not in c["call_data_id"] and c is not first]
    [after] = [c for c in calls if "#2" in c["call_data_id"]]
    rec = recorded_on(env, first, "trunk")
    assert env.recording_for(after) == rec and rec.mode == "legs"
    events = env.events()
    joined = next(m.timestamp for m in events if m.event == "BridgeEnter"
                  and m.get("Channel").startswith("Local/1003@from-internal-")
                  and m.get("Channel").endswith(";1") and m.timestamp
                  and m.get("BridgeUniqueid") in {e.get("BridgeUniqueid") for e in events
                                                 if e.event == "BridgeEnter"
                                                 and e.get("Uniqueid") == rec.uniqueid})
    end = hangup_time(events, rec.uniqueid)

    data = first["call_data"]
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    assert data["circuit_number"] == "0312345683"
    check_times(data, start=invite_at(caller), answer=answer_at(transferer), end=joined)
    info = check_file(first)
    check_sides(info, data, "TO", min_active=1.5)  # 1002 before the consultation
    held = bridged_seconds(events, rec.uniqueid, since=rec.started, until=joined, alone=True)
    check_length(info, held)
    assert held > bridged_seconds(events, rec.uniqueid, since=rec.started,
                                  until=joined) + 3.0  # the hold is in it

    data = after["call_data"]
    assert party(data, "TO") == user("1003", "TO", party(data, "TO")["stereo_lr"])
    check_times(data, start=joined, answer=joined, end=bye_at(caller))
    info = check_file(after)
    assert info.left.active_seconds <= 0.2 and info.right.active_seconds <= 0.2  # nobody
    check_length(info, bridged_seconds(events, rec.uniqueid, since=joined, until=end))

    data = consult["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [user("1002", "FROM", "left"), user("1003", "TO", "right")]
    # it ends where the transfer moved the customer in (that piece is sent from above)
    check_times(data, start=invite_at(target), answer=answer_at(target), end=joined)
    rec = env.recording_for(consult)
    assert rec.channel.startswith("Local/1003@from-internal-") and rec.channel.endswith(";2")
    info = check_file(consult)
    check_sides(info, data, "FROM", min_active=3.0)  # 1002 talking to 1003
    check_length(info, bridged_seconds(events, rec.uniqueid, since=rec.started, until=joined))
