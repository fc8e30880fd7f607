"""Which recorded calls are sent to MiiTel: the admin's rules ([send] in the config).

A pure function, called at intake (intake.admit, for live and caught-up calls
alike) on each assembled call. A call no rule excludes is sent (the default,
with an empty [send], is every recorded call).
A skipped call is still recorded in the outbox with the reason this returns,
so `status` can say why MiiTel never got it.

Reasons start with the config key that decided (`send.exclude_numbers: ...`):
`rule_of(reason)` gives that key, a short label for metrics and logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..config import DIRECTIONS, SendConfig
from ..miitel.numbers import DEFAULT_RULES, InvalidNumber, NumberRules, normalize_number


def decide(
    call_data: Mapping[str, Any],
    extensions: Sequence[str | None],
    send_config: SendConfig,
    *,
    rules: NumberRules = DEFAULT_RULES,
) -> str | None:
    """None: send this call. Otherwise why it is not sent (for a person to read).

    `call_data` is the payload as it will be POSTed; `extensions` the
    extension behind each participant, in the same order (None for an
    outside party). `rules` is `config.numbers.rules()`, so that numbers in
    the config compare equal to the call's whatever their spelling.
    """
    event_type = str(call_data.get("event_type") or "")
    for direction in send_config.exclude_directions:
        if event_type in DIRECTIONS[direction]:
            return (f"send.exclude_directions: {direction} calls are not sent "
                    f"(this one is {event_type})")
    if event_type in send_config.exclude_event_types:
        return f"send.exclude_event_types: {event_type} calls are not sent"

    exts = {e for e in extensions if e}
    excluded = sorted(exts & set(send_config.exclude_extensions))
    if excluded:
        return f"send.exclude_extensions: extension {', '.join(excluded)} is excluded"
    if send_config.include_extensions and not exts & set(send_config.include_extensions):
        who = ", ".join(sorted(exts)) or "no extension"
        return f"send.include_extensions: only listed extensions are sent (this call: {who})"

    queue = call_data.get("queue_name")
    if queue and _casefold(queue) in {_casefold(q) for q in send_config.exclude_queues}:
        return f"send.exclude_queues: queue {queue} is excluded"

    if send_config.exclude_numbers:
        never = {n for n in (_number(raw, rules) for raw in send_config.exclude_numbers) if n}
        for number in _call_numbers(call_data):
            if _number(number, rules) in never:
                # The number itself is not repeated: the admin wants it kept out.
                return "send.exclude_numbers: a party's number is on the never-send list"
    return None


def rule_of(reason: str) -> str:
    """`send.exclude_numbers: ...` -> `send.exclude_numbers` (a bounded label set)."""
    head, sep, _ = reason.partition(":")
    return head if sep and head.startswith("send.") else "other"


def _call_numbers(call_data: Mapping[str, Any]) -> Iterable[str]:
    for party in call_data.get("participants") or ():
        if isinstance(party, Mapping) and party.get("number"):
            yield str(party["number"])
    # The line called (inbound DID) or shown (outbound caller ID): a private
    # line listed here keeps its calls out too.
    if call_data.get("circuit_number"):
        yield str(call_data["circuit_number"])


def _number(raw: str, rules: NumberRules) -> str | None:
    try:
        return normalize_number(raw, rules)
    except InvalidNumber:
        return None


def _casefold(value: object) -> str:
    return str(value).strip().casefold()
