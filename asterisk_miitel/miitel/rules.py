"""Which participant must carry a `miitel_user_id` (MiiTel's help article).

| event_type         | FROM     | TO                                             |
|--------------------|----------|------------------------------------------------|
| OUTGOING_CALL      | required | -                                              |
| OUTGOING_TRANSFER  | required | -                                              |
| INCOMING_CALL      | -        | required if answered                           |
| AUTOMATIC_TRANSFER | -        | -                                              |
| EXTENSION          | required | required without a group; with one, if answered|
| EXTENSION_TRANSFER | required | same as EXTENSION                              |
| AUTOMATIC_RECORD   | -        | -                                              |

A call that breaks the table is not sent: MiiTel cannot file it under a user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .models import EventType

Side = Literal["FROM", "TO"]


def user_id_required(event_type: EventType, side: Side, *, answered: bool, grouped: bool) -> bool:
    if side == "FROM":
        return event_type in (
            EventType.OUTGOING_CALL,
            EventType.OUTGOING_TRANSFER,
            EventType.EXTENSION,
            EventType.EXTENSION_TRANSFER,
        )
    if event_type == EventType.INCOMING_CALL:
        return answered
    if event_type in (EventType.EXTENSION, EventType.EXTENSION_TRANSFER):
        return answered or not grouped
    return False


@dataclass(frozen=True, slots=True)
class PartyRef:
    """Enough about a participant to check the table and name the culprit."""

    side: Side
    has_user_id: bool
    extension: str | None  # the PBX extension, if the party is on this PBX
    label: str  # what to call it in a message: number, channel
    # A phone's device (endpoint) name when no extension was found for it:
    # the fix is to list it as that user's `endpoints`.
    device: str | None = None


def missing_user_ids(
    event_type: EventType, parties: Sequence[PartyRef], *, answered: bool, grouped: bool
) -> list[str]:
    """One message per participant that needs a MiiTel user and has none."""
    problems = []
    for party in parties:
        if party.has_user_id:
            continue
        if not user_id_required(event_type, party.side, answered=answered, grouped=grouped):
            continue
        if party.extension:
            problems.append(
                f"{event_type} needs a MiiTel user for {party.side} but extension "
                f"{party.extension} has none: add it to [users] in the config"
            )
        elif party.device:
            problems.append(
                f"{event_type} needs a MiiTel user for {party.side} but the phone "
                f"{party.device} ({party.label}) is not a known extension of this PBX: add "
                f'endpoints = ["{party.device}"] under its user\'s extension in [users] (or '
                "fill the users CSV's endpoints column), then `asterisk-miitel retry "
                "--all-set-aside`"
            )
        else:
            problems.append(
                f"{event_type} needs a MiiTel user for {party.side} but {party.label} "
                "is not a known extension of this PBX"
            )
    return problems
