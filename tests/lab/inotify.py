"""Minimal inotify (ctypes, Linux): when did Asterisk close each recording it wrote?"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")


class CloseWatcher:
    """Records (time.time(), path) for every file closed after writing in ``dirs``
    (or moved there complete: VoiceMail records in tmp/ and renames into INBOX/).

    Directories created under a watched directory are watched too (voicemail
    creates INBOX folders; FreePBX-style recordings go to YYYY/MM/DD).
    """

    def __init__(self, *dirs: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._libc = libc
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._wd: dict[int, Path] = {}
        self.closed: list[tuple[float, str]] = []
        self.created: list[tuple[float, str]] = []
        self._stop = threading.Event()
        for d in dirs:
            self._add_tree(Path(d))
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)
        self._thread.start()

    def _add(self, path: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path),
                                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        if wd >= 0:
            self._wd[wd] = path

    def _add_tree(self, path: Path) -> None:
        if not path.is_dir():
            return
        self._add(path)
        for sub in path.rglob("*"):
            if sub.is_dir():
                self._add(sub)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            now = time.time()
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, off)
                name = data[off + _EVENT.size: off + _EVENT.size + length].rstrip(b"\0")
                off += _EVENT.size + length
                base = self._wd.get(wd)
                if base is None:
                    continue
                path = base / os.fsdecode(name)
                if mask & IN_CREATE:
                    self.created.append((now, str(path)))
                    if mask & IN_ISDIR:
                        self._add_tree(path)
                elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                    self.closed.append((now, str(path)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._fd)

    def last_close(self, path: str) -> float | None:
        times = [t for t, p in self.closed if p == path]
        return max(times) if times else None
