"""Bytes from the AMI socket -> messages (dicts of headers), incrementally.

panoramisk decodes each TCP chunk on its own (`errors='ignore'`), so a UTF-8
character split across two reads is silently dropped (a caller named 山田太郎
arrives as 田太郎). Here bytes are buffered until a message is complete and
only then decoded, so any split of the stream gives the same messages.

A message ends at an empty line (CRLF CRLF; LF-only transcripts work too,
but a live connection is read with `strict_crlf`: Asterisk passes some
dialplan text on raw, and a bare LF there is data). A repeated header keeps
its first value, so text after the real headers cannot override them.
Oversized messages, garbage, lines without `: ` and undecodable bytes are
reported with their reason (`PROBLEMS`), never fatal: the next message
parses as if nothing happened.

Speed (benchmarks/throughput.py has the profile): Asterisk sends CRLF only,
so that case takes C-level shortcuts (bytes.split for message ends, one
dict() per message); anything unusual (LF-only lines, `Key:` without a
value, garbage, repeated headers) falls back to the careful line-by-line
path, which gives the same result for every input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

Message = dict[str, str]
# Why input was dropped or damaged (ListenerStats.dropped, the /metrics label):
# oversized: a message longer than max_message, dropped whole;
# malformed: a block with neither Event nor Response (garbage), dropped;
# bad_header: header lines without `: `, dropped (the rest of the message kept);
# invalid_utf8: bytes that are not UTF-8, replaced by U+FFFD (the message kept).
Problem = Literal["oversized", "malformed", "bad_header", "invalid_utf8"]
PROBLEMS: tuple[Problem, ...] = get_args(Problem)
OnProblem = Callable[[Problem, str], None]

BANNER_PREFIX = b"Asterisk Call Manager/"
# One AMI message is a few hundred bytes; 64 KiB is far beyond any real one
# (a long Command output arrives as many `Output:` lines, still well under).
DEFAULT_MAX_MESSAGE = 64 * 1024

_END = re.compile(rb"\r?\n\r?\n")
_KEEP = 3  # the longest start of a message end: b"\r\n\r"


@dataclass
class ParserStats:
    messages: int = 0
    malformed: int = 0  # blocks with neither Event nor Response
    bad_lines: int = 0  # lines without `: `
    oversized: int = 0  # messages dropped for exceeding max_message
    bad_utf8: int = 0  # messages with bytes that are not UTF-8 (replaced)
    problems: list[str] = field(default_factory=list)  # the latest few, for logs

    def note(self, text: str) -> None:
        self.problems.append(text)
        del self.problems[:-20]


class AmiParser:
    """Feed it bytes in any chunks; it returns the complete messages."""

    def __init__(
        self,
        max_message: int = DEFAULT_MAX_MESSAGE,
        on_problem: OnProblem | None = None,
        keys: tuple[str, ...] = ("Event", "Response"),
        strict_crlf: bool = False,
    ) -> None:
        self.max_message = max_message
        # Asterisk ends every line with CRLF. It sends a Newexten's AppData and
        # a UserEvent's own headers as the dialplan made them, so a bare LF in
        # there (a caller name from a lookup) is data: strict, it never ends a
        # header or a message. Off for transcripts saved with LF-only lines.
        self.strict_crlf = strict_crlf
        self.keys = keys  # a message has one of these (a server parses "Action")
        self._keyset = frozenset(keys)
        self.version: str | None = None
        self.stats = ParserStats()
        self._buf = b""
        self._skipping = False  # inside an oversized message: drop until its end
        self._expect_banner = True
        self._on_problem = on_problem

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf + data if self._buf else data
        if self._expect_banner:
            if buf.startswith(BANNER_PREFIX[: len(buf)]):
                taken = self._take_banner(buf)
                if taken is None:
                    return []
                buf = taken
            self._expect_banner = False
        if self.strict_crlf or buf.count(b"\n") == buf.count(b"\r\n"):
            # Every LF ends a CRLF, so every message end is CRLF CRLF: split in
            # C (12x faster than the regex, which LF-only transcripts need).
            parts = buf.split(b"\r\n\r\n")
        else:
            parts = _END.split(buf)
        self._buf = parts.pop()
        out: list[Message] = []
        strict, keys, limit, stats = self.strict_crlf, self._keyset, self.max_message, self.stats
        for block in parts:
            if self._skipping:
                self._skipping = False  # this block is the oversized message's tail
                continue
            if len(block) > limit:
                self._count_oversized(block)
            elif block:
                # The common message, inline (once per event): UTF-8, the fast
                # shape, one of `keys`. Anything else is _parse's to report.
                try:
                    msg = _fast(block.decode("utf-8"), strict)
                except UnicodeDecodeError:
                    msg = None
                if msg is not None and not keys.isdisjoint(msg):
                    stats.messages += 1
                    out.append(msg)
                    continue
                msg = self._parse(block)
                if msg is not None:
                    out.append(msg)
        if len(self._buf) > self.max_message:
            self._drop_oversized()
        return out

    def _take_banner(self, buf: bytes) -> bytes | None:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) < len(BANNER_PREFIX) + 64:
                self._buf = buf  # the banner line is still arriving
                return None
            end = len(buf)
        line = buf[:end].rstrip(b"\r").decode("utf-8", "replace")
        if line.startswith("Asterisk Call Manager/"):
            self.version = line.partition("/")[2].strip()
            return buf[end + 1 :]
        return buf

    def _drop_oversized(self) -> None:
        if not self._skipping:  # count each oversized message once
            self._count_oversized(self._buf)
        # Keep the last bytes: they may be the start of the message's end
        # (`\r\n\r` with the `\n` in the next read). Dropped, the end would
        # go unseen and the next good message be taken for the tail.
        self._buf = self._buf[-_KEEP:]
        self._skipping = True

    def _count_oversized(self, block: bytes) -> None:
        self.stats.oversized += 1
        self._problem(
            "oversized",
            f"dropped an AMI message longer than {self.max_message} bytes "
            f"(starts {block[:60]!r})",
        )

    def _parse(self, block: bytes) -> Message | None:
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.bad_utf8 += 1
            text = block.decode("utf-8", "replace")
            self._problem("invalid_utf8", f"replaced bytes that are not UTF-8 in an AMI "
                          f"message: {block[:80]!r}")
        bad = self.stats.bad_lines
        msg = _fast(text, self.strict_crlf)
        if msg is None:
            msg = self._careful(text)
        for key in self.keys:
            if key in msg:
                self.stats.messages += 1
                if self.stats.bad_lines > bad:
                    self._problem("bad_header", f"dropped {self.stats.bad_lines - bad} line(s) "
                                  f"without `: ` from an AMI message: {block[:80]!r}")
                return msg
        self.stats.malformed += 1
        self._problem("malformed",
                      f"ignored an AMI message without {'/'.join(self.keys)}: {block[:80]!r}")
        return None

    def _careful(self, text: str) -> Message:
        """Line by line: LF or CRLF, `Key:` with no value, bad lines, repeated keys."""
        msg: Message = {}
        strict = self.strict_crlf
        for line in text.split("\r\n" if strict else "\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                line = line if strict else line.rstrip("\r")
                if not line:
                    continue
                if line.endswith(":"):  # `Key:` with an empty value
                    key, value = line[:-1], ""
                else:
                    self.stats.bad_lines += 1
                    continue
            if value.endswith("\r") and not strict:
                value = value[:-1]
            if key in msg:
                if key == "ChanVariable":
                    # `ChanVariable: NAME=value`, repeated once per variable
                    name, _, val = value.partition("=")
                    msg["ChanVariable:" + name] = val
                continue  # otherwise the first occurrence wins
            if key == "ChanVariable":
                name, _, val = value.partition("=")
                msg["ChanVariable:" + name] = val
                msg[key] = value
                continue
            msg[key] = value
        return msg

    def _problem(self, kind: Problem, text: str) -> None:
        self.stats.note(text)
        if self._on_problem is not None:
            self._on_problem(kind, text)


def _fast(text: str, strict: bool = False) -> Message | None:
    """The common message (CRLF lines, each `Key: value`, no key twice), built
    with as little per-line work as possible; None when anything is unusual,
    for `_careful` to decide (so both always give the same result)."""
    lines = text.split("\r\n")
    if not strict and (text.count("\n") != len(lines) - 1 or text.endswith("\r")):
        return None  # an LF without CR (LF-only lines), or a CR the careful path strips
    msg: Message = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if not sep:
            return None  # `Key:` without a value, an empty or a bad line
        msg[key] = value
    if len(msg) != len(lines) or "ChanVariable" in msg:
        return None  # a repeated key: the first one wins, ChanVariable is kept by name
    return msg
