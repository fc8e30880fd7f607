"""call_data as MiiTel's Incoming Webhook schema defines it.

The models mirror MiiTel's official Incoming Webhook schema, shipped beside
this module as incoming_webhook.schema.json: Participant
and Tag forbid extra keys, CallData allows them (we add `group_name`, the
spelling MiiTel's own code samples send, next to the schema's `groupname`).
Anything built here passes the official schema; the contract test checks it.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    computed_field,
)

from ..recordings.spec import ChannelType, FileType
from .numbers import NUMBER_PATTERN

TAG_MAX = 512


class EventType(StrEnum):
    OUTGOING_CALL = "OUTGOING_CALL"
    OUTGOING_TRANSFER = "OUTGOING_TRANSFER"
    INCOMING_CALL = "INCOMING_CALL"
    AUTOMATIC_TRANSFER = "AUTOMATIC_TRANSFER"
    EXTENSION = "EXTENSION"
    EXTENSION_TRANSFER = "EXTENSION_TRANSFER"
    AUTOMATIC_RECORD = "AUTOMATIC_RECORD"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime needs an explicit UTC offset")
    return value


def rfc3339(value: datetime) -> str:
    """`2026-11-23T21:12:23+09:00`: RFC 3339, colon in the offset.

    (One official sample writes `+0900`, which strict date-time checks reject.)
    """
    return value.isoformat(timespec="seconds")


Timestamp = Annotated[
    datetime, AfterValidator(_aware), PlainSerializer(rfc3339, return_type=str)
]


def _check_number(value: str) -> str:
    if not NUMBER_PATTERN.match(value):
        raise ValueError(f"number {value!r} does not match {NUMBER_PATTERN.pattern}")
    return value


class Participant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["FROM", "TO"]
    stereo_lr: Literal["left", "right"]
    miitel_user_id: UUID | None
    number: Annotated[str, AfterValidator(_check_number)]
    name: str | None


def cut_tag(value: str) -> str:
    """At most TAG_MAX characters, never ending inside a combined character."""
    value = value.strip()
    if len(value) <= TAG_MAX:
        return value
    end = TAG_MAX
    # Step back over combining marks, joiners and variation selectors, so a
    # base letter never loses its accent (or an emoji its modifier) halfway.
    while end > 0 and _continues(value[end]):
        end -= 1
    if end > 0 and value[end - 1] == "\u200d":
        end -= 1
    return value[:end].rstrip()


def _continues(ch: str) -> bool:
    return (
        unicodedata.combining(ch) != 0
        or ch in "\u200d\u20e3"
        or "\ufe00" <= ch <= "\ufe0f"
        or "\U0001f3fb" <= ch <= "\U0001f3ff"
    )


class Tag(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=TAG_MAX)


def make_tags(values: list[str]) -> list[Tag]:
    """Tags from raw strings: cut to 512 characters, empty and repeated ones dropped."""
    seen: set[str] = set()
    tags = []
    for raw in values:
        value = cut_tag(raw)
        if value and value not in seen:
            seen.add(value)
            tags.append(Tag(value=value))
    return tags


class CallData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_data_id: str = Field(min_length=1)
    audio_file_type: FileType
    event_type: EventType
    groupname: str | None = None
    queue_name: str | None = None
    call_starts_at: Timestamp
    call_answered_at: Timestamp | None
    call_ends_at: Timestamp
    circuit_number: str | None = None
    audio_channel_type: ChannelType = "STEREO"
    participants: list[Participant]
    tags: list[Tag] = Field(default_factory=list)

    # The schema says `groupname`, MiiTel's own samples send `group_name`:
    # send both, with the same value. (A computed field, not a wrap
    # serializer: pydantic-core writes it without a Python call per dump.)
    @computed_field  # type: ignore[prop-decorator]
    @property
    def group_name(self) -> str | None:
        return self.groupname

    def payload(self) -> dict[str, object]:
        """The JSON-able dict POSTed in `call_data`."""
        return self.model_dump(mode="json")
