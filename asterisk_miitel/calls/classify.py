"""A closed recording -> the call_data MiiTel should show. A pure function.

This is the one place where Asterisk's vocabulary (channels, bridges, Local
pairs, transfers) becomes MiiTel's (event_type, FROM/TO participants,
stereo_lr). Everything it needs is in the Recording and the config; it does
no I/O, so it is tested with transcripts from a real PBX.

Decisions, in order:
- Who talked: the first party on the recording's left (the recorded
  channel's side) and the first on its right (whoever was bridged to it).
  Nobody bridged: the caller reached voicemail (AUTOMATIC_RECORD) or nobody
  answered (skipped unless `send_unanswered`).
- Who called: the side that was not dialled by anyone (a phone or a trunk
  calling in, or the phone Originate rang for click-to-call); else the
  channel created first.
- event_type from the kinds (internal/external) of caller and callee, and
  whether a transfer put this conversation together:
      int -> int  EXTENSION          (a transfer: EXTENSION_TRANSFER)
      int -> ext  OUTGOING_CALL      (a transfer: OUTGOING_TRANSFER)
      ext -> int  INCOMING_CALL      (a transfer to a user: EXTENSION_TRANSFER)
      ext -> ext  AUTOMATIC_TRANSFER (a user's transfer: OUTGOING_TRANSFER)
  In a transfer leg FROM is the user who transferred (MiiTel files the call
  under them); their stereo side is the transferred party's.
- stereo_lr: left is the audio from the channel MixMonitor ran on.
- A recording whose channel's conversation partner changed (a transfer) is
  cut into pieces (calls/segments.py), one call_data each, each uploading
  only its part of the file: classify_segments(). With `[transfers] report
  = "speakers"` the transferred party's piece is reported as their own call
  with whoever is now on the line, the transfer kept as a tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import PurePosixPath
from typing import Literal

from pydantic import ValidationError

from ..config import Config
from ..miitel.models import CallData, EventType, Participant, make_tags
from ..miitel.rules import PartyRef, missing_user_ids
from ..outbox.audio import AudioPlan
from ..outbox.states import SetAsideCode
from ..recordings.spec import ChannelType, FileType
from .asterisk import mailbox_parts
from .parties import Party, PartyResolver
from .segments import Piece, bridged_seconds, pieces, view
from .state import Channel, EndReason, Recording, Segment, Transfer


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with one closed recording."""

    file: str
    call_data: CallData | None  # None when skipped or set aside before assembly
    audio: AudioPlan
    skip: str | None = None  # not sent, by design (e.g. unanswered, no audio)
    set_aside: str | None = None  # cannot be sent as it is: a person must act
    set_aside_code: SetAsideCode | None = None  # users | number | schema | incomplete | untracked
    explain: tuple[str, ...] = ()
    end_reason: EndReason | None = None
    notes: tuple[str, ...] = field(default=())
    # The extension behind each participant (None for outside numbers), in
    # call_data's order, so a fixed [users] map can be applied on retry.
    extensions: tuple[str | None, ...] = ()
    ended_at: float | None = None
    key: str = ""  # recording_key(): what call_data_id is derived from

    @property
    def call_data_id(self) -> str | None:
        return self.call_data.call_data_id if self.call_data else None


@dataclass(frozen=True, slots=True)
class Context:
    config: Config
    pbx_id: str
    tz: tzinfo | None = None  # None: the machine's zone
    # Set by classify_segments for one piece of a recording cut at a transfer.
    piece: Piece | None = None
    key: str | None = None  # that piece's key (what its call_data_id is derived from)
    # Built once per config, not per recording (its endpoint map and number rules).
    resolver: PartyResolver = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolver", PartyResolver(self.config))


def call_data_id(pbx_id: str, recording_file: str) -> str:
    """Stable across restarts and unique across PBXs: the PBX and the file.

    Live tracking and catch-up from CDRs compute the same id for the same
    recording, so a call is never created twice.
    """
    name = recording_file.rpartition("/")[2]
    if not name or name == ".":  # a trailing / or /.: what pathlib makes of those
        name = PurePosixPath(recording_file).name
    digest = hashlib.sha256(f"{pbx_id}\0{recording_file}".encode()).hexdigest()[:16]
    return f"{pbx_id}:{name}:{digest}"


def recording_key(rec: Recording) -> str:
    """What identifies a recording for good. Voicemail names (msg0000) are
    reused once a message is deleted, so the caller's channel is added. A
    MixMonitor that named no file is known by its channel and start."""
    if rec.untracked is not None and not rec.file:
        return f"untracked-mixmonitor#{rec.channel.uniqueid}@{rec.started:.6f}"
    if rec.appended_at is not None:  # a second MixMonitor appending to a closed file
        # (no colon: call_data_id is pbx:name:digest)
        return f"{rec.file}#appended-{rec.channel.uniqueid}"
    return f"{rec.file}#{rec.channel.uniqueid}" if rec.voicemail_only else rec.file


def segment_key(rec: Recording, index: int) -> str:
    """The key of a recording's piece `index` (0-based). The first piece keeps
    the recording's own key, so its call_data_id is the one the whole
    recording had before pieces existed (and the one catch-up from CDRs
    computes): a call already sent, or seen by both, is never sent twice.
    Later pieces add their number: stable across replays, restarts and
    journals, since the cuts come from the events' own timestamps."""
    key = recording_key(rec)
    return key if index == 0 else f"{key}#{index + 1}"


def classify(rec: Recording, ctx: Context) -> Outcome:
    """The whole recording as one call (what catch-up from CDRs can know).
    The live service and replay use classify_segments."""
    outcome = _untracked(rec) if rec.untracked is not None else _classify(rec, ctx)
    key = recording_key(rec)
    return outcome if outcome.key == key else replace(outcome, key=key)


def classify_segments(rec: Recording, ctx: Context) -> list[Outcome]:
    """One Outcome per conversation the recording holds (calls/segments.py).

    A recording nobody was transferred into or out of is one piece, and its
    Outcome is exactly classify()'s."""
    if rec.untracked is not None or rec.voicemail_only:
        return [classify(rec, ctx)]
    found = pieces(rec)
    if len(found) == 1 and rec.appended_at is None:
        return [classify(rec, ctx)]
    out: list[Outcome] = []
    for piece in found:
        key = segment_key(rec, piece.index)
        part = view(rec, piece, len(found))
        pctx = replace(ctx, piece=piece, key=key)
        if piece.duplicate_of is not None:
            reason = (f"this conversation ({piece.describe()}) is also in recording "
                      f"{piece.duplicate_of}, and is sent from there")
            out.append(Outcome(rec.file, None, _audio_plan(part, piece), skip=reason,
                               explain=(f"recording {rec.file} on {rec.channel.name}",
                                        piece.describe(), reason),
                               end_reason=rec.end_reason, ended_at=part.ended, key=key))
            continue
        outcome = _classify(part, pctx)
        out.append(replace(outcome, key=key,
                           explain=(*outcome.explain[:1], piece.describe(),
                                    *outcome.explain[1:])))
    return out


def _untracked(rec: Recording) -> Outcome:
    """A MixMonitor the tracker could not follow: set aside with its reason."""
    assert rec.untracked is not None
    audio = AudioPlan(rec.file, "unknown", None, None, "wav", "MONAURAL", None,
                      expect_audio=False)
    return Outcome(rec.file, None, audio, set_aside=rec.untracked, set_aside_code="untracked",
                   explain=(f"MixMonitor on {rec.channel.name} (Uniqueid "
                            f"{rec.channel.uniqueid}, Linkedid {rec.channel.linkedid}) not "
                            "followed",),
                   end_reason=rec.end_reason, ended_at=rec.ended)


def _classify(rec: Recording, ctx: Context) -> Outcome:
    resolver = ctx.resolver
    explain: list[str] = [f"recording {rec.file} on {rec.channel.name} ({rec.mode})"]
    left = _first(rec.left)
    right = _first(rec.right)
    audio = _audio_plan(rec, ctx.piece)
    answered_at = max(left.first, right.first) if left and right else None

    if left is None or right is None:
        return _unanswered(rec, ctx, resolver, audio, explain)

    a, b = left.party, right.party
    # A conversation that began at a cut: the transfer event that made it can
    # come a few ms after the BridgeEnter that moved the party in.
    late = ctx.piece.start + 1.0 if ctx.piece is not None and ctx.piece.index > 0 else None
    leg = _transfer_leg(rec, a, b, answered_at, late)
    if leg is not None:
        user = resolver.describe(leg.transferer)
        target = resolver.describe(leg.target)
        if user.kind == "internal":
            return _transfer_outcome(rec, ctx, resolver, audio, explain, leg, user, target,
                                     left_party=a, answered_at=answered_at)
        explain.append(f"{leg.describe()}, but the transferer is not a user: a plain call")

    caller, callee = (a, b) if _called_first(a, b) else (b, a)
    from_party = resolver.describe(caller)
    to_party = resolver.describe(callee)
    explain += [f"FROM {from_party.explain()}", f"TO   {to_party.explain()}"]
    caller_side = "left" if caller is a else "right"
    callee_side = "right" if caller_side == "left" else "left"
    event_type = _event_type(from_party, to_party)
    explain.append(f"event_type {event_type}")
    return _assemble(
        rec,
        ctx,
        audio,
        explain,
        event_type=event_type,
        parties=[("FROM", from_party, caller_side), ("TO", to_party, callee_side)],
        starts=min(rec.channel.created, caller.created),
        answered=answered_at,
        circuit=_circuit_number(resolver, from_party, to_party, caller, callee),
    )


@dataclass(frozen=True, slots=True)
class TransferLeg:
    """A conversation a user's transfer made: MiiTel files it under that user.

    kind "moved": the transferred party (the customer) now talks to the
    target; the user who transferred is gone. kind "consult": the user talks
    to the target before completing an attended transfer.
    """

    kind: Literal["moved", "consult"]
    transfer: Transfer
    transferer: Channel
    target: Channel
    user_side_channel: Channel  # whose audio side FROM (the user) is labelled with

    def describe(self) -> str:
        return (f"{self.transfer.kind} transfer by {self.transferer.name} to "
                f"{self.target.name} ({self.kind} leg)")


def _transfer_leg(
    rec: Recording, a: Channel, b: Channel, answered_at: float | None,
    late: float | None = None,
) -> TransferLeg | None:
    if answered_at is None:
        return None
    at = max(answered_at + 0.001, late or 0.0)
    for moved, other in ((a, b), (b, a)):
        # A transfer that moved this party before the two were bridged made
        # this leg; one after it only moved a party on (the recording goes
        # on, but its call is still the one it started as).
        # (the latest one before: a transfer back moved it twice)
        t = _transfer_before(moved, at)
        if t is not None and t.transferer is not None and t.at <= at:
            if t.transferer is not other:
                return TransferLeg("moved", t, t.transferer, other, moved)
        # The transferer's own consultation with the target of an attended
        # transfer: the transferee is not in it.
        made = moved.made_transfer
        if made is not None and made.kind == "attended" and made.transferee is not other:
            return TransferLeg("consult", made, moved, other, moved)
    # A party behind a Local pair (a queue member, a ring group): the REFER
    # moves the Local half that stood for the customer, not the customer's
    # own channel. That half is the recorded one (its left is the customer),
    # or it dialled the new party.
    for local, moved, target in ((rec.channel, a, b), (b.dialled_by, a, b),
                                 (a.dialled_by, b, a)):
        if local is None or not local.is_local:
            continue
        t = _transfer_before(local, at)
        if t is not None and t.transferer is not None and t.at <= at \
                and t.transferer is not target:
            return TransferLeg("moved", t, t.transferer, target, moved)
    return None


def _transfer_before(ch: Channel, at: float) -> Transfer | None:
    """The latest transfer that moved `ch` at or before `at` (else its latest)."""
    before = [t for t in (*(ch.earlier_transfers or ()), ch.transfer)
              if t is not None and t.at <= at]
    return before[-1] if before else ch.transfer


def _transfer_outcome(
    rec: Recording,
    ctx: Context,
    resolver: PartyResolver,
    audio: AudioPlan,
    explain: list[str],
    leg: TransferLeg,
    user: Party,
    target: Party,
    *,
    left_party: Channel,
    answered_at: float | None,
) -> Outcome:
    user_side: Literal["left", "right"] = (
        "left" if leg.user_side_channel is left_party else "right"
    )
    target_side: Literal["left", "right"] = "right" if user_side == "left" else "left"
    if leg.kind == "moved" and ctx.config.transfers.report == "speakers":
        return _speakers_outcome(rec, ctx, resolver, audio, explain, leg, user,
                                 moved_side=user_side, answered_at=answered_at)
    event_type = (
        EventType.EXTENSION_TRANSFER if target.kind == "internal" else EventType.OUTGOING_TRANSFER
    )
    explain += [
        leg.describe(),
        f"FROM {user.explain()} (the user who transferred"
        + ("; this side carries the transferred party)" if leg.kind == "moved" else ")"),
        f"TO   {target.explain()}",
        f"event_type {event_type}",
    ]
    starts = rec.channel.created
    if leg.kind == "moved":
        starts = max(starts, leg.transfer.at)
    caller = leg.user_side_channel if leg.kind == "consult" else leg.transferer
    return _assemble(
        rec,
        ctx,
        audio,
        explain,
        event_type=event_type,
        parties=[("FROM", user, user_side), ("TO", target, target_side)],
        starts=min(starts, leg.target.created) if leg.kind == "consult" else starts,
        answered=answered_at,
        circuit=_circuit_number(resolver, user, target, caller, leg.target),
    )


def _speakers_outcome(
    rec: Recording,
    ctx: Context,
    resolver: PartyResolver,
    audio: AudioPlan,
    explain: list[str],
    leg: TransferLeg,
    user: Party,
    *,
    moved_side: Literal["left", "right"],
    answered_at: float | None,
) -> Outcome:
    """Rule `transfers.report = speakers`: the transferred party's
    conversation with whoever is now on the line, reported as their own call
    (each stereo side labelled with who really speaks there); the transfer
    is kept as a tag."""
    moved, target = leg.user_side_channel, leg.target
    other_side: Literal["left", "right"] = "right" if moved_side == "left" else "left"
    # Who called: the transferred party if it placed the original call (a
    # customer calling in), else the one now on the line (a user's outgoing
    # call handed to a colleague is that colleague's outgoing call).
    caller, callee = (moved, target) if moved.dialled_by is None else (target, moved)
    from_party, to_party = resolver.describe(caller), resolver.describe(callee)
    caller_side = moved_side if caller is moved else other_side
    callee_side = other_side if caller is moved else moved_side
    event_type = _event_type(from_party, to_party)
    by = user.extension or user.number
    explain += [
        leg.describe(),
        f"rule transfers.report = speakers: reported as {caller.name}'s call with "
        f"{callee.name}, tagged 'transferred by {by}'",
        f"FROM {from_party.explain()} ({caller_side})",
        f"TO   {to_party.explain()} ({callee_side})",
        f"event_type {event_type}",
    ]
    starts = max(rec.channel.created, leg.transfer.at)
    return _assemble(
        rec, ctx, audio, explain,
        event_type=event_type,
        parties=[("FROM", from_party, caller_side), ("TO", to_party, callee_side)],
        starts=starts,
        answered=answered_at,
        circuit=_circuit_number(resolver, from_party, to_party, caller, callee),
        extra_tags=[f"transferred by {by}"],
    )


# -- the pieces ---------------------------------------------------------------------


def _first(segments: list[Segment]) -> Segment | None:
    return min(segments, key=lambda s: s.first) if segments else None


def _called_first(a: Channel, b: Channel) -> bool:
    """True if `a` placed the call to `b` (rather than the reverse)."""
    a_orig = a.dialled_by is None
    b_orig = b.dialled_by is None
    if a_orig != b_orig:
        return a_orig
    if _dialled_by_chain(b, a):
        return True
    if _dialled_by_chain(a, b):
        return False
    return a.created <= b.created


def _dialled_by_chain(ch: Channel, ancestor: Channel) -> bool:
    """Was `ch` dialled, directly or through Local channels, by `ancestor`?"""
    cur = ch.dialled_by
    for _ in range(16):
        if cur is None:
            return False
        if cur is ancestor:
            return True
        cur = cur.local_peer.dialled_by if cur.is_local and cur.local_peer else cur.dialled_by
    return False


def _event_type(from_party: Party, to_party: Party) -> EventType:
    if to_party.kind == "internal":
        return EventType.EXTENSION if from_party.kind == "internal" else EventType.INCOMING_CALL
    if from_party.kind == "internal":
        return EventType.OUTGOING_CALL
    return EventType.AUTOMATIC_TRANSFER


def _unanswered(
    rec: Recording,
    ctx: Context,
    resolver: PartyResolver,
    audio: AudioPlan,
    explain: list[str],
) -> Outcome:
    caller = rec.channel
    if caller.is_local and caller.local_peer is not None:
        caller = _real_behind(caller.local_peer) or caller
    from_party = resolver.describe(caller)
    if rec.incomplete:
        reason = (
            "the service was down while this call was answered and ended, and who answered "
            "is not known; its recording exists. Check the call (CDR), then map it by hand "
            "or `asterisk-miitel retry --force` to send it as a missed call"
        )
        explain.append(reason)
        return Outcome(rec.file, None, audio, set_aside=reason, set_aside_code="incomplete",
                       explain=tuple(explain), end_reason=rec.end_reason, ended_at=rec.ended)
    vm_instead = rec.channel.vm_file is not None and not rec.channel.vm_recorded
    # MixMonitor's b option writes only bridged audio: nobody was bridged, so the
    # file is empty. Nothing to send as a recording; still a missed call, when
    # those are sent (they go without audio anyway).
    empty = not rec.voicemail_only and rec.bridged_only is True
    if not rec.voicemail_only and (vm_instead or (empty and not ctx.config.pbx.send_unanswered)):
        # (a voicemail message is sent on its own)
        reason = ("the caller's voicemail message is sent instead of this recording"
                  if vm_instead else
                  "nobody was bridged and MixMonitor's b option recorded nothing")
        explain.append(reason)
        return Outcome(rec.file, None, audio, skip=reason, explain=tuple(explain),
                       end_reason=rec.end_reason, ended_at=rec.ended)
    box = None if empty else _voicemail_box(rec)
    if box is not None or rec.voicemail_only:
        owner = mailbox_parts(box)[0] if box else None
        to_party = (
            resolver.internal_from_extension(owner, f"VoiceMail({box})")
            if owner
            else resolver.describe(caller)
        )
        explain += [f"FROM {from_party.explain()}", f"TO   {to_party.explain()}",
                    "nobody answered; the caller reached voicemail: AUTOMATIC_RECORD"]
        return _assemble(
            rec, ctx, audio, explain,
            event_type=EventType.AUTOMATIC_RECORD,
            parties=[("FROM", from_party, "left"), ("TO", to_party, "right")],
            starts=rec.channel.created,
            answered=None,
            circuit=_circuit_number(resolver, from_party, to_party, caller, None),
        )
    target = _dial_target(caller)
    if target is None:
        reason = "nobody answered and nothing was dialled (no audio to send)"
        explain.append(reason)
        return Outcome(rec.file, None, audio, skip=reason, explain=tuple(explain),
                       end_reason=rec.end_reason, ended_at=rec.ended)
    to_party = resolver.describe(target)
    event_type = _event_type(from_party, to_party)
    explain += [f"FROM {from_party.explain()}", f"TO   {to_party.explain()}",
                f"nobody answered: a missed {event_type}"]
    if not ctx.config.pbx.send_unanswered:
        reason = "unanswered call without audio (set pbx.send_unanswered to send missed calls)"
        return Outcome(rec.file, None, audio, skip=reason, explain=tuple(explain),
                       end_reason=rec.end_reason, ended_at=rec.ended)
    missed_audio = AudioPlan(
        audio.file, audio.mode, audio.receive, audio.transmit, audio.file_type,
        audio.channel_type, None, audio.voicemail, expect_audio=False,
    )
    return _assemble(
        rec, ctx, missed_audio, explain,
        event_type=event_type,
        parties=[("FROM", from_party, "left"), ("TO", to_party, "right")],
        starts=rec.channel.created,
        answered=None,
        circuit=_circuit_number(resolver, from_party, to_party, caller, target),
    )


def _real_behind(ch: Channel) -> Channel | None:
    """The real channel that dialled into a Local half (queue/ring group callers)."""
    cur: Channel | None = ch.dialled_by
    for _ in range(16):
        if cur is None or not cur.is_local:
            return cur
        cur = cur.local_peer.dialled_by if cur.local_peer else None
    return None


def _dial_target(caller: Channel) -> Channel | None:
    """The first real channel the caller (or its Local chain) rang."""
    todo = list(caller.dial_targets or ())
    for _ in range(64):
        if not todo:
            return None
        ch = todo.pop(0)
        if not ch.is_local:
            return ch
        if ch.local_peer is not None:
            todo.extend(ch.local_peer.dial_targets or ())
    return None


def _voicemail_box(rec: Recording) -> str | None:
    for ch in rec.seen:
        if ch.voicemail_box:
            return ch.voicemail_box
    return None


def _audio_plan(rec: Recording, piece: Piece | None = None) -> AudioPlan:
    # The length check's reference: from the first party bridged to the
    # last one leaving, holds included (a transferer's consultation is a
    # hold for the customer; summed talk time made it look like a fault). A
    # piece cut at a transfer holds its conversation up to the cut.
    bridged = bridged_seconds(rec)
    if piece is not None and piece.length is not None and rec.right:
        bridged = piece.end - min(s.first for s in rec.right)
    window = piece.window if piece is not None else None
    name = rec.file.lower()
    if rec.voicemail_only:
        return AudioPlan(rec.file, "mono", None, None, "wav", "MONAURAL", None, voicemail=True)
    if rec.mode in ("interleaved", "legs"):
        return AudioPlan(rec.file, rec.mode, rec.receive, rec.transmit, "wav", "STEREO", bridged,
                         window=window)
    file_type: FileType = "wav"
    if name.endswith(".mp3"):
        file_type = "mp3"
    elif name.endswith((".m4a", ".mp4")):
        file_type = "m4a"
    # A mode the events did not show: decided from the name exactly as the
    # upload will decide from the file (recordings/convert.py): a .raw is
    # MixMonitor D, interleaved stereo; anything else is sent MONAURAL
    # unless the file itself has two channels.
    channel_type: ChannelType = "STEREO" if rec.mode == "unknown" and name.endswith(
        ".raw") else "MONAURAL"
    return AudioPlan(rec.file, rec.mode, None, None, file_type, channel_type, bridged,
                     window=window)


def _circuit_number(
    resolver: PartyResolver,
    from_party: Party,
    to_party: Party,
    caller: Channel,
    callee: Channel | None,
) -> str | None:
    """Inbound: the DID that was called. Outbound: the caller ID shown on the trunk."""
    if from_party.kind == "external":
        return resolver.number_or_none(caller.did or caller.exten)
    if to_party.kind == "external" and callee is not None:
        return resolver.number_or_none(callee.connected_num)
    return None


def _collect(rec: Recording) -> tuple[list[str], str | None, str | None]:
    tags: list[str] = []
    queue = None
    group = None
    for ch in rec.seen:
        tags.extend(ch.tags or ())
        queue = queue or ch.queue_label or ch.queue
        group = group or ch.group
    return tags, queue, group


def _when(ts: float, tz: tzinfo | None) -> datetime:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(tz) if tz is not None else moment.astimezone()


def _device(party: Party) -> str | None:
    """`PJSIP/desk-suzuki-0000001a` -> `desk-suzuki`: what `endpoints` lists."""
    if not party.channel or party.channel.startswith("Local/") or "/" not in party.channel:
        return None
    return Channel("", party.channel, "", 0.0).endpoint or None


def _assemble(
    rec: Recording,
    ctx: Context,
    audio: AudioPlan,
    explain: list[str],
    *,
    event_type: EventType,
    parties: Iterable[tuple[Literal["FROM", "TO"], Party, Literal["left", "right"]]],
    starts: float,
    answered: float | None,
    circuit: str | None,
    extra_tags: Iterable[str] = (),
) -> Outcome:
    parties = list(parties)
    tags, queue, group = _collect(rec)
    tags = [*tags, *extra_tags]
    if ctx.piece is not None and ctx.piece.index > 0:
        starts = ctx.piece.start  # a conversation that began at a transfer
    number_problems = [p.number_problem for _, p, _ in parties if p.number_problem]
    problems = list(number_problems)
    refs = [
        PartyRef(side, p.miitel_user_id is not None, p.extension, f"{p.number} ({p.channel})",
                 device=_device(p) if p.kind == "internal" and p.extension is None else None)
        for side, p, _ in parties
    ]
    user_problems = missing_user_ids(
        event_type, refs, answered=answered is not None, grouped=group is not None
    )
    problems += user_problems
    if audio.channel_type == "MONAURAL":
        # No sides in a mono file: FROM left, TO right, as MiiTel's samples do.
        parties = [(side, p, "left" if side == "FROM" else "right") for side, p, _ in parties]
    ends = rec.ended if rec.ended is not None else starts
    # Times from different sources (a journal, a resync) must still read
    # start <= answer <= end, as MiiTel requires.
    if answered is not None:
        answered = min(max(answered, min(starts, ends)), ends)
    key = ctx.key or recording_key(rec)
    try:
        call_data = CallData(
            call_data_id=call_data_id(ctx.pbx_id, key),
            audio_file_type=audio.file_type,
            event_type=event_type,
            groupname=group,
            queue_name=queue,
            call_starts_at=_when(min(starts, ends), ctx.tz),
            call_answered_at=_when(answered, ctx.tz) if answered is not None else None,
            call_ends_at=_when(ends, ctx.tz),
            circuit_number=circuit,
            audio_channel_type=audio.channel_type,
            participants=[
                Participant(
                    type=side,
                    stereo_lr=lr,
                    miitel_user_id=p.miitel_user_id,
                    number=p.number,
                    name=p.name,
                )
                for side, p, lr in parties
            ],
            tags=make_tags(tags),
        )
    except ValidationError as exc:  # a bug or an impossible value: say which
        problems.append(f"call_data does not fit MiiTel's schema: {exc.errors()[0]['msg']}")
        call_data = None
    code: SetAsideCode | None = None
    if problems:
        code = "schema" if call_data is None else "number" if number_problems else "users"
    return Outcome(
        rec.file,
        call_data,
        audio,
        set_aside="; ".join(problems) if problems else None,
        set_aside_code=code,
        explain=tuple(explain),
        end_reason=rec.end_reason,
        notes=tuple(rec.notes),
        extensions=tuple(p.extension if p.kind == "internal" else None for _, p, _ in parties),
        ended_at=rec.ended,
        key=key,
    )
