"""Read AMI transcripts: what the service's filter should let through, recordings, bridges."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .ami import AmiMessage

# The events the service uses (the contract dialplan/manager_miitel.conf implements).
SERVICE_EVENTS = frozenset({
    "Newchannel", "Newstate", "NewCallerid", "NewConnectedLine", "Hangup", "DialBegin",
    "DialEnd", "BridgeEnter", "BridgeLeave", "LocalBridge", "LocalOptimizationBegin",
    "LocalOptimizationEnd", "MixMonitorStart", "MixMonitorStop", "BlindTransfer",
    "AttendedTransfer", "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
    "AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "Rename",
})
SERVICE_APPS = frozenset({"mixmonitor", "stopmixmonitor", "voicemail", "queue"})
SERVICE_VARS = frozenset({"MIXMONITOR_FILENAME", "VM_MESSAGEFILE", "FROM_DID", "AMPUSER",
                          "BLINDTRANSFER", "ATTENDEDTRANSFER"})
_MIITEL_VAR = re.compile(r"^MIITEL_[A-Za-z0-9_]*$")


def service_wants(msg: AmiMessage) -> bool:
    """True for the events the service uses (independent of the regexes in the filter)."""
    name = msg.event
    if name in SERVICE_EVENTS:
        return True
    if name == "UserEvent":
        return msg.get("UserEvent").startswith("MiiTel")
    if name == "Newexten":
        app = msg.get("Application").lower()
        # ExecIf(<cond>?MixMonitor(...)) / ExecIf(<cond>?StopMixMonitor(id)): how our snippet
        # stops a recording, the only trace of it before Asterisk 16.17/18.3/19
        return app in SERVICE_APPS or (app == "execif"
                                       and "mixmonitor(" in msg.get("AppData").lower())
    if name == "VarSet":
        var = msg.get("Variable")
        stripped = var[2:] if var.startswith("__") else var[1:] if var.startswith("_") else var
        return stripped in SERVICE_VARS or bool(_MIITEL_VAR.match(stripped))
    return False


def events(msgs: Iterable[AmiMessage]) -> list[AmiMessage]:
    return [m for m in msgs if m.event]


def count(msgs: Iterable[AmiMessage], *, exclude: Sequence[str] = ("TestEvent",)) -> int:
    return sum(1 for m in msgs if m.event and m.event not in exclude)


def by_name(msgs: Iterable[AmiMessage]) -> dict[str, int]:
    return dict(Counter(m.event for m in msgs if m.event).most_common())


def _key(msg: AmiMessage) -> tuple[str, ...]:
    return (msg.event, msg.get("Timestamp"), msg.get("Uniqueid"), msg.get("Channel"),
            msg.get("Variable"), msg.get("UserEvent"), msg.get("Application"))


def filter_check(admin: Sequence[AmiMessage], filtered: Sequence[AmiMessage]) -> dict[str, object]:
    """Compare what the filtered user got with what it should have got.

    ``admin`` is the unfiltered stream of the same moment (read=all). Events
    outside the filtered user's read classes (system, security, reporting,
    TestEvent) are not expected in either direction.
    """
    classes = {"call", "dialplan", "agent", "user"}

    def readable(m: AmiMessage) -> bool:
        privs = {p.strip() for p in m.get("Privilege").split(",")} - {"all"}
        return bool(privs & classes)

    expected = [m for m in events(admin) if service_wants(m) and readable(m)]
    got = events(filtered)
    exp_keys = Counter(_key(m) for m in expected)
    got_keys = Counter(_key(m) for m in got)
    missing = exp_keys - got_keys
    unexpected = got_keys - exp_keys
    return {
        "expected": len(expected),
        "received": len(got),
        "missing": [list(k) for k in missing.elements()],
        "unexpected": [list(k) for k in unexpected.elements()],
        "ok": not missing and not unexpected,
    }


@dataclass
class Recording:
    file: str
    channel: str
    uniqueid: str
    linkedid: str
    started: float | None
    mode: str = ""
    receive: str = ""
    transmit: str = ""


def recordings(msgs: Sequence[AmiMessage]) -> list[Recording]:
    """Recordings announced in a transcript (VarSet MIXMONITOR_FILENAME + MiiTelRecording)."""
    out: dict[str, Recording] = {}
    for m in msgs:
        if m.event == "VarSet" and m.get("Variable") == "MIXMONITOR_FILENAME" and m.get("Value"):
            out.setdefault(m.get("Value"), Recording(m.get("Value"), m.get("Channel"),
                                                     m.get("Uniqueid"), m.get("Linkedid"),
                                                     m.timestamp))
        if m.event == "UserEvent" and m.get("UserEvent") == "MiiTelRecording":
            rec = out.setdefault(m.get("File"), Recording(m.get("File"), m.get("Channel"),
                                                          m.get("Uniqueid"), m.get("Linkedid"),
                                                          m.timestamp))
            rec.mode = m.get("Mode")
            rec.receive = m.get("Receive")
            rec.transmit = m.get("Transmit")
    return list(out.values())


def hangup_time(msgs: Sequence[AmiMessage], uniqueid: str) -> float | None:
    for m in msgs:
        if m.event == "Hangup" and m.get("Uniqueid") == uniqueid:
            return m.timestamp
    return None


def last_hangup(msgs: Sequence[AmiMessage]) -> float | None:
    times = [m.timestamp for m in msgs if m.event == "Hangup" and m.timestamp]
    return max(times) if times else None


def bridged_seconds(msgs: Sequence[AmiMessage], uniqueid: str,
                    since: float | None = None, until: float | None = None,
                    *, alone: bool = False) -> float:
    """Seconds the channel spent in a bridge with at least one other channel.

    ``alone``: also count time alone in a bridge (a party on hold during an
    attended transfer stays in its bridge, and MixMonitor's ``b`` records it).
    """
    members: dict[str, set[str]] = {}
    inside: set[str] = set()
    total = 0.0
    t_from: float | None = None
    for m in msgs:
        if m.event not in ("BridgeEnter", "BridgeLeave") or m.timestamp is None:
            continue
        bridge = m.get("BridgeUniqueid")
        uid = m.get("Uniqueid")
        group = members.setdefault(bridge, set())
        if m.event == "BridgeEnter":
            group.add(uid)
            if uid == uniqueid:
                inside.add(bridge)
        else:
            group.discard(uid)
            if uid == uniqueid:
                inside.discard(bridge)
        talking = any(len(members[b]) >= (1 if alone else 2) for b in inside)
        if talking and t_from is None:
            t_from = m.timestamp
        elif not talking and t_from is not None:
            total += _clip(t_from, m.timestamp, since, until)
            t_from = None
    return round(total, 3)


def _clip(a: float, b: float, since: float | None, until: float | None) -> float:
    if since is not None:
        a = max(a, since)
    if until is not None:
        b = min(b, until)
    return max(0.0, b - a)
