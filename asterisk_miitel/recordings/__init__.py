"""Recordings: wait until Asterisk has finished a file, then make it uploadable.

- spec.py: RecordingSpec (what the tracker knows), PreparedAudio (what to upload)
- convert.py: prepare() / prepare_async()
- watcher.py: RecordingWatcher (inotify, polling fallback), check_access()
- disk.py: free-space checks
- probe.py: what a file really is, from its first bytes
- duration.py: recording_seconds(), how much audio a file holds
- allowed.py: AllowedDirs, the rule for which files may be opened, sent, deleted
"""

from .allowed import AllowedDirs, local_dir, map_path, recording_dirs
from .convert import guess_interleaved_rate, prepare, prepare_async
from .disk import disk_space_problem, free_bytes
from .duration import recording_seconds
from .errors import (
    EmptyRecording,
    IncompatibleLegs,
    InsufficientDiskSpace,
    OutsideRecordingDirs,
    RecordingError,
    RecordingMissing,
    RecordingUnreadable,
    UnsupportedRecording,
)
from .probe import AudioInfo, probe
from .spec import PreparedAudio, RecordingSpec, mixmonitor_output_path
from .watcher import FileWait, RecordingWatcher, WaitResult, check_access, wait_closed

__all__ = [
    "AllowedDirs",
    "AudioInfo",
    "EmptyRecording",
    "FileWait",
    "IncompatibleLegs",
    "InsufficientDiskSpace",
    "OutsideRecordingDirs",
    "PreparedAudio",
    "RecordingError",
    "RecordingMissing",
    "RecordingSpec",
    "RecordingUnreadable",
    "RecordingWatcher",
    "UnsupportedRecording",
    "WaitResult",
    "check_access",
    "disk_space_problem",
    "free_bytes",
    "guess_interleaved_rate",
    "local_dir",
    "map_path",
    "mixmonitor_output_path",
    "prepare",
    "prepare_async",
    "probe",
    "recording_dirs",
    "recording_seconds",
    "wait_closed",
]
