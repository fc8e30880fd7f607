"""What the ops endpoints read from the running service, as typing Protocols.

The real `Service` satisfies `ServiceView` as it is; tests pass a small fake
built from the real stats dataclasses. Everything here is read-only: the
ops side never changes the service's state.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..ami.listener import ListenerStats
from ..calls.tracker import TrackerStats
from ..outbox.sender import SenderStats
from ..outbox.states import IN_PROGRESS


class ListenerView(Protocol):
    @property
    def stats(self) -> ListenerStats: ...


class TrackerView(Protocol):
    @property
    def stats(self) -> TrackerStats: ...


class SenderView(Protocol):
    @property
    def stats(self) -> SenderStats: ...


class OutboxView(Protocol):
    @property
    def path(self) -> Path: ...

    async def counts(self) -> dict[str, int]: ...

    async def oldest_waiting(self) -> float | None: ...


class ServiceView(Protocol):
    """The parts of asterisk_miitel.service.Service that health and metrics read."""

    @property
    def listener(self) -> ListenerView | None: ...  # None: not listening (replay)

    @property
    def tracker(self) -> TrackerView: ...

    @property
    def outbox(self) -> OutboxView: ...

    @property
    def sender(self) -> SenderView | None: ...  # None until started

    @property
    def accepting(self) -> bool: ...  # False while the outbox cannot be written

    @property
    def clock(self) -> Callable[[], float]: ...  # the outbox's clock (time.time)


@dataclass(frozen=True, slots=True)
class OutboxSnapshot:
    """Counts by state, read once per scrape or probe (one GROUP BY query)."""

    counts: dict[str, int] = field(default_factory=dict)
    oldest_waiting_at: float | None = None  # created_at of the oldest call not final
    error: str | None = None  # the outbox could not be read

    @property
    def depth(self) -> int:
        """Calls not final yet (a POST in flight counts): the outbox's depth."""
        return sum(self.counts.get(s, 0) for s in IN_PROGRESS)


async def snapshot_outbox(outbox: OutboxView) -> OutboxSnapshot:
    try:
        counts = await outbox.counts()
        oldest = await outbox.oldest_waiting()
    except (RuntimeError, sqlite3.Error, OSError) as exc:  # closed, locked, disk gone
        return OutboxSnapshot(error=f"{type(exc).__name__}: {exc}")
    return OutboxSnapshot(counts=counts, oldest_waiting_at=oldest)


def outbox_writable(path: Path, min_free_bytes: int = 1024 * 1024) -> bool:
    """Can SQLite write here: the file and its folder (journal, WAL) writable,
    and the disk not full. Cheap: two access() calls and one statvfs()."""
    import os
    import shutil

    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    if path.exists() and not os.access(path, os.W_OK):
        return False
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free >= min_free_bytes
    return False
