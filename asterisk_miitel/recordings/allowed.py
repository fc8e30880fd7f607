"""Which files the service may open, upload and delete: the path rule.

File names reach us from AMI (MIXMONITOR_FILENAME, MiiTelRecording's
File/Receive/Transmit, MixMonitor's AppData, VM_MESSAGEFILE), and any AMI
user may send a UserEvent. So a name is never trusted: a file is used only
when its real path (symlinks and ``..`` resolved, after ``path_map``) lies
under one of ``[recordings] dirs`` or the voicemail spool (``[catchup]
voicemail_dirs``). Everything else is never opened, uploaded or deleted.

The check is repeated at the last moment: `open_file` opens the resolved
path with O_NOFOLLOW and then verifies where the descriptor really points
(``/proc/self/fd``), and `unlink_file` deletes through a descriptor of the
verified folder, so a symlink swapped in after the check changes nothing.
`check`, the watcher, catch-up and the sender all use this one definition.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from .errors import OutsideRecordingDirs, UnsupportedRecording

if TYPE_CHECKING:
    from ..config import Config

DIRS_SETTING = "[recordings] dirs"
VOICEMAIL_SETTING = "[catchup] voicemail_dirs"
Opener = Callable[[str], BinaryIO]  # how the converters open an input file


def open_plain(path: str) -> BinaryIO:
    """For our own files (the work folder) and callers without a rule."""
    return open(path, "rb")  # the caller closes it


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def map_path(path: str, config: Config) -> str:
    """Asterisk's path -> this host's path ([recordings] path_map)."""
    for theirs, ours in config.recordings.path_map.items():
        prefix = theirs.rstrip("/") + "/"
        if path.startswith(prefix):
            return ours.rstrip("/") + "/" + path[len(prefix):]
    return path


def local_dir(directory: str, config: Config) -> str:
    """An Asterisk folder as this machine sees it ([recordings] path_map)."""
    return map_path(directory.rstrip("/") + "/", config).rstrip("/") or "/"


def recording_dirs(config: Config) -> Iterator[tuple[str, str]]:
    """Each of `[recordings] dirs`: (as Asterisk names it, as this host sees it)."""
    for directory in config.recordings.dirs:
        yield directory.rstrip("/") or "/", local_dir(directory, config)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class AllowedDirs:
    """The folders recordings may come from, as this host sees them."""

    dirs: tuple[str, ...]  # [recordings] dirs, path_map applied
    voicemail: tuple[str, ...] = ()  # the voicemail spool
    names: tuple[str, ...] = ()  # both as configured (Asterisk's names), for messages

    @classmethod
    def from_config(cls, config: Config) -> AllowedDirs:
        return cls(
            tuple(host for _, host in recording_dirs(config)),
            tuple(local_dir(d, config) for d in config.catchup.voicemail_dirs),
            (*config.recordings.dirs, *config.catchup.voicemail_dirs),
        )

    def roots(self) -> list[str]:
        # Resolved at every check: a folder mounted or re-linked after start counts.
        return [os.path.realpath(d) for d in (*self.dirs, *self.voicemail)]

    def real_path(self, path: str) -> str | None:
        """`path`'s real path when it lies under an allowed folder, else None."""
        if not os.path.isabs(path):
            return None  # Asterisk names files absolutely; a relative name is not its
        real = os.path.realpath(path)
        return real if any(_inside(real, root) for root in self.roots()) else None

    def permits(self, path: str) -> bool:
        return self.real_path(path) is not None

    def check(self, path: str) -> str:
        """The real path of an allowed file; OutsideRecordingDirs otherwise."""
        real = self.real_path(path)
        if real is None:
            raise OutsideRecordingDirs(path, self.refusal(path))
        return real

    def check_all(self, paths: Iterable[str]) -> list[str]:
        return [self.check(p) for p in paths]

    def refusal(self, path: str) -> str:
        real = os.path.realpath(path) if os.path.isabs(path) else path
        shown = path if real == path else f"{path} (really {real})"
        allowed = ", ".join(self.names or (*self.dirs, *self.voicemail)) or "none"
        return (
            f"the recording {shown} is outside the folders recordings are read from "
            f"({allowed}): not opened, not sent, not deleted. If Asterisk really records "
            f"there, add that folder to {DIRS_SETTING} (voicemail: {VOICEMAIL_SETTING}), "
            "then `asterisk-miitel retry`; otherwise check who sent this name over AMI"
        )

    def open_file(self, path: str) -> BinaryIO:
        """Open an allowed regular file for reading, verified after the open.

        OutsideRecordingDirs when it is not allowed; FileNotFoundError,
        PermissionError, IsADirectoryError as open() raises them."""
        real = self.check(path)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # the caller says what that means for this recording
        except OSError as exc:  # ELOOP: the last component became a symlink
            raise OutsideRecordingDirs(path, self.refusal(path)) from exc
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(path)
            if not self._fd_inside(fd, real, info):
                raise OutsideRecordingDirs(path, self.refusal(path))
            if not stat.S_ISREG(info.st_mode):  # a FIFO or a device: never read
                raise UnsupportedRecording(path, f"{path} is not a regular file: not read")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _fd_inside(self, fd: int, real: str, info: os.stat_result) -> bool:
        """Where the descriptor really points: /proc on Linux, else the inode
        at the checked path must be the one we opened."""
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            try:
                now = os.stat(real)
            except OSError:
                return False
            return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)
        return any(_inside(where, root) for root in self.roots())

    def unlink_file(self, path: str) -> bool:
        """Delete an allowed regular file (never a symlink's target, never
        outside). True when deleted, False when it was already gone."""
        real = self.check(path)
        folder, name = os.path.split(real)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_CLOEXEC", 0)
        try:
            dir_fd = os.open(folder, flags)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise OutsideRecordingDirs(path, self.refusal(path)) from exc
        try:
            if not self._dir_fd_inside(dir_fd, folder):
                raise OutsideRecordingDirs(path, self.refusal(path))
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(info.st_mode):
                raise OutsideRecordingDirs(path, self.refusal(path))
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return False
            return True
        finally:
            os.close(dir_fd)

    def _dir_fd_inside(self, dir_fd: int, folder: str) -> bool:
        try:
            where = os.readlink(f"/proc/self/fd/{dir_fd}")
        except OSError:
            try:
                a, b = os.fstat(dir_fd), os.stat(folder)
            except OSError:
                return False
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        return any(_inside(where, root) for root in self.roots())
