"""The scenarios the lab plays: who calls whom with which sipp, and the ground truth.

Each scenario drives the lab through a `Runner` (starts the answering sipp
instances, runs the caller) and returns a `Truth`: the parties, who talked
and who was silent, who answered, the times sipp saw. `capture.py` records
them into tests/fixtures/captures/; tests/test_e2e.py plays the same ones
against the running service. Options (durations, who talks) default to what
the captures used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .lab import PHONES, SIP_HOST, SIP_PORT, TRUNK, Lab
from .sipp import SippProcess, SippResult
from .tones import TONES

ASTERISK = f"{SIP_HOST}:{SIP_PORT}"
CUSTOMER = ("Tanaka Hanako", "0312349999")  # the customer calling in
EXTERNAL = "0901234567"  # the outside number calls are forwarded/transferred to


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


@dataclass
class Party:
    """One side of the call as the ground truth knows it."""

    role: str  # caller, callee, transfer_target, ...
    device: str  # 1001/1002/1003 or trunk
    number: str
    name: str | None
    audio: str  # "talks" or "silent"
    sipp: str  # the scenario file
    sipp_ip: str
    notes: str = ""

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v != ""}


@dataclass
class Truth:
    description: str
    parties: list[Party] = field(default_factory=list)
    answered_by: str | None = None
    did: str | None = None
    dialled: str | None = None
    queue: str | None = None
    group: str | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    times: dict[str, str | None] = field(default_factory=dict)



class Runner:
    """Starts a scenario's sipp instances and keeps their results by role."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sipps: list[tuple[str, SippProcess]] = []
        self.results: dict[str, SippResult] = {}

    def start(self, role: str, scenario: str, **kwargs: Any) -> SippProcess:
        proc = self.lab.sipp_start(scenario, **kwargs)
        self.sipps.append((role, proc))
        return proc

    def run(self, role: str, scenario: str, **kwargs: Any) -> SippResult:
        res = self.start(role, scenario, **kwargs).wait()
        self.results[role] = res
        return res

    def wait_all(self) -> None:
        for role, proc in self.sipps:
            if role not in self.results:
                self.results[role] = proc.wait()

    def kill_all(self) -> None:
        for _role, proc in self.sipps:
            proc.kill()


@dataclass(frozen=True)
class SipMessage:
    """One SIP message a sipp instance sent or received (from its -trace_msg log)."""

    at: float | None  # when sipp logged it (epoch seconds)
    sent: bool
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str:
        for line in self.text.splitlines()[1:]:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""

    @property
    def call_id(self) -> str:
        return self.header("Call-ID")

    @property
    def cseq_method(self) -> str:
        return self.header("CSeq").rpartition(" ")[2]

    def is_request(self, method: str) -> bool:
        return self.first_line.startswith(f"{method} ")

    def is_response(self, status: int, method: str) -> bool:
        return (self.first_line.startswith(f"SIP/2.0 {status} ")
                and self.cseq_method == method)


_SEPARATOR = "-----------------------------------------------"


def sip_messages(result: SippResult) -> list[SipMessage]:
    """Every message in a sipp run's message log, in order."""
    out: list[SipMessage] = []
    stamp: float | None = None
    block: list[str] | None = None

    def flush() -> None:
        if block is None:
            return
        sent = bool(block) and block[0].startswith(("UDP message sent", "TCP message sent"))
        body = "\n".join(block[1:]).strip("\n")
        if body:
            out.append(SipMessage(stamp, sent, body))

    for line in result.messages.splitlines():
        if line.startswith(_SEPARATOR):
            flush()
            block = []
            parts = line.split()
            try:
                stamp = datetime.strptime(f"{parts[1]} {parts[2]}",
                                          "%Y-%m-%d %H:%M:%S.%f").astimezone().timestamp()
            except (IndexError, ValueError):
                stamp = None
        elif block is not None:
            block.append(line)
    flush()
    return out


def first_at(result: SippResult, match: Callable[[SipMessage], bool]) -> float | None:
    """When sipp first sent or received a message that matches."""
    return next((m.at for m in sip_messages(result) if match(m)), None)


def answered_at(result: SippResult, method: str = "INVITE") -> float | None:
    """When the sipp instance saw (or sent) the 200 OK to its INVITE (from its message log)."""
    return first_at(result, lambda m: m.is_response(200, method))


# -- scenarios -------------------------------------------------------------------------
def _s(ms: int) -> str:
    return f"{ms / 1000:g} s"


Scenario = Callable[..., Truth]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str, flavour: str = "plain") -> Callable[[Scenario], Scenario]:
    def deco(fn: Scenario) -> Scenario:
        SCENARIOS[name] = (flavour, fn)
        return fn
    return deco


def phone(ext: str, role: str, audio: str, sipp: str, notes: str = "") -> Party:
    dev = PHONES[ext]
    return Party(role, ext, ext, dev.name, audio, sipp, dev.ip, notes)


def customer(role: str, audio: str, sipp: str, number: str = CUSTOMER[1],
             name: str | None = CUSTOMER[0], notes: str = "") -> Party:
    return Party(role, "trunk", number, name, audio, sipp, TRUNK.ip, notes)


def _times(truth: Truth, caller: SippResult, answer: float | None = None) -> None:
    truth.times.update({"start": iso(caller.started),
                        "answer": iso(answer if answer is not None else answered_at(caller)),
                        "end": iso(caller.ended)})


def inbound_to_1001(cap: Runner, *, caller_sipp: str = "uac_talk",
                    callee_sipp: str = "uas_answer", inf: list[list[str]] | None = None,
                    duration_ms: int = 5000) -> SippResult:
    cap.start("callee", callee_sipp, ip=PHONES["1001"].ip)
    return cap.run("caller", caller_sipp, ip=TRUNK.ip, service="0312345678",
                   inf=inf or [list(CUSTOMER)], duration_ms=duration_ms)


@scenario("outbound")
def s_outbound(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    cap.start("callee", "uas_answer", ip=TRUNK.ip)
    res = cap.run("caller", "uac_talk", ip=PHONES["1001"].ip, service="00312345678",
                  inf=[["Suzuki Ichiro", "1001"]], duration_ms=duration_ms)
    t = Truth("1001 dials the outside line 0 + 0312345678; the carrier answers; 1001 talks, "
              f"1001 hangs up after {_s(duration_ms)}.",
              [phone("1001", "caller", "talks", "uac_talk"),
               customer("callee", "silent", "uas_answer", number="0312345678", name=None)],
              answered_by="0312345678 (customer via trunk)", dialled="00312345678",
              expected={"event_type": "OUTGOING_CALL", "recorded_channel": "PJSIP/desk-suzuki",
                        "left": "1001 (user, talks)", "right": "customer (silent)"})
    _times(t, res)
    return t


@scenario("click_to_call")
def s_click_to_call(lab: Lab, cap: Runner) -> Truth:
    user = cap.start("user", "uas_hangup", ip=PHONES["1001"].ip, duration_ms=6000)
    cust = cap.start("customer", "uas_talk", ip=TRUNK.ip)
    t0 = time.time()
    lab.originate(lab.device("1001"), context="from-internal", exten="00312345678",
                  caller_id='"Suzuki Ichiro" <1001>')
    res = user.wait()
    cap.results["user"] = res
    cap.results["customer"] = cust.wait()
    t = Truth("Click to call: AMI Originate (admin) rings PJSIP/desk-suzuki (1001); when "
              "1001 answers, the channel runs from-internal 00312345678 and dials the "
              "customer 0312345678 via the trunk. The customer talks; 1001 hangs up.",
              [phone("1001", "originated user", "silent", "uas_hangup",
                     "answers the Originate, hangs up after 6 s"),
               customer("callee", "talks", "uas_talk", number="0312345678", name=None)],
              answered_by="1001 first (Originate), then the customer",
              dialled="00312345678",
              expected={"event_type": "OUTGOING_CALL",
                        "recorded_channel": "PJSIP/desk-suzuki (the originated channel)",
                        "left": "1001 (silent)", "right": "customer (talks)"},
              notes=["Originate: Channel=PJSIP/desk-suzuki Context=from-internal "
                     "Exten=00312345678 CallerID=\"Suzuki Ichiro\" <1001> Async=true"])
    t.times.update({"start": iso(t0), "answer": iso(answered_at(res)), "end": iso(res.ended)})
    return t


@scenario("inbound_answered")
def s_inbound_answered(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    res = inbound_to_1001(cap, caller_sipp="uac_silent", callee_sipp="uas_talk",
                          duration_ms=duration_ms)
    t = Truth("The customer 0312349999 calls DID 0312345678, routed to 1001, which answers "
              f"and talks; the customer is silent and hangs up after {_s(duration_ms)}.",
              [customer("caller", "silent", "uac_silent"),
               phone("1001", "callee", "talks", "uas_talk")],
              answered_by="1001", did="0312345678",
              expected={"event_type": "INCOMING_CALL", "recorded_channel": "PJSIP/trunk",
                        "left": "customer (silent)", "right": "1001 (talks)"})
    _times(t, res)
    return t


@scenario("plain_mixmonitor")
def s_plain_mixmonitor(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    cap.start("callee", "uas_talk", ip=PHONES["1001"].ip)
    res = cap.run("caller", "uac_silent", ip=TRUNK.ip, service="0312345684",
                  inf=[list(CUSTOMER)], duration_ms=duration_ms)
    t = Truth("The customer calls DID 0312345684, whose dialplan records with a plain "
              "MixMonitor(in-${UNIQUEID}.wav,b) (no asterisk-miitel snippet, no "
              "MiiTelRecording) and dials 1001, which answers and talks; the customer is "
              f"silent and hangs up after {_s(duration_ms)}.",
              [customer("caller", "silent", "uac_silent"),
               phone("1001", "callee", "talks", "uas_talk")],
              answered_by="1001", did="0312345684",
              expected={"event_type": "INCOMING_CALL", "recorded_channel": "the trunk's",
                        "recording": "mono WAV (MONAURAL): 1001's voice"})
    _times(t, res)
    return t


@scenario("inbound_voicemail")
def s_inbound_voicemail(lab: Lab, cap: Runner) -> Truth:
    cap.start("callee", "uas_noanswer", ip=PHONES["1003"].ip)
    res = cap.run("caller", "uac_voicemail", ip=TRUNK.ip, service="0312345682",
                  inf=[list(CUSTOMER)], duration_ms=14000)
    t = Truth("The customer calls DID 0312345682 -> 1003, which rings 4 s and does not "
              "answer; the call goes to VoiceMail(1003@default,u); after the greeting the "
              "customer speaks 6 s and hangs up: the message is VM_MESSAGEFILE.",
              [customer("caller", "talks", "uac_voicemail",
                        notes="silent through the greeting (14 s), then talks 6 s"),
               phone("1003", "callee", "silent", "uas_noanswer", "rings, never answers")],
              answered_by="voicemail of 1003", did="0312345682",
              expected={"event_type": "AUTOMATIC_RECORD",
                        "recording": "VM_MESSAGEFILE (mono WAV); the MixMonitor started "
                                     "before Dial (option b) never bridged"})
    _times(t, res)
    return t


@scenario("ext2ext")
def s_ext2ext(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    cap.start("callee", "uas_answer", ip=PHONES["1002"].ip)
    res = cap.run("caller", "uac_talk", ip=PHONES["1001"].ip, service="1002",
                  inf=[["Suzuki Ichiro", "1001"]], duration_ms=duration_ms)
    t = Truth(f"1001 calls 1002; 1002 answers; 1001 talks and hangs up after {_s(duration_ms)}.",
              [phone("1001", "caller", "talks", "uac_talk"),
               phone("1002", "callee", "silent", "uas_answer")],
              answered_by="1002", dialled="1002",
              expected={"event_type": "EXTENSION", "recorded_channel": "PJSIP/desk-suzuki",
                        "left": "1001 (talks)", "right": "1002 (silent)"})
    _times(t, res)
    return t


@scenario("queue")
def s_queue(lab: Lab, cap: Runner, *, duration_ms: int = 6000) -> Truth:
    cap.start("member 1002", "uas_answer", ip=PHONES["1002"].ip)
    cap.start("member 1003", "uas_noanswer", ip=PHONES["1003"].ip)
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345679",
                  inf=[list(CUSTOMER)], duration_ms=duration_ms)
    t = Truth("The customer calls DID 0312345679 -> queue 'support' (ringall; members "
              "Local/1002@queue-members/n and Local/1003@queue-members/n). The queue's "
              "dialplan sends MiiTelTag 'support-queue' and MiiTelQueue 'Support'. 1002 "
              "answers, 1003 rings and is cancelled. The customer talks, hangs up after "
              f"{_s(duration_ms)}.",
              [customer("caller", "talks", "uac_talk"),
               phone("1002", "queue member", "silent", "uas_answer"),
               phone("1003", "queue member", "silent", "uas_noanswer", "rings, cancelled")],
              answered_by="1002", did="0312345679", queue="support",
              expected={"event_type": "INCOMING_CALL", "recorded_channel": "PJSIP/trunk",
                        "tags": ["support-queue"], "queue_name": "Support",
                        "left": "customer (talks)", "right": "1002 (silent)"})
    _times(t, res)
    return t


@scenario("ringgroup")
def s_ringgroup(lab: Lab, cap: Runner, *, duration_ms: int = 6000) -> Truth:
    cap.start("member 1002", "uas_noanswer", ip=PHONES["1002"].ip)
    cap.start("member 1003", "uas_answer", ip=PHONES["1003"].ip)
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345680",
                  inf=[list(CUSTOMER)], duration_ms=duration_ms)
    t = Truth("The customer calls DID 0312345680 -> ring group 600 (ring-all over "
              "Local/1002@ringgroup-members/n & Local/1003@ringgroup-members/n), with "
              "MiiTelGroup '600'. 1003 answers, 1002 is cancelled. The customer talks.",
              [customer("caller", "talks", "uac_talk"),
               phone("1002", "group member", "silent", "uas_noanswer", "rings, cancelled"),
               phone("1003", "group member", "silent", "uas_answer")],
              answered_by="1003", did="0312345680", group="600",
              expected={"event_type": "INCOMING_CALL", "groupname": "600",
                        "recorded_channel": "PJSIP/trunk",
                        "left": "customer (talks)", "right": "1003 (silent)"})
    _times(t, res)
    return t


@scenario("blind_transfer")
def s_blind_transfer(lab: Lab, cap: Runner, *, tones: bool = False) -> Truth:
    # tones: every party plays its own tone (tones.TONES) instead of speech/silence
    cap.start("target", "uas_answer", ip=PHONES["1002"].ip, audio=_tone("1002", tones))
    cap.start("transferer", "uas_refer_bye", ip=PHONES["1001"].ip, inf=[["1002", ASTERISK]],
              audio=_tone("1001", tones))
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345678",
                  inf=[list(CUSTOMER)], duration_ms=12000, audio=_tone("customer", tones))
    t = Truth("The customer calls DID 0312345678 -> 1001, which answers, waits 3 s and "
              "blind-transfers with SIP REFER to 1002 (Refer-To sip:1002@127.0.0.1:15060). "
              "The customer's channel runs from-internal,1002 (the transferer's context): "
              "miitel-record stops the first recording (StopMixMonitor) and starts a "
              "second one; 1002 answers. The customer talks throughout, hangs up at 12 s.",
              [customer("caller", "talks", "uac_talk"),
               phone("1001", "transferer", "silent", "uas_refer_bye"),
               phone("1002", "transfer target", "silent", "uas_answer")],
              answered_by="1001, then 1002 after the transfer", did="0312345678",
              expected={"recordings": 2,
                        "first": "INCOMING_CALL customer<->1001 (left customer)",
                        "second": "EXTENSION_TRANSFER customer<->1002 (left customer)"})
    _times(t, res)
    return t


def _tone(party: str, tones: bool) -> str | None:
    """The sipp audio for `party` when every party plays its own tone, else the scenario's."""
    return f"tone-{TONES[party]}" if tones else None


@scenario("attended_transfer")
def s_attended_transfer(lab: Lab, cap: Runner, *, talker: str = "customer") -> Truth:
    # talker: who plays speech, "customer" (as captured) or "transferer" (1002);
    # "tones": every party plays its own tone (tones.TONES), nobody speech
    if talker not in ("customer", "transferer", "tones"):
        raise ValueError("talker must be 'customer', 'transferer' or 'tones'")
    customer_talks = talker == "customer"
    tones = talker == "tones"
    cap.start("target", "uas_answer", ip=PHONES["1003"].ip,
              audio=f"tone-{TONES['1003']}" if tones else None)
    cap.start("transferer", "uas_atxfer_to", ip=PHONES["1002"].ip,
              inf=[["1", "0", "0", "3"]],
              audio=f"tone-{TONES['1002']}" if tones else None if customer_talks else "talk")
    res = cap.run("caller", "uac_talk" if customer_talks or tones else "uac_silent",
                  ip=TRUNK.ip, service="0312345683", inf=[list(CUSTOMER)], duration_ms=16000,
                  audio=f"tone-{TONES['customer']}" if tones else None)
    t = Truth("The customer calls DID 0312345683 -> 1002, which answers, and after 2 s "
              "dials *2 1003 as SIP INFO DTMF (features.conf atxfer): the customer is on "
              "hold while 1002 consults 1003 over Local/1003@from-internal; 1003 answers; "
              "after 6 s 1002 hangs up, which completes the transfer: the customer and "
              "1003 are bridged. "
              + ("Each party plays its own tone (tones.TONES)" if tones
                 else f"The {talker} talks throughout")
              + "; the customer hangs up at 16 s.",
              [customer("caller", "talks" if customer_talks else "silent",
                        "uac_talk" if customer_talks else "uac_silent"),
               phone("1002", "transferer", "silent" if customer_talks else "talks",
                     "uas_atxfer_to" if customer_talks else "uas_atxfer_to (audio=talk)"),
               phone("1003", "transfer target", "silent", "uas_answer")],
              answered_by="1002, then 1003 after the transfer", did="0312345683",
              expected={"recordings": "customer leg (trunk channel) + the consultation leg "
                                      "(Local;2 running from-internal,1003)"})
    _times(t, res)
    return t


@scenario("auto_forward")
def s_auto_forward(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    cap.start("forward target", "uas_answer", ip=TRUNK.ip)
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345681",
                  inf=[list(CUSTOMER)], duration_ms=duration_ms)
    t = Truth(f"The customer calls DID 0312345681, which the PBX forwards to the outside "
              f"number {EXTERNAL} (Dial PJSIP/{EXTERNAL}@trunk); it answers. Both sipp "
              f"instances are on 127.0.0.20 (the carrier): the caller on its own port, the "
              f"answering side on 5060.",
              [customer("caller", "talks", "uac_talk"),
               customer("callee", "silent", "uas_answer", number=EXTERNAL, name=None)],
              answered_by=EXTERNAL, did="0312345681",
              expected={"event_type": "AUTOMATIC_TRANSFER", "recorded_channel": "PJSIP/trunk",
                        "left": "customer (talks)", "right": f"{EXTERNAL} (silent)"})
    _times(t, res)
    return t


@scenario("outgoing_transfer")
def s_outgoing_transfer(lab: Lab, cap: Runner, *, tones: bool = False) -> Truth:
    cap.start("external", "uas_answer", ip=TRUNK.ip, audio=_tone("outside", tones))
    cap.start("transferer", "uas_refer_bye", ip=PHONES["1001"].ip,
              inf=[[f"0{EXTERNAL}", ASTERISK]], audio=_tone("1001", tones))
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345678",
                  inf=[list(CUSTOMER)], duration_ms=12000, audio=_tone("customer", tones))
    t = Truth(f"The customer calls DID 0312345678 -> 1001, which answers and after 3 s "
              f"blind-transfers (REFER) to 0{EXTERNAL}: the customer's channel runs "
              f"from-internal,0{EXTERNAL}, a second recording starts, the outside number "
              f"{EXTERNAL} answers via the trunk. The customer talks, hangs up at 12 s.",
              [customer("caller", "talks", "uac_talk"),
               phone("1001", "transferer", "silent", "uas_refer_bye"),
               customer("transfer target", "silent", "uas_answer", number=EXTERNAL, name=None)],
              answered_by=f"1001, then {EXTERNAL}", did="0312345678",
              expected={"recordings": 2, "first": "INCOMING_CALL customer<->1001",
                        "second": f"OUTGOING_TRANSFER customer<->{EXTERNAL}"})
    _times(t, res)
    return t


@scenario("busy")
def s_busy(lab: Lab, cap: Runner) -> Truth:
    cap.start("callee", "uas_busy", ip=TRUNK.ip)
    res = cap.run("caller", "uac_unanswered", ip=PHONES["1001"].ip, service="00312345678",
                  inf=[["Suzuki Ichiro", "1001"]])
    t = Truth("1001 dials 0 + 0312345678; the carrier answers 486 Busy Here.",
              [phone("1001", "caller", "silent", "uac_unanswered"),
               customer("callee", "silent", "uas_busy", number="0312345678", name=None)],
              answered_by=None, dialled="00312345678",
              expected={"DialStatus": "BUSY", "recording": "MixMonitor started (option b), "
                                                           "never bridged"})
    _times(t, res)
    return t


@scenario("noanswer")
def s_noanswer(lab: Lab, cap: Runner) -> Truth:
    res = inbound_to_1001(cap, caller_sipp="uac_unanswered", callee_sipp="uas_noanswer")
    t = Truth("The customer calls DID 0312345678 -> 1001, which rings 4 s (RINGTIME) and "
              "does not answer; Dial gives up (NOANSWER) and the call is hung up.",
              [customer("caller", "silent", "uac_unanswered"),
               phone("1001", "callee", "silent", "uas_noanswer")],
              answered_by=None, did="0312345678",
              expected={"DialStatus": "NOANSWER"})
    _times(t, res)
    return t


@scenario("anonymous")
def s_anonymous(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    res = inbound_to_1001(cap, caller_sipp="uac_anonymous", duration_ms=duration_ms)
    t = Truth("A withheld caller (From: \"Anonymous\" <sip:anonymous@anonymous.invalid>, "
              "Privacy: id) calls DID 0312345678 -> 1001, which answers. The caller talks.",
              [customer("caller", "talks", "uac_anonymous", number="anonymous",
                        name="Anonymous"),
               phone("1001", "callee", "silent", "uas_answer")],
              answered_by="1001", did="0312345678",
              expected={"event_type": "INCOMING_CALL", "caller_number": "Anonymous"})
    _times(t, res)
    return t


@scenario("japanese_name")
def s_japanese_name(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    res = inbound_to_1001(cap, inf=[["山田太郎", "0312349999"]],
                          duration_ms=duration_ms)
    t = Truth("A caller named 山田太郎 (UTF-8 display name in From) calls DID 0312345678 "
              "-> 1001, which answers. The caller talks.",
              [customer("caller", "talks", "uac_talk", name="山田太郎"),
               phone("1001", "callee", "silent", "uas_answer")],
              answered_by="1001", did="0312345678",
              expected={"event_type": "INCOMING_CALL", "caller_name": "山田太郎"})
    _times(t, res)
    return t


@scenario("short_call")
def s_short_call(lab: Lab, cap: Runner) -> Truth:
    res = inbound_to_1001(cap, duration_ms=500)
    t = Truth("The customer calls DID 0312345678 -> 1001, which answers; the customer "
              "hangs up 0.5 s after the answer.",
              [customer("caller", "talks", "uac_talk"),
               phone("1001", "callee", "silent", "uas_answer")],
              answered_by="1001", did="0312345678",
              expected={"event_type": "INCOMING_CALL", "recording_seconds": "< 1"})
    _times(t, res)
    return t


@scenario("ten_at_once")
def s_ten_at_once(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    callers = [[f"Caller {i:02d}", f"03123400{i:02d}"] for i in range(10)]
    cap.start("callee", "uas_answer", ip=PHONES["1001"].ip, calls=10)
    res = cap.run("callers", "uac_talk", ip=TRUNK.ip, service="0312345678", inf=callers,
                  calls=10, limit=10, rate=10, duration_ms=duration_ms)
    t = Truth("Ten customers (0312340000 .. 0312340009, names 'Caller 00'..'Caller 09') "
              "call DID 0312345678 within one second; one sipp UAS answers all ten as 1001. "
              f"Every caller talks {_s(duration_ms)} and hangs up.",
              [customer("callers (10)", "talks", "uac_talk", number="0312340000..09",
                        name="Caller 00..09"),
               phone("1001", "callee (all 10)", "silent", "uas_answer")],
              answered_by="1001 (10 times)", did="0312345678",
              expected={"recordings": 10, "left": "each caller (talks)"})
    _times(t, res, answer=None)
    return t


# -- FreePBX-style flavour --------------------------------------------------------------
@scenario("freepbx_queue", flavour="freepbx")
def s_freepbx_queue(lab: Lab, cap: Runner, *, duration_ms: int = 6000) -> Truth:
    cap.start("member 1002", "uas_answer", ip=PHONES["1002"].ip)
    cap.start("member 1003", "uas_noanswer", ip=PHONES["1003"].ip)
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345679",
                  inf=[list(CUSTOMER)], duration_ms=duration_ms)
    t = Truth("FreePBX-style dialplan: the customer calls DID 0312345679 via from-trunk -> "
              "from-pstn -> ext-did (sub-record-check in) -> ext-queues 400 (sub-record-check "
              "q, recording policy force) with members Local/1002@from-queue/n and "
              "Local/1003@from-queue/n. 1002 answers. The customer talks.",
              [customer("caller", "talks", "uac_talk"),
               phone("1002", "queue member", "silent", "uas_answer"),
               phone("1003", "queue member", "silent", "uas_noanswer", "rings, cancelled")],
              answered_by="1002", did="0312345679", queue="400",
              expected={"event_type": "INCOMING_CALL",
                        "recordings": "FreePBX's own mono WAV (q-400-...) written with the "
                                      "legs our hook added (r()/t())"})
    _times(t, res)
    return t


@scenario("freepbx_ringgroup", flavour="freepbx")
def s_freepbx_ringgroup(lab: Lab, cap: Runner) -> Truth:
    cap.start("member 1002", "uas_noanswer", ip=PHONES["1002"].ip)
    cap.start("member 1003", "uas_answer", ip=PHONES["1003"].ip)
    res = cap.run("caller", "uac_talk", ip=TRUNK.ip, service="0312345680",
                  inf=[list(CUSTOMER)], duration_ms=6000)
    t = Truth("FreePBX-style dialplan: the customer calls DID 0312345680 -> ext-group 600 "
              "(RingGroupMethod ringall, NODEST 600, sub-record-check rg with policy force) "
              "-> macro-dial, whose ringall predial hook (ours) sends MiiTelGroup 600, and "
              "rings Local/1002@from-ringgroup/n & Local/1003@from-ringgroup/n (each runs "
              "macro-dial-one). 1003 answers, 1002 is cancelled. The customer talks.",
              [customer("caller", "talks", "uac_talk"),
               phone("1002", "group member", "silent", "uas_noanswer", "rings, cancelled"),
               phone("1003", "group member", "silent", "uas_answer")],
              answered_by="1003", did="0312345680", group="600",
              expected={"event_type": "INCOMING_CALL", "groupname": "600",
                        "recordings": "FreePBX's mono WAV (rg-600-...) with r()/t() legs, "
                                      "announced by the ringall predial hook"})
    _times(t, res)
    return t


@scenario("freepbx_outbound", flavour="freepbx")
def s_freepbx_outbound(lab: Lab, cap: Runner, *, duration_ms: int = 5000) -> Truth:
    cap.start("callee", "uas_talk", ip=TRUNK.ip)
    res = cap.run("caller", "uac_silent", ip=PHONES["1001"].ip, service="00312345678",
                  inf=[["Suzuki Ichiro", "1001"]], duration_ms=duration_ms)
    t = Truth("FreePBX-style dialplan: 1001 dials 00312345678: from-internal -> outrt-1 "
              "(sub-record-check out, route policy force) -> macro-dialout-trunk (sets "
              "DIAL_TRUNK, OUTNUM, the outbound caller ID; predial hook) -> the trunk. "
              f"The customer talks; 1001 hangs up after {_s(duration_ms)}.",
              [phone("1001", "caller", "silent", "uac_silent"),
               customer("callee", "talks", "uas_talk", number="0312345678", name=None)],
              answered_by="0312345678", dialled="00312345678",
              expected={"event_type": "OUTGOING_CALL",
                        "recordings": "FreePBX's mono WAV (out-0312345678-1001-...) plus "
                                      "its r()/t() legs"})
    _times(t, res)
    return t


