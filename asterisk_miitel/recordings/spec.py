"""What the call tracker knows about a recording, and what we hand back.

Modes (see docs/PROTOCOL.md):

- ``interleaved``: ``MixMonitor(file.raw,D)``: 2-channel interleaved signed
  16-bit little-endian PCM, LEFT = audio FROM the recorded channel, RIGHT =
  audio TO it. 8 kHz normally; some versions write 16 kHz for wideband calls
  (G.722): give ``sample_rate`` when you know it, else the extension decides
  (``.raw``/``.sln``/``.slin`` = 8000, ``.sln16`` = 16000, ...).
  :func:`~asterisk_miitel.recordings.convert.guess_interleaved_rate` compares
  the size with the bridged time to suggest the rate.
- ``legs``: ``r(receive)``/``t(transmit)``: two mono files, receive = LEFT,
  transmit = RIGHT, merged into one stereo WAV.
- ``mono``: one mixed file (FreePBX's default ``.wav``): sent MONAURAL.
- ``unknown``: decide from the file itself.

File names: MixMonitor writes exactly the name it was given when that name has
an extension. Two Asterisk rules change the name on disk (app_mixmonitor.c,
main/file.c): a name without an extension gets ``.raw`` appended, and the
``wav49`` extension is written as ``.WAV``. This package uses the names it is
given as they are; :func:`mixmonitor_output_path` applies those two rules for
a caller that starts from a raw ``MIXMONITOR_FILENAME``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

# How the tracker's recording is laid out on disk (the modes above).
RecordingMode = Literal["interleaved", "legs", "mono", "unknown"]
# What MiiTel takes, and is told in call_data (audio_file_type,
# audio_channel_type): the bytes decide the file type (probe.py).
FileType = Literal["wav", "mp3", "m4a"]
ChannelType = Literal["STEREO", "MONAURAL"]


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """One recording as the call tracker knows it."""

    file: str  # absolute path given to MixMonitor (MIXMONITOR_FILENAME)
    mode: RecordingMode = "unknown"
    receive: str | None = None  # legs: r() file, audio FROM the channel -> LEFT
    transmit: str | None = None  # legs: t() file, audio TO the channel -> RIGHT
    sample_rate: int | None = None  # headerless PCM: None = from the extension (.raw: 8000)
    expected_duration: float | None = None  # seconds bridged, for sanity checks
    # Only this part, in seconds from the start of the file (end None: to the
    # end): one conversation of a recording cut at a transfer. For D and
    # mono files the offset is the time since MixMonitor started; r()/t()
    # legs are cut alike (Asterisk keeps them in step with silence).
    window: tuple[float, float | None] | None = None

    def __post_init__(self) -> None:
        if self.mode == "legs" and not (self.receive and self.transmit):
            raise ValueError("mode 'legs' needs both receive and transmit paths")
        if self.sample_rate is not None and not 1000 <= self.sample_rate <= 192000:
            raise ValueError(f"implausible sample_rate {self.sample_rate}")
        if self.window is not None:
            start, end = self.window
            if start < 0 or (end is not None and end < start):
                raise ValueError(f"bad audio window {self.window}")

    @property
    def paths(self) -> tuple[str, ...]:
        """The files Asterisk writes for this recording and we wait for."""
        if self.mode == "legs":
            assert self.receive and self.transmit
            return (self.receive, self.transmit)
        return (self.file,)


@dataclass(frozen=True, slots=True)
class PreparedAudio:
    """What to upload to MiiTel, and how to declare it."""

    path: str
    file_type: FileType  # always what the bytes are (checked with probe)
    channel_type: ChannelType
    duration: float | None  # seconds; None only for an MP3/M4A we could not measure
    converted: bool  # True: `path` is our own file in work_dir, delete it after upload
    size_bytes: int
    warnings: list[str] = field(default_factory=list)


# The r()/t() legs our dialplans write (dialplan/miitel-record.conf and the
# FreePBX hooks): miitel-<EPOCH>-<UNIQUEID>-<n>-in.wav / -out.wav. They exist
# only for the service to merge, so it deletes them once MiiTel has the call.
_OWN_LEG = re.compile(r"miitel-[0-9]+-[^/]+-[0-9]+-(in|out)\.wav")


def is_own_leg(path: str) -> bool:
    """A leg file named by our dialplan (the service's own, not the PBX's)."""
    return _OWN_LEG.fullmatch(os.path.basename(path)) is not None


def mixmonitor_output_path(filename: str) -> str:
    """The path MixMonitor really writes for the name it was given.

    Asterisk splits the extension off the base name; none means ``raw``, and
    ``wav49`` is stored as ``WAV``. Only use this on a name taken from the
    dialplan; the names in our UserEvents already are the real ones.
    """
    head, base = os.path.split(filename)
    stem, dot, ext = base.rpartition(".")
    if not dot:
        return filename + ".raw"
    if ext == "wav49":
        return os.path.join(head, f"{stem}.WAV")
    return filename
