"""One CDR row, whatever back end it came from, with times as epoch seconds."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

_CLID = re.compile(r'^"(?P<name>.*)"\s*<(?P<num>[^<>]*)>$', re.S)
_CLID_NUM_ONLY = re.compile(r"^<(?P<num>[^<>]*)>$")


@dataclass(slots=True)
class CdrRow:
    """The columns catch-up reads. Back-end-specific extras stay in `extra`."""

    start: float
    end: float
    answer: float | None = None
    clid: str = ""
    src: str = ""
    dst: str = ""
    dcontext: str = ""
    channel: str = ""
    dstchannel: str = ""
    lastapp: str = ""
    lastdata: str = ""
    duration: int = 0
    billsec: int = 0
    disposition: str = ""
    accountcode: str = ""
    uniqueid: str = ""
    userfield: str = ""
    linkedid: str = ""
    sequence: int | None = None
    # FreePBX's asteriskcdrdb (CDR variables its dialplan sets)
    did: str = ""
    recordingfile: str = ""
    cnum: str = ""
    cnam: str = ""
    origin: str = ""  # where the row was read: "Master.csv:123", "cdr@db"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.disposition.upper() == "ANSWERED" and self.answer is not None

    @property
    def caller_name(self) -> str:
        return split_clid(self.clid)[0]

    @property
    def caller_num(self) -> str:
        return self.src or split_clid(self.clid)[1]

    def key(self) -> tuple[object, ...]:
        """The same CDR read twice (a rotated copy, two back ends) is one row."""
        return (self.uniqueid, self.channel, self.dstchannel, int(self.start), int(self.end),
                self.sequence, self.lastapp)


def split_clid(clid: str) -> tuple[str, str]:
    """Asterisk's merged caller ID -> (name, number).

    `"山田 太郎" <0312349999>` -> (山田 太郎, 0312349999); `<0312349999>` and a bare
    number -> ("", number); a bare name -> (name, ""). Quotes inside the name
    stay (Asterisk does not escape them: `"A "B"" <1>` -> `A "B"`).
    """
    clid = clid.strip()
    m = _CLID.match(clid)
    if m:
        return m.group("name"), m.group("num").strip()
    m = _CLID_NUM_ONLY.match(clid)
    if m:
        return "", m.group("num").strip()
    if clid and re.fullmatch(r"[+*#0-9]+", clid):
        return "", clid
    return clid.strip('"'), ""


def parse_time(text: str, tz: tzinfo | None) -> float | None:
    """`2026-11-23 23:01:40` (cdr_csv, cdr_custom) in `tz` -> epoch; "" -> None.

    Also takes ISO 8601 with an offset and plain epoch seconds (cdr_custom's
    start(int64)/start(double)). tz None: this machine's zone.
    """
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return moment.timestamp()


def to_int(text: object) -> int:
    try:
        return int(float(str(text).strip() or 0))
    except ValueError:
        return 0


# What our dialplan's miitel-tag / miitel-queue / miitel-group leave in the CDR's
# userfield (dialplan/miitel-record.conf): "miitel-Tag:<base64>|miitel-Queue:<base64>|".
_MARK = re.compile(r"miitel-(Tag|Queue|Group):([A-Za-z0-9+/=]{1,700})\|")


def miitel_marks(userfield: str) -> list[tuple[str, str]]:
    """The (kind, value) pairs in a CDR userfield, in order: kind Tag, Queue or
    Group. Anything else in the field (another dialplan's use of it) is ignored,
    and so is a mark that does not decode to text."""
    out: list[tuple[str, str]] = []
    for kind, data in _MARK.findall(userfield or ""):
        try:
            value = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if value:
            out.append((kind, value))
    return out
