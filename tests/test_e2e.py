"""Issue 4: every scenario end to end, on the real Asterisk lab.

Each test has its own MiiTel stand-in (in this process, port 0) and its own
`asterisk-miitel run --config <its TOML>` process, logged in as the lab's
least-privileged `miitel` AMI user (exactly the manager.conf user the README
recommends). It places the call(s) with sipp through the shared scenario
drivers (tests/lab/scenarios.py, the ones the captures were made with), waits
until the stand-in has what it should, and checks what a user cares about:
the call_data (event_type, participants, queue/group/tags, circuit number,
times against what the phones saw), the uploaded file (type and channels as
declared; the side labelled for each party carries that party's audio; as
long as Asterisk says the parties were bridged), and that nothing was sent
twice, or, for calls MiiTel should not get, nothing at all.

Where the lab cannot run (not Linux, not root) these tests skip; under CI=true
they fail instead (tests/lab/fixtures.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.lab.audio import analyse
from tests.lab.scenarios import CUSTOMER, EXTERNAL

from .e2e import (
    E2E,
    answer_at,
    at,
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
    sip_calls,
    user,
)

pytestmark = pytest.mark.lab

NAME, NUMBER = CUSTOMER  # the customer of the scenarios: Tanaka Hanako, 0312349999


@pytest.fixture
def env(lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    with E2E(lab, tmp_path) as world:
        yield world


@pytest.fixture
def freepbx_env(freepbx_lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    with E2E(freepbx_lab, tmp_path) as world:
        yield world


def check_skipped(env: E2E, reason: str) -> None:
    """MiiTel got nothing; the outbox says skipped, and why."""
    [row] = env.wait_outbox(1)
    time.sleep(1.0)  # anything about to be sent would be by now
    assert env.standin.calls() == []
    [rec] = env.recordings()
    assert (row.file, row.state, row.reason_code, row.posts) == (rec.file, "skipped",
                                                                 "unanswered", 0)
    assert row.reason == reason
    assert len(env.outbox()) == 1
    env.check_log()


# -- plain Asterisk (dialplan/miitel-record.conf) ------------------------------------------
def test_outbound_call_to_the_carrier(env: E2E) -> None:
    env.play("outbound", duration_ms=3000)
    caller, carrier = env.runner.results["caller"], env.runner.results["callee"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "OUTGOING_CALL"
    # 1001 dialled 0 + 0312345678: the outside-line prefix is not part of the number
    assert data["participants"] == [user("1001", "FROM", "left"),
                                    outside("0312345678", "TO", "right")]
    assert (data["queue_name"], data["groupname"], data["tags"]) == (None, None, [])
    # the line an outgoing call uses: the caller ID the carrier was shown
    assert data["circuit_number"] == presented_number(carrier) == "1001"
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)  # 1001 talked, the customer was silent
    check_length(info, env.bridged(env.recording_for(call)))


def test_click_to_call(env: E2E) -> None:
    # AMI Originate (the lab's admin) rings 1001's phone, then dials the customer
    env.play("click_to_call")
    phone, customer = env.runner.results["user"], env.runner.results["customer"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "OUTGOING_CALL"
    assert data["participants"] == [user("1001", "FROM", "left"),
                                    outside("0312345678", "TO", "right")]
    assert data["circuit_number"] == presented_number(customer)
    # starts when the phone rang; answered when the customer answered; 1001 hung up
    check_times(data, start=invite_at(phone), answer=answer_at(customer), end=bye_at(phone))
    info = check_file(call)
    check_sides(info, data, "TO", min_active=4.0)  # the customer talked
    check_length(info, env.bridged(env.recording_for(call)))


def test_inbound_answered(env: E2E) -> None:
    env.play("inbound_answered", duration_ms=3000)
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    # the carrier's channel is recorded: the customer left, the user right
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    assert data["circuit_number"] == "0312345678"  # the DID that was called
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "TO", min_active=2.5)  # 1001 talked, the customer was silent
    check_length(info, env.bridged(env.recording_for(call)))


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
    # the file uploaded is the voicemail message itself, mono, the caller's 6 s of speech
    [message] = env.variable("VM_MESSAGEFILE")
    assert Path(call["file"]).read_bytes() == Path(message + ".wav").read_bytes()
    info = check_file(call)
    assert info.channels == 1 and info.left.active_seconds >= 5.0
    spoke = bye_at(caller) - (answer_at(caller) + 14.0)  # silent through the greeting
    assert abs(info.seconds - spoke) < 0.5, (info.seconds, spoke)
    # MixMonitor's recording of the unanswered Dial (option b) holds nothing: not sent
    [rec] = env.recordings()
    [skipped] = [r for r in env.outbox() if r.file == rec.file]
    assert (skipped.state, skipped.posts) == ("skipped", 0)
    assert skipped.reason == "the caller's voicemail message is sent instead of this recording"


def test_extension_to_extension(env: E2E) -> None:
    env.play("ext2ext", duration_ms=3000)
    caller, callee = env.runner.results["caller"], env.runner.results["callee"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "EXTENSION"
    assert data["participants"] == [user("1001", "FROM", "left"), user("1002", "TO", "right")]
    assert data["circuit_number"] is None
    check_times(data, start=invite_at(caller), answer=answer_at(callee), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_queue_call(env: E2E) -> None:
    env.play("queue", duration_ms=3000)
    caller, member = env.runner.results["caller"], env.runner.results["member 1002"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    # the display name from MiiTelQueue, the tag from the queue's dialplan (MiiTelTag)
    assert (data["queue_name"], data["groupname"]) == ("Support", None)
    assert data["tags"] == [{"value": "support-queue"}]
    # 1002 answered; 1003 rang too and was cancelled: not a participant
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    assert data["circuit_number"] == "0312345679"
    check_times(data, start=invite_at(caller), answer=answer_at(member), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_ring_group(env: E2E) -> None:
    env.play("ringgroup", duration_ms=3000)
    caller, member = env.runner.results["caller"], env.runner.results["member 1003"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert (data["groupname"], data["queue_name"], data["tags"]) == ("600", None, [])
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1003", "TO", "right")]
    assert data["circuit_number"] == "0312345680"
    check_times(data, start=invite_at(caller), answer=answer_at(member), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_blind_transfer_to_another_extension(env: E2E) -> None:
    # 1001 answers the customer, then REFERs the call to 1002: two call histories
    env.play("blind_transfer")
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    first, second = env.sent(2)

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    assert data["circuit_number"] == "0312345678"
    # ends when the transfer stopped the first recording
    check_times(data, start=invite_at(caller), answer=answer_at(transferer),
                end=refer_at(transferer))
    info = check_file(first)
    check_sides(info, data, "FROM", min_active=2.0)  # the customer talks throughout
    check_length(info, env.bridged(env.recording_for(first)))

    data = second["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    # filed under the user who transferred; their side carries the customer they handed on
    assert data["participants"] == [user("1001", "FROM", "left"), user("1002", "TO", "right")]
    assert data["circuit_number"] is None
    check_times(data, start=refer_at(transferer), answer=answer_at(target), end=bye_at(caller))
    info = check_file(second)
    check_sides(info, data, "FROM", min_active=6.0)
    check_length(info, env.bridged(env.recording_for(second)))
    # both recordings are of the customer's channel, one after the other
    assert env.recording_for(first).uniqueid == env.recording_for(second).uniqueid


# The attended transfer (three conversations since issue 13) is in
# tests/test_e2e_transfers.py, with the other transfer shapes.


def test_external_forward_by_the_pbx(env: E2E) -> None:
    env.play("auto_forward", duration_ms=3000)
    caller, forwarded = env.runner.results["caller"], env.runner.results["forward target"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "AUTOMATIC_TRANSFER"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    outside(EXTERNAL, "TO", "right")]
    assert data["circuit_number"] == "0312345681"
    check_times(data, start=invite_at(caller), answer=answer_at(forwarded), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_user_transfers_a_customer_to_an_external_number(env: E2E) -> None:
    env.play("outgoing_transfer")
    caller, transferer = env.runner.results["caller"], env.runner.results["transferer"]
    external = env.runner.results["external"]
    first, second = env.sent(2)

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(transferer),
                end=refer_at(transferer))
    info = check_file(first)
    check_sides(info, data, "FROM", min_active=2.0)
    check_length(info, env.bridged(env.recording_for(first)))

    data = second["call_data"]
    assert data["event_type"] == "OUTGOING_TRANSFER"
    assert data["participants"] == [user("1001", "FROM", "left"),
                                    outside(EXTERNAL, "TO", "right")]
    # the caller ID the outside number was shown (Asterisk passes the customer's on)
    assert data["circuit_number"] == presented_number(external) == NUMBER
    check_times(data, start=refer_at(transferer), answer=answer_at(external), end=bye_at(caller))
    info = check_file(second)
    check_sides(info, data, "FROM", min_active=6.0)
    check_length(info, env.bridged(env.recording_for(second)))


def test_busy_is_not_sent(env: E2E) -> None:
    env.play("busy")
    check_skipped(env, "nobody was bridged and MixMonitor's b option recorded nothing")


def test_no_answer_is_not_sent(env: E2E) -> None:
    env.play("noanswer")
    check_skipped(env, "nobody was bridged and MixMonitor's b option recorded nothing")


def test_busy_is_a_missed_call_when_missed_calls_are_sent(lab: Lab, tmp_path: Path) -> None:
    # pbx.send_unanswered = true: the busy call goes to MiiTel as a missed call, no audio
    with E2E(lab, tmp_path, pbx="send_unanswered = true") as env:
        env.play("busy")
        caller, carrier = env.runner.results["caller"], env.runner.results["callee"]
        [row] = env.wait_outbox(1)
        time.sleep(1.0)
        [call] = env.standin.calls()
        assert (row.id, row.state, row.posts) == (call["call_data_id"], "sent", 1)
        assert (call["post_count"], call["put_count"], call["file"]) == (1, 0, None)
        data = call["call_data"]
        assert data["event_type"] == "OUTGOING_CALL"
        assert data["participants"] == [user("1001", "FROM", "left"),
                                        outside("0312345678", "TO", "right")]
        assert data["circuit_number"] == presented_number(carrier)
        check_times(data, start=invite_at(caller), answer=None,
                    end=at(caller, lambda m: m.is_response(486, "INVITE"), "486"))
        env.check_log()


def test_withheld_caller_is_anonymous(env: E2E) -> None:
    env.play("anonymous", duration_ms=3000)
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside("Anonymous", "FROM", "left"),
                                    user("1001", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_japanese_caller_name_arrives_intact(env: E2E) -> None:
    env.play("japanese_name", duration_ms=3000)
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", "山田太郎"),
                                    user("1001", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    info = check_file(call)
    check_sides(info, data, "FROM", min_active=2.5)
    check_length(info, env.bridged(env.recording_for(call)))


def test_call_shorter_than_one_second(env: E2E) -> None:
    env.play("short_call")  # the customer hangs up 0.5 s after the answer
    caller = env.runner.results["caller"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    info = check_file(call)
    assert 0.3 < info.seconds < 1.0
    check_sides(info, data, "FROM", min_active=0.3)
    check_length(info, env.bridged(env.recording_for(call)))


def test_ten_calls_at_once(env: E2E) -> None:
    env.play("ten_at_once", duration_ms=3000)
    placed = sip_calls(env.runner.results["callers"])
    numbers = {f"03123400{i:02d}" for i in range(10)}
    assert set(placed) == numbers
    calls = env.sent(10)
    assert len({c["call_data_id"] for c in calls}) == 10
    assert len({c["file"] for c in calls}) == 10  # each its own upload
    assert len({env.recording_for(c).file for c in calls}) == 10  # each its own recording
    assert {party(c["call_data"], "FROM")["number"] for c in calls} == numbers
    for call in calls:
        data = call["call_data"]
        number = party(data, "FROM")["number"]
        sip = placed[number]
        assert data["event_type"] == "INCOMING_CALL"
        assert data["participants"] == [outside(number, "FROM", "left", f"Caller {number[-2:]}"),
                                        user("1001", "TO", "right")]
        assert sip.bye is not None
        check_times(data, start=sip.invite, answer=sip.answer, end=sip.bye)
        info = check_file(call)
        check_sides(info, data, "FROM", min_active=2.5)
        check_length(info, env.bridged(env.recording_for(call)))


# -- FreePBX-style dialplan (dialplan/freepbx/extensions_miitel.conf) -------------------------
def test_freepbx_queue_call(freepbx_env: E2E) -> None:
    env = freepbx_env
    env.play("freepbx_queue", duration_ms=3000)
    caller, member = env.runner.results["caller"], env.runner.results["member 1002"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert (data["queue_name"], data["groupname"]) == ("400", None)
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    assert data["circuit_number"] == "0312345679"
    check_times(data, start=invite_at(caller), answer=answer_at(member), end=bye_at(caller))
    rec = env.recording_for(call)
    # FreePBX's own mono WAV, announced with the legs our hook added to its MixMonitor
    assert Path(rec.file).name.startswith("q-400-") and rec.mode == "legs"
    # the caller passes no predial hook after the queue's recording: announced at hangup,
    # after the conversation
    assert env.announced_before_hangup(rec)
    said = env.index(lambda m: m.get("UserEvent") == "MiiTelRecording")
    left = env.index(lambda m: m.event == "BridgeLeave" and m.get("Uniqueid") == rec.uniqueid)
    assert 0 <= left < said
    assert analyse(rec.file).channels == 1
    info = check_file(call)
    assert data["audio_channel_type"] == "STEREO"  # the legs, merged
    check_sides(info, data, "FROM", min_active=2.5)
    # The r()/t() legs are the service's own files: deleted after MiiTel's 200
    # (delete_after_upload is off); FreePBX's own WAV stays for its CDR reports.
    assert_legs_deleted(rec.receive, rec.transmit, kept=rec.file)
    check_length(info, env.bridged(rec))


def assert_legs_deleted(*legs: str | None, kept: str) -> None:
    """Deleted right after the upload's 200 (the stand-in has the file a moment before)."""
    assert all(legs)
    deadline = time.monotonic() + 5
    while any(Path(p).exists() for p in legs if p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(p).exists() for p in legs if p)
    assert Path(kept).exists()


def test_freepbx_outbound_call(freepbx_env: E2E) -> None:
    env = freepbx_env
    env.play("freepbx_outbound", duration_ms=3000)
    caller, carrier = env.runner.results["caller"], env.runner.results["callee"]
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "OUTGOING_CALL"
    assert data["participants"] == [user("1001", "FROM", "left"),
                                    outside("0312345678", "TO", "right")]
    # the route's outbound caller ID, as the carrier saw it
    assert data["circuit_number"] == presented_number(carrier) == "0312340000"
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    rec = env.recording_for(call)
    assert Path(rec.file).name.startswith("out-00312345678-1001-") and rec.mode == "legs"
    assert env.announced_before_hangup(rec)  # at the trunk's predial hook
    info = check_file(call)
    assert data["audio_channel_type"] == "STEREO"
    check_sides(info, data, "TO", min_active=2.5)  # the customer talked
    # The r()/t() legs are the service's own files: deleted after MiiTel's 200
    # (delete_after_upload is off); FreePBX's own WAV stays for its CDR reports.
    assert_legs_deleted(rec.receive, rec.transmit, kept=rec.file)
    check_length(info, env.bridged(rec))
