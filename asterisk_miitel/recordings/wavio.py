"""Writing WAV files in a streaming way, and repairing lying headers.

We write our own 44-byte canonical header rather than use the `wave` module
so the data can be streamed from any source and the sizes patched at the end
(`wave` does the same, but insists on frame counts up front when not seekable
and buffers nothing useful for us). Output goes to ``<name>.part`` and is
renamed into place when complete, so a crash never leaves a file that looks
finished. Every file and the work folder we create are its owner's only
(0600, 0700) whatever the umask: they hold the calls' audio.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from types import TracebackType
from typing import BinaryIO

from .allowed import Opener, open_plain
from .errors import InsufficientDiskSpace, UnsupportedRecording
from .probe import AudioInfo

HEADER_BYTES = 44
# The RIFF size field is 32 bits and counts everything after its own 8 bytes.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)
COPY_CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small for memory


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def create_private(path: str) -> BinaryIO:
    """A file for writing that only its owner may read, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def make_private_dir(path: str) -> None:
    """The work folder: created owner-only (an existing folder is left as it is:
    it may be shared, e.g. /tmp; the files in it are private anyway)."""
    if os.path.isdir(path):
        return
    os.makedirs(path, PRIVATE_DIR, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)  # makedirs' mode goes through the umask


def pcm_header(channels: int, rate: int, data_bytes: int, bits: int = 16) -> bytes:
    """A canonical RIFF/WAVE header for integer PCM."""
    align = channels * bits // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, rate, rate * align, align, bits,
        b"data", data_bytes,
    )


class WavWriter:
    """Streams 16-bit PCM frames into a new WAV file."""

    def __init__(self, path: str, rate: int, channels: int) -> None:
        self.path = path
        self.rate = rate
        self.channels = channels
        self.data_bytes = 0
        self._part = path + ".part"
        self._fh: BinaryIO = create_private(self._part)  # closed in finish/abort
        self._fh.write(pcm_header(channels, rate, 0))

    @property
    def frames(self) -> int:
        return self.data_bytes // (2 * self.channels)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.data_bytes + len(data) > MAX_DATA_BYTES:
            raise UnsupportedRecording(
                self.path,
                f"{self.path}: the converted recording would exceed the 4 GiB limit of WAV; "
                "record long calls in several files",
            )
        _write(self._fh, data, self.path)
        self.data_bytes += len(data)

    def finish(self) -> str:
        """Patch the sizes into the header and move the file into place."""
        fh = self._fh
        fh.seek(4)
        fh.write(struct.pack("<I", 36 + self.data_bytes))
        fh.seek(40)
        fh.write(struct.pack("<I", self.data_bytes))
        fh.close()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        self._fh.close()
        try:
            os.unlink(self._part)
        except FileNotFoundError:
            pass

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._fh.closed:
            self.finish()


def copy_with_fixed_header(
    src: str, info: AudioInfo, dest: str, opener: Opener = open_plain
) -> int:
    """Copy a WAV whose header lies, writing the true sizes; return data bytes.

    The original header bytes are kept (fmt extras, fact chunk: GSM needs
    them) and only the RIFF and data sizes change. The data is cut to whole
    blocks, since a killed writer may leave half a frame at the end.
    """
    assert info.header_bytes is not None and info.data_bytes is not None
    align = info.block_align or 1
    data_bytes = min(info.data_bytes, MAX_DATA_BYTES) // align * align
    part = dest + ".part"
    with opener(src) as fin, create_private(part) as fout:
        header = bytearray(fin.read(info.header_bytes))
        struct.pack_into("<I", header, 4, info.header_bytes - 8 + data_bytes)
        struct.pack_into("<I", header, info.header_bytes - 4, data_bytes)
        try:
            fout.write(header)
            copy_range(fin, fout, data_bytes, dest)
        except BaseException:
            fout.close()
            os.unlink(part)
            raise
    os.replace(part, dest)
    return data_bytes


def copy_range(fin: io.BufferedReader, fout: BinaryIO, length: int, dest: str) -> None:
    """Copy `length` bytes from the current position of `fin`, 1 MiB at a time."""
    remaining = length
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    while remaining > 0:
        n = fin.readinto(view[: min(COPY_CHUNK, remaining)])
        if not n:
            break
        _write(fout, view[:n], dest)
        remaining -= n


def _write(fh: BinaryIO, data: bytes | bytearray | memoryview, dest: str) -> None:
    try:
        fh.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientDiskSpace(
                dest,
                f"the disk filled up while writing {dest}: free space in the work folder "
                "or point the service's work folder to a larger disk",
            ) from exc
        raise
