"""Compact, folded state: what we know of each channel and each recording.

Nothing here stores events. Each event updates a few slots; a channel's
state is dropped from the tracker's table when it hangs up, and lives on only
as long as a recording still refers to it (plain Python references).

Channels of one call refer to each other both ways (dialled_by and
dial_targets, a Local pair's halves, a transfer and its parties): reference
cycles, which only CPython's cyclic collector could free, and its full
collections are rare. So the tracker frees a finished call itself
(`join`, `hold`, `release`): every channel linked to another shares a list
of the call's channels, each channel counts the live recordings that refer
to it, and once every channel of the call is gone from the tracker and no
recording refers to any of them, their links are cut and plain reference
counting frees them. A recording is `hold`-ed when the tracker makes it and
unpins its channels when it is freed (a weak reference's callback), so a
closed recording the classifier or the service's queue still has keeps the
whole call readable; nothing but the tracker has to take part.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal

from ..recordings.spec import RecordingMode

if TYPE_CHECKING:
    from .mixmonitor import MixMonitorArgs

EndReason = Literal["hangup", "stopped", "gap", "pbx_restart", "shutdown"]


@dataclass(slots=True, eq=False)
class Transfer:
    """A transfer that moved a channel into a new conversation."""

    kind: Literal["blind", "attended"]
    at: float
    transferer: Channel | None  # the user's channel that transferred
    target_exten: str | None = None
    transferee: Channel | None = None  # the party that was moved (the customer)


@dataclass(slots=True, eq=False)
class Channel:
    uniqueid: str
    name: str
    linkedid: str
    created: float
    context: str = ""  # the context the channel was created in (its endpoint's)
    exten: str = ""  # the extension at creation: what a caller dialled
    caller_num: str = ""
    caller_name: str = ""
    # The caller number when the channel appeared: a phone's own number, before
    # the dialplan rewrites CALLERID for the outside world (outbound caller ID).
    origin_num: str = ""
    connected_num: str = ""
    connected_name: str = ""
    answered: float | None = None
    hungup: float | None = None
    bridge: str | None = None
    # Dialling: who dialled this channel, with which dial string; whom it dialled.
    dialled_by: Channel | None = None
    dial_string: str | None = None
    dial_status: str | None = None
    dial_targets: list[Channel] | None = None
    originated: bool = False  # created by Originate (click-to-call)
    local_peer: Channel | None = None  # the other half of a Local channel pair
    partial: bool = False  # first seen mid-call (service started late, AMI gap)
    # What the dialplan and Asterisk told us about this channel.
    did: str | None = None  # FreePBX FROM_DID
    ampuser: str | None = None  # FreePBX user logged in on this device
    queue: str | None = None
    queue_label: str | None = None
    group: str | None = None
    tags: list[str] | None = None
    voicemail_box: str | None = None
    vm_file: str | None = None
    vm_recorded: bool = False  # a MixMonitor was running when the message was left
    transfer: Transfer | None = None  # a transfer that moved this channel
    # Transfers that moved it before `transfer`, oldest first (a transfer back
    # to the first user moves the customer twice; each makes a conversation).
    earlier_transfers: list[Transfer] | None = None
    made_transfer: Transfer | None = None  # a transfer this channel (a user) made
    # The latest MixMonitor started on this channel, as its evidence arrives
    # (Newexten, VarSet MIXMONITOR_FILENAME, MixMonitorStart), and the dialplan
    # step of the latest StopMixMonitor seen as Newexten (its MixMonitorStop,
    # where Asterisk sends one, is the same stop).
    mixmon: MixMonitorRun | None = None
    stop_step: tuple[str, str, str] | None = None
    recordings: list[Recording] | None = None  # open recordings on this channel
    # Every recording MixMonitor made on this channel: [file, started, ended or
    # None]. Kept after they close, so that a conversation recorded twice (a
    # consultation's Local half moved into the customer's call, a second
    # MixMonitor after a transfer) is sent from one recording only.
    recorded: list[list[object]] | None = None
    # Freeing a finished call (see the module docstring): the channels linked
    # with this one (shared by all of them; UNMANAGED: left to CPython's
    # collector), how many live recordings refer to it, and whether the
    # tracker has forgotten it (hung up, or Asterisk restarted).
    call: list[Channel] | None = field(default=None, repr=False)
    pins: int = field(default=0, repr=False)
    gone: bool = field(default=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.name.startswith("Local/")

    @property
    def tech(self) -> str:
        return self.name.partition("/")[0]

    @property
    def endpoint(self) -> str:
        """`PJSIP/1001-0000002a` -> `1001`.

        `Local/1002@from-queue-00000001;1` -> `1002@from-queue`.
        """
        resource = self.name.partition("/")[2]
        if self.is_local:
            resource = resource.rpartition(";")[0] or resource
        base, dash, suffix = resource.rpartition("-")
        if dash and suffix and not suffix.lower().strip("0123456789abcdef"):  # all hex
            return base
        return resource

    def add_tag(self, value: str) -> None:
        if self.tags is None:
            self.tags = []
        if len(self.tags) < 32:  # bound a misbehaving dialplan loop
            self.tags.append(value)


@dataclass(slots=True, eq=False)
class MixMonitorRun:
    """One MixMonitor start on a channel, put together from whichever of its
    events arrive, in any order: Newexten (Application: MixMonitor; its
    AppData), VarSet MIXMONITOR_FILENAME (the full path) and MixMonitorStart
    (16.17+, 18.3+, 19+). They share the channel's dialplan step."""

    step: tuple[str, str, str]  # (Context, Exten, Priority) of its events
    at: float
    kinds: str = ""  # which events arrived: n(ewexten) v(arset) s(tart)
    appdata: str | None = None
    args: MixMonitorArgs | None = None  # appdata, read once
    file: str | None = None  # the full path, once known
    nameless: bool = False  # MIXMONITOR_FILENAME was set empty: no file name
    rec: Recording | None = None  # the recording it opened or joined
    done: bool = False  # followed, or already reported


@dataclass(slots=True, eq=False)
class Segment:
    """One party's time on one side of a recording."""

    party: Channel
    first: float
    last: float | None = None  # None while still bridged
    talk: float = 0.0
    since: float | None = None  # current stretch start
    # Closed stretches (start, end): a party can leave and come back (a hold
    # outside the bridge, a transfer back), and the recording is cut where
    # the conversation partner changed (calls/segments.py).
    spans: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True, eq=False, weakref_slot=True)
class Recording:
    file: str
    channel: Channel  # the channel MixMonitor runs on
    started: float
    mode: RecordingMode = "unknown"
    options: str = ""  # MixMonitor's options as the dialplan gave them ("" not known)
    # MixMonitor's b option (calls/asterisk.py bridged_only): the file holds only
    # the time the channel was in a bridge. None: not known.
    bridged_only: bool | None = None
    receive: str | None = None
    transmit: str | None = None
    mixmonitor_id: str | None = None
    # Our FreePBX hook is about to stop this MixMonitor and start it again on the
    # same file with stereo legs (MiiTelRecording Restart: yes): the next stop on
    # its channel is that restart, not the end of the recording.
    restarting: bool = False
    voicemail_only: bool = False  # the voicemail message file, no MixMonitor
    incomplete: bool = False  # finished from the journal: audio, but who answered is unknown
    resumed: bool = False  # adopted from the journal or found running: its past may be partial
    # A MixMonitor that cannot be followed to a call_data: why, and what to do.
    # Such a Recording is closed at once and only carries the reason.
    untracked: str | None = None
    # A MixMonitor with option `a` that appends to a file whose recording was
    # already closed (FreePBX's transfer monitor): this recording's audio
    # starts this many seconds into the file, after the earlier one's.
    appended_at: float | None = None
    # When the recorded channel was in a bridge (closed spans, and the open
    # one's start): with MixMonitor's b option the file holds only that time,
    # so a cut at a transfer is placed by it (calls/segments.py).
    in_bridge: list[tuple[float, float]] = field(default_factory=list)
    in_bridge_since: float | None = None
    ended: float | None = None
    end_reason: EndReason | None = None
    # LEFT carries the audio coming from the recorded channel: normally that
    # channel's own party; for a Local half, whoever is behind the other half.
    left: list[Segment] = field(default_factory=list)
    right: list[Segment] = field(default_factory=list)
    # Every channel this recording's conversation touched (for tags, queue,
    # group, transfers), in first-seen order.
    seen: list[Channel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Set by `hold`: the weak reference whose callback unpins its channels.
    holder: weakref.ref[Recording] | None = field(default=None, init=False, repr=False)

    def see(self, channel: Channel) -> None:
        # Channel has eq=False: `in` compares identity, in C (as `is` in a loop did).
        if channel not in self.seen:
            self.seen.append(channel)
            if self.holder is not None:
                channel.pins += 1


# -- freeing finished calls by reference counting ------------------------------------

# A call that grew this big (a queue caller whose members are rung again and
# again, an agent's channel that transfers call after call) is not kept whole
# until its last channel goes: it is left to CPython's collector, as before.
MAX_CALL = 64
UNMANAGED: list[Channel] = []  # the `call` of channels left to the collector; never filled


def join(*channels: Channel | None) -> None:
    """The tracker linked these channels (a dial, a Local pair, a transfer):
    from now on they are freed together."""
    group: list[Channel] | None = None
    for ch in channels:
        if ch is None:
            continue
        other = ch.call
        if other is None:
            other = ch.call = [ch]
        if group is None or other is group:
            group = other
            continue
        if group is UNMANAGED or other is UNMANAGED \
                or len(group) + len(other) > MAX_CALL:
            _unmanage(group)
            _unmanage(other)
            group = UNMANAGED
            continue
        if len(group) < len(other):
            group, other = other, group
        for member in other:
            member.call = group
        group.extend(other)


def _unmanage(group: list[Channel]) -> None:
    if group is not UNMANAGED:
        for member in group:
            member.call = UNMANAGED
        group.clear()


def hold(rec: Recording) -> None:
    """From now on `rec` pins the channels it refers to, until it is freed."""
    if rec.holder is not None:
        return
    seen = rec.seen
    for ch in seen:
        ch.pins += 1
    extra = None if rec.channel in seen else rec.channel
    if extra is not None:
        extra.pins += 1
    rec.holder = weakref.ref(rec, partial(_unpin, seen, extra))


def _unpin(seen: Sequence[Channel], extra: Channel | None, _ref: object) -> None:
    """A held recording was freed (the callback must not refer to it)."""
    for ch in (*seen, extra) if extra is not None else seen:
        ch.pins -= 1
        if not ch.pins and ch.gone:
            release(ch)


def release(ch: Channel) -> None:
    """`ch` is gone and no recording refers to it: when that is so for every
    channel of its call too, cut the call's links so reference counting frees it."""
    group = ch.call
    if group is None or group is UNMANAGED:
        return  # never linked (nothing to cut), or left to the collector
    for member in group:
        if not member.gone or member.pins:
            return
    for member in group:
        if not _links_within(member, group):
            # Linked outside what the tracker joined (a journal's channels after
            # a restart): someone may still read through it; the collector decides.
            _unmanage(group)
            return
    for member in group:
        _cut(member)
    group.clear()


def _links_within(ch: Channel, group: list[Channel]) -> bool:
    linked: list[Channel | None] = [ch.dialled_by, ch.local_peer, *(ch.dial_targets or ())]
    for t in (ch.transfer, ch.made_transfer, *(ch.earlier_transfers or ())):
        if t is not None:
            linked += (t.transferer, t.transferee)
    return all(c is None or c.call is group for c in linked)


def _cut(ch: Channel) -> None:
    for t in (ch.transfer, ch.made_transfer, *(ch.earlier_transfers or ())):
        if t is not None:
            t.transferer = t.transferee = None
    ch.dialled_by = ch.local_peer = None
    ch.dial_targets = ch.earlier_transfers = None
    ch.transfer = ch.made_transfer = None
    ch.mixmon = None
    ch.recordings = None
    ch.call = None
