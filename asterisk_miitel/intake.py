"""Intake: a classified call (an Outcome) -> the row the outbox queues.

One place for what live tracking (service.py) and catch-up/backfill
(catchup/runner.py) both do with a call once it is classified:

- the admin's [send] rules (ops/policy.decide): a call they keep out is
  skipped with the rule, and that overrides a set-aside, since nobody should
  have to act on a call that is not to be sent;
- its call_data_id, the same whichever way the call was learnt, so the
  outbox refuses it the second time;
- its first state and reason code (skipped / set aside / waiting for the
  recording), and how it was learnt (`source`);
- the one log line of a call skipped or set aside here;
- its count in /metrics once the outbox took it.

Metrics: `asterisk_miitel_calls_total` counts every call the running service
took, whichever way it learnt it; the sender counts the calls it sends or
sets aside, this module those skipped by a [send] rule or set aside before
the sender saw them, for live and catch-up calls alike (a caught-up call
missing its user needs a person as much as a live one). A call is counted
when the outbox took it, never for a duplicate the outbox refused.
`backfill` runs as its own command, with no /metrics: it passes no counter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from .calls.classify import Outcome, call_data_id
from .config import Config
from .ops.policy import decide
from .outbox.states import ReasonCode, Source, State
from .outbox.store import NewCall

calls_log = logging.getLogger("asterisk_miitel.calls")

# A live recording finished from what was known, not from its hangup: its
# end reason says how it was learnt.
SOURCE_BY_END: dict[str, Source] = {"gap": "gap", "pbx_restart": "restart", "shutdown": "restart"}
CAUGHT_UP: frozenset[Source] = frozenset({"catchup", "backfill"})


class IntakeCounter(Protocol):
    """Where intake counts calls for /metrics (ops/metrics.ServiceMetrics is one)."""

    def count_skipped(self, call_data: Mapping[str, Any] | None, reason: str) -> None: ...

    def count_set_aside(self, call_data: Mapping[str, Any] | None) -> None: ...


def admit(outcome: Outcome, source: Source, *, pbx_id: str, config: Config) -> NewCall:
    """The outbox row for a classified call, [send] rules applied.

    `source` is how the call was learnt: "live" becomes "gap" or "restart"
    when the recording was finished after an AMI gap or a restart rather than
    by its hangup (see SOURCE_BY_END). Logs and counts nothing: the caller says
    the call with log_outcome() and counts it with count_queued().
    """
    # The JSON dict once: the [send] rules read it and the outbox stores it.
    payload = outcome.call_data.payload() if outcome.call_data is not None else None
    outcome = apply_send_rules(outcome, payload, config)
    if source == "live":
        source = SOURCE_BY_END.get(outcome.end_reason or "", "live")
    state, code = state_of(outcome)
    parties = None
    if outcome.call_data is not None:
        parties = [
            {"type": p.type, "extension": ext}
            for p, ext in zip(outcome.call_data.participants, outcome.extensions, strict=False)
        ]
    return NewCall(
        id=call_id(outcome, pbx_id),
        file=outcome.file,
        state=state,
        audio=outcome.audio.as_dict(),
        call_data=payload,
        parties=parties,
        reason=outcome.skip or outcome.set_aside,
        reason_code=code,
        source=source,
        ended_at=outcome.ended_at,
        notes=list(outcome.notes),
    )


def apply_send_rules(outcome: Outcome, payload: dict[str, object] | None,
                     config: Config) -> Outcome:
    """[send]: a call the admin keeps out is skipped, with the rule as its reason.
    `payload` is the outcome's call_data as JSON."""
    if payload is None or outcome.skip:
        return outcome
    reason = decide(payload, list(outcome.extensions), config.send,
                    rules=config.numbers.rules())
    if reason is None:
        return outcome
    # It overrides a set-aside: nobody should have to act on a call not to be sent.
    return replace(outcome, skip=reason, set_aside=None)


def call_id(outcome: Outcome, pbx_id: str) -> str:
    """The call_data's id, else the one derived from the recording's key (its file
    when it has none): what live tracking and catch-up both compute."""
    return outcome.call_data_id or call_data_id(pbx_id, outcome.key or outcome.file)


def state_of(outcome: Outcome) -> tuple[State, ReasonCode | None]:
    """The first state in the outbox, and the reason code that goes with it."""
    if outcome.skip:
        return "skipped", "policy" if outcome.skip.startswith("send.") else "unanswered"
    if outcome.set_aside:
        # No code given: a missing user, the commonest.
        return "set_aside", outcome.set_aside_code or "users"
    return "waiting_recording", None


def log_outcome(call: NewCall) -> None:
    """The line of a call skipped or set aside at intake, with its id (none otherwise)."""
    how = "caught up, " if call.source in CAUGHT_UP else ""
    if call.state == "skipped":
        calls_log.info("call %s: %sskipped: %s", call.id, how, call.reason)
    elif call.state == "set_aside":
        calls_log.warning("call %s: %sset aside: %s", call.id, how, call.reason)


def count_queued(call: NewCall, counter: IntakeCounter | None) -> None:
    """Count a call the outbox has just taken (add() said it was new).

    Only what the sender never sees: a [send] skip, a set-aside at intake."""
    if counter is None:
        return
    if call.state == "skipped" and call.reason_code == "policy":
        counter.count_skipped(call.call_data, call.reason or "")
    elif call.state == "set_aside":
        counter.count_set_aside(call.call_data)
