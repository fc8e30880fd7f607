"""The recordings and voicemail folders: which files exist, and what their
names say (the recorded channel's uniqueid, when the recording started).

Names this project's dialplan writes (dialplan/):
    miitel-<EPOCH>-<UNIQUEID>-<n>.raw                  plain Asterisk, MixMonitor D
    miitel-<EPOCH>-<UNIQUEID>-<n>.wav (+ -in/-out.wav) plain Asterisk, r()/t() legs
    miitel/miitel-<EPOCH>-<UNIQUEID>-<n>-in|out.wav    legs added to FreePBX's recording
FreePBX's own (sub-record-check):
    YYYY/MM/DD/<type>-<called>-<from>-YYYYMMDD-HHMMSS-<UNIQUEID>.<fmt>

Paths are kept as Asterisk names them (what MIXMONITOR_FILENAME says, what
call_data_id is made of) and as this host sees them (recordings.path_map).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import PurePosixPath
from typing import Literal

from ..calls.asterisk import mailbox_parts
from ..config import Config
from ..recordings.allowed import local_dir, recording_dirs

MIITEL_NAME = re.compile(
    r"^miitel-(?P<epoch>\d+)-(?P<uid>.+)-(?P<n>\d+)(?P<leg>-in|-out)?\.(?P<ext>raw|wav)$")
FREEPBX_NAME = re.compile(
    r"^(?P<type>[A-Za-z]+)-(?P<mid>.*)-(?P<date>\d{8})-(?P<time>\d{6})-(?P<uid>.+)"
    r"\.(?P<ext>[A-Za-z0-9]+)$")
FREEPBX_TYPES = frozenset({"in", "out", "internal", "external", "exten", "q", "rg", "force",
                           "ondemand", "conf", "cf"})
AUDIO_EXTS = frozenset({"raw", "wav", "WAV", "wav49", "gsm", "mp3", "sln", "sln16", "ulaw",
                        "alaw", "g722", "ogg", "m4a"})

Kind = Literal["interleaved", "legs_main", "leg_in", "leg_out", "freepbx", "other"]


@dataclass(slots=True)
class FoundFile:
    path: str  # as Asterisk names it
    host_path: str  # as this host reads it
    kind: Kind
    uid: str | None
    started: float | None  # from the name (EPOCH, or FreePBX's local time)
    seq: int = 0
    size: int = 0
    freepbx_type: str | None = None
    freepbx_called: str | None = None
    freepbx_from: str | None = None
    local_time: datetime | None = None  # FreePBX's YYYYMMDD-HHMMSS: the PBX's wall clock

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def base(self) -> str:
        """miitel-E-U-n for every file of one of our recordings."""
        m = MIITEL_NAME.match(self.name)
        return f"miitel-{m['epoch']}-{m['uid']}-{m['n']}" if m else self.name


def describe_name(path: str, host_path: str, tz: tzinfo | None, size: int = 0,
                  legs_folder: bool = False) -> FoundFile:
    name = PurePosixPath(path).name
    m = MIITEL_NAME.match(name)
    if m:
        kind: Kind
        if m["leg"]:
            kind = "leg_in" if m["leg"] == "-in" else "leg_out"
        elif m["ext"] == "raw":
            kind = "interleaved"
        else:
            kind = "legs_main"
        return FoundFile(path, host_path, kind, m["uid"], float(m["epoch"]), int(m["n"]), size)
    m = FREEPBX_NAME.match(name)
    if m and m["type"].lower() in FREEPBX_TYPES:
        called, _, from_ = m["mid"].partition("-")
        moment: datetime | None
        try:
            moment = datetime.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S")
            started = (moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
                       ).timestamp()
        except ValueError:
            moment, started = None, None
        return FoundFile(path, host_path, "freepbx", m["uid"], started, 0, size,
                         freepbx_type=m["type"].lower(), freepbx_called=called or None,
                         freepbx_from=from_ or None, local_time=moment)
    return FoundFile(path, host_path, "other", None, None, 0, size)


@dataclass
class FileIndex:
    """Recordings found in the window, by the uniqueid in their names."""

    files: dict[str, FoundFile] = field(default_factory=dict)  # by Asterisk path
    by_uid: dict[str, list[FoundFile]] = field(default_factory=dict)
    by_name: dict[str, list[FoundFile]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, found: FoundFile) -> None:
        if found.path in self.files:
            return
        self.files[found.path] = found
        if found.uid:
            self.by_uid.setdefault(found.uid, []).append(found)
        self.by_name.setdefault(found.name, []).append(found)

    def of_uid(self, uid: str) -> list[FoundFile]:
        return self.by_uid.get(uid, [])


def fit_start(found: FoundFile, lo: float, hi: float) -> float | None:
    """FreePBX names its files in Asterisk's own wall-clock time, which may not
    be [pbx] timezone's: the moment, in whichever zone puts it within the
    call's CDR rows [lo, hi] (None: none does)."""
    if found.started is not None and lo - 5 <= found.started <= hi + 5:
        return found.started
    if found.local_time is None:
        return None
    for zone in (UTC, None):
        moment = found.local_time.replace(tzinfo=zone) if zone else found.local_time.astimezone()
        if lo - 5 <= moment.timestamp() <= hi + 5:
            return moment.timestamp()
    # any whole quarter-hour offset that fits
    naive_utc = found.local_time.replace(tzinfo=UTC).timestamp()
    for quarter in range(-56, 57):
        guess = naive_utc - quarter * 900
        if lo - 5 <= guess <= hi + 5:
            return guess
    return None


def scan_recordings(config: Config, since: float, until: float, tz: tzinfo | None,
                    slack_hours: float = 12.0) -> FileIndex:
    """Every recording whose name puts it in [since - slack, until + 1 h]
    under recordings.dirs (blocking: run it in a thread)."""
    index = FileIndex()
    lo, hi = since - slack_hours * 3600, until + 3600
    for ours, host in recording_dirs(config):  # the folders the path rule allows
        for sub, legs in (("", False), ("miitel", True)):
            _scan_flat(index, _join(ours, sub), _join(host, sub), lo, hi, tz, legs)
        for day in _days(lo, hi, tz):
            rel = f"{day:%Y}/{day:%m}/{day:%d}"
            _scan_flat(index, _join(ours, rel), _join(host, rel), lo, hi, tz, False,
                       accept_all=True)
    return index


def _join(base: str, sub: str) -> str:
    if not sub:
        return base
    return base.rstrip("/") + "/" + sub


def _days(lo: float, hi: float, tz: tzinfo | None) -> Iterable[datetime]:
    # FreePBX names its folders in the PBX's local time: a day either side.
    zone = tz if tz is not None else datetime.now().astimezone().tzinfo or UTC
    day = datetime.fromtimestamp(lo, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi, zone).date() + timedelta(days=1)
    while day <= last:
        yield datetime(day.year, day.month, day.day)
        day += timedelta(days=1)


def _scan_flat(index: FileIndex, ours: str, host: str, lo: float, hi: float,
               tz: tzinfo | None, legs_folder: bool, accept_all: bool = False) -> None:
    try:
        entries = list(os.scandir(host))
    except FileNotFoundError:
        return
    except OSError as exc:
        index.problems.append(f"cannot read the recordings folder {host}: {exc.strerror}")
        return
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            size = entry.stat().st_size
        except OSError:
            continue
        found = describe_name(_join(ours, entry.name), _join(host, entry.name), tz, size,
                              legs_folder)
        if found.kind == "other":
            ext = entry.name.rpartition(".")[2]
            if not accept_all or ext not in AUDIO_EXTS:
                continue
            try:
                found.started = entry.stat().st_mtime
            except OSError:
                continue
        if found.started is None or not lo <= found.started <= hi:
            continue
        index.add(found)


# -- voicemail -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    path: str  # Asterisk's name, without the extension (what VM_MESSAGEFILE says)
    host_txt: str
    folder: str  # INBOX, Old, ...
    callerchan: str
    origtime: float
    duration: float


def find_voicemail(config: Config, box: str, channel: str, start: float, end: float,
                   dirs: list[str]) -> Message | None:
    """The message a caller on `channel` left in `box` (1003@default) between
    start and end, from its msgNNNN.txt (blocking)."""
    mailbox, context = mailbox_parts(box)
    for root in dirs:
        ours = root.rstrip("/")
        host = local_dir(ours, config)
        base = f"{context}/{mailbox}"
        try:
            folders = sorted(os.scandir(_join(host, base)), key=lambda e: e.name != "INBOX")
        except OSError:
            continue
        for folder in folders:
            if not folder.is_dir():
                continue
            try:
                names = sorted(e.name for e in os.scandir(folder.path) if e.name.endswith(".txt"))
            except OSError:
                continue
            for name in names:
                info = _read_msg_txt(os.path.join(folder.path, name))
                if info is None or info.get("callerchan") != channel:
                    continue
                try:
                    origtime = float(info.get("origtime", ""))
                except ValueError:
                    continue
                if not start - 5 <= origtime <= end + 5:
                    continue
                stem = name[:-4]
                return Message(_join(ours, f"{base}/{folder.name}/{stem}"),
                               os.path.join(folder.path, name), folder.name,
                               channel, origtime, float(info.get("duration", "0") or 0))
    return None


def _read_msg_txt(path: str) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(8192)
    except OSError:
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith(";"):
            out[key.strip()] = value.strip()
    return out
