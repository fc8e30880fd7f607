"""The outbox's vocabulary: a call's state, and the code that says why it was
set aside or skipped (`calls.reason_code`). store.py describes each state.

Codes are stored in the outbox and shown to people (`calls`, the console,
`sender_outcomes` metrics): a new one is added here, and `ops/calls.py`
`next_action` says what a person does about it.
"""

from __future__ import annotations

from typing import Literal

State = Literal[
    "waiting_recording", "ready", "posting", "created", "uploaded", "sent", "set_aside",
    "skipped",
]
STATES: tuple[State, ...] = (
    "waiting_recording", "ready", "posting", "created", "uploaded", "sent", "set_aside",
    "skipped",
)
# The states the sender works on (due when next_attempt_at has come).
ACTIVE: tuple[State, ...] = ("waiting_recording", "ready", "created")
# Not final yet: the sender's states and a POST in flight (the outbox's depth).
IN_PROGRESS: tuple[State, ...] = ("waiting_recording", "ready", "posting", "created")
DONE: tuple[State, ...] = ("uploaded", "sent")  # MiiTel has it
FINAL: tuple[State, ...] = (*DONE, "set_aside", "skipped")  # nothing left to do by itself

# How a call was learnt (`source`): followed live, finished from what was known
# after an AMI gap or a restart (of the PBX, or ours), or rebuilt from the CDR.
Source = Literal["live", "gap", "restart", "catchup", "backfill"]

# Why a call is set aside: a person must act.
SetAsideCode = Literal[
    # found when the call is classified (calls/classify.py)
    "users",  # a user without a miitel_user_id
    "number",  # a number MiiTel cannot take
    "schema",  # call_data does not fit MiiTel's schema
    "incomplete",  # the service was down while it was answered: who answered is unknown
    "untracked",  # a MixMonitor that could not be followed to a call
    # found by the sender (outbox/sender.py)
    "recording",  # the recording is missing, unreadable or not allowed
    "rejected",  # MiiTel refused the call history
    "outcome_unknown",  # MiiTel may or may not have created it
    "upload_refused",
    "upload_expired",
]
# Why a call is skipped, not sent by design: a [send] rule, or nothing to send
# (nobody answered).
SkipCode = Literal["policy", "unanswered"]
ReasonCode = SetAsideCode | SkipCode

# Set aside where sending again may create a second call history in MiiTel:
# `retry` without --force refuses these.
NEEDS_FORCE: frozenset[SetAsideCode] = frozenset(
    {"outcome_unknown", "upload_expired", "upload_refused"})
# Set aside because of what MiiTel answered (or did not): a MiiTel problem.
MIITEL_CODES: frozenset[SetAsideCode] = frozenset(
    {"rejected", "outcome_unknown", "upload_refused", "upload_expired"})
