"""Faults the stand-in injects on request, for tests of retry and recovery paths.

A `Fault` applies to the next `times` webhook POSTs and/or upload PUTs (not to
`/calls` or `/_control`). Each such request takes the first fault whose
`method` matches, in the order they were added, and uses up one of its times.

What one fault can do, in the order it happens:

1. `delay` seconds before reading the body (`delay_phase="before_body"`),
2. `drop="before_body"`: close the connection before reading the body,
3. read the body at `slow_body_bps` bytes per second,
4. answer `status` (with `retry_after`, `body`) instead of handling the request;
   with `process=True` the request is handled first (e.g. a 502 from a gateway
   after MiiTel did create the call history). `body_size` streams a body of
   that many bytes (`body` repeated), counting in `body_sent` what the client
   let through before it hung up: a proxy's endless error page. `echo`
   makes the answer quote the request back (its path, the path's last
   segment, the Authorization header and its bare credential), as a chatty
   gateway or a debug error page does: secrets the client must not keep.
5. `delay` seconds after handling, before answering (`delay_phase="after_body"`):
   a client that times out now has sent everything,
6. `drop="after_body"`: close the connection without answering, after handling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Method = Literal["POST", "PUT"]
Phase = Literal["before_body", "after_body"]


@dataclass(slots=True)
class Fault:
    method: Method | None = None  # None: POST and PUT
    times: int = 1
    status: int | None = None
    retry_after: str | None = None
    body: str | None = None
    process: bool = False
    delay: float = 0.0
    delay_phase: Phase = "after_body"
    drop: Phase | None = None
    slow_body_bps: int | None = None
    body_size: int | None = None
    echo: bool = False
    body_sent: int = field(default=0, init=False)  # bytes of the body written so far

    def __post_init__(self) -> None:
        if self.method not in (None, "POST", "PUT"):
            raise ValueError(f"method must be POST, PUT or null, not {self.method!r}")
        phases = ("before_body", "after_body")
        if self.delay_phase not in phases or self.drop not in (None, *phases):
            raise ValueError(f"delay_phase and drop must be one of {phases}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)
        if self.body_size is not None and (self.status is None or self.body_size < 1):
            raise ValueError("body_size needs a status and at least 1 byte")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        return cls(**doc)


class Faults:
    """The queue of pending faults of one stand-in."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._pending.append(fault)

    def clear(self) -> None:
        self._pending.clear()

    def take(self, method: str) -> Fault | None:
        for fault in self._pending:
            if fault.method in (None, method):
                fault.times -= 1
                if fault.times == 0:
                    self._pending.remove(fault)
                return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self._pending]
