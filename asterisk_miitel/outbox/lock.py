"""One service per outbox: an exclusive lock beside it while `run` runs.

Two services on one outbox both send its calls (twice), and each one's crash
recovery breaks the other's steps. So `run` holds an flock on
``<outbox>.lock`` (which says the holder's PID) for as long as it runs; a
second `run` stops at once and says who holds it. The kernel drops the lock
when its process dies (even by SIGKILL), so a stale file never blocks a
restart. The commands that only edit calls (`retry`, `backfill`, `status`)
take no lock: SQLite serialises their writes with the service's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class OutboxLocked(Exception):
    """Another process holds the outbox: one line for the person who started us."""

    def __init__(self, outbox: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"the outbox {outbox} is in use by {who} (an `asterisk-miitel run`): one service "
            f"per outbox. Stop that one first, or give this one its own [outbox] path"
        )
        self.pid = pid


def lock_path(outbox: Path) -> Path:
    return outbox.with_name(outbox.name + ".lock")


class OutboxLock:
    """Held from acquire() to release(); both are cheap and synchronous."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox).expanduser()
        self.path = lock_path(self.outbox)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutboxLock:
        """Take the lock or raise OutboxLocked (never waits)."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise OutboxLocked(self.outbox, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale PID for the next reader
            os.close(fd)  # closing drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
