"""Resume journaled recordings in a new tracker after the service restarted.

The journal (journal.py) wrote each open recording as a snapshot; after a
crash, a kill -9 or a restart the service reads them back and, once
Asterisk has listed its live channels, `restore` decides for each:

- its channel is still up: the recording is adopted and tracked on; the
  live channels gain what the journal knew of their past (who dialled whom,
  transfers, tags), since a CoreShowChannels snapshot cannot tell it;
- its channel is gone: the recording is finished from what was known, its
  end the last moment the service was running.

It works on the tracker's public state (`channels`, `follow`); the tracker
itself only folds events. No I/O here: the caller passes what the audio
files say (`audio_seconds`, recordings/duration.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .journal import HISTORY, Journal
from .snapshot import load_recording
from .state import Channel, Recording, Segment
from .tracker import CallTracker

# What a journal knows of a channel's past that a live snapshot cannot tell.
HISTORY_FIELDS = ("context", "exten", "origin_num", "dialled_by", "dial_string", "dial_targets",
                  "originated", "did", "ampuser", "queue", "queue_label", "group", "tags",
                  "voicemail_box", "vm_file", "transfer", "made_transfer", "local_peer",
                  "earlier_transfers", "recorded")
# Where the call started (context, exten) is history: a live snapshot shows
# where the channel is now (after a transfer, the transferer's context), so
# the journal wins there even over a live value.
_JOURNAL_WINS = frozenset({"context", "exten", "dialled_by", "originated", "origin_num"})


def restore(
    entries: Iterable[tuple[str, dict[str, Any], float]],
    tracker: CallTracker,
    journal: Journal,
    live_ids: set[str],
    *,
    pbx_restarted: bool,
    last_alive: float | None,
    now: float,
    audio_seconds: Callable[[Recording], float | None] = lambda rec: None,
) -> tuple[list[Recording], list[Recording], list[str]]:
    """Resume journaled recordings (key, snapshot, when it was written).

    Returns (adopted, finished, unreadable keys). `finished` recordings are
    closed (ended set) and must be queued like any closed recording. A
    channel's history entry is merged while the channel is up, else deleted
    (through `journal`, which writes on).
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
                merge_history(tracker, rec)
                journal.history_kept(rec.channel.uniqueid)
            else:
                journal.pending[key] = None
            continue
        if up:
            rec.notes.append("the service restarted during this call")
            rec.resumed = True
            adopted.append(adopt(tracker, rec, now))
            continue
        end = max(updated_at, last_alive or updated_at)
        _finish(rec, end, pbx_restarted)
        if rec.left and not rec.right:
            estimate_answer(rec, end, audio_seconds(rec))
        finished.append(rec)
    return adopted, finished, bad


def adopt(tracker: CallTracker, rec: Recording, at: float) -> Recording:
    """Take over a journaled recording whose channel is still up (after a restart).

    Channels that are still up keep their live state and gain what the
    journal knew of their past (who dialled whom, transfers, tags); the
    recording's history (parties so far) comes from the journal.
    """
    mapping = merge_history(tracker, rec)
    for seg in (*rec.left, *rec.right):
        seg.party = mapping.get(seg.party.uniqueid, seg.party)
    rec.seen = [mapping.get(c.uniqueid, c) for c in rec.seen]
    rec.channel = mapping[rec.channel.uniqueid]
    return tracker.follow(rec, at)


def merge_history(tracker: CallTracker, rec: Recording) -> dict[str, Channel]:
    """Give live channels what a journaled recording knew of their past.

    Returns uniqueid -> the channel object to use from now on (the live
    one where the channel is still up, else the journal's).
    """
    known = _reachable(rec)
    mapping: dict[str, Channel] = {}
    for uid, old in known.items():
        live = tracker.channels.get(uid)
        if live is None:
            mapping[uid] = old
            continue
        for name in HISTORY_FIELDS:
            if getattr(old, name) and (
                name in _JOURNAL_WINS or getattr(live, name) in (None, "", False)
            ):
                setattr(live, name, getattr(old, name))
        live.created = min(live.created, old.created)
        live.partial = False
        mapping[uid] = live
    for ch in {id(c): c for c in mapping.values()}.values():
        _remap(ch, mapping)
    return mapping


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


def _reachable(rec: Recording) -> dict[str, Channel]:
    """Every channel a recording refers to, directly or through another channel."""
    found: dict[str, Channel] = {}
    todo = [rec.channel, *(s.party for s in (*rec.left, *rec.right)), *rec.seen]
    while todo:
        ch = todo.pop()
        if ch.uniqueid in found:
            continue
        found[ch.uniqueid] = ch
        todo.extend(c for c in (ch.dialled_by, ch.local_peer) if c is not None)
        todo.extend(ch.dial_targets or ())
        for t in (ch.transfer, ch.made_transfer, *(ch.earlier_transfers or ())):
            if t is not None:
                todo.extend(c for c in (t.transferer, t.transferee) if c is not None)
    return found


def _remap(ch: Channel, mapping: dict[str, Channel]) -> None:
    def m(c: Channel | None) -> Channel | None:
        return mapping.get(c.uniqueid, c) if c is not None else None

    ch.dialled_by = m(ch.dialled_by)
    ch.local_peer = m(ch.local_peer)
    if ch.dial_targets:
        ch.dial_targets = [mapping.get(t.uniqueid, t) for t in ch.dial_targets]
    for t in (ch.transfer, ch.made_transfer, *(ch.earlier_transfers or ())):
        if t is not None:
            t.transferer = m(t.transferer)
            t.transferee = m(t.transferee)
