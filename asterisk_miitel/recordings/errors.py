"""Why a recording cannot be sent, as typed errors.

Every message names the file and says what a person can do about it: these
texts end up in the service's log and in the `check` command's output.
"""

from __future__ import annotations

import os


class RecordingError(Exception):
    """A recording cannot be turned into something MiiTel takes."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class RecordingMissing(RecordingError):
    """The file is not there (never written, deleted, or not visible to us)."""


class RecordingUnreadable(RecordingError):
    """The file exists but this service's user may not read it."""


class EmptyRecording(RecordingError):
    """The file holds no audio (0 bytes, or a header and nothing after it)."""


class UnsupportedRecording(RecordingError):
    """The bytes are not a format we can send or convert."""


class IncompatibleLegs(RecordingError):
    """The r()/t() files cannot be put side by side (rates or channels differ)."""


class InsufficientDiskSpace(RecordingError):
    """Converting would (nearly) fill the disk that holds the work folder."""


class OutsideRecordingDirs(RecordingError):
    """The name points outside [recordings] dirs and the voicemail spool (recordings/allowed.py):
    never opened, never sent, never deleted."""


def unreadable_message(path: str) -> str:
    """A file Asterisk wrote that this service's user may not read: what to do."""
    return (
        f"recording {path} exists but the service's user ({running_user()}) may not read it: "
        "add that user to the group that owns Asterisk's recordings (usually 'asterisk'), "
        "and make Asterisk create group-readable files (its umask)"
    )


def running_user() -> str:
    """The name of the user this service runs as, for messages."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - not POSIX
        return "this user"
