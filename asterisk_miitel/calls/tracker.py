"""Folds AMI events, in arrival order, into channel and recording state.

The unit is the recording: one MixMonitor file, opened by whichever of its
events first names the file: Newexten (Application: MixMonitor, an absolute
path in AppData), VarSet MIXMONITOR_FILENAME, or our dialplan's
MiiTelRecording UserEvent; MixMonitorStart (only from 16.17, 18.3, 19) joins
them. It closes when its channel hangs up or StopMixMonitor ends it
(MixMonitorStop, or the StopMixMonitor step's Newexten where there is none). A
MixMonitor that cannot be followed (no file name, its channel gone) is
closed at once as an `untracked` Recording that carries the reason. While
it records, the tracker keeps who was audible on each side, following
bridges and Local channel pairs. A closed recording
goes to `on_closed`; nothing waits for "every channel of the call is gone"
(agents, conferences and parked calls can live for hours).

No handler does I/O or awaits: `feed` is synchronous, so events can never be
reordered, and cheap: a few dict lookups per event.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..logs import Throttle
from ..recordings.spec import RecordingMode
from .asterisk import (
    bridged_only,
    plain_name,
    queue_name,
    recording_mode,
    voicemail_box,
    voicemail_recording,
)
from .mixmonitor import (
    execif_branch,
    full_path,
    monitor_dir_of,
    parse_mixmonitor,
    split_args,
)
from .segments import file_seconds
from .state import (
    Channel,
    EndReason,
    MixMonitorRun,
    Recording,
    Segment,
    Transfer,
    hold,
    join,
    release,
)

log = logging.getLogger(__name__)

Event = Mapping[str, str]
OnClosed = Callable[[Recording], None]
OnOpened = Callable[[Recording], None]
OnChanged = Callable[[Recording], None]
OnGone = Callable[[Channel], None]

_NO_NUMBER = ("", "<unknown>")
# The modes our dialplan's MiiTelRecording event may say (Mode: header).
_ANNOUNCED_MODES: dict[str, RecordingMode] = {
    "interleaved": "interleaved", "legs": "legs", "mono": "mono"}


@dataclass
class TrackerStats:
    events: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    bad_events: int = 0
    recordings_opened: int = 0
    recordings_closed: int = 0
    untracked: int = 0  # MixMonitors that could not be followed (closed with a reason)
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.problems.append(text)
        del self.problems[:-20]


class CallTracker:
    def __init__(
        self,
        on_closed: OnClosed,
        on_opened: OnOpened | None = None,
        on_changed: OnChanged | None = None,
        on_gone: OnGone | None = None,
    ) -> None:
        self.on_closed = on_closed
        self.on_opened = on_opened
        # Called when a party joins an open recording (the service journals it).
        self.on_changed = on_changed
        self.on_gone = on_gone  # a channel hung up
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, list[Channel]] = {}
        self.recordings: dict[str, Recording] = {}  # open ones, by file
        self.stats = TrackerStats()
        self._locals: dict[str, Channel] = {}  # Local pair halves waiting for their twin
        # Channels that hung up lately: a late or duplicated event about one
        # must not bring it back as a zombie that never hangs up again. Also
        # one whose Hangup came first (it hung up while a channel list was on
        # its way, or the stream was reordered). Uniqueid -> when it hung up.
        # (OrderedDicts: dropping the oldest of a plain dict, del d[next(iter(d))],
        # scans the deleted slots before it, ~12 us here at 4,096 entries.)
        self._dead: OrderedDict[str, float] = OrderedDict()
        # Recordings closed lately (file -> its channel's Uniqueid): a late or
        # repeated event about one must not open it a second time.
        self._closed_files: OrderedDict[str, str] = OrderedDict()
        # closed file -> seconds recorded in it
        self._file_seconds: OrderedDict[str, float] = OrderedDict()
        # A MixMonitor on another channel appending to a file still being
        # recorded (FreePBX's transfer monitor, before the transferer hangs
        # up): file -> that channel and run; its recording opens when the
        # first one closes, after the first one's audio.
        self._appends: dict[str, tuple[Channel, MixMonitorRun | None]] = {}
        # Asterisk's clock (event Timestamps) and ours may differ: remember the
        # latest event's time and when it arrived, to say "now" in Asterisk time.
        self._last_ts: float | None = None
        self._last_rx = 0.0
        # Malformed-event warnings, at most one a minute per event name (only
        # names with a handler: bounded): anyone with an AMI login can send
        # UserEvents.
        self._malformed_log = Throttle()
        self._handlers: dict[str, Callable[[Event, float], None]] = {
            "Newchannel": self._newchannel,
            "Newstate": self._newstate,
            "NewCallerid": self._callerid,
            "NewConnectedLine": self._callerid,
            "Hangup": self._hangup,
            "DialBegin": self._dial_begin,
            "DialEnd": self._dial_end,
            "BridgeEnter": self._bridge_enter,
            "BridgeLeave": self._bridge_leave,
            "LocalBridge": self._local_bridge,
            "MixMonitorStart": self._mixmonitor_start,
            "MixMonitorStop": self._mixmonitor_stop,
            "VarSet": self._varset,
            "Newexten": self._newexten,
            "UserEvent": self._userevent,
            "BlindTransfer": self._blind_transfer,
            "AttendedTransfer": self._attended_transfer,
            "QueueCallerJoin": self._queue_join,
            "AgentConnect": self._agent_connect,
            "Rename": self._rename,
        }

    # -- entry points -------------------------------------------------------------

    def feed(self, event: Event, received_at: float) -> None:
        """Fold one event. Never raises for bad input: counts and notes it."""
        name = event.get("Event", "")
        stats = self.stats  # (locals: this runs for every event)
        stats.events += 1
        handler = self._handlers.get(name)
        if handler is None:
            stats.ignored += 1
            return
        by = stats.by_event
        by[name] = by.get(name, 0) + 1
        try:
            ts = float(event["Timestamp"])  # (EAFP: nearly every event has one)
        except (KeyError, ValueError):
            ts = received_at
        self._last_ts = ts
        self._last_rx = received_at
        try:
            handler(event, ts)
        except Exception as exc:  # a malformed event must cost nothing else
            self.stats.bad_events += 1
            text = f"ignored a malformed {name} event ({type(exc).__name__}: {exc})"
            self.stats.note(text)
            more = self._malformed_log.allow(name)
            if more is not None:
                log.warning("%s; Uniqueid=%s%s", text, event.get("Uniqueid", "?"),
                            f" ({more} more malformed {name} events ignored since the last "
                            "warning)" if more else "")

    def asterisk_time(self, wall: float) -> float:
        """`wall` (time.time()) on Asterisk's clock, as far as its events tell."""
        if self._last_ts is None:
            return wall
        return self._last_ts + (wall - self._last_rx)

    def close_all(self, reason: EndReason, at: float) -> list[Recording]:
        """Close every open recording (AMI gap, PBX restart, shutdown)."""
        closed = list(self.recordings.values())
        for rec in closed:
            self._close(rec, at, reason)
        return closed

    def reconcile(self, live: list[Event], gap_started: float) -> list[Recording]:
        """After an AMI gap: `live` is what CoreShowChannels listed.

        Channels we knew that are no longer live hung up during the gap: their
        recordings close, marked as finished from what was known when the
        link dropped. Live channels we never saw are adopted, with their bridges.
        """
        live_ids = {ev.get("Uniqueid", "") for ev in live}
        closed: list[Recording] = []
        for uid in [u for u in self.channels if u not in live_ids]:
            ch = self.channels[uid]
            for rec in list(ch.recordings or ()):
                rec.notes.append(
                    "finished after an AMI outage: the call ended while the service was "
                    "disconnected; its end time is when the connection dropped"
                )
                self._close(rec, gap_started, "gap")
                closed.append(rec)
            self._hangup({"Uniqueid": uid}, gap_started)
        for ev in live:
            ch = self._channel(ev, gap_started)
            bridge = ev.get("BridgeId")
            if ch is not None and bridge and ch.bridge != bridge:
                self._bridge_enter({**ev, "BridgeUniqueid": bridge}, gap_started)
        return closed

    def follow(self, rec: Recording, at: float) -> Recording:
        """Track on a recording from the journal (calls/restore.py), its channels
        already the live ones where they are up. Its Hangup may have come already."""
        hold(rec)  # from now on it pins its channels, as one the tracker opened
        ch = rec.channel
        hung_up = self._dead.get(ch.uniqueid)
        if hung_up is not None:  # listed as up, but its Hangup came meanwhile
            self.recordings[rec.file] = rec
            self.stats.recordings_opened += 1
            self._close(rec, hung_up, "hangup")
            return rec
        self.channels.setdefault(ch.uniqueid, ch)
        if ch.recordings is None:
            ch.recordings = []
        ch.recordings.append(rec)
        self.recordings[rec.file] = rec
        self.stats.recordings_opened += 1
        self._refresh(self._component(ch), at)
        return rec

    def discovered(self, uniqueid: str, file: str, at: float) -> Recording | None:
        """A recording found running on a live channel (MIXMONITOR_FILENAME read
        after a restart or reconnect) that the tracker did not see start."""
        ch = self.channels.get(uniqueid)
        if ch is None or file in self.recordings:
            return None
        rec = self._open(ch, file, at)
        if ch.mixmon is not None and ch.mixmon.rec is None:
            ch.mixmon.rec = rec  # the MixMonitorStart that named no file
        rec.resumed = True
        rec.notes.append(
            "the service was not connected when this recording started: its start time "
            "and the parties before then are not known"
        )
        return rec

    def forget_all(self) -> None:
        """Drop all channel state (after Asterisk restarted: none of it is live)."""
        forgotten = list(self.channels.values())
        self.channels.clear()
        self.bridges.clear()
        self._locals.clear()
        self._dead.clear()
        for ch in forgotten:
            ch.mixmon = None  # its recordings were closed (close_all): nothing to follow
            ch.gone = True
            release(ch)

    @property
    def open_recordings(self) -> int:
        return len(self.recordings)

    # -- channels -------------------------------------------------------------------

    def _channel(self, event: Event, ts: float, prefix: str = "") -> Channel | None:
        """The channel an event is about; created from its snapshot if unseen."""
        uid = event.get(prefix + "Uniqueid")
        if not uid:
            return None
        ch = self.channels.get(uid)
        if ch is None:
            name = event.get(prefix + "Channel")
            if not name or uid in self._dead:
                return None
            ch = Channel(
                uniqueid=uid,
                name=name,
                linkedid=event.get(prefix + "Linkedid", uid),
                created=ts,
                context=event.get(prefix + "Context", ""),
                exten=event.get(prefix + "Exten", ""),
                partial=True,
            )
            self._update_ids(ch, event, prefix)
            ch.origin_num = ch.caller_num
            if event.get(prefix + "ChannelStateDesc") == "Up":
                ch.answered = ts
            self.channels[uid] = ch
            self._pair_local(ch)
        return ch

    def _newchannel(self, event: Event, ts: float) -> None:
        uid = event["Uniqueid"]
        if uid in self._dead:
            return
        if uid in self.channels:  # seen first in a later event (reordered capture)
            ch = self.channels[uid]
            ch.partial = False
            ch.created = min(ch.created, ts)
            return
        ch = Channel(
            uniqueid=uid,
            name=event["Channel"],
            linkedid=event.get("Linkedid", uid),
            created=ts,
            context=event.get("Context", ""),
            exten=event.get("Exten", ""),
        )
        self._update_ids(ch, event, "")
        ch.origin_num = ch.caller_num
        self.channels[uid] = ch
        self._pair_local(ch)

    @staticmethod
    def _update_ids(ch: Channel, event: Event, prefix: str) -> None:
        num = event.get(prefix + "CallerIDNum")
        if num is not None:
            ch.caller_num = "" if num in _NO_NUMBER else num
        name = event.get(prefix + "CallerIDName")
        if name is not None:
            ch.caller_name = "" if name in _NO_NUMBER else plain_name(name)
        num = event.get(prefix + "ConnectedLineNum")
        if num is not None:
            ch.connected_num = "" if num in _NO_NUMBER else num
        name = event.get(prefix + "ConnectedLineName")
        if name is not None:
            ch.connected_name = "" if name in _NO_NUMBER else plain_name(name)

    def _pair_local(self, ch: Channel) -> None:
        if not ch.is_local:
            return
        base, sep, _half = ch.name.rpartition(";")
        if not sep:
            return
        twin = self._locals.pop(base, None)
        if twin is None:
            self._locals[base] = ch
        else:
            ch.local_peer, twin.local_peer = twin, ch
            join(ch, twin)

    def _newstate(self, event: Event, ts: float) -> None:
        ch = self._channel(event, ts)
        if ch is None:
            return
        self._update_ids(ch, event, "")
        if event.get("ChannelStateDesc") == "Up" and ch.answered is None:
            ch.answered = ts

    def _callerid(self, event: Event, ts: float) -> None:
        ch = self._channel(event, ts)
        if ch is not None:
            self._update_ids(ch, event, "")

    def _rename(self, event: Event, ts: float) -> None:
        ch = self._channel(event, ts)
        new = event.get("Newname")
        if ch is not None and new:
            ch.name = new

    def _hangup(self, event: Event, ts: float) -> None:
        uid = event.get("Uniqueid", "")
        ch = self.channels.pop(uid, None)
        if uid:
            # Even for a channel not seen yet: a Uniqueid is never reused, so
            # whatever comes later about it (its Newchannel, a CoreShowChannels
            # list made before it hung up) is history, not a live call.
            self._dead.setdefault(uid, ts)
            if len(self._dead) > DEAD_MEMORY:
                self._dead.popitem(last=False)
        if ch is None:
            return
        ch.hungup = ts
        if ch.bridge is not None:
            self._leave_bridge(ch, ts)
        for rec in list(ch.recordings or ()):
            self._close(rec, ts, "hangup")
        self._finish_run(ch)
        if ch.vm_file and not ch.vm_recorded:
            self._voicemail_recording(ch, ts)
        if ch.is_local:
            base = ch.name.rpartition(";")[0]
            if self._locals.get(base) is ch:
                del self._locals[base]
        if self.on_gone is not None:
            self.on_gone(ch)
        ch.gone = True
        release(ch)  # the call is freed once its last channel and recording are

    # -- dialling ---------------------------------------------------------------------

    def _dial_begin(self, event: Event, ts: float) -> None:
        dest = self._channel(event, ts, "Dest")
        if dest is None:
            return
        caller = self._channel(event, ts, "")
        dest.dial_string = event.get("DialString") or dest.dial_string
        if caller is None:
            # Originate: Asterisk dials the first leg with no calling channel.
            dest.originated = True
            return
        dest.dialled_by = caller
        join(dest, caller)
        targets = caller.dial_targets
        if targets is None:
            caller.dial_targets = [dest]
        elif len(targets) < 16 and dest not in targets:
            targets.append(dest)
        for rec in self._recordings_near(caller):
            rec.see(dest)
            if self.on_changed is not None:
                self.on_changed(rec)  # the journal learns whom the call rang

    def _dial_end(self, event: Event, ts: float) -> None:
        status = event.get("DialStatus")
        dest = self.channels.get(event.get("DestUniqueid", ""))
        if dest is not None:
            dest.dial_status = status
        caller = self.channels.get(event.get("Uniqueid", ""))
        if caller is not None:
            caller.dial_status = status

    # -- bridges ------------------------------------------------------------------------

    def _bridge_enter(self, event: Event, ts: float) -> None:
        ch = self._channel(event, ts)
        bridge = event.get("BridgeUniqueid")
        if ch is None or not bridge:
            return
        if ch.bridge is not None and ch.bridge != bridge:
            self._leave_bridge(ch, ts)
        members = self.bridges.setdefault(bridge, [])
        if ch not in members:
            members.append(ch)
        ch.bridge = bridge
        for rec in ch.recordings or ():
            if rec.in_bridge_since is None:
                rec.in_bridge_since = ts
        self._refresh(self._component(ch), ts)

    def _bridge_leave(self, event: Event, ts: float) -> None:
        ch = self.channels.get(event.get("Uniqueid", ""))
        if ch is not None and ch.bridge is not None:
            self._leave_bridge(ch, ts)

    def _leave_bridge(self, ch: Channel, ts: float) -> None:
        bridge = ch.bridge
        assert bridge is not None
        members = self.bridges.get(bridge, [])
        affected = self._component(ch)
        remaining = [m for m in members if m is not ch]
        if remaining:
            self.bridges[bridge] = remaining
        else:
            self.bridges.pop(bridge, None)
        ch.bridge = None
        for rec in ch.recordings or ():
            _out_of_bridge(rec, ts)
        self._refresh(affected, ts)

    def _local_bridge(self, event: Event, ts: float) -> None:
        one = self._channel(event, ts, "LocalOne")
        two = self._channel(event, ts, "LocalTwo")
        if one is not None and two is not None:
            one.local_peer, two.local_peer = two, one
            join(one, two)

    def _component(self, start: Channel) -> list[Channel]:
        """Channels connected to `start` through bridges and Local pairs."""
        seen = [start]
        todo = [start]
        while todo:
            ch = todo.pop()
            nxt: list[Channel] = []
            if ch.bridge is not None:
                nxt.extend(self.bridges.get(ch.bridge, ()))
            if ch.local_peer is not None:
                nxt.append(ch.local_peer)
            for other in nxt:
                if other not in seen:
                    seen.append(other)
                    todo.append(other)
        return seen

    def _audible(self, ch: Channel, exclude: Channel) -> list[Channel]:
        """Real channels whose audio reaches `ch` through its bridge (Locals crossed)."""
        out: list[Channel] = []
        visited = [ch, exclude]
        todo = [ch]
        while todo:
            cur = todo.pop()
            if cur.bridge is None:
                continue
            for member in self.bridges.get(cur.bridge, ()):
                if member in visited:
                    continue
                visited.append(member)
                peer = member.local_peer
                if member.is_local and peer is not None:
                    if peer not in visited:
                        visited.append(peer)
                        todo.append(peer)
                elif not member.is_local:
                    out.append(member)
        return out

    def _sides(self, rec: Recording) -> tuple[list[Channel], list[Channel]]:
        ch = rec.channel
        right = self._audible(ch, ch)
        if ch.is_local and ch.local_peer is not None:
            left = self._audible(ch.local_peer, ch)
        else:
            left = [ch]
        return left, right

    def _refresh(self, channels: Iterable[Channel], ts: float) -> None:
        for ch in channels:
            for rec in ch.recordings or ():
                left, right = self._sides(rec)
                grew = _update_segments(rec.left, left, ts)
                grew = _update_segments(rec.right, right, ts) or grew
                for party in (*left, *right):
                    rec.see(party)
                if grew and self.on_changed is not None:
                    self.on_changed(rec)

    def _recordings_near(self, ch: Channel) -> list[Recording]:
        """Open recordings on this channel or on the other half of its Local pair."""
        recs = list(ch.recordings or ())
        if ch.local_peer is not None:
            recs.extend(ch.local_peer.recordings or ())
        for member in self.bridges.get(ch.bridge or "", ()):
            recs.extend(member.recordings or ())
        return recs

    def _touch(self, ch: Channel) -> None:
        """Something the classifier reads changed on `ch` (a tag, a queue, a
        transfer): open recordings of its conversation are journaled again."""
        if self.on_changed is None:
            return
        seen: set[int] = set()
        for member in self._component(ch):
            for rec in member.recordings or ():
                if id(rec) not in seen:
                    seen.add(id(rec))
                    self.on_changed(rec)

    # -- recordings -----------------------------------------------------------------------
    #
    # A MixMonitor start shows as up to three events on its channel, in one
    # dialplan step: Newexten (Application: MixMonitor), VarSet
    # MIXMONITOR_FILENAME and, from 16.17/18.3/19 on, MixMonitorStart. They are
    # gathered into the channel's MixMonitorRun, in whatever order and subset
    # they arrive; the first that names the file opens the recording, the
    # others join it. Our MiiTelRecording UserEvent names the file as well.

    def _mixmonitor_start(self, event: Event, ts: float) -> None:
        self._mixmon_evidence(event, ts, "s")

    def _mixmon_evidence(
        self, event: Event, ts: float, kind: str, *, appdata: str | None = None,
        file: str | None = None,
    ) -> None:
        ch = self._channel(event, ts)
        if ch is None:
            if kind == "n" and appdata is not None:
                file = full_path(parse_mixmonitor(appdata).file)
            self._mixmon_on_gone_channel(event, ts, file)
            return
        step = _step(event)
        run = ch.mixmon
        if run is None or kind in run.kinds or run.step != step:
            self._finish_run(ch)  # the previous MixMonitor: followed, or said why not
            run = ch.mixmon = MixMonitorRun(step=step, at=ts)
        run.kinds += kind
        if appdata is not None:
            run.appdata, run.args = appdata, parse_mixmonitor(appdata)
        if kind == "v":
            if file:
                if run.file is not None and run.file != file:
                    self._problem(f"MixMonitor on {ch.name}: AppData named {run.file} but "
                                  f"Asterisk writes {file}; following the first")
                run.file = run.file or file
            else:
                run.nameless = True
        elif kind == "n" and run.file is None and run.args is not None:
            run.file = full_path(run.args.file)  # absolute paths only
        if run.rec is None and run.file is None and ch.recordings:
            # Found running by Getvar after a reconnect (or adopted from the
            # journal) before its own events were released: that recording.
            run.rec = next((r for r in ch.recordings if r.resumed), None)
        if run.rec is not None:
            self._complete(run.rec, run)
        elif run.file is not None and not run.done:
            run.done = True
            run.rec = self._open_file(ch, run.file, ts, run)

    def _open_file(
        self, ch: Channel, file: str, ts: float, run: MixMonitorRun | None
    ) -> Recording | None:
        """The recording of `file`: the open one (announced twice, or a second
        MixMonitor appending to it), else a new one. None: it was closed already."""
        rec = self.recordings.get(file)
        if rec is not None:
            if rec.channel is not ch and (run is None or run.args is None or run.args.appends):
                self._appends[file] = (ch, run)  # it continues after `rec`: see _close
                return None
            self._complete(rec, run)
            return rec
        before = self._closed_files.get(file)
        if before is not None:
            if before != ch.uniqueid:
                # Option a, or started over AMI (no AppData: FreePBX's transfer
                # monitor always appends): a new conversation in the same file,
                # after the audio already there.
                appends = run is None or run.args is None or run.args.appends
                if appends and file in self._file_seconds:
                    return self._open_appended(ch, file, ts, run)
                how = "option a appends to it" if appends else "it is overwritten"
                self._problem(
                    f"recording {file} is written again by a MixMonitor on {ch.name} after its "
                    f"call was assembled ({how}): MiiTel gets the file as it was when that "
                    "call ended; give each MixMonitor its own file name")
            return None  # a late or repeated event about a closed recording
        options, receive, transmit = _legs(run, file)
        rec = self._open(ch, file, ts, options, receive=receive, transmit=transmit)
        if ch.partial:
            rec.notes.append(
                f"the service did not see {ch.name} start (its Newchannel never arrived): "
                "who dialled whom before the recording may be missing")
        return rec

    def _open_appended(
        self, ch: Channel, file: str, ts: float, run: MixMonitorRun | None
    ) -> Recording:
        """A MixMonitor appending to a file whose recording already closed: its
        own recording, whose audio starts where the file's earlier audio ends."""
        offset = self._file_seconds.pop(file)
        del self._closed_files[file]
        options, receive, transmit = _legs(run, file)
        rec = self._open(ch, file, ts, options, receive=receive, transmit=transmit)
        rec.appended_at = offset
        rec.notes.append(
            f"MixMonitor on {ch.name} appends to {file} after its earlier recording closed: "
            f"this call is the audio from {offset:.1f} s into the file")
        if self.on_changed is not None:
            self.on_changed(rec)
        return rec

    def _complete(self, rec: Recording, run: MixMonitorRun | None) -> None:
        """Later evidence of the same MixMonitor says what the first did not."""
        if run is None or run.args is None or rec.options:
            return
        options, receive, transmit = _legs(run, rec.file)
        if not options and not receive and not transmit:
            return
        rec.options = options
        rec.bridged_only = bridged_only(options)
        rec.receive = rec.receive or receive
        rec.transmit = rec.transmit or transmit
        if rec.mode == "unknown":
            rec.mode = recording_mode(rec.file, options)
        if self.on_changed is not None:
            self.on_changed(rec)

    def _finish_run(self, ch: Channel) -> None:
        """The channel's latest MixMonitor is over (a new one, or a hangup): one
        that never got to a recording is closed as untracked, with the reason."""
        run = ch.mixmon
        if run is None:
            return
        ch.mixmon = None
        if run.done or run.rec is not None:
            return
        run.done = True
        self._untracked(ch, None, _why_not_followed(ch, run), run.at)

    def _mixmon_on_gone_channel(self, event: Event, ts: float, file: str | None) -> None:
        """MixMonitor evidence about a channel that already hung up."""
        uid, name = event.get("Uniqueid", ""), event.get("Channel", "")
        if not uid or not name or not file or uid not in self._dead:
            return  # nothing to act on (a malformed event, or no file named)
        if self._closed_files.get(file) == uid or file in self.recordings:
            return  # a late or repeated event about a recording that was followed
        ch = Channel(uniqueid=uid, name=name, linkedid=event.get("Linkedid", uid), created=ts,
                     partial=True)
        self._untracked(ch, file, (
            f"MixMonitor {file} on {name} was announced after that channel hung up (its "
            "events came out of order): who talked is not known. The file is at that path; "
            "check the call in the CDR"), ts)

    def _untracked(self, ch: Channel, file: str | None, reason: str, at: float) -> None:
        """A MixMonitor that cannot be followed to a call_data: closed at once
        with the reason, so that it is set aside (or, in replay, reported)."""
        rec = Recording(file=file or "", channel=ch, started=at, untracked=reason)
        hold(rec)
        rec.ended = at
        rec.end_reason = "hangup"
        self.stats.untracked += 1
        self.stats.note(reason)
        self.on_closed(rec)

    def _problem(self, text: str) -> None:
        self.stats.note(text)
        log.warning("%s", text)

    def _open(
        self, ch: Channel, file: str, ts: float, options: str = "", *,
        receive: str | None = None, transmit: str | None = None,
    ) -> Recording:
        rec = self.recordings.get(file)
        if rec is not None:
            return rec  # announced twice (MixMonitorStart and our UserEvent)
        rec = Recording(file=file, channel=ch, started=ts, options=options,
                        bridged_only=bridged_only(options), receive=receive, transmit=transmit,
                        mode=recording_mode(file, options))
        hold(rec)
        self.recordings[file] = rec
        if ch.bridge is not None:
            rec.in_bridge_since = ts
        if ch.recorded is None:
            ch.recorded = []
        if len(ch.recorded) < MAX_RECORDED:
            ch.recorded.append([file, ts, None])
        if ch.recordings is None:
            ch.recordings = []
        ch.recordings.append(rec)
        rec.see(ch)
        self.stats.recordings_opened += 1
        if self.on_opened is not None:
            self.on_opened(rec)
        left, right = self._sides(rec)
        _update_segments(rec.left, left, ts)
        _update_segments(rec.right, right, ts)
        for party in (*left, *right):
            rec.see(party)
        if self.on_changed is not None:
            self.on_changed(rec)
        return rec

    def _mixmonitor_stop(self, event: Event, ts: float) -> None:
        ch = self.channels.get(event.get("Uniqueid", ""))
        if ch is None:
            return
        if ch.stop_step is not None and ch.stop_step == _step(event):
            ch.stop_step = None
            return  # the StopMixMonitor its Newexten already stopped
        if ch.recordings:
            # StopMixMonitor without an ID stops the channel's most recent MixMonitor.
            self._stopped(ch.recordings[-1], ts)

    def _stop_mixmonitor(self, event: Event, ts: float, appdata: str) -> None:
        """StopMixMonitor([ID]) as a dialplan step (its Newexten): before 16.17,
        18.3 and 19 the only sign of it on AMI."""
        ch = self.channels.get(event.get("Uniqueid", ""))
        if ch is None:
            return
        ch.stop_step = _step(event)
        recs = ch.recordings
        if not recs:
            return
        mixmon_id = next(iter(split_args(appdata)), "").strip()
        if mixmon_id:
            chosen = ([r for r in recs if r.mixmonitor_id == mixmon_id]
                      or [r for r in recs if r.mixmonitor_id is None])
            if not chosen:
                return  # a MixMonitor this service does not follow
            self._stopped(chosen[-1], ts)
        else:
            self._stopped(recs[-1], ts)

    def _stopped(self, rec: Recording, ts: float) -> None:
        if rec.restarting:
            # our FreePBX hook restarting it with legs: the same file goes on
            rec.restarting = False
            return
        self._close(rec, ts, "stopped")

    def _close(self, rec: Recording, ts: float, reason: EndReason) -> None:
        if rec.ended is not None:
            return
        hold(rec)  # (already, unless it came some other way)
        rec.ended = ts
        rec.end_reason = reason
        for seg in (*rec.left, *rec.right):
            _end_segment(seg, ts)
        _out_of_bridge(rec, ts)
        for entry in rec.channel.recorded or ():
            if entry[0] == rec.file and entry[2] is None:
                entry[2] = ts
        self.recordings.pop(rec.file, None)
        self._closed_files[rec.file] = rec.channel.uniqueid
        # How many seconds of audio the file holds so far: a MixMonitor that
        # appends to it later (option a) starts after them.
        self._file_seconds[rec.file] = (rec.appended_at or 0.0) + file_seconds(rec, ts)
        if len(self._file_seconds) > DEAD_MEMORY:
            self._file_seconds.popitem(last=False)
        if len(self._closed_files) > DEAD_MEMORY:
            self._closed_files.popitem(last=False)
        owner = rec.channel.recordings
        if owner is not None:
            owner[:] = [r for r in owner if r is not rec]
            if not owner:
                rec.channel.recordings = None
        self.stats.recordings_closed += 1
        self.on_closed(rec)
        pending = self._appends.pop(rec.file, None)
        if pending is not None and pending[0].uniqueid in self.channels:
            appender, run = pending
            appended = self._open_appended(appender, rec.file, ts, run)
            if run is not None and run.rec is None:
                run.rec = appended

    def _voicemail_recording(self, ch: Channel, ts: float) -> None:
        """A caller left a voicemail on a channel we did not record: send the message."""
        assert ch.vm_file is not None
        rec = voicemail_recording(ch, ch.vm_file, ts)
        hold(rec)
        self.stats.recordings_opened += 1
        self.stats.recordings_closed += 1
        self.on_closed(rec)

    # -- variables, dialplan, user events -----------------------------------------------

    def _varset(self, event: Event, ts: float) -> None:
        raw = event.get("Variable", "")
        var = raw.lstrip("_")  # __FROM_DID: an inherited variable
        if var not in _VARS and not var.startswith("MIITEL_"):
            return
        value = event.get("Value", "")
        if var == "MIXMONITOR_FILENAME":
            self._mixmon_evidence(event, ts, "v", file=value)
            return
        ch = self._channel(event, ts)
        if ch is None:
            return
        if var == "VM_MESSAGEFILE":
            if value:
                ch.vm_file = value
                self._touch(ch)
                # A MixMonitor that records unbridged audio too (no `b`) already
                # holds the message: send that. With `b` it holds nothing.
                if any(r.bridged_only is False for r in ch.recordings or ()):
                    ch.vm_recorded = True
        elif var == "FROM_DID":
            ch.did = value or ch.did
            self._touch(ch)
        elif var == "AMPUSER":
            ch.ampuser = value or ch.ampuser
            self._touch(ch)
        elif value and (run := ch.mixmon) is not None and run.rec is not None \
                and run.args is not None and run.args.id_var == raw:
            run.rec.mixmonitor_id = value  # MixMonitor's i(VAR): its ID, for StopMixMonitor

    def _newexten(self, event: Event, ts: float) -> None:
        app = event.get("Application", "").lower()
        data = event.get("AppData", "")
        if app == "execif":  # ExecIf(cond?MixMonitor(...)): the branch it runs
            branch = execif_branch(data)
            if branch is None or branch[0].lower() not in ("mixmonitor", "stopmixmonitor"):
                return
            app, data = branch[0].lower(), branch[1]
        name = _APPS.get(app)
        if name is None:
            return
        if name == "MixMonitor":
            self._mixmon_evidence(event, ts, "n", appdata=data)
            return
        if name == "StopMixMonitor":
            self._stop_mixmonitor(event, ts, data)
            return
        ch = self._channel(event, ts)
        if ch is None:
            return
        if name == "VoiceMail":
            ch.voicemail_box = voicemail_box(data) or ch.voicemail_box
            self._touch(ch)
        elif name == "Queue":
            ch.queue = ch.queue or queue_name(data)

    def _userevent(self, event: Event, ts: float) -> None:
        kind = event.get("UserEvent", "")
        if not kind.startswith("MiiTel"):
            return
        ch = self._channel(event, ts)
        if ch is None:
            return
        if kind == "MiiTelRecording":
            file = event.get("File", "")
            if not file:
                return
            run = ch.mixmon
            if run is not None and (run.rec is not None or not _names(run, file)):
                run = None  # not the MixMonitor this event is about
            rec = self._open_file(ch, file, ts, run)
            if rec is None:
                return
            if run is not None:
                run.rec, run.file, run.done = rec, file, True
            mode = _ANNOUNCED_MODES.get(event.get("Mode", ""))
            if mode is not None:
                rec.mode = mode
            rec.receive = event.get("Receive") or rec.receive
            rec.transmit = event.get("Transmit") or rec.transmit
            rec.mixmonitor_id = event.get("MixMonitorID") or rec.mixmonitor_id
            rec.restarting = event.get("Restart", "") == "yes"
            if self.on_changed is not None:
                self.on_changed(rec)
        elif kind == "MiiTelTag":
            value = event.get("Tag", "")
            if value:
                ch.add_tag(value)
                self._touch(ch)
        elif kind == "MiiTelGroup":
            ch.group = event.get("Group") or ch.group
            self._touch(ch)
        elif kind == "MiiTelQueue":
            ch.queue_label = event.get("Queue") or ch.queue_label
            self._touch(ch)

    # -- transfers and queues -------------------------------------------------------------

    def _blind_transfer(self, event: Event, ts: float) -> None:
        if event.get("Result", "Success") != "Success":
            return
        transferer = self._channel(event, ts, "Transferer")
        transferee = self._channel(event, ts, "Transferee")
        if transferee is None:
            return
        t = Transfer("blind", ts, transferer, event.get("Extension") or None, transferee)
        _moved(transferee, t)
        join(transferee, transferer)
        if transferer is not None:
            transferer.made_transfer = t
            self._touch(transferer)
        self._touch(transferee)

    def _attended_transfer(self, event: Event, ts: float) -> None:
        if event.get("Result", "Success") != "Success":
            return
        transferer = self._channel(event, ts, "OrigTransferer")
        second = self._channel(event, ts, "SecondTransferer")
        transferee = self._channel(event, ts, "Transferee")
        user = transferer or second
        t = Transfer("attended", ts, user, None, transferee)
        join(transferer, second, transferee)
        if transferee is not None:
            _moved(transferee, t)
        for ch in (transferer, second):
            if ch is not None:
                ch.made_transfer = t
        for ch in (transferer, second, transferee):
            if ch is not None:
                self._touch(ch)

    def _queue_join(self, event: Event, ts: float) -> None:
        ch = self._channel(event, ts)
        queue = event.get("Queue")
        if ch is not None and queue:
            ch.queue = queue
            self._touch(ch)

    def _agent_connect(self, event: Event, ts: float) -> None:
        member = self._channel(event, ts, "Dest")
        queue = event.get("Queue")
        if member is not None and queue:
            member.queue = queue
            self._touch(member)


DEAD_MEMORY = 4096  # recently hung-up Uniqueids remembered
MAX_SPANS = 64  # stretches kept per party and side (a party flapping in and out)
MAX_RECORDED = 16  # recordings remembered per channel (Channel.recorded)


def _moved(ch: Channel, t: Transfer) -> None:
    """`t` moved `ch`; the transfer before it is kept (each made a conversation)."""
    if ch.transfer is not None and ch.transfer is not t:
        if ch.earlier_transfers is None:
            ch.earlier_transfers = []
        if len(ch.earlier_transfers) < 8:
            ch.earlier_transfers.append(ch.transfer)
    ch.transfer = t


_VARS = frozenset(
    {"MIXMONITOR_FILENAME", "VM_MESSAGEFILE", "FROM_DID", "AMPUSER"}
)
_APPS = {"mixmonitor": "MixMonitor", "stopmixmonitor": "StopMixMonitor",
         "voicemail": "VoiceMail", "queue": "Queue"}


def _step(event: Event) -> tuple[str, str, str]:
    """The dialplan step a channel's event was sent from: a MixMonitor's events share it."""
    return (event.get("Context", ""), event.get("Exten", ""), event.get("Priority", ""))


def _legs(run: MixMonitorRun | None, file: str) -> tuple[str, str | None, str | None]:
    """(options, r() path, t() path) of the MixMonitor that writes `file`; a
    relative r()/t() name lives in the monitor directory, which a relative
    main name and its full path (MIXMONITOR_FILENAME) reveal."""
    if run is None or run.args is None:
        return "", None, None
    args = run.args
    directory = monitor_dir_of(args.file, file)
    return (args.options, full_path(args.receive or "", directory),
            full_path(args.transmit or "", directory))


def _names(run: MixMonitorRun, file: str) -> bool:
    """Could `run` (no file known yet) be the MixMonitor writing `file`?"""
    if run.args is None:
        return True  # only its MixMonitorStart was seen
    given = run.args.file
    return bool(given) and (file == given or monitor_dir_of(given, file) is not None)


def _why_not_followed(ch: Channel, run: MixMonitorRun) -> str:
    what = f"MixMonitor on {ch.name}"
    if run.appdata is not None and run.args is not None:
        what = f"MixMonitor({run.appdata[:200]}) on {ch.name}"
        if not run.args.file:
            run.nameless = True
    if run.nameless:
        return (f"{what} was given no file name (at most r()/t() legs): the service follows a "
                "recording by its file, so this one is not sent. Give MixMonitor a file name "
                "(the legs are merged into stereo when r() and t() are given too)")
    if "v" not in run.kinds:
        return (f"{what}: Asterisk never said which file it writes (no VarSet "
                "MIXMONITOR_FILENAME arrived), so this recording is not sent. Let that VarSet "
                "through the manager user's eventfilter (dialplan/manager_miitel.conf), then "
                "`asterisk -rx 'manager reload'`; the file is in Asterisk's monitor folder")
    return f"{what} could not be followed to a call"


def _update_segments(segments: list[Segment], now_present: list[Channel], ts: float) -> bool:
    """Open and close segments; True if a new party joined."""
    grew = False
    for seg in segments:
        present = seg.party in now_present
        if present and seg.since is None:
            seg.since = ts
            seg.last = None
        elif not present and seg.since is not None:
            _end_segment(seg, ts)
    for party in now_present:
        if all(seg.party is not party for seg in segments):
            segments.append(Segment(party=party, first=ts, since=ts))
            grew = True
    return grew


def _out_of_bridge(rec: Recording, ts: float) -> None:
    if rec.in_bridge_since is not None:
        if len(rec.in_bridge) < MAX_SPANS:
            rec.in_bridge.append((rec.in_bridge_since, max(rec.in_bridge_since, ts)))
        rec.in_bridge_since = None


def _end_segment(seg: Segment, ts: float) -> None:
    if seg.since is not None:
        seg.talk += max(0.0, ts - seg.since)
        if len(seg.spans) < MAX_SPANS:
            seg.spans.append((seg.since, max(seg.since, ts)))
        seg.since = None
        seg.last = ts
