"""What a person does with the outbox: look at it (`status`), re-queue (`retry`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from ..config import Config
from ..miitel.models import EventType
from ..miitel.numbers import InvalidNumber
from ..miitel.redact import scrub
from ..miitel.rules import PartyRef, missing_user_ids
from .states import NEEDS_FORCE, STATES
from .store import Outbox, Row

SOURCE_LABELS = {
    "gap": "finished after an AMI outage",
    "restart": "truncated by a PBX restart or finished after a service restart",
    "catchup": "caught up from the CDR",
    "backfill": "backfilled",
}


@dataclass(frozen=True, slots=True)
class RetryResult:
    id: str
    ok: bool
    message: str


async def retry(outbox: Outbox, call_id: str, config: Config, *, force: bool) -> RetryResult:
    row = await outbox.get(call_id)
    if row is None:
        return RetryResult(call_id, False, "no such call in the outbox")
    if row.state not in ("set_aside", "skipped"):
        return RetryResult(call_id, False, f"it is {row.state}, not set aside: nothing to do")
    if row.state == "skipped" and not force:
        return RetryResult(
            call_id, False, f"it was skipped by design ({row.reason}); use --force to send it"
        )
    code = row.reason_code or ""
    if code in NEEDS_FORCE and not force:
        return RetryResult(
            call_id, False,
            f"set aside as {code}: sending again may create a second call history in MiiTel. "
            "Check MiiTel first, then use --force",
        )
    fields: dict[str, Any] = {
        "reason": None, "reason_code": None, "attempts": 0, "next_attempt_at": 0,
        "last_error": None,
    }
    call_data = row.call_data
    if call_data is not None and row.parties:
        call_data, problems = remap_users(row, config)
        if problems:
            await outbox.update(call_id, reason="; ".join(problems), call_data=call_data)
            return RetryResult(call_id, False, "still cannot be sent: " + "; ".join(problems))
        fields["call_data"] = call_data
    if call_data is None:
        return RetryResult(call_id, False, "it has no call data to send (see its reason)")
    url_alive = row.upload_url and (row.upload_expires_at or 0) > time.time()
    if code == "upload_refused" and url_alive:
        fields["state"] = "created"
    elif row.prepared is None and row.audio.get("expect_audio", True):
        fields["state"] = "waiting_recording"
    else:
        fields["state"] = "ready"
        if code in ("outcome_unknown", "upload_expired", "upload_refused"):
            fields["upload_url"] = None
            fields["upload_expires_at"] = None
    await outbox.update(call_id, note="put back in line by a person (retry"
                        + (" --force)" if force else ")"), **fields)
    return RetryResult(call_id, True, f"queued again ({fields['state']})")


def remap_users(row: Row, config: Config) -> tuple[dict[str, Any], list[str]]:
    """Apply today's [users] map to a call's participants, and check MiiTel's table."""
    assert row.call_data is not None and row.parties is not None
    data = dict(row.call_data)
    participants = []
    refs = []
    problems: list[str] = []
    for part, info in zip(data["participants"], row.parties, strict=False):
        ext = info.get("extension")
        part = dict(part)
        if ext:
            user = config.users.get(ext)
            user_id = user.miitel_user_id if user else None
            part["miitel_user_id"] = str(user_id) if user_id else None
            if user and user.name:
                part["name"] = user.name
            try:
                part["number"] = config.user_number(ext)
            except InvalidNumber as exc:
                problems.append(str(exc))
        participants.append(part)
        refs.append(
            PartyRef(part["type"], part["miitel_user_id"] is not None, ext, part["number"])
        )
    data["participants"] = participants
    problems += missing_user_ids(
        EventType(data["event_type"]),
        refs,
        answered=data.get("call_answered_at") is not None,
        grouped=bool(data.get("groupname")),
    )
    return data, problems


RETRY_FORCE = "asterisk-miitel retry --force"


async def outcome_unknown_lines(
    outbox: Outbox,
    *,
    command: str = RETRY_FORCE,
    clean: Callable[[str], str] = scrub,
    tz: tzinfo | None = None,
    limit: int = 50,
) -> list[str]:
    """First in `status`: the calls MiiTel may or may not have, each with the
    exact command that sends it again once a person found it missing.

    Only a person can tell (MiiTel's call list, by time and number), and
    nothing else resends them: a plain `retry` refuses them.
    """
    rows, total = await outbox.set_aside_as("outcome_unknown", limit)
    if not total:
        return []
    lines = [
        f"OUTCOME UNKNOWN: {total} call(s) MiiTel may or may not have. Look each up in MiiTel "
        "(time, numbers); resend only the missing ones:"
    ]
    for row in rows:
        lines.append(f"  {command} {row.id}")
        lines.append(f"      {_describe_call(row, tz)}: {clean(_short(row.reason or ''))}")
    if total > len(rows):
        lines.append(f"  ... and {total - len(rows)} more: `asterisk-miitel calls --state "
                     "set_aside` lists them")
    return lines


def _describe_call(row: Row, tz: tzinfo | None) -> str:
    cd = row.call_data or {}
    when = datetime.fromtimestamp(row.ended_at or row.created_at, tz).strftime("%Y-%m-%d %H:%M")
    numbers = " -> ".join(str(p.get("number")) for p in cd.get("participants") or []
                          if isinstance(p, dict))
    return " ".join(x for x in (when, str(cd.get("event_type") or ""), numbers) if x)


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def status_report(outbox: Outbox, *, limit: int = 10) -> str:
    counts = await outbox.counts()
    lines = ["calls by state:"]
    lines += [f"  {state:<18} {counts.get(state, 0)}" for state in STATES]
    sources = await outbox.sources()
    unusual = {k: v for k, v in sources.items() if k != "live"}
    if unusual:
        lines.append("calls not seen live from start to end: " + ", ".join(
            f"{SOURCE_LABELS.get(k, k)} {v}" for k, v in sorted(unusual.items())))
    oldest = await outbox.oldest_waiting()
    if oldest is not None:
        lines.append(f"oldest call still in progress: {time.time() - oldest:.0f} s ago")
    aside = await outbox.latest(["set_aside"], limit)
    if aside:
        lines.append(f"latest set aside (of {counts['set_aside']}):")
        for row in aside:
            lines.append(f"  {row.id}  [{row.reason_code}] {scrub(row.reason or '')}")
    waiting = await outbox.latest(["waiting_recording", "ready", "created"], limit)
    retrying = [r for r in waiting if r.last_error]
    if retrying:
        lines.append("latest errors of calls still being retried:")
        for row in retrying:
            lines.append(f"  {row.id}  ({row.state}, attempt {row.attempts}) "
                         f"{scrub(row.last_error or '')}")
    return "\n".join(lines)
