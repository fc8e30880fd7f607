"""CDR rows (+ the files their calls left) -> the calls/state objects live
tracking would have built -> classify(). Pure: no I/O but the optional
voicemail lookup, so it is tested row by row.

A CDR row is one pairing of two channels: party A (`channel`, whose
`uniqueid` it carries) and party B (`dstchannel`), with start/answer/end.
Our recordings are named after the channel they record (UNIQUEID in the
name), and MixMonitor runs on party A (the caller's channel before Dial),
so a recording's rows are its channel's rows from when it started. Local
channel pairs (`Local/x@ctx-N;1` / `;2`) are followed to the real phones.

What the rows cannot say is documented in docs/CATCHUP.md; each gap falls
back to the safe choice (no context rather than a wrong one, MONAURAL when
the stereo sides are not known).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..calls.asterisk import (
    PHONE_CONTEXT,
    TRUNK_CONTEXT,
    ContextKind,
    bridged_only,
    context_kind,
    queue_name,
    recording_mode,
    voicemail_box,
    voicemail_recording,
)
from ..calls.state import Channel, Recording, Segment, Transfer
from ..config import Config
from .files import FileIndex, FoundFile, Message, describe_name, fit_start
from .rows import CdrRow, miitel_marks, split_clid

LINK_SLACK = 5.0  # seconds: rows about one channel this close belong to one call
_DIAL_APPS = frozenset({"dial", "queue", "appdial", "appqueue", "followme", "originate"})

VoicemailLookup = Callable[[str, str, float, float], Message | None]


# -- grouping rows into calls ---------------------------------------------------------


@dataclass
class Cluster:
    rows: list[CdrRow] = field(default_factory=list)
    lo: float = float("inf")
    hi: float = float("-inf")
    keys: set[str] = field(default_factory=set)

    def take(self, row: CdrRow, keys: Iterable[str]) -> None:
        self.rows.append(row)
        self.lo = min(self.lo, row.start)
        self.hi = max(self.hi, row.end)
        self.keys.update(keys)


def row_keys(row: CdrRow) -> list[str]:
    keys = []
    if row.uniqueid:
        keys.append("u:" + row.uniqueid)
    if row.linkedid:
        keys.append("k:" + row.linkedid)
    for name in (row.channel, row.dstchannel):
        if name:
            keys.append("c:" + name)
            if name.startswith("Local/") and ";" in name:
                keys.append("c:" + name.rpartition(";")[0])
    return keys


class Assembler:
    """Rows in -> calls (clusters) out, once no later row can still join them.

    Rows join when they name the same channel (or Local pair, uniqueid,
    linkedid) and their times touch. A cluster is complete when the stream
    has moved past its last end by more than `settle` seconds: for cdr_csv
    (rows written as calls end) by a row's end, for a database (ordered by
    start) by a row's start.
    """

    def __init__(self, order: str, settle: float = 60.0) -> None:
        self.order = order
        self.settle = settle
        self.clusters: dict[int, Cluster] = {}
        self.by_key: dict[str, set[int]] = {}
        self._next = 0
        self._seen: set[tuple[object, ...]] = set()
        self.watermark = float("-inf")

    def add(self, row: CdrRow) -> None:
        k = row.key()
        if k in self._seen:
            return
        self._seen.add(k)
        keys = row_keys(row)
        hits = {cid for key in keys for cid in self.by_key.get(key, ())
                if self.clusters[cid].lo - LINK_SLACK <= row.end
                and row.start <= self.clusters[cid].hi + LINK_SLACK}
        if hits:
            cid = min(hits)
            target = self.clusters[cid]
            for other in sorted(hits - {cid}):
                merged = self.clusters.pop(other)
                for r in merged.rows:
                    target.take(r, ())
                target.keys |= merged.keys
                for key in merged.keys:
                    ids = self.by_key.get(key)
                    if ids is not None:
                        ids.discard(other)
                        ids.add(cid)
        else:
            cid = self._next
            self._next += 1
            target = self.clusters[cid] = Cluster()
        target.take(row, keys)
        for key in keys:
            self.by_key.setdefault(key, set()).add(cid)
        mark = (row.end if self.order == "end" else row.start) - self.settle
        self.watermark = max(self.watermark, mark)

    def complete(self, final: bool = False) -> list[Cluster]:
        done = [cid for cid, c in self.clusters.items() if final or c.hi < self.watermark]
        out = []
        for cid in sorted(done, key=lambda c: self.clusters[c].hi):
            cluster = self.clusters.pop(cid)
            for key in cluster.keys:
                ids = self.by_key.get(key)
                if ids is not None:
                    ids.discard(cid)
                    if not ids:
                        del self.by_key[key]
            out.append(cluster)
        return out

    def __len__(self) -> int:
        return len(self.clusters)


# -- one call ---------------------------------------------------------------------------


@dataclass
class Rebuilt:
    """One recording rebuilt from the CDR (or why it could not be)."""

    file: str  # as Asterisk named it: call_data_id is made of it
    files: tuple[str, ...]  # every file of the recording (legs too)
    rec: Recording | None
    ended: float
    hints: list[str] = field(default_factory=list)
    problem: str | None = None  # could not be rebuilt: reported, not sent


@dataclass
class BuildContext:
    config: Config
    files: FileIndex
    monitor_dir: str  # recordings.dirs[0], as Asterisk names it
    freepbx_options: str = "ab"
    voicemail: VoicemailLookup | None = None
    # endpoint -> "internal"/"external" learnt from rows whose context can be trusted
    endpoint_kinds: dict[str, set[str]] = field(default_factory=dict)
    exists: Callable[[str], bool] | None = None  # Asterisk path -> on disk?
    used: set[str] = field(default_factory=set)  # files explained by a CDR row


class CallBuilder:
    """Builds the channels of one cluster, then its recordings."""

    def __init__(self, rows: list[CdrRow], ctx: BuildContext) -> None:
        self.ctx = ctx
        self.rows = sorted(rows, key=lambda r: (r.start, r.answer or r.start, r.end))
        self.chans: dict[str, Channel] = {}
        self.a_rows: dict[str, list[CdrRow]] = {}  # channel name -> rows where it is party A
        self.b_rows: dict[str, list[CdrRow]] = {}  # channel name -> rows where it is party B
        for row in self.rows:
            if row.channel:
                self.a_rows.setdefault(row.channel, []).append(row)
            if row.dstchannel:
                self.b_rows.setdefault(row.dstchannel, []).append(row)
        self._channels()

    # -- channels ------------------------------------------------------------------------

    def chan(self, name: str, at: float) -> Channel:
        ch = self.chans.get(name)
        if ch is None:
            ch = self.chans[name] = Channel(uniqueid=f"cdr:{name}", name=name, linkedid="",
                                            created=at)
            if ch.is_local:
                ch.context = _local_context(name)
                twin = self.chans.get(_twin(name))
                if twin is not None:
                    ch.local_peer, twin.local_peer = twin, ch
        ch.created = min(ch.created, at)
        return ch

    def _channels(self) -> None:
        for row in self.rows:
            a = self.chan(row.channel, row.start)
            if row.uniqueid:
                a.uniqueid = row.uniqueid
            a.linkedid = row.linkedid or a.linkedid or a.uniqueid
            name, num = split_clid(row.clid)
            a.caller_num = row.src or num or a.caller_num
            a.caller_name = name or a.caller_name
            if row.answer is not None and row.answered:
                a.answered = row.answer if a.answered is None else min(a.answered, row.answer)
            a.hungup = max(a.hungup or row.end, row.end)
            if row.did:
                a.did = row.did
            for kind, value in miitel_marks(row.userfield):  # miitel-tag/-queue/-group
                if kind == "Tag" and value not in (a.tags or ()):
                    a.add_tag(value)
                elif kind == "Queue":
                    a.queue_label = a.queue_label or value
                elif kind == "Group":
                    a.group = a.group or value
            app = row.lastapp.lower()
            if app == "queue" and row.lastdata:
                a.queue = a.queue or queue_name(row.lastdata)
            if app == "voicemail" and row.lastdata:
                a.voicemail_box = a.voicemail_box or voicemail_box(row.lastdata)
            if not row.dstchannel:
                continue
            b = self.chan(row.dstchannel, row.start)
            b.linkedid = b.linkedid or a.linkedid
            if row.answered:
                b.answered = row.answer if b.answered is None else min(b.answered, row.answer or 0)
            if not b.is_local:
                b.connected_num = b.connected_num or a.caller_num
                b.connected_name = b.connected_name or a.caller_name
            if a.dial_targets is None:
                a.dial_targets = []
            if all(t is not b for t in a.dial_targets) and len(a.dial_targets) < 16:
                a.dial_targets.append(b)
        for name, rows in self.b_rows.items():
            b = self.chans[name]
            row = self._dialling_row(name, rows)
            dialler = self.chans[row.channel]
            if dialler is not b:
                b.dialled_by = dialler
                b.dial_string = _dial_string(row, name) or b.dial_string
        for name in self.a_rows:
            self._context_of_a(self.chans[name])
        for ch in self.chans.values():
            if not ch.is_local and ch.name not in self.a_rows:
                kinds = self.ctx.endpoint_kinds.get(ch.endpoint, set())
                if len(kinds) == 1:
                    ch.context = PHONE_CONTEXT if "internal" in kinds else TRUNK_CONTEXT
        self._transfers()

    def _dialling_row(self, name: str, rows: list[CdrRow]) -> CdrRow:
        """Of the rows with `name` as party B, the one that dialled it: its dial
        string names it, else the earliest."""
        for row in rows:
            if _dial_string(row, name):
                return row
        return min(rows, key=lambda r: (r.start, r.end))

    def _context_of_a(self, a: Channel) -> None:
        """Where a party A channel entered the dialplan, when the rows can say.

        A CDR row's dcontext is where the channel was when the row closed
        (after a transfer: the transferer's context), so only a channel with
        one conversation and an entry-like context (from-internal,
        from-trunk, from-pstn, FreePBX's DID contexts, or one named in
        pbx.*_contexts) keeps it; otherwise the context stays unknown and
        the later rules (technology) decide, as live tracking does when a
        context says nothing.
        """
        rows = self.a_rows[a.name]
        if a.is_local:
            return
        answered = [r for r in rows if r.answered]
        first = rows[0]
        kind = self._context_kind(first.dcontext) if first.dcontext else None
        # A transfer moves a channel into the transferer's (internal) context,
        # never into an outside line's: an external context on the first row
        # holds even after one.
        if kind is None or (kind == "internal" and len(answered) > 1):
            return
        a.context = first.dcontext
        # The extension it called at creation (the DID, for a trunk's call).
        if first.dst and re.fullmatch(r"[+*#0-9]+", first.dst):
            a.exten = first.dst
        self.ctx.endpoint_kinds.setdefault(a.endpoint, set()).add(kind)

    def _context_kind(self, context: str) -> ContextKind | None:
        """What a row's dcontext says, counting only contexts a channel enters
        the dialplan in: FreePBX's queues and ring groups hold trunk callers too."""
        pbx = self.ctx.config.pbx
        said = context_kind(context, pbx.internal_contexts, pbx.external_contexts,
                            dialplan=False)
        return said[0] if said else None

    def _transfers(self) -> None:
        """A channel answered by one party, then by another: a transfer by the first.

        Attended when the new party was dialled by the first one (its
        consultation call), else blind.
        """
        for name, rows in self.a_rows.items():
            a = self.chans[name]
            answered = [r for r in rows if r.answered and r.dstchannel]
            for prev, cur in itertools.pairwise(answered):
                if prev.dstchannel == cur.dstchannel:
                    continue
                user = self.real_of(prev.dstchannel)
                if user is None or user is a:
                    continue
                consult = [r for r in self.a_rows.get(user.name, ())
                           if r.dstchannel in (cur.dstchannel, _twin(cur.dstchannel))]
                if consult:
                    t = Transfer("attended", consult[0].end, user, None, a)
                elif cur.start >= prev.end - 2:
                    t = Transfer("blind", cur.start, user, cur.dst or None, a)
                else:
                    continue
                a.transfer = t
                user.made_transfer = t

    def real_of(self, name: str) -> Channel | None:
        """The real channel behind a party B name (through Local pairs)."""
        found = self.reach(name, float("-inf"), float("inf"))
        return found[0][0] if found else None

    def reach(self, name: str, t0: float, t1: float, depth: int = 0
              ) -> list[tuple[Channel, float, float]]:
        """Real channels audible through `name` between t0 and t1, with when."""
        ch = self.chans.get(name)
        if ch is None or depth > 8:
            return []
        if not ch.is_local:
            return [(ch, t0, t1)]
        out: list[tuple[Channel, float, float]] = []
        twin = _twin(name)
        for row in self.a_rows.get(twin, ()):
            if row.answered and row.dstchannel:
                lo = max(t0, row.answer or row.start)
                hi = min(t1, row.end)
                if lo <= hi:
                    out += self.reach(row.dstchannel, lo, hi, depth + 1)
        return out

    def behind(self, local_two: Channel, t0: float, t1: float
               ) -> list[tuple[Channel, float, float]]:
        """Who talks into a recorded `;2` half: whoever holds its `;1` twin."""
        twin = _twin(local_two.name)
        rows = self.b_rows.get(twin, [])
        dialler = self.chans[twin].dialled_by if twin in self.chans else None
        rows = sorted(rows, key=lambda r: (self.chans.get(r.channel) is not dialler,
                                           r.answer or r.start))
        out: list[tuple[Channel, float, float]] = []
        free_at = t0
        for row in rows:
            if not row.answered:
                continue
            a = self.chans[row.channel]
            if a.is_local:
                continue
            lo = max(t0, row.answer or row.start, free_at)
            hi = min(t1, row.end)
            if lo <= hi:
                out.append((a, lo, hi))
                free_at = hi
        return out

    # -- recordings ------------------------------------------------------------------------

    def recordings(self) -> list[Rebuilt]:
        out: list[Rebuilt] = []
        for name, rows in self.a_rows.items():
            a = self.chans[name]
            found = self._files_of(a, rows)
            starts = [start for start, _ in found]
            for i, (start, item) in enumerate(found):
                nxt = found[i + 1][0] if i + 1 < len(found) else None
                mine = [r for r in rows if _owner(r, starts) == i]
                out.append(self._one(a, rows, mine, start, nxt, item))
            out += self._voicemail(a, rows)
        return out

    def _files_of(self, a: Channel, rows: list[CdrRow]
                  ) -> list[tuple[float, FoundFile | str]]:
        """This channel's recordings, by start: our named files, and files the
        CDR names (FreePBX's recordingfile)."""
        items: dict[str, tuple[float, FoundFile | str]] = {}
        lo, hi = min(r.start for r in rows), max(r.end for r in rows)
        for f in self.ctx.files.of_uid(a.uniqueid):
            if f.kind == "freepbx":
                f.started = fit_start(f, lo, hi)
            if f.kind in ("interleaved", "legs_main", "freepbx") and f.started is not None:
                items[f.path] = (f.started, f)
        for row in rows:
            if not row.recordingfile:
                continue
            path = self._recordingfile_path(row.recordingfile)
            if path in items:
                continue
            f = self.ctx.files.files.get(path)
            if f is not None and f.kind == "freepbx":
                f.started = fit_start(f, lo, hi)
            if f is not None and f.started is not None:
                items[path] = (f.started, f)
            else:
                items[path] = (row.start, path)
        return sorted(items.values(), key=lambda x: x[0])

    def _recordingfile_path(self, value: str) -> str:
        if value.startswith("/"):
            return value
        m = re.search(r"-(\d{4})(\d{2})(\d{2})-\d{6}-", value)
        base = self.ctx.monitor_dir.rstrip("/")
        if m:
            return f"{base}/{m[1]}/{m[2]}/{m[3]}/{value}"
        return f"{base}/{value}"

    def _one(self, a: Channel, rows: list[CdrRow], mine: list[CdrRow], start: float,
             nxt: float | None, item: FoundFile | str) -> Rebuilt:
        hints: list[str] = []
        if isinstance(item, str):
            exists = self.ctx.exists(item) if self.ctx.exists else False
            if not exists:
                end = max(r.end for r in rows)
                return Rebuilt(item, (item,), None, end, problem=(
                    f"the CDR names the recording {item}, which is not there (deleted, "
                    "or the recordings folder is mounted elsewhere: recordings.path_map)"))
            found = describe_name(item, item, None)
        else:
            found = item
        if found.kind == "freepbx":
            found.started = fit_start(found, min(r.start for r in rows),
                                      max(r.end for r in rows)) or start
        if any(r.recordingfile for r in rows) and found.kind == "freepbx":
            tagged = [r for r in rows if r.recordingfile
                      and self._recordingfile_path(r.recordingfile) == found.path]
            mine = tagged or mine
        ended = nxt if nxt is not None else max(r.end for r in rows)
        rec = Recording(file=found.path, channel=a, started=start)
        rec.ended = ended
        rec.end_reason = "stopped" if nxt is not None else "hangup"
        files = [found.path]
        side_known = found.uid is None or found.uid == a.uniqueid
        if found.kind == "interleaved":
            # dialplan/: MixMonitor(...,bDi(MIITEL_MIXMON_ID)), bridged audio only
            rec.mode, rec.bridged_only = "interleaved", True
        elif found.kind == "legs_main":
            rec.mode, rec.bridged_only = "legs", True  # bi(MIITEL_MIXMON_ID)r(..)t(..)
            rec.receive, rec.transmit = self._siblings(found)
            if rec.receive and rec.transmit:
                files += [rec.receive, rec.transmit]
            else:
                rec.mode = "mono"
                hints.append("its r()/t() legs are missing: sent MONAURAL")
        elif found.kind == "freepbx":
            rec.bridged_only = bridged_only(self.ctx.freepbx_options)
            self._freepbx_hints(a, found, hints)
            legs = self._freepbx_legs(found) if side_known else None
            if legs:
                rec.mode = "legs"
                rec.receive, rec.transmit = legs
                files += list(legs)
            else:
                rec.mode = "mono"
                if side_known:
                    hints.append("no stereo legs for this FreePBX recording: sent MONAURAL")
        else:
            rec.mode = recording_mode(found.path)
        if not side_known and rec.mode in ("interleaved", "legs"):
            rec.mode = "mono"
        if not side_known:
            hints.append(f"the recording's name says channel {found.uid}, the CDR row "
                         f"{a.uniqueid}: the stereo sides are not known, sent MONAURAL")
        self._segments(rec, a, mine)
        for path in files:
            self.ctx.used.add(path)
        rec.notes.append("caught up from the CDR: the service was not listening during "
                         "this call")
        return Rebuilt(found.path, tuple(files), rec, ended, hints)

    def _segments(self, rec: Recording, a: Channel, rows: list[CdrRow]) -> None:
        assert rec.ended is not None
        end = rec.ended
        if a.is_local:
            for party, lo, hi in self.behind(a, rec.started, end):
                rec.left.append(Segment(party, lo, hi, hi - lo))
                rec.see(party)
        else:
            rec.left.append(Segment(a, rec.started, end, max(0.0, end - rec.started)))
        rec.see(a)
        for row in rows:
            if not row.dstchannel:
                continue
            b = self.chans[row.dstchannel]
            rec.see(b)
            if not row.answered:
                continue
            joined = row.answer or row.start
            if b.dialled_by is not None and b.dialled_by is not a and b.is_local:
                # a party someone else dialled (a completed attended transfer)
                # joins when that one's own row ends.
                joined = max([joined] + [r.end for r in self.a_rows.get(b.dialled_by.name, ())
                                         if r.dstchannel == b.name])
            for party, lo, hi in self.reach(row.dstchannel, max(joined, rec.started),
                                            min(row.end, end)):
                rec.right.append(Segment(party, lo, hi, max(0.0, hi - lo)))
                rec.see(party)
        rec.right.sort(key=lambda s: s.first)

    def _siblings(self, main: FoundFile) -> tuple[str | None, str | None]:
        stem = main.path[: -len(".wav")]
        rx, tx = f"{stem}-in.wav", f"{stem}-out.wav"
        have = self.ctx.files.files
        return (rx if rx in have else None, tx if tx in have else None)

    def _freepbx_legs(self, found: FoundFile) -> tuple[str, str] | None:
        """The miitel/ legs our FreePBX hooks gave this recording: the pair for
        its channel whose name was prepared last before it started."""
        assert found.uid is not None
        pairs: dict[str, dict[str, FoundFile]] = {}
        for f in self.ctx.files.of_uid(found.uid):
            if f.kind in ("leg_in", "leg_out") and "/miitel/" in f.path:
                pairs.setdefault(f.base, {})[f.kind] = f
        best: tuple[float, str, str] | None = None
        for legs in pairs.values():
            if "leg_in" not in legs or "leg_out" not in legs:
                continue
            rx, tx = legs["leg_in"], legs["leg_out"]
            if rx.path in self.ctx.used:
                continue
            when = rx.started or 0.0
            if found.started is not None and when > found.started + 2:
                continue
            if best is None or when > best[0]:
                best = (when, rx.path, tx.path)
        return (best[1], best[2]) if best else None

    def _freepbx_hints(self, a: Channel, found: FoundFile, hints: list[str]) -> None:
        """FreePBX's name: <type>-<called>-<from>-...: who the recorded channel is."""
        kind, called, from_ = found.freepbx_type, found.freepbx_called, found.freepbx_from
        if kind in ("in", "external"):
            if self._context_kind(a.context) != "external":
                a.context = TRUNK_CONTEXT
            if kind == "in" and called and not a.did:
                a.did = called
        elif kind in ("out", "internal"):
            if self._context_kind(a.context) != "internal":
                a.context = PHONE_CONTEXT
            if from_ and from_ != "unknown" and not a.ampuser:
                a.ampuser = from_
        elif kind == "q" and called:
            a.queue = a.queue or called
            if a.did:
                a.context = TRUNK_CONTEXT
        elif kind == "rg" and called:
            a.group = a.group or called
            if a.did:
                a.context = TRUNK_CONTEXT
        hints.append(f"FreePBX {kind} recording")

    def _voicemail(self, a: Channel, rows: list[CdrRow]) -> list[Rebuilt]:
        out: list[Rebuilt] = []
        lookup = self.ctx.voicemail
        for row in rows:
            if row.lastapp.lower() != "voicemail" or not row.lastdata:
                continue
            box = voicemail_box(row.lastdata)
            if box is None or lookup is None:
                continue
            msg = lookup(box, a.name, row.start, row.end)
            if msg is None:
                continue
            a.vm_file = msg.path
            a.voicemail_box = box
            end = max(r.end for r in rows)
            rec = voicemail_recording(a, msg.path, end)
            rec.notes.append("caught up from the CDR: a voicemail message left while the "
                             "service was not listening")
            hints = [] if msg.folder == "INBOX" else [
                f"the message was already moved to {msg.folder} (listened to)"]
            out.append(Rebuilt(msg.path, (msg.path,), rec, end, hints))
        return out


def _owner(row: CdrRow, starts: list[float]) -> int | None:
    """Which of a channel's recordings (by start) a row belongs to: the last
    one started by the row's start (a second of slack: CDR times are whole
    seconds); rows from before the first recording count while they overlap it."""
    owner = None
    for i, start in enumerate(starts):
        if start <= row.start + 1:
            owner = i
    if owner is None and starts and row.end >= starts[0] - 1:
        owner = 0
    return owner


def _twin(name: str) -> str:
    if name.endswith(";1"):
        return name[:-1] + "2"
    if name.endswith(";2"):
        return name[:-1] + "1"
    return name


def _local_context(name: str) -> str:
    """`Local/1002@queue-members-00000001;2` -> `queue-members`."""
    resource = name.partition("/")[2].rpartition(";")[0]
    ctx = resource.partition("@")[2]
    base, dash, suffix = ctx.rpartition("-")
    return base if dash and re.fullmatch(r"[0-9a-f]+", suffix) else ctx


def _dial_string(row: CdrRow, name: str) -> str | None:
    """The part of the row's Dial() argument that reached `name`, as AMI's
    DialString says it (without the technology): `0312345678@trunk`, `1002`."""
    if row.lastapp.lower() not in _DIAL_APPS or not row.lastdata:
        return None
    target = name.partition("/")
    tech, resource = target[0], target[2]
    if tech == "Local":
        resource = resource.rpartition(";")[0]
        resource = resource.rpartition("-")[0] or resource
    else:
        resource = resource.rpartition("-")[0] or resource
    for item in row.lastdata.split(",", 1)[0].split("&"):
        t, _, rest = item.strip().partition("/")
        if t.lower() != tech.lower() or not rest:
            continue
        where = rest.partition("/")[0]
        if tech == "Local":
            if where == resource:
                return rest
            continue
        if where == resource or where.rpartition("@")[2] == resource:
            return rest
    return None

