"""Validate a POSTed body the way MiiTel's official schema does, and a bit more.

The schema (bundled, Draft 6) is applied with format checking. jsonschema's
Draft 6 checker knows neither `uuid` nor (without the optional
rfc3339-validator package) `date-time`, and would silently pass anything, so
both are checked here explicitly.

`date-time` strictness: RFC 3339 wants the offset as `+09:00`; MiiTel's own
official sample 2 sends `2023-11-27T15:22:33+0900`. MiiTel accepts its own
sample, so by default the stand-in accepts both `+09:00` and `+0900` (and `Z`),
but always requires an explicit offset: a naive time is ambiguous and is
rejected. `strict_datetime=True` accepts RFC 3339 only.

Beyond the schema (documented rules it expresses loosely or not at all):

- `call_data` must not be empty; `call_data_id` must be non-empty and unique
  within one request.
- `number` must match the pattern as a whole: the schema's `$` also matches
  before a trailing newline in Python and many regex engines.
- `call_starts_at <= call_answered_at <= call_ends_at`.
- The help article's table of who needs a `miitel_user_id` per `event_type`
  (`check_user_ids`, on by default). Whether MiiTel rejects the POST or fails
  the call history later is not documented; the stand-in rejects, so the
  mistake is seen at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from typing import Any

SCHEMA_FILE = "incoming_webhook.schema.json"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# [0-9], not \d: \d also matches other scripts' digits.
_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4})"
)
_NUMBER = re.compile(r"[+*#0-9][0-9]*|Anonymous")

# event_type -> (FROM needs a user id, when TO needs one: "answered" | "extension" | None)
_USER_ID_RULES: dict[str, tuple[bool, str | None]] = {
    "OUTGOING_CALL": (True, None),
    "OUTGOING_TRANSFER": (True, None),
    "INCOMING_CALL": (False, "answered"),
    "AUTOMATIC_TRANSFER": (False, None),
    "EXTENSION": (True, "extension"),
    "EXTENSION_TRANSFER": (True, "extension"),
    "AUTOMATIC_RECORD": (False, None),
}

Problem = dict[str, str]  # {"path": "$.call_data[0].participants[1].number", "message": ...}


def load_schema() -> dict[str, Any]:
    """The official Incoming Webhook JSON Schema bundled with the package."""
    text = resources.files("asterisk_miitel.miitel").joinpath(SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def parse_datetime(value: str, *, strict: bool = False) -> datetime | None:
    """An aware datetime from an ISO 8601 string with explicit offset, or None if invalid."""
    match = _DATETIME.fullmatch(value)
    if match is None:
        return None
    offset = match["offset"]
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif ":" not in offset:
        if strict:
            return None
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError:  # day 31 of a 30-day month, offset beyond 24 h, ...
        return None


class PayloadValidator:
    """Checks one POST body; `problems()` is empty when MiiTel would accept it."""

    def __init__(self, *, strict_datetime: bool = False, check_user_ids: bool = True) -> None:
        try:
            from jsonschema import Draft6Validator, FormatChecker
        except ImportError as exc:  # jsonschema is a test extra, not a runtime dependency
            raise RuntimeError(
                "the MiiTel stand-in needs jsonschema: pip install 'asterisk-miitel[test]'"
            ) from exc
        self._strict_datetime = strict_datetime
        self._check_user_ids = check_user_ids
        checker = FormatChecker(formats=())
        checker.checks("uuid")(self._is_uuid)
        checker.checks("date-time")(self._is_datetime)
        schema = load_schema()
        Draft6Validator.check_schema(schema)
        self._validator = Draft6Validator(schema, format_checker=checker)

    @staticmethod
    def _is_uuid(value: object) -> bool:
        return not isinstance(value, str) or _UUID.fullmatch(value) is not None

    def _is_datetime(self, value: object) -> bool:
        if not isinstance(value, str):
            return True  # the type keyword reports it
        return parse_datetime(value, strict=self._strict_datetime) is not None

    def problems(self, body: object) -> list[Problem]:
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        found = [{"path": _path(e.absolute_path), "message": _message(e)} for e in errors]
        if found:
            return found  # the extra rules assume the shape the schema guarantees
        assert isinstance(body, dict)
        return list(self._extra_problems(body["call_data"]))

    def _extra_problems(self, calls: list[dict[str, Any]]) -> Iterator[Problem]:
        if not calls:
            yield {"path": "$.call_data", "message": "call_data is empty"}
        seen: set[str] = set()
        for i, call in enumerate(calls):
            where = f"$.call_data[{i}]"
            call_id = call["call_data_id"]
            if not call_id.strip():
                yield {"path": f"{where}.call_data_id", "message": "call_data_id is empty"}
            elif call_id in seen:
                yield {"path": f"{where}.call_data_id",
                       "message": f"call_data_id {call_id!r} appears twice in this request"}
            seen.add(call_id)
            for j, person in enumerate(call["participants"]):
                if not _NUMBER.fullmatch(person["number"]):
                    yield {"path": f"{where}.participants[{j}].number",
                           "message": f"{person['number']!r} is not a phone number or "
                                      "'Anonymous'"}
            yield from self._time_order(call, where)
            if self._check_user_ids:
                yield from _user_id_problems(call, where)

    def _time_order(self, call: dict[str, Any], where: str) -> Iterator[Problem]:
        strict = self._strict_datetime
        starts = parse_datetime(call["call_starts_at"], strict=strict)
        ends = parse_datetime(call["call_ends_at"], strict=strict)
        answered_raw = call["call_answered_at"]
        answered = parse_datetime(answered_raw, strict=strict) if answered_raw else None
        if starts and ends and ends < starts:
            yield {"path": f"{where}.call_ends_at", "message": "call ends before it starts"}
        if answered and starts and answered < starts:
            yield {"path": f"{where}.call_answered_at",
                   "message": "call is answered before it starts"}
        if answered and ends and answered > ends:
            yield {"path": f"{where}.call_answered_at", "message": "call is answered after it ends"}


def _user_id_problems(call: dict[str, Any], where: str) -> Iterator[Problem]:
    from_needed, to_rule = _USER_ID_RULES[call["event_type"]]
    answered = call["call_answered_at"] is not None
    group = call.get("groupname") or call.get("group_name")
    # "extension": needed without a group; with a group only once someone answered.
    to_needed = (to_rule == "extension" and not group) or (to_rule is not None and answered)
    for side, needed in (("FROM", from_needed), ("TO", to_needed)):
        people = [p for p in call["participants"] if p["type"] == side]
        if needed and not any(p["miitel_user_id"] for p in people):
            yield {
                "path": f"{where}.participants",
                "message": f"{call['event_type']} needs a {side} participant with a "
                           "miitel_user_id",
            }


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _message(error: Any) -> str:
    # anyOf says only "is not valid under any of the given schemas": name the reasons.
    if error.validator in ("anyOf", "oneOf") and error.context:
        reasons = "; ".join(sorted({sub.message for sub in error.context}))
        return f"{error.message} ({reasons})"
    return str(error.message)
