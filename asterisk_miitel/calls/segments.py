"""Where a recording's conversation partner changed: one piece per conversation.

A MixMonitor records its channel until it hangs up, whoever that channel
talks to. After a transfer the same file holds two conversations (the
customer with the user who transferred, then with the target), and MiiTel
must get each as its own call history, or B's words count as A's. The
tracker keeps, for each side of a recording, every party's stretches in the
bridge (Segment.spans); this module cuts the recording where a side's
party set is replaced by a disjoint one. Pure functions, no I/O.

- A side that empties and fills again with the same party is a hold (a
  consultation, music on hold, a park): the same conversation goes on. The
  time nobody was there stays in the piece before.
- A side that fills with somebody else is a new conversation: the cut is
  the moment they join (BridgeEnter, with Asterisk's Timestamp), or, when
  the recorded channel itself left its bridge (a user recording their own
  channel goes to consult a colleague), the moment it left.
- A party joining beside the one still there (a conference, a barge) is
  not a cut: both talk to the same person.
- A piece after a cut (index >= 1) that another recording holds too is
  marked `duplicate_of` and is not sent twice: the consultation recorded on
  a Local half, once the transfer moves the customer in, duplicates the
  customer's own recording; after a blind transfer, a second MixMonitor on
  the customer's channel duplicates the first one, which runs on; a user's
  own recording, once they consult a colleague, duplicates the recording
  the consultation's Local half makes. Piece 0 is never dropped: it is what
  a recording was before pieces existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .state import Channel, Recording, Segment

# Seconds two recordings' times may disagree by and still cover one conversation.
COVER_TOLERANCE = 0.5
# Seconds between the recorded channel's BridgeLeave and its side emptying.
MOVE_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Piece:
    """One conversation of a recording: [start, end) in Asterisk time."""

    index: int
    start: float
    end: float
    offset: float  # seconds into the file where the piece's audio starts
    length: float | None  # seconds of audio; None: to the end of the file
    left: tuple[Channel, ...]
    right: tuple[Channel, ...]
    duplicate_of: str | None = None  # the file of the recording that holds it too

    @property
    def window(self) -> tuple[float, float | None]:
        """(start, end) offsets in seconds into the file; end None = its end."""
        return (self.offset, None if self.length is None else self.offset + self.length)

    def describe(self) -> str:
        names = " + ".join(c.name for c in (*self.left, *self.right)) or "nobody"
        end = "end" if self.length is None else f"{self.offset + self.length:.2f} s"
        return f"piece {self.index + 1}: {names}, {self.offset:.2f} s to {end} of the file"


Stretch = tuple[float, float, Channel]


def stretches(segments: list[Segment], until: float) -> list[Stretch]:
    """Every (start, end, party) a side had, in start order; an open one ends `until`."""
    out: list[Stretch] = []
    for seg in segments:
        spans = list(seg.spans)
        if seg.since is not None:
            spans.append((seg.since, max(seg.since, until)))
        if not spans and seg.last is not None:  # a segment from before spans were kept
            spans.append((seg.first, seg.last))
        out.extend((a, b, seg.party) for a, b in spans if b > a)
    out.sort(key=lambda s: s[0])
    return out


def cut_times(rec: Recording) -> list[float]:
    """The moments a side's party set was replaced by a disjoint one."""
    until = rec.ended if rec.ended is not None else rec.started
    sides = (stretches(rec.left, until), stretches(rec.right, until))
    times = sorted({s[0] for side in sides for s in side})
    last: list[frozenset[int]] = [frozenset(), frozenset()]
    cuts: list[float] = []
    for t in times:
        cut: float | None = None
        for i, side in enumerate(sides):
            now = frozenset(id(p) for a, b, p in side if a <= t < b)
            if not now:
                continue  # nobody there: a hold, the conversation goes on
            if last[i] and not now & last[i]:
                cut = min(cut or t, _moved_away(rec, side, t))
            last[i] = now
        if cut is not None and cut > rec.started and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    return cuts


def _moved_away(rec: Recording, side: list[Stretch], refill: float) -> float:
    """Where the conversation before `refill` ended: when the side emptied, if
    the recorded channel itself left its bridge then, by itself (the user who
    recorded went to consult: their dialling and the ringback they hear
    belong to the consultation); else at `refill` (the party was put on hold,
    or a transfer moved the recorded channel: the wait is theirs)."""
    ends = [b for _, b, _ in side if b <= refill]
    if not ends:
        return refill
    emptied = max(ends)
    ch = rec.channel
    if any(t is not None and emptied - 1.0 <= t.at <= refill
           for t in (ch.transfer, *(ch.earlier_transfers or ()))):
        return refill  # a transfer moved it: it waited for the new party
    if any(abs(b - emptied) <= MOVE_TOLERANCE for _, b in rec.in_bridge):
        return emptied
    return refill


def pieces(rec: Recording) -> list[Piece]:
    """The recording's conversations, in time order; one piece when nothing changed."""
    end = rec.ended if rec.ended is not None else rec.started
    bounds = [rec.started, *[t for t in cut_times(rec) if t < end], end]
    base = rec.appended_at or 0.0
    out: list[Piece] = []
    last = len(bounds) - 2
    for i in range(len(bounds) - 1):
        start, stop = bounds[i], bounds[i + 1]
        left = _parties(rec.left, start, stop, end)
        right = _parties(rec.right, start, stop, end)
        offset = file_seconds(rec, start)
        piece = Piece(
            index=i, start=start, end=stop, offset=base + offset,
            # the last piece runs to the file's end: the file may outlast the events
            length=None if i == last else max(0.0, file_seconds(rec, stop) - offset),
            left=left, right=right,
        )
        if i > 0:
            piece = replace(piece, duplicate_of=_recorded_elsewhere(rec, piece, bounds[i - 1]))
        out.append(piece)
    return out


def file_seconds(rec: Recording, at: float) -> float:
    """Seconds of audio the recording wrote from its start up to `at`.

    MixMonitor's b option writes only while the recorded channel is in a
    bridge (alone in it too: a hold), so a channel that left its bridge (a
    blind transfer's ringing, a consultation's Local half before the
    answer) adds nothing meanwhile; without b, every second counts."""
    spans = list(rec.in_bridge)
    if rec.in_bridge_since is not None:
        spans.append((rec.in_bridge_since, max(rec.in_bridge_since, at)))
    if not rec.bridged_only or not spans:
        return max(0.0, at - rec.started)
    return sum(max(0.0, min(b, at) - max(a, rec.started)) for a, b in spans)


def view(rec: Recording, piece: Piece, count: int) -> Recording:
    """The recording as if it held only `piece`: the same object when it is the
    only piece (every call without a partner change stays exactly as it was)."""
    if count == 1:
        return rec
    until = rec.ended if rec.ended is not None else rec.started
    return replace(
        rec,
        left=_clip(rec.left, piece.start, piece.end, until),
        right=_clip(rec.right, piece.start, piece.end, until),
        started=piece.start if piece.index else rec.started,
        ended=piece.end,
    )


def bridged_seconds(rec: Recording) -> float | None:
    """From the first party joining the right side to the last one leaving,
    holds included: what a D file of the conversation lasts (the length
    check's reference; summed talk time made an attended transfer's hold
    look like a recording fault)."""
    until = rec.ended if rec.ended is not None else rec.started
    right = stretches(rec.right, until)
    if not right:
        return None
    return max(b for _, b, _ in right) - min(a for a, _, _ in right)


# -- the pieces --------------------------------------------------------------------


def _parties(segments: list[Segment], start: float, stop: float,
             until: float) -> tuple[Channel, ...]:
    seen: list[Channel] = []
    for a, b, party in stretches(segments, until):
        if a < stop and b > start and all(p is not party for p in seen):
            seen.append(party)
    return tuple(seen)


def _clip(segments: list[Segment], start: float, stop: float, until: float) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        spans = [(max(a, start), min(b, stop)) for a, b, _ in stretches([seg], until)
                 if a < stop and b > start]
        if not spans:
            continue
        out.append(Segment(party=seg.party, first=spans[0][0], last=spans[-1][1],
                           talk=sum(b - a for a, b in spans), since=None, spans=spans))
    return out


def _recorded_elsewhere(rec: Recording, piece: Piece, since: float) -> str | None:
    """Another recording that holds this piece's conversation, from the start
    of the piece to its end: the one to send it from."""
    parties = [p for p in (*piece.left, *piece.right) if not p.is_local]
    own = any(p is rec.channel for p in parties)
    for party in parties:
        for file in _covering(party, rec, piece):
            if not own:
                return file  # a Local half's copy: the party's own recording wins
            if party is rec.channel and _started(party, file) > rec.started:
                return file  # the newer MixMonitor on the same channel, made for it
    ch = rec.channel
    moved = [t for t in (*(ch.earlier_transfers or ()), ch.transfer)
             if t is not None and since < t.at <= piece.start + COVER_TOLERANCE]
    if moved:
        return None  # a transfer brought this channel here: its own recording holds it
    for party in parties:
        # A user's own recording once they consult a colleague: the Local
        # half that dialled the colleague (the consultation's ;2) records
        # that conversation from its start, as its first piece.
        dialler = party.dialled_by
        if dialler is not None and dialler.is_local and dialler is not rec.channel:
            for file in _covering(dialler, rec, piece):
                return file
    return None


def _covering(ch: Channel, rec: Recording, piece: Piece) -> list[str]:
    """Files of `ch`'s other recordings that ran through the whole piece."""
    out = []
    for entry in ch.recorded or ():
        file, started, ended = entry[0], entry[1], entry[2]
        if file == rec.file or not isinstance(started, float | int):
            continue
        if started > piece.start + COVER_TOLERANCE:
            continue
        if isinstance(ended, float | int) and ended < piece.end - COVER_TOLERANCE:
            continue
        out.append(str(file))
    return out


def _started(ch: Channel, file: str) -> float:
    for entry in ch.recorded or ():
        if entry[0] == file and isinstance(entry[1], float | int):
            return float(entry[1])
    return 0.0
