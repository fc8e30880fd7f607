"""What must survive the service's death about calls still in progress.

The tracker lives in memory. The journal mirrors, in the outbox database,
the state of every open recording (and, between two recordings of one
channel, what that channel's past was), so that after a crash, a kill -9 or
a restart each call resumes where it was:

- its channel is still up: the recording is adopted and tracked on;
- its channel is gone: the recording is finished from what was known.

This module decides what to write (snapshot.py says how); restore.py
decides how to resume; the service does the I/O (Outbox.journal,
Outbox.journaled). Snapshots are coalesced: one write per recording per
flush, however many events changed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .snapshot import dump_recording
from .state import Channel, Recording

HISTORY = "history:"  # key prefix: a channel's past, kept between two recordings


class Journal:
    def __init__(self) -> None:
        self.pending: dict[str, dict[str, Any] | None] = {}  # None: delete the entry
        self._histories: set[str] = set()  # uniqueids with a history entry

    # -- fed by the tracker's hooks ------------------------------------------------------

    def changed(self, rec: Recording) -> None:
        if rec.ended is None:
            self.pending[rec.file] = dump_recording(rec)

    def closed(self, rec: Recording) -> None:
        # The entry itself is deleted in the transaction that queues the call.
        self.pending.pop(rec.file, None)
        if rec.end_reason == "stopped" and rec.channel.hungup is None:
            # StopMixMonitor on a channel that lives on (a transfer, just before
            # our dialplan starts the next recording): keep what it knew (who
            # transferred it) until the channel hangs up.
            uid = rec.channel.uniqueid
            self.pending[HISTORY + uid] = {**dump_recording(rec), "history": True}
            self._histories.add(uid)

    def gone(self, channel: Channel) -> None:
        if channel.uniqueid in self._histories:
            self._histories.discard(channel.uniqueid)
            self.pending[HISTORY + channel.uniqueid] = None

    def take(self) -> dict[str, dict[str, Any] | None]:
        batch, self.pending = self.pending, {}
        return batch

    def snapshot_all(self, recordings: Iterable[Recording]) -> None:
        for rec in recordings:
            self.changed(rec)

    # -- after a restart (restore.py) ----------------------------------------------------

    def history_kept(self, uniqueid: str) -> None:
        """A journaled history entry was merged into a live channel: delete it
        when that channel hangs up."""
        self._histories.add(uniqueid)
