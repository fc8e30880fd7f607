"""Where CDR rows come from: cdr_csv files or a CDR database.

Every source streams rows (`scan`) together with a watermark: a time before
which no later row can still belong to a call (see `rebuild.Assembler`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ..rows import CdrRow


class CdrSource(Protocol):
    """A stream of CDR rows for calls that may have ended in [since, until]."""

    # "end": rows come in the order Asterisk wrote them (about the end of
    # each call: cdr_csv); "start": ordered by start (a database query).
    order: str

    def describe(self) -> str: ...

    def scan(self, since: float, until: float) -> AsyncIterator[CdrRow]: ...

    @property
    def problems(self) -> list[str]: ...

    async def close(self) -> None: ...


class SourceError(Exception):
    """The CDR cannot be read; the message says where and why (never a secret)."""
