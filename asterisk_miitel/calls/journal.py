"""What must survive the service's death about calls still in progress.

The tracker lives in memory. The journal mirrors, in the outbox database,
the state of every open recording (and, between two recordings of one
channel, what that channel's past was), so that after a crash, a kill -9 or
a restart each call resumes where it was:

- its channel is still up: the recording is adopted and tracked on;
- its channel is gone: the recording is finished from what was known.

This module decides what to write and how to resume; the service does the
I/O (Outbox.journal, Outbox.journaled). Snapshots are coalesced: one write
per recording per flush, however many events changed it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .snapshot import dump_recording, load_recording
from .state import Channel, Recording, Segment
from .tracker import CallTracker

if TYPE_CHECKING:
    from ..recordings.allowed import AllowedDirs

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

    # -- after a restart -----------------------------------------------------------------

    def restore(
        self,
        entries: Iterable[tuple[str, dict[str, Any], float]],
        tracker: CallTracker,
        live_ids: set[str],
        *,
        pbx_restarted: bool,
        last_alive: float | None,
        now: float,
        audio_seconds: Callable[[Recording], float | None] = lambda rec: None,
    ) -> tuple[list[Recording], list[Recording], list[str]]:
        """Resume journaled recordings.

        Returns (adopted, finished, unreadable keys). `finished` recordings are
        closed (ended set) and must be queued like any closed recording.
        """
        adopted: list[Recording] = []
        finished: list[Recording] = []
        bad: list[str] = []
        for key, data, updated_at in entries:
            try:
                rec = load_recording(data)
            except (KeyError, ValueError, TypeError):
                bad.append(key)
                continue
            up = rec.channel.uniqueid in live_ids and not pbx_restarted
            if key.startswith(HISTORY):
                if up:
                    tracker.merge_history(rec)
                    self._histories.add(rec.channel.uniqueid)
                else:
                    self.pending[key] = None
                continue
            if up:
                rec.notes.append("the service restarted during this call")
                rec.resumed = True
                adopted.append(tracker.adopt(rec, now))
                continue
            end = max(updated_at, last_alive or updated_at)
            _finish(rec, end, pbx_restarted)
            if rec.left and not rec.right:
                estimate_answer(rec, end, audio_seconds(rec))
            finished.append(rec)
        return adopted, finished, bad


def _finish(rec: Recording, end: float, pbx_restarted: bool) -> None:
    for seg in (*rec.left, *rec.right):
        if seg.since is not None:
            seg.talk += max(0.0, end - seg.since)
            seg.since = None
            seg.last = end
    rec.ended = end
    if pbx_restarted:
        rec.end_reason = "pbx_restart"
        rec.notes.append("truncated by PBX restart: Asterisk restarted during the call")
    else:
        rec.end_reason = "gap"
        rec.notes.append(
            "finished after a service restart: the call ended while the service was down; "
            "its end time is the last moment the service was running"
        )


def estimate_answer(rec: Recording, end: float, seconds: float | None) -> None:
    """Nobody was bridged as far as the journal knew. If the recording holds
    audio, someone answered while we were away: the one phone that was rung,
    at the end minus the audio's length (MixMonitor's b option records only
    bridged audio). Several phones rang: unknown, a person decides."""
    if seconds is None or seconds < 0.5:
        return  # no audio: it really was not answered
    targets = [t for t in (rec.channel.dial_targets or ()) if not t.is_local]
    if len(targets) != 1:
        rec.incomplete = True
        return
    start = max(rec.started, end - seconds)
    rec.right.append(Segment(party=targets[0], first=start, last=end, talk=end - start))
    rec.notes.append(
        "answered while the service was down: the answer time is estimated from the "
        "recording's length"
    )


def recording_seconds(path: str, mode: str, rate: int,
                      allowed: AllowedDirs | None = None) -> float | None:
    """How much audio a finished recording holds, from its size or header.
    With `allowed`, a name outside the path rule is never looked at (None)."""
    from ..recordings import RecordingError, probe

    if allowed is not None and not allowed.permits(path):
        return None
    try:
        size = os.stat(path).st_size
        if path.lower().endswith((".raw", ".sln", ".slin")):
            channels = 2 if mode == "interleaved" else 1
            return size / (2 * channels * rate)
        return probe(path, allowed.open_file if allowed is not None else None).duration
    except (OSError, RecordingError):
        return None
