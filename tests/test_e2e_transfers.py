"""Issue 13 on the real Asterisk lab: after a transfer every conversation is
its own call history, with the right people on each side.

The service runs as users run it (tests/e2e.py), sipp plays the phones, and
every uploaded file is checked against the phones' SIP traces: its length
(the conversation's, cut where the partner changed) and its energy per side
(the side labelled for a party carries that party's voice, and a party that
was not in a conversation is not heard in it). The scenarios make one party
talk at a time, so who talks tells the conversations apart: when 1002 talks,
the customer's conversation with 1003 must hold no speech at all. The
attended transfers go further: every party plays its own tone
(tests/lab/tones.py), and each side of each piece must carry the tone of the
party it holds and no other party's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab
from tests.lab.ami import AmiMessage
from tests.lab.audio import AudioInfo
from tests.lab.lab import PHONES, TRUNK
from tests.lab.scenarios import ASTERISK, CUSTOMER, EXTERNAL, sip_messages
from tests.lab.tones import TONES, tone_seconds

from .e2e import (
    E2E,
    SILENT,
    answer_at,
    bye_at,
    check_file,
    check_sides,
    check_times,
    invite_at,
    outside,
    refer_at,
    user,
)

pytestmark = pytest.mark.lab

NAME, NUMBER = CUSTOMER


@pytest.fixture
def env(lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    with E2E(lab, tmp_path) as world:
        yield world


@pytest.fixture
def speakers_env(lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    with E2E(lab, tmp_path, tables='[transfers]\nreport = "speakers"') as world:
        yield world


def piece(call: dict[str, Any]) -> int:
    """1 for a recording's first conversation, n for its `#n`."""
    name = call["call_data_id"].split(":")[1]
    tail = name.rpartition("#")[2]
    return int(tail) if "#" in name and tail.isdigit() else 1


def named(calls: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The call whose key is `name` (the file's name, `#...` included)."""
    [found] = [c for c in calls if c["call_data_id"].split(":")[1] == name]
    return found


def hears(call: dict[str, Any], left: tuple[str, float], right: tuple[str, float]) -> None:
    """Each side carries its party's tone (TONES) for at least the seconds given,
    and no other party's tone (0.3 s of slack: the 100 ms windows at a cut)."""
    sides = tone_seconds(call["file"])
    for side, (who, at_least), heard in zip(("left", "right"), (left, right), sides,
                                            strict=True):
        want = TONES[who]
        assert heard[want] >= at_least, (side, who, sides)
        others = {f: s for f, s in heard.items() if f != want and s > 0.3}
        assert not others, (side, who, sides)


def silent(info: AudioInfo) -> None:
    assert info.left.active_seconds <= SILENT and info.right.active_seconds <= SILENT, (
        info.as_dict())


def lasts(info: AudioInfo, seconds: float) -> None:
    """As long as the conversation, by the phones' clocks (within 0.5 s)."""
    assert abs(info.seconds - seconds) < 0.5, (info.seconds, seconds)


def _attended(env: E2E, talker: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    env.play("attended_transfer", talker=talker)
    # three conversations; the consultation's Local half also recorded the
    # customer with 1003: that copy is skipped, never POSTed
    first, consult, second = env.sent(3, skipped=1)
    assert (piece(first), piece(consult), piece(second)) == (1, 1, 2)
    assert env.recording_for(first) == env.recording_for(second)  # one file, cut in two
    [skipped] = [r for r in env.outbox() if r.state == "skipped"]
    assert skipped.reason is not None and "is also in recording" in skipped.reason
    return first, consult, second


def test_attended_transfer_to_a_user_literal(env: E2E) -> None:
    # 1002 answers the customer, consults 1003 (*2 1003), hangs up: 1003 has the
    # customer. Each party plays its own tone.
    first, consult, second = _attended(env, "tones")
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    cut = bye_at(transferer)  # 1002 hangs up: the transfer completes, 1003 joins
    customer_rec = env.recording_for(first)
    assert customer_rec.channel.startswith("PJSIP/trunk-") and customer_rec.started

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(transferer), end=cut)
    info = check_file(first)
    # the customer; 1002 before the consultation, and never 1003
    hears(first, left=("customer", 8.5), right=("1002", 1.7))
    lasts(info, cut - customer_rec.started)  # the hold while 1002 consulted inside

    data = second["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"  # literal: filed under 1002
    assert data["participants"] == [user("1002", "FROM", "left"), user("1003", "TO", "right")]
    check_times(data, start=cut, answer=cut, end=bye_at(caller))
    info = check_file(second)
    # labelled 1002 (literal) but 1002 is not in it: the customer left, 1003 right
    hears(second, left=("customer", 5.0), right=("1003", 4.8))
    lasts(info, bye_at(caller) - cut)

    data = consult["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [user("1002", "FROM", "left"), user("1003", "TO", "right")]
    check_times(data, start=invite_at(target), answer=answer_at(target), end=cut)
    info = check_file(consult)
    hears(consult, left=("1002", 4.8), right=("1003", 4.8))  # the customer, on hold: absent
    rec = env.recording_for(consult)
    assert rec.channel.startswith("Local/1003@from-internal-") and rec.started
    lasts(info, cut - answer_at(target))  # option b: bridged from 1003's answer
    # the customer's pieces: no "longer than bridged" warning for the hold any more
    # (the consultation's says it rang before the answer: that one is true)
    assert env.service is not None
    stem = Path(customer_rec.file).stem
    warned = [line for line in env.service.text().splitlines()
              if "bridged for" in line and stem in line]
    assert not warned, warned


def test_attended_transfer_to_a_user_speakers(speakers_env: E2E) -> None:
    # Every party plays its own tone: in "speakers" mode the customer's side is
    # labelled as the customer in both of its conversations.
    env = speakers_env
    first, consult, second = _attended(env, "tones")
    caller = env.runner.results["caller"]
    transferer = env.runner.results["transferer"]
    cut = bye_at(transferer)

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    check_file(first)
    hears(first, left=("customer", 8.5), right=("1002", 1.7))

    data = second["call_data"]
    assert data["event_type"] == "INCOMING_CALL"  # the customer's own call with 1003
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1003", "TO", "right")]
    assert data["tags"] == [{"value": "transferred by 1002"}]
    assert data["circuit_number"] == "0312345683"
    check_times(data, start=cut, answer=cut, end=bye_at(caller))
    info = check_file(second)
    hears(second, left=("customer", 5.0), right=("1003", 4.8))  # labelled so
    lasts(info, bye_at(caller) - cut)

    data = consult["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"  # 1002's own talk with 1003
    assert data["participants"] == [user("1002", "FROM", "left"), user("1003", "TO", "right")]
    check_file(consult)
    hears(consult, left=("1002", 4.8), right=("1003", 4.8))  # the customer, on hold: absent


def test_blind_transfer_to_a_user_speakers(speakers_env: E2E) -> None:
    # 1001 answers, REFERs the customer to 1002; our dialplan stops the first
    # recording and starts one for the new conversation. Each party plays its tone.
    env = speakers_env
    env.play("blind_transfer", tones=True)
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    first, second = env.sent(2)
    assert first["call_data"]["event_type"] == "INCOMING_CALL"
    data = second["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1002", "TO", "right")]
    assert data["tags"] == [{"value": "transferred by 1001"}]
    assert data["circuit_number"] == "0312345678"
    check_times(data, answer=answer_at(target), end=bye_at(caller))
    check_file(second)
    # before the REFER: the customer and 1001; after it: the customer and 1002 only
    hears(first, left=("customer", 2.0), right=("1001", 2.0))
    hears(second, left=("customer", 6.0), right=("1002", 6.0))  # labelled so
    assert env.bridged(env.recording_for(second)) > 0 and transferer.ok


def test_blind_transfer_to_an_outside_number_speakers(speakers_env: E2E) -> None:
    # 1001 REFERs the customer to 0 + 0901234567: no user is left on the line
    env = speakers_env
    env.play("outgoing_transfer", tones=True)
    caller, external = env.runner.results["caller"], env.runner.results["external"]
    first, second = env.sent(2)
    assert first["call_data"]["event_type"] == "INCOMING_CALL"
    data = second["call_data"]
    assert data["event_type"] == "AUTOMATIC_TRANSFER"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    outside("0901234567", "TO", "right")]
    assert data["tags"] == [{"value": "transferred by 1001"}]
    check_times(data, answer=answer_at(external), end=bye_at(caller))
    check_file(second)
    # before the REFER: the customer and 1001; after it: the customer and the outside party
    hears(first, left=("customer", 2.0), right=("1001", 2.0))
    hears(second, left=("customer", 6.0), right=("outside", 6.0))


class FreePbxTransferMonitor:
    """What FreePBX 17 does over AMI, played by the lab's admin connection:
    its recording of the user's own channel (as FreePBX records a user, here
    MixMonitor started over AMI when 1002 answers), and its transfer monitor
    (core-17.0 calltransfer-eventlistener.php): on AttendedTransfer, a
    MixMonitor on the TransfereeChannel with the OrigTransferer's
    MIXMONITOR_FILENAME and options `ai(LOCAL_MIXMON_ID)`, appending to that
    file. `D` is added to both so the file stays interleaved stereo and each
    side can be checked (FreePBX's default is a mono .wav)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.file = ""
        self.user_uid = ""
        self.appended_at: float | None = None
        self.active = True
        self.lock = threading.Lock()

    def __call__(self, msg: AmiMessage) -> None:
        if not self.active:
            return
        with self.lock:
            admin = self.lab.admin()
            if (msg.event == "BridgeEnter" and not self.file
                    and msg.get("Channel").startswith("PJSIP/1002-")):
                self.user_uid = msg.get("Uniqueid")
                self.file = f"{self.lab.recordings_dir}/fpbx-{self.user_uid}.raw"
                admin.send("MixMonitor", [("Channel", msg.get("Channel")),
                                          ("File", self.file), ("Options", "D")])
            elif msg.event == "AttendedTransfer" and self.file \
                    and msg.get("OrigTransfererUniqueid") == self.user_uid:
                self.appended_at = msg.timestamp
                admin.send("MixMonitor", [("Channel", msg.get("TransfereeChannel")),
                                          ("File", self.file),
                                          ("Options", "aDi(LOCAL_MIXMON_ID)")])


def test_attended_transfer_with_freepbx_appending_mixmonitor(env: E2E) -> None:
    monitor = FreePbxTransferMonitor(env.lab)
    env.lab.admin().add_listener(monitor)
    try:
        env.play("attended_transfer", talker="tones")
    finally:
        monitor.active = False
    assert monitor.file and monitor.appended_at is not None
    caller = env.runner.results["caller"]
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    cut = bye_at(transferer)
    # Sent: the customer's recording up to the transfer, 1002's own recording
    # up to the consultation, the consultation, and the part FreePBX appended
    # to 1002's file (the customer with 1003). Each conversation's copies in
    # the other recordings are skipped: the customer's recording after the
    # transfer (the appended one is newer, on the same channel), 1002's own
    # consultation (the Local half has it), the Local half's customer with 1003.
    calls = env.sent(4, skipped=3)
    name = f"fpbx-{monitor.user_uid}.raw"
    user_own = named(calls, name)
    [appended] = [c for c in calls if c["call_data_id"].split(":")[1].startswith(
        name + "#appended-")]

    data = user_own["call_data"]  # 1002's channel recorded: 1002 left, the customer right
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "right", NAME),
                                    user("1002", "TO", "left")]
    check_file(user_own)
    # 1002's voice and the customer's (and the *2 prompt), never 1003: cut where
    # 1002 left the customer to consult
    hears(user_own, left=("1002", 2.5), right=("customer", 2.0))

    data = appended["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [user("1002", "FROM", "left"), user("1003", "TO", "right")]
    check_times(data, answer=cut, end=bye_at(caller))
    info = check_file(appended)
    # the customer and 1003: none of 1002's voice, which fills the file before
    hears(appended, left=("customer", 5.0), right=("1003", 4.8))
    lasts(info, bye_at(caller) - monitor.appended_at)
    # 1002's own recording: up to 1002 leaving the customer to consult (then
    # the consultation, sent from the Local half)
    rec_started = next(m.timestamp for m in env.events() if m.event == "VarSet"
                       and m.get("Variable") == "MIXMONITOR_FILENAME"
                       and m.get("Value") == monitor.file)
    left = next(m.timestamp for m in env.events() if m.event == "BridgeLeave"
                and m.get("Uniqueid") == monitor.user_uid)
    assert rec_started is not None and left is not None and left < answer_at(target)
    lasts(check_file(user_own), left - rec_started)


SIPP_DIR = Path(__file__).parent / "sipp"
# one <send> INFO block (never crossing into the next) that sends a [fieldN] digit
_INFO_DIGIT = re.compile(r"  <send retrans=\"500\">(?:(?!</send>).)*?Signal=\[field\d\]"
                         r"(?:(?!</send>).)*</send>\s*<recv response=\"200\"/>\s*"
                         r"<pause milliseconds=\"300\"/>\n", re.S)


def atxfer_scenario(tmp: Path, number: str) -> Path:
    """uas_atxfer_to.xml dialling *2 + any number (it takes four digits from -inf):
    one SIP INFO per digit, CSeq rising, then the BYE after them."""
    text = (SIPP_DIR / "uas_atxfer_to.xml").read_text(encoding="utf-8")
    blocks = _INFO_DIGIT.findall(text)
    assert len(blocks) == 4, "uas_atxfer_to.xml changed: four [fieldN] INFOs expected"
    template = blocks[0]
    digits = "".join(
        template.replace("[field0]", d).replace("CSeq: 112 INFO", f"CSeq: {200 + i} INFO")
        for i, d in enumerate(number))
    text = text.replace("".join(blocks), digits).replace("CSeq: 120 BYE", "CSeq: 300 BYE")
    out = tmp / "uas_atxfer_outside.xml"
    out.write_text(text.replace('name="uas_atxfer_to"', 'name="uas_atxfer_outside"'),
                   encoding="utf-8")
    return out


@pytest.mark.parametrize("report", ["literal", "speakers"])
def test_attended_transfer_to_an_outside_number(lab: Lab, tmp_path: Path, report: str) -> None:
    # The customer calls 1002, which answers, dials *2 0 + 0901234567 (SIP INFO),
    # consults the outside number over a Local pair and the trunk, and hangs up:
    # the customer and the outside number are bridged. 1002 talks, nobody else.
    tables = '[transfers]\nreport = "speakers"' if report == "speakers" else ""
    with E2E(lab, tmp_path, tables=tables) as env:
        run = env.runner
        run.start("outside", "uas_answer", ip=TRUNK.ip)
        run.start("transferer", atxfer_scenario(tmp_path, "0" + EXTERNAL),
                  ip=PHONES["1002"].ip, audio="talk")
        run.run("caller", "uac_silent", ip=TRUNK.ip, service="0312345683",
                inf=[list(CUSTOMER)], duration_ms=18000)
        run.wait_all()
        failed = {role: r.summary() for role, r in run.results.items() if not r.ok}
        assert not failed, f"sipp failed: {failed}"
        lab.wait_idle(timeout=30)
        caller, transferer = run.results["caller"], run.results["transferer"]
        outside_party = run.results["outside"]
        cut = bye_at(transferer)
        first, consult, second = env.sent(3, skipped=1)
        assert (piece(first), piece(consult), piece(second)) == (1, 1, 2)

        assert first["call_data"]["event_type"] == "INCOMING_CALL"
        check_sides(check_file(first), first["call_data"], "TO", min_active=1.5)

        data = consult["call_data"]  # 1002 consulting the outside number
        assert data["event_type"] == "OUTGOING_TRANSFER"
        assert data["participants"] == [user("1002", "FROM", "left"),
                                        outside(EXTERNAL, "TO", "right")]
        check_times(data, answer=answer_at(outside_party), end=cut)
        check_sides(check_file(consult), data, "FROM", min_active=1.0)

        data = second["call_data"]  # the customer with the outside number
        if report == "literal":
            assert data["event_type"] == "OUTGOING_TRANSFER"
            assert data["participants"] == [user("1002", "FROM", "left"),
                                            outside(EXTERNAL, "TO", "right")]
        else:
            assert data["event_type"] == "AUTOMATIC_TRANSFER"  # no user left on the line
            assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                            outside(EXTERNAL, "TO", "right")]
            assert data["tags"] == [{"value": "transferred by 1002"}]
        check_times(data, answer=cut, end=bye_at(caller))
        info = check_file(second)
        silent(info)  # none of 1002's words in the customer's call with the outside number
        lasts(info, bye_at(caller) - cut)


@pytest.mark.parametrize("report", ["literal", "speakers"])
def test_queue_agent_transfers_the_customer(lab: Lab, tmp_path: Path, report: str) -> None:
    # The customer calls the support queue (members Local/100X@queue-members/n);
    # 1002 answers and after 3 s REFERs the customer to 1001. The REFER moves the
    # queue's Local half, which runs from-internal,1001: our dialplan records it
    # there. Every party plays its own tone.
    tables = '[transfers]\nreport = "speakers"' if report == "speakers" else ""
    with E2E(lab, tmp_path, tables=tables) as env:
        run = env.runner
        run.start("target", "uas_answer", ip=PHONES["1001"].ip,
                  audio=f"tone-{TONES['1001']}")
        run.start("member 1003", "uas_noanswer", ip=PHONES["1003"].ip)
        run.start("agent", "uas_refer_bye", ip=PHONES["1002"].ip,
                  inf=[["1001", ASTERISK]], audio=f"tone-{TONES['1002']}")
        run.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345679",
                inf=[list(CUSTOMER)], duration_ms=10000, audio=f"tone-{TONES['customer']}")
        run.wait_all()
        failed = {role: r.summary() for role, r in run.results.items() if not r.ok}
        assert not failed, f"sipp failed: {failed}"
        lab.wait_idle(timeout=30)
        caller, target = run.results["caller"], run.results["target"]
        first, second = env.sent(2, skipped=1)  # the customer's recording after the REFER:
        # the Local half's new recording has that conversation
        data = first["call_data"]
        assert data["event_type"] == "INCOMING_CALL"
        assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                        user("1002", "TO", "right")]
        assert data["queue_name"] == "Support" and data["tags"] == [{"value": "support-queue"}]
        check_file(first)
        # the customer and the agent, never 1001
        hears(first, left=("customer", 2.5), right=("1002", 2.5))

        data = second["call_data"]
        assert data["queue_name"] == "Support"
        if report == "literal":
            assert data["event_type"] == "EXTENSION_TRANSFER"
            assert data["participants"] == [user("1002", "FROM", "left"),
                                            user("1001", "TO", "right")]
        else:
            assert data["event_type"] == "INCOMING_CALL"
            assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                            user("1001", "TO", "right")]
            assert {"value": "transferred by 1002"} in data["tags"]
        check_times(data, answer=answer_at(target), end=bye_at(caller))
        check_file(second)
        # the customer (left, whatever the label) and 1001; none of the agent
        hears(second, left=("customer", 5.5), right=("1001", 5.5))
        assert env.recording_for(second).channel.startswith("Local/1002@queue-members-")


@pytest.mark.parametrize("report", ["literal", "speakers"])
def test_transfer_back_to_the_first_user(lab: Lab, tmp_path: Path, report: str) -> None:
    # The customer calls 1001, which REFERs the customer to 1002, which REFERs the
    # customer back to 1001: one sipp plays 1001 for both calls (-m 2, the second
    # call only answers, with a stream of its own: tones.tone_pcap). Every party
    # plays its own tone. Three conversations, each its own call history; the
    # last one is 1001's again.
    tables = '[transfers]\nreport = "speakers"' if report == "speakers" else ""
    with E2E(lab, tmp_path, tables=tables) as env:
        _transfer_back(env, report)


def _transfer_back(env: E2E, report: str) -> None:
    run = env.runner
    run.start("first user", "uas_refer_then_answer", ip=PHONES["1001"].ip, calls=2,
              inf=[["1002", ASTERISK, "refer"], ["1002", ASTERISK, "answer"]],
              audio=f"tone-{TONES['1001']}")
    run.start("second user", "uas_refer_bye", ip=PHONES["1002"].ip,
              inf=[["1001", ASTERISK]], audio=f"tone-{TONES['1002']}")
    run.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345678",
            inf=[list(CUSTOMER)], duration_ms=13000, audio=f"tone-{TONES['customer']}")
    run.wait_all()
    failed = {role: r.summary() for role, r in run.results.items() if not r.ok}
    assert not failed, f"sipp failed: {failed}"
    env.lab.wait_idle(timeout=30)
    caller, first_user = run.results["caller"], run.results["first user"]
    second_user = run.results["second user"]
    answers = [m.at for m in sip_messages(first_user) if m.is_response(200, "INVITE")]
    assert len(answers) == 2 and all(answers), answers  # 1001 answered twice
    first, second, back = sorted(env.sent(3), key=lambda c: c["call_data"]["call_starts_at"])
    assert not [r for r in env.outbox() if r.state == "skipped"]

    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL" and data["tags"] == []
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    user("1001", "TO", "right")]
    check_times(data, answer=answers[0], end=refer_at(first_user))
    check_file(first)
    hears(first, left=("customer", 2.5), right=("1001", 2.5))

    data = second["call_data"]
    if report == "literal":  # filed under 1001, who transferred (on the customer's side)
        assert data["event_type"] == "EXTENSION_TRANSFER"
        assert data["participants"] == [user("1001", "FROM", "left"),
                                        user("1002", "TO", "right")]
        assert data["tags"] == []  # the transfer is in the event type, no tag
    else:
        assert data["event_type"] == "INCOMING_CALL"
        assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                        user("1002", "TO", "right")]
        assert data["tags"] == [{"value": "transferred by 1001"}]
    check_times(data, answer=answer_at(second_user), end=refer_at(second_user))
    check_file(second)
    hears(second, left=("customer", 2.5), right=("1002", 2.5))

    data = back["call_data"]  # back with 1001: a conversation of its own
    if report == "literal":  # filed under 1002, who transferred it back
        assert data["event_type"] == "EXTENSION_TRANSFER"
        assert data["participants"] == [user("1002", "FROM", "left"),
                                        user("1001", "TO", "right")]
        assert data["tags"] == []
    else:
        assert data["event_type"] == "INCOMING_CALL"
        assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                        user("1001", "TO", "right")]
        assert data["tags"] == [{"value": "transferred by 1002"}]
    check_times(data, answer=answers[1], end=bye_at(caller))
    info = check_file(back)
    # the customer and 1001 again, nobody else
    hears(back, left=("customer", 6.0), right=("1001", 6.0))
    lasts(info, bye_at(caller) - answers[1])
