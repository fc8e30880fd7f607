"""An open recording's state as JSON, so a call survives the service's death.

The service journals each open recording (when it starts, and when a new
party joins it) and deletes the entry when the call is queued in the outbox.
After a crash, kill -9 or restart, a journaled recording whose channel is
still up is adopted and tracked on; one whose channel is gone is finished
from what the journal knew. Only what the classifier reads is kept: a few
hundred bytes per call.
"""

from __future__ import annotations

from typing import Any

from .asterisk import bridged_only
from .state import Channel, Recording, Segment, Transfer

VERSION = 1

_FIELDS = (
    "uniqueid", "name", "linkedid", "created", "context", "exten", "caller_num", "caller_name",
    "origin_num",
    "connected_num", "connected_name", "answered", "hungup", "dial_string", "originated",
    "partial", "did", "ampuser", "queue", "queue_label", "group", "tags", "voicemail_box",
    "vm_file", "recorded",
)


def dump_recording(rec: Recording) -> dict[str, Any]:
    channels: dict[str, dict[str, Any]] = {}

    def ref(ch: Channel | None, depth: int = 0) -> str | None:
        if ch is None:
            return None
        if ch.uniqueid not in channels and depth < 8:
            data: dict[str, Any] = {f: getattr(ch, f) for f in _FIELDS}
            channels[ch.uniqueid] = data
            data["dialled_by"] = ref(ch.dialled_by, depth + 1)
            data["local_peer"] = ref(ch.local_peer, depth + 1)
            data["dial_targets"] = [ref(t, depth + 1) for t in ch.dial_targets or ()]
            data["transfer"] = _dump_transfer(ch.transfer, ref, depth)
            data["made_transfer"] = _dump_transfer(ch.made_transfer, ref, depth)
            if ch.earlier_transfers:
                data["earlier_transfers"] = [
                    _dump_transfer(t, ref, depth) for t in ch.earlier_transfers]
        return ch.uniqueid

    return {
        "v": VERSION,
        "file": rec.file,
        "channel": ref(rec.channel),
        "started": rec.started,
        "mode": rec.mode,
        "options": rec.options,
        "bridged_only": rec.bridged_only,
        "receive": rec.receive,
        "transmit": rec.transmit,
        "mixmonitor_id": rec.mixmonitor_id,
        "appended_at": rec.appended_at,
        "in_bridge": [list(span) for span in rec.in_bridge],
        "in_bridge_since": rec.in_bridge_since,
        "left": [_dump_segment(s, ref) for s in rec.left],
        "right": [_dump_segment(s, ref) for s in rec.right],
        "seen": [ref(c) for c in rec.seen],
        "notes": list(rec.notes),
        "channels": channels,
    }


def load_recording(data: dict[str, Any]) -> Recording:
    """Rebuild a Recording and the channels it refers to (detached from any tracker)."""
    if data.get("v") != VERSION:
        raise ValueError(f"unknown snapshot version {data.get('v')!r}")
    raw = data["channels"]
    built: dict[str, Channel] = {}
    for uid, fields in raw.items():
        values = {f: fields.get(f) for f in _FIELDS}
        values["tags"] = list(fields.get("tags") or []) or None
        built[uid] = Channel(**values)
    for uid, fields in raw.items():
        ch = built[uid]
        ch.dialled_by = _lookup(built, fields.get("dialled_by"))
        ch.local_peer = _lookup(built, fields.get("local_peer"))
        targets = [built[t] for t in fields.get("dial_targets") or () if t in built]
        ch.dial_targets = targets or None
        ch.transfer = _load_transfer(fields.get("transfer"), built)
        ch.made_transfer = _load_transfer(fields.get("made_transfer"), built)
        earlier = [_load_transfer(t, built) for t in fields.get("earlier_transfers") or ()]
        ch.earlier_transfers = [t for t in earlier if t is not None] or None
    rec = Recording(
        file=data["file"],
        channel=built[data["channel"]],
        started=data["started"],
        mode=data["mode"],
        options=data.get("options") or "",
        # (journals written before the field: what their options said)
        bridged_only=data.get("bridged_only", bridged_only(data.get("options") or "")),
        receive=data.get("receive"),
        transmit=data.get("transmit"),
        mixmonitor_id=data.get("mixmonitor_id"),
    )
    rec.appended_at = data.get("appended_at")
    rec.in_bridge = [(float(a), float(b)) for a, b in data.get("in_bridge") or ()]
    rec.in_bridge_since = data.get("in_bridge_since")
    rec.left = [_load_segment(s, built) for s in data.get("left", [])]
    rec.right = [_load_segment(s, built) for s in data.get("right", [])]
    rec.seen = [built[u] for u in data.get("seen", []) if u in built]
    rec.notes = list(data.get("notes", []))
    return rec


def _lookup(built: dict[str, Channel], uid: str | None) -> Channel | None:
    return built.get(uid) if uid else None


def _dump_segment(seg: Segment, ref: Any) -> dict[str, Any]:
    return {"party": ref(seg.party), "first": seg.first, "last": seg.last, "talk": seg.talk,
            "since": seg.since, "spans": [list(span) for span in seg.spans]}


def _load_segment(data: dict[str, Any], built: dict[str, Channel]) -> Segment:
    return Segment(party=built[data["party"]], first=data["first"], last=data.get("last"),
                   talk=data.get("talk", 0.0), since=data.get("since"),
                   spans=[(float(a), float(b)) for a, b in data.get("spans") or ()])


def _dump_transfer(t: Transfer | None, ref: Any, depth: int) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"kind": t.kind, "at": t.at, "target_exten": t.target_exten,
            "transferer": ref(t.transferer, depth + 1), "transferee": ref(t.transferee, depth + 1)}


def _load_transfer(data: dict[str, Any] | None, built: dict[str, Channel]) -> Transfer | None:
    if not data:
        return None
    return Transfer(
        data["kind"], data["at"], _lookup(built, data.get("transferer")),
        data.get("target_exten"), _lookup(built, data.get("transferee")),
    )
