"""The outbox as a person reads it: recent calls, one call's story, what to do next.

Shared by `asterisk-miitel calls` / `calls show` / `status` and the browser
console (ops/console.py), so both say the same thing in the same words.
Pure functions over outbox rows; the async helpers only read.

Nothing secret leaves here: upload URLs are never included, and free text
(reasons, errors) goes through `scrub`, which hides any URL's secret parts.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from ..miitel.redact import scrub
from ..outbox.lock import lock_path
from ..outbox.states import DONE, IN_PROGRESS, NEEDS_FORCE, STATES, ReasonCode, State
from ..outbox.store import Outbox, Row, Step

DEFAULT_LIMIT = 50

# meta key the running service refreshes with every heartbeat (service.py).
META_SERVICE = "service.status"
# The service writes its heartbeat every 5 s: older than this, it is not running.
ALIVE_WITHIN = 20.0

COMMAND = "asterisk-miitel"


class BadFilter(ValueError):
    """A --since / --state a person typed that means nothing."""


# -- one line per call -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallLine:
    id: str
    at: float  # the hangup, else when it was queued
    time: str  # `at` in the PBX's zone, ISO 8601 to the second
    event_type: str | None
    parties: str  # "FROM 0312349999 Tanaka -> TO 1001 Suzuki"
    state: State
    reason_code: ReasonCode | None
    reason: str | None
    source: str
    action: str  # what a person should do (or "nothing: ...")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        why = f"  [{self.reason_code}] {self.reason}" if self.reason_code or self.reason else ""
        return (f"{self.time}  {self.id}  {self.event_type or '-'}  {self.parties}  "
                f"{self.state}{why}")


def call_time(row: Row) -> float:
    return row.ended_at if row.ended_at is not None else row.created_at


def when(epoch: float | None, tz: tzinfo | None, *, precise: bool = False) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz).astimezone(tz).isoformat(
        timespec="milliseconds" if precise else "seconds")


# What a step means when it carries no reason or error of its own.
STEP_MEANING = {
    "waiting_recording": "queued: waiting for Asterisk to finish the recording",
    "ready": "recording prepared; the call history is next",
    "created": "MiiTel created the call history; uploading the recording",
    "uploaded": "MiiTel has the recording",
    "sent": "sent without audio (a missed call)",
}


def parties_text(call_data: dict[str, Any] | None) -> str:
    """FROM and TO as MiiTel will show them (number and name), FROM first."""
    if not call_data:
        return "-"
    parts = []
    for p in sorted(call_data.get("participants") or [],
                    key=lambda p: 0 if p.get("type") == "FROM" else 1):
        name = f" {p['name']}" if p.get("name") else ""
        parts.append(f"{p.get('type')} {p.get('number')}{name}")
    return " -> ".join(parts) or "-"


def line(row: Row, tz: tzinfo | None, suffix: str = "") -> CallLine:
    data = row.call_data or {}
    return CallLine(
        id=row.id, at=call_time(row), time=when(call_time(row), tz),
        event_type=data.get("event_type"), parties=parties_text(row.call_data),
        state=row.state, reason_code=row.reason_code,
        reason=scrub(row.reason) if row.reason else None, source=row.source,
        action=next_action(row, suffix),
    )


# -- what to do next ---------------------------------------------------------------------


def next_action(row: Row, suffix: str = "") -> str:
    """The exact next step for a person, with the command to run; `suffix`: what
    the command needs after it to reach the same outbox (` --config FILE`)."""
    retry = f"`{COMMAND} retry {row.id}{suffix}`"
    force = f"`{COMMAND} retry --force {row.id}{suffix}`"
    code = row.reason_code or ""
    if row.state in DONE:
        return "nothing: MiiTel has it"
    if row.state in IN_PROGRESS:
        if row.last_error:
            return (f"nothing yet: it is retried automatically (attempt {row.attempts}); "
                    "if MiiTel stays unreachable, check the network and the webhook URL")
        return "nothing: on its way to MiiTel"
    if row.state == "skipped":
        return (f"nothing: not sent by design ({scrub(row.reason or code)}); {force} "
                "sends it anyway")
    # set_aside
    if code == "users":
        exts = missing_users(row)
        which = "extension " + ", ".join(exts) if exts else "the extension"
        return (f"give {which} a miitel_user_id in [users] (or `{COMMAND} users import`), "
                f"then {retry}; `systemctl reload asterisk-miitel` applies it to new calls")
    if code == "number":
        return ("check the caller ID the trunk sends (digits only, as MiiTel needs), or set "
                f"the user's `number` in [users], then {retry}")
    if code == "recording":
        return ("check that the recording exists and this service can read it (the mount, "
                f"[recordings] path_map, the asterisk group), then {retry}")
    if code == "rejected":
        return f"fix what MiiTel said (quoted in the reason), then {retry}"
    if code == "outcome_unknown":
        return ("look for this call in MiiTel first: if it is there, do nothing; if it is "
                f"missing, {force}")
    if code == "upload_expired":
        return f"MiiTel has the call history without audio; {force} creates one with the audio"
    if code == "upload_refused":
        return f"check MiiTel for this call; {force} sends it again"
    if code == "incomplete":
        return ("nothing can be sent: the service was down while the call was answered; "
                "see the CDR for the call")
    if code in NEEDS_FORCE:
        return f"check MiiTel first, then {force}"
    return f"fix the cause in the reason, then {retry}"


def missing_users(row: Row) -> list[str]:
    """Extensions of this call's parties that have no miitel_user_id in its call_data."""
    participants = (row.call_data or {}).get("participants") or []
    exts = {
        info.get("extension")
        for info, part in zip(row.parties or [], participants, strict=False)
        if info.get("extension") and not part.get("miitel_user_id")
    }
    return sorted(e for e in exts if e)


def needs_force(row: Row) -> bool:
    return row.state == "skipped" or (row.reason_code or "") in NEEDS_FORCE


# -- one call in full --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepLine:
    at: float
    time: str
    state: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class CallDetail:
    line: CallLine
    file: str
    audio: dict[str, Any]
    prepared: dict[str, Any] | None
    call_data: dict[str, Any] | None
    steps: list[StepLine]
    notes: list[str]
    attempts: int
    posts: int
    last_error: str | None
    queued_at: str
    updated_at: str
    uploaded_at: str | None
    next_attempt_at: str | None
    upload_expires_at: str | None
    extensions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("line"))
        return out

    def text(self) -> str:
        ln = self.line
        lines = [
            f"call       {ln.id}",
            f"time       {ln.time}",
            f"state      {ln.state}" + (f" [{ln.reason_code}]" if ln.reason_code else ""),
        ]
        if ln.reason:
            lines.append(f"reason     {ln.reason}")
        if self.last_error and ln.state in IN_PROGRESS:
            lines.append(f"last error {self.last_error} (attempt {self.attempts}, next "
                         f"{self.next_attempt_at or 'now'})")
        lines += [
            f"event_type {ln.event_type or '-'}",
            f"parties    {ln.parties}",
            f"file       {self.file}",
        ]
        if self.prepared:
            p = self.prepared
            lines.append(f"upload     {p.get('path')} ({p.get('file_type')}, "
                         f"{p.get('channel_type')}, {p.get('duration') or 0:.1f} s)")
        if ln.source != "live":
            lines.append(f"learnt     {ln.source}")
        lines.append(f"POSTs      {self.posts}")
        for note in self.notes:
            lines.append(f"note       {note}")
        lines.append("steps:")
        if self.steps:
            lines += [f"  {s.time}  {s.state}" + (f": {s.detail}" if s.detail else "")
                      for s in self.steps]
        else:  # an outbox from before steps were recorded
            lines.append(f"  {self.queued_at}  queued")
            lines.append(f"  {self.updated_at}  {ln.state} (last change)")
        lines.append(f"next:      {ln.action}")
        lines.append("call_data:")
        lines.append(json.dumps(self.call_data, ensure_ascii=False, indent=2)
                     if self.call_data is not None else "  (none: see the reason)")
        return "\n".join(lines)


def detail(row: Row, steps: Sequence[Step], tz: tzinfo | None, suffix: str = "") -> CallDetail:
    def t(epoch: float | None) -> str | None:
        return when(epoch, tz) if epoch else None

    return CallDetail(
        line=line(row, tz, suffix), file=row.file, audio=row.audio,
        prepared=_public_prepared(row.prepared), call_data=row.call_data,
        steps=[StepLine(s.at, when(s.at, tz, precise=True), s.state,
                        scrub(s.detail) if s.detail else STEP_MEANING.get(s.state))
               for s in steps],
        notes=list(row.notes), attempts=row.attempts, posts=row.posts,
        last_error=scrub(row.last_error) if row.last_error else None,
        queued_at=when(row.created_at, tz), updated_at=when(row.updated_at, tz),
        uploaded_at=t(row.uploaded_at),
        next_attempt_at=t(row.next_attempt_at) if row.state in IN_PROGRESS else None,
        upload_expires_at=t(row.upload_expires_at),
        extensions=[p["extension"] for p in row.parties or [] if p.get("extension")],
    )


def _public_prepared(prepared: dict[str, Any] | None) -> dict[str, Any] | None:
    if prepared is None:
        return None
    return {k: v for k, v in prepared.items() if k != "warnings"} | {
        "warnings": list(prepared.get("warnings") or [])}


async def recent(outbox: Outbox, tz: tzinfo | None, *, states: Sequence[str] = (),
                 since: float | None = None, extension: str | None = None,
                 limit: int = DEFAULT_LIMIT, suffix: str = "") -> list[CallLine]:
    rows = await outbox.recent(states=states, since=since, extension=extension, limit=limit)
    return [line(r, tz, suffix) for r in rows]


async def show(outbox: Outbox, text: str, tz: tzinfo | None, suffix: str = "") -> CallDetail:
    """One call by its id or an unambiguous part of it. Raises LookupError."""
    ids = await outbox.find(text)
    if not ids:
        raise LookupError(f"no call {text!r} in the outbox (ids are listed by "
                          f"`{COMMAND} calls`)")
    if len(ids) > 1:
        raise LookupError(f"{text!r} matches {len(ids)} calls ({', '.join(ids[:3])}, ...): "
                          "give more of the id")
    row = await outbox.get(ids[0])
    assert row is not None
    return detail(row, await outbox.steps(row.id), tz, suffix)


# -- filters a person types --------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, tz: tzinfo | None, now: float | None = None) -> float:
    """`30m`, `2h`, `1d`, `2026-11-23`, `2026-11-23T14:00` (PBX time) -> epoch."""
    now = time.time() if now is None else now
    text = text.strip()
    rel = _RELATIVE.match(text.lower())
    if rel:
        return now - float(rel.group(1)) * _UNITS[rel.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"--since {text!r}: give a time like 2026-11-23, 2026-11-23T14:00, "
                        "or how long ago: 30m, 2h, 1d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return moment.timestamp()


def parse_states(values: Sequence[str]) -> list[str]:
    """`--state set_aside,skipped` (or repeated); `in_progress` and `done` as groups."""
    out: list[str] = []
    for value in values:
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name in ("in_progress", "active"):
                out += IN_PROGRESS
            elif name == "done":
                out += DONE
            elif name in STATES:
                out.append(name)
            else:
                raise BadFilter(f"--state {name!r}: one of {', '.join(STATES)}, in_progress, "
                                "done")
    return out


# -- is the service running? -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceState:
    running: bool | None  # None: cannot tell
    how: str  # how it was decided, for a person
    pid: int | None = None
    heartbeat_age: float | None = None
    ami: dict[str, Any] | None = None  # connected, since, version, host (from the service)
    uploads: bool | None = None  # a webhook URL is configured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the service's)
        return True
    return True


def lock_holder(outbox_path: Path) -> int | None:
    """The live process holding the outbox's lock (outbox/lock.py), if any. Read
    only: taking the lock to test it could make a starting service fail."""
    try:
        text = lock_path(outbox_path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    pid = int(text) if text.isdigit() else None
    return pid if pid is not None and pid_alive(pid) else None


async def service_state(outbox: Outbox, now: float | None = None) -> ServiceState:
    """From the outbox's lock (who runs) and the heartbeat the service writes into
    the outbox every few seconds (how it is doing)."""
    now = time.time() if now is None else now
    holder = lock_holder(outbox.path)
    raw = await outbox.get_meta(META_SERVICE)
    info: dict[str, Any] = {}
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
    alive_at = info.get("at")
    if alive_at is None:
        legacy = await outbox.get_meta("alive_at")
        alive_at = float(legacy) if legacy else None
    age = max(0.0, now - float(alive_at)) if alive_at is not None else None
    pid = info.get("pid")
    uploads = info.get("uploads")
    same = holder is not None and holder == pid
    if holder is not None and not same:  # started, first heartbeat not written yet
        return ServiceState(True, f"process {holder} holds the outbox lock", holder, age)
    if age is None:
        return ServiceState(None, "it has never written a heartbeat to this outbox")
    if info.get("stopped_at") and not same:
        return ServiceState(False, f"it stopped at {when(info['stopped_at'], None)}", pid, age,
                            None, uploads)
    if age > ALIVE_WITHIN:
        if same:
            return ServiceState(True, f"process {pid} holds the outbox lock, but wrote no "
                                f"heartbeat for {age:.0f} s: stuck? See its log", pid, age,
                                info.get("ami"), uploads)
        return ServiceState(False, f"no heartbeat for {age:.0f} s (killed or crashed?)", pid,
                            age, None, uploads)
    if pid is not None and info.get("host") == os.uname().nodename and not pid_alive(pid):
        return ServiceState(False, f"its process {pid} is gone", pid, age, None, uploads)
    return ServiceState(True, f"heartbeat {age:.0f} s ago", pid, age, info.get("ami"), uploads)


def service_heartbeat(pid: int, now: float, ami: dict[str, Any] | None, uploads: bool,
                      stopped: bool = False) -> str:
    """What the service writes under META_SERVICE (service.py)."""
    doc: dict[str, Any] = {"pid": pid, "host": os.uname().nodename, "at": now, "ami": ami,
                           "uploads": uploads}
    if stopped:
        doc["stopped_at"] = now
    return json.dumps(doc)


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{timedelta(seconds=round(seconds)).days} days ago"
