"""Knowing when Asterisk has finished a recording, within milliseconds.

What MixMonitor does (app_mixmonitor.c, Asterisk 12 to 22): its thread opens
every file it was given (main, r(), t()) once, when the recording starts and
before the first frame, with O_CREAT and O_TRUNC (O_APPEND with the ``a``
option); it writes each frame, and closes them all when the recorded channel
hangs up or StopMixMonitor runs. So there is exactly one IN_CLOSE_WRITE per
file per MixMonitor, and a file that never appears means Asterisk could not
open it (or we cannot see its folder). With ``cache_record_files`` in
asterisk.conf the file is written elsewhere and ``mv``-ed into place at the
close: IN_MOVED_TO (or CREATE + CLOSE_WRITE across disks) counts as closed.
Asterisk 1.8 to 11 opened the file lazily on the first frame; nothing here
depends on which.

How we wait:

- One inotify instance for the whole service (asyncinotify, a small ctypes
  binding), watching each folder that holds an expected recording for
  CREATE, CLOSE_WRITE, MOVED_TO, MOVED_FROM and DELETE. Not IN_MODIFY: that
  would be 50 events a second per recording. FreePBX files recordings in
  YYYY/MM/DD folders, so watches are added per folder on demand and removed
  when no expected file is left in it.
- `closed()` returns as soon as the close is seen (the wake-up costs about a
  millisecond), or at once if it was seen already (StopMixMonitor, or a close
  that raced the Hangup event).
- Fallback, used per file: when inotify is unavailable (not Linux, no
  asyncinotify, out of watches), when the folder could not be watched, when
  the queue overflowed, or when the file was opened before its folder was
  watched (we then cannot know a writer exists): after the hangup, the file
  counts as finished once size and mtime stayed the same for `stable_polls`
  consecutive polls. inotify sees nothing a writer on another host does
  (NFS): this fallback then is what works, ~1 s later.

Limits: names are taken exactly as given (MixMonitor appends ``.raw`` to a
name without extension: see spec.mixmonitor_output_path). A file re-opened in
append mode (option ``a``) by a second MixMonitor gives no CREATE, so a close
of the first session counts as the end: use one file per recording, as
docs/PROTOCOL.md requires.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from .allowed import AllowedDirs, open_plain
from .errors import RecordingMissing, RecordingUnreadable, running_user, unreadable_message

log = logging.getLogger(__name__)

How = Literal["closed", "stable", "timeout"]
_RECENT_CLOSES = 4096  # closes remembered for files expected too late


@dataclass(frozen=True, slots=True)
class FileWait:
    """How waiting for one file ended."""

    path: str
    how: How  # closed: Asterisk closed it (inotify); stable: unchanged for N polls
    size: int
    waited: float  # seconds from the call to closed() until this file was settled


@dataclass(frozen=True, slots=True)
class WaitResult:
    files: tuple[FileWait, ...]

    @property
    def finished(self) -> bool:
        """True when every file was closed (or stopped changing after the hangup)."""
        return all(f.how != "timeout" for f in self.files)

    @property
    def waited(self) -> float:
        return max((f.waited for f in self.files), default=0.0)

    @property
    def reason(self) -> str | None:
        """Why not finished: files still being written when the timeout came."""
        late = [f.path for f in self.files if f.how == "timeout"]
        if not late:
            return None
        return (
            f"{', '.join(late)} still open or growing when the wait ended: Asterisk has "
            "not closed it (a channel still up?). What is there can be sent as is"
        )


@dataclass(slots=True, eq=False)
class _FileState:
    path: str
    directory: str
    expects: int = 0  # expect() calls not yet balanced by closed()/forget()
    active: int = 0  # closed() calls in progress
    closed: bool = False  # a close (or move into place) seen, and no new writer since
    writer_seen: bool = False  # we saw the file created: its close will be reported
    gone: bool = False  # deleted or moved away after being seen
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)


class RecordingWatcher:
    """One per service: many calls share its inotify instance.

    Usage::

        watcher = RecordingWatcher()
        await watcher.start()
        watcher.expect(path)                 # on MixMonitorStart / MiiTelRecording
        ...                                  # recorded channel hangs up
        result = await watcher.closed(path, timeout=10)
        await watcher.aclose()

    Each `expect()` is balanced by one `closed()` or `forget()`. `closed()`
    without `expect()` works too (it then relies on polling, or on a close
    that happens while it waits).
    """

    def __init__(
        self,
        *,
        use_inotify: bool = True,
        poll_interval: float = 0.5,
        stable_polls: int = 2,
        allowed: AllowedDirs | None = None,
    ) -> None:
        # The service gives its path rule: names from AMI outside it are never
        # watched nor opened (an AMI user could name any folder or a FIFO).
        self.allowed = allowed
        self.poll_interval = poll_interval
        self.stable_polls = stable_polls
        self._use_inotify = use_inotify and sys.platform.startswith("linux")
        self._inotify: Any = None  # asyncinotify.Inotify when active
        self._mask: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._states: dict[str, _FileState] = {}
        self._dirs: dict[str, Any] = {}  # folder -> asyncinotify Watch
        self._wd_dirs: dict[int, str] = {}
        self._dir_refs: dict[str, int] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()  # recently closed paths
        self._warned_limit = False

    @property
    def mode(self) -> Literal["inotify", "poll"]:
        return "inotify" if self._inotify is not None else "poll"

    async def start(self) -> None:
        if not self._use_inotify or self._inotify is not None:
            return
        try:
            from asyncinotify import Inotify, Mask
        except ImportError:
            log.warning("asyncinotify is not installed: recordings are watched by polling")
            return
        try:
            self._inotify = Inotify()
        except OSError as exc:  # EMFILE: too many inotify instances for this user
            log.warning("inotify unavailable (%s): recordings are watched by polling", exc)
            return
        self._mask = (
            Mask.CREATE | Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
            | Mask.MOVE_SELF | Mask.ONLYDIR
        )
        self._reader = asyncio.create_task(self._read_events(), name="recording-watcher")
        for directory in list(self._dir_refs):
            self._watch_dir(directory)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._forget_watches()

    def _forget_watches(self) -> None:
        """inotify is gone: no watch is left, and every wait polls (woken to
        notice), no writer assumed."""
        self._dirs.clear()
        self._wd_dirs.clear()
        for state in self._states.values():
            state.writer_seen = False
            state.wake()

    async def __aenter__(self) -> RecordingWatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- registering -----------------------------------------------------

    def expect(self, path: str) -> None:
        """A recording starts writing `path`: watch its folder from now on.

        Synchronous and cheap (one inotify_add_watch per new folder), so an
        AMI event handler may call it directly. A path outside the allowed
        folders is ignored: closed() refuses it later, with the reason.
        """
        if self.allowed is not None and not self.allowed.permits(path):
            log.debug("not watching %s: outside the recordings folders", path)
            return
        self._acquire(path).expects += 1

    def forget(self, path: str) -> None:
        """Drop one expect() of `path` without waiting for it."""
        state = self._states.get(os.path.abspath(path))
        if state is not None:
            state.expects = max(0, state.expects - 1)
            self._maybe_drop(state)

    def _acquire(self, path: str) -> _FileState:
        path = os.path.abspath(path)
        state = self._states.get(path)
        if state is None:
            directory = os.path.dirname(path)
            state = _FileState(path, directory)
            if path in self._recent:
                state.closed = True
            self._states[path] = state
            self._dir_refs[directory] = self._dir_refs.get(directory, 0) + 1
            self._watch_dir(directory)
        return state

    def _maybe_drop(self, state: _FileState) -> None:
        if state.expects > 0 or state.active > 0:
            return
        del self._states[state.path]
        left = self._dir_refs[state.directory] - 1
        if left:
            self._dir_refs[state.directory] = left
            return
        del self._dir_refs[state.directory]
        watch = self._dirs.pop(state.directory, None)
        if watch is not None and self._inotify is not None:
            self._wd_dirs.pop(watch.wd, None)
            try:
                self._inotify.rm_watch(watch)
            except OSError:
                pass  # the folder went away: the kernel dropped the watch already

    def _watch_dir(self, directory: str) -> bool:
        if self._inotify is None:
            return False
        if directory in self._dirs:
            return True
        try:
            watch = self._inotify.add_watch(directory, self._mask)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and not self._warned_limit:
                self._warned_limit = True
                log.warning(
                    "inotify watch limit reached (sysctl fs.inotify.max_user_watches): "
                    "polling %s instead", directory,
                )
            return False  # ENOENT: not created yet; EACCES: reported by closed()
        self._dirs[directory] = watch
        self._wd_dirs[watch.wd] = directory
        return True

    # -- inotify events --------------------------------------------------

    async def _read_events(self) -> None:
        try:
            async for event in self._inotify:
                self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the fd died: carry on by polling rather than stall calls
            log.exception("inotify reader failed: recordings are watched by polling")
            inotify, self._inotify = self._inotify, None
            self._forget_watches()
            if inotify is not None:
                inotify.close()

    def _dispatch(self, event: Any) -> None:
        from asyncinotify import Mask

        mask = event.mask
        if Mask.Q_OVERFLOW in mask:
            # Events were lost: trust nothing we inferred, poll everything.
            for each in self._states.values():
                each.writer_seen = False
                each.wake()
            return
        watch = event.watch
        directory = self._wd_dirs.get(watch.wd) if watch is not None else None
        if directory is None:
            return
        if Mask.IGNORED in mask or Mask.MOVE_SELF in mask:
            # The folder was deleted, unmounted or renamed: fall back to polling
            # its files; the next poll tick tries to watch it again.
            self._wd_dirs.pop(watch.wd, None)
            self._dirs.pop(directory, None)
            if Mask.MOVE_SELF in mask and self._inotify is not None:
                try:
                    self._inotify.rm_watch(watch)
                except OSError:
                    pass
            for each in self._states.values():
                if each.directory == directory:
                    each.writer_seen = False
                    each.wake()
            return
        if event.name is None:
            return
        path = os.path.join(directory, os.fsdecode(event.name))
        if Mask.CLOSE_WRITE in mask or Mask.MOVED_TO in mask:
            self._recent[path] = None
            self._recent.move_to_end(path)
            if len(self._recent) > _RECENT_CLOSES:
                self._recent.popitem(last=False)
        elif Mask.CREATE in mask or Mask.DELETE in mask or Mask.MOVED_FROM in mask:
            self._recent.pop(path, None)
        state = self._states.get(path)
        if state is None:
            return
        if Mask.CREATE in mask:
            state.closed, state.writer_seen, state.gone = False, True, False
        if Mask.CLOSE_WRITE in mask or Mask.MOVED_TO in mask:
            state.closed, state.gone = True, False
        if Mask.DELETE in mask or Mask.MOVED_FROM in mask:
            state.closed, state.gone = False, True
        state.wake()

    # -- waiting ---------------------------------------------------------

    async def closed(
        self,
        paths: str | Iterable[str],
        *,
        # Not asyncio.timeout(): reaching it is an outcome (missing / still open), not a cancel.
        timeout: float,  # noqa: ASYNC109
        channel_gone: bool = True,
    ) -> WaitResult:
        """Wait until Asterisk has finished every file in `paths` (one, or a legs pair).

        Call it once the recorded channel has hung up. Returns as soon as all
        files were closed; polling decides where inotify cannot (see module
        doc), and only when `channel_gone` (while the channel is up a quiet
        file is not a finished one).

        Raises RecordingMissing when a file never appeared within `timeout`,
        RecordingUnreadable when it exists but we may not read it. A file
        still being written at the timeout is reported in the result
        (`finished` False, `reason`) rather than raised: it can still be sent.
        """
        names = [paths] if isinstance(paths, str) else list(paths)
        if self.allowed is not None:
            self.allowed.check_all(names)  # OutsideRecordingDirs: never watched, never opened
        start = time.monotonic()
        deadline = start + timeout
        states = [self._acquire(p) for p in names]
        for state in states:
            state.active += 1
        tasks = [
            asyncio.ensure_future(self._wait_one(s, start, deadline, channel_gone))
            for s in states
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            # One file failed (or we were cancelled): stop waiting for the others.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for state in states:
                state.active -= 1
                state.expects = max(0, state.expects - 1)  # balances one expect()
                self._maybe_drop(state)
        return WaitResult(tuple(results))

    async def _wait_one(
        self, state: _FileState, start: float, deadline: float, channel_gone: bool
    ) -> FileWait:
        last: tuple[int, int, int] | None = None
        stable = 0
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            if state.closed:
                return self._settled(state, "closed", start)
            signature = _signature(state.path)  # raises RecordingUnreadable
            if state.gone and signature is None and channel_gone:
                raise RecordingMissing(
                    state.path,
                    f"recording {state.path} was deleted or moved away after Asterisk wrote "
                    "it: check for a MixMonitor post-processing command, its d option, or a "
                    "cleanup script that removes recordings too early",
                )
            watched = self._watch_dir(state.directory)
            # Polling decides unless inotify will report this file's close.
            trust_events = watched and state.writer_seen and not state.gone
            if signature is not None and channel_gone and not trust_events:
                stable = stable + 1 if signature == last else 0
                if stable >= self.stable_polls:
                    return self._settled(state, "stable", start)
            last = signature
            if now >= deadline:
                break
            fut: asyncio.Future[None] = loop.create_future()
            state.waiters.append(fut)
            try:
                await asyncio.wait_for(fut, min(self.poll_interval, deadline - now))
            except TimeoutError:
                pass
            finally:
                state.waiters.remove(fut)
        if last is None:
            raise RecordingMissing(state.path, never_written_message(state.path))
        return FileWait(state.path, "timeout", last[0], time.monotonic() - start)

    def _settled(self, state: _FileState, how: How, start: float) -> FileWait:
        opener = self.allowed.open_file if self.allowed is not None else open_plain
        try:
            with opener(state.path) as fh:
                size = os.fstat(fh.fileno()).st_size
        except PermissionError:
            raise RecordingUnreadable(state.path, unreadable_message(state.path)) from None
        except FileNotFoundError:
            # Closed, then deleted or moved before we looked (MixMonitor's d option)
            raise RecordingMissing(
                state.path,
                f"recording {state.path} was closed by Asterisk and then removed before it "
                "could be sent: check MixMonitor's d option or cleanup scripts",
            ) from None
        return FileWait(state.path, how, size, time.monotonic() - start)


async def wait_closed(
    paths: str | Iterable[str],
    *,
    channel_gone: bool,
    timeout: float,  # noqa: ASYNC109 - an outcome, see RecordingWatcher.closed
    poll_interval: float = 0.5,
) -> WaitResult:
    """One-off wait with a watcher of its own (tools, tests; the service shares one)."""
    async with RecordingWatcher(poll_interval=poll_interval) as watcher:
        return await watcher.closed(paths, timeout=timeout, channel_gone=channel_gone)


def never_written_message(path: str) -> str:
    folder = os.path.dirname(path) or "."
    hint = ""
    if "." not in os.path.basename(path) and os.path.exists(path + ".raw"):
        hint = f" ({path}.raw exists: MixMonitor appends .raw to a name without extension)"
    problem = check_access(folder)
    if problem:
        return f"MixMonitor never wrote {path} as far as this service can see: {problem}{hint}"
    return (
        f"MixMonitor never wrote {path}: no audio reached the recording (Asterisk could not "
        "open it: see its log for 'Cannot open'), or the service cannot see Asterisk's "
        "recordings folder: check it is mounted at the same path and readable by the "
        f"service's user (asterisk group){hint}"
    )


def check_access(directory: str) -> str | None:
    """A human-readable problem if this service cannot list and read `directory`.

    Used by the `check` command; None when all is well. Looks at the folder
    itself, not at files Asterisk will create (their mode comes from
    Asterisk's umask: see the `unreadable` message).
    """
    user = running_user()
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        parent = os.path.dirname(directory.rstrip("/"))
        extra = "" if os.path.isdir(parent) else f" (nor does {parent})"
        return (
            f"the recordings folder {directory} does not exist on this machine{extra}: mount "
            "Asterisk's recordings at the same path as on the Asterisk server"
        )
    except PermissionError:
        return (
            f"the service's user ({user}) may not reach {directory}: a parent folder denies "
            "it; add the user to the asterisk group or open the parent folders' x permission"
        )
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a folder"
    if not os.access(directory, os.R_OK | os.X_OK):
        return (
            f"the service's user ({user}) may not list and read {directory} (owner uid "
            f"{info.st_uid}, group gid {info.st_gid}, mode {stat.filemode(info.st_mode)}): add "
            "the user to the folder's group (usually 'asterisk') and restart the service"
        )
    return None


def _signature(path: str) -> tuple[int, int, int] | None:
    """(size, mtime ns, inode), None when the file does not exist yet."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except PermissionError:
        raise RecordingUnreadable(path, unreadable_message(path)) from None
    return st.st_size, st.st_mtime_ns, st.st_ino
