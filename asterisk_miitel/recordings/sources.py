"""Readers that yield 16-bit little-endian PCM frames from any recording, chunk by chunk.

Each reader knows its rate, channel count and (where the format allows) its
length in frames, and never holds more than one chunk: a 500 MB recording is
converted with a few MB of memory.

- headerless slin and PCM WAV data: read as is;
- G.711 (WAV tags 6/7, `.ulaw`/`.alaw` raw): our table decoder (g711.py);
- GSM 6.10 (`.gsm`, 'wav49' `.WAV`) and anything else libsndfile reads
  (Ogg, FLAC, AU, ADPCM WAVs, float WAVs...): soundfile, the maintained
  binding of libsndfile. Imported lazily: only these rare paths need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from . import g711
from .allowed import Opener, open_plain
from .errors import UnsupportedRecording

if TYPE_CHECKING:
    from .g711 import Law


class PcmSource(Protocol):
    path: str
    rate: int
    channels: int
    frames: int  # total frames this source will yield

    def read(self, frames: int) -> bytes:
        """Up to `frames` frames of s16le PCM; b"" at the end."""
        ...

    def close(self) -> None: ...


class RawPcmSource:
    """Signed 16-bit little-endian PCM stored in a byte range of a file."""

    def __init__(
        self, path: str, *, rate: int, channels: int, offset: int, length: int,
        opener: Opener = open_plain,
    ) -> None:
        self.path = path
        self.rate = rate
        self.channels = channels
        self._frame = 2 * channels
        self.frames = length // self._frame
        self.trailing_bytes = length - self.frames * self._frame  # a half-written frame
        self._remaining = self.frames * self._frame
        self._fh: BinaryIO = opener(path)  # closed by close()
        self._fh.seek(offset)

    def read(self, frames: int) -> bytes:
        n = min(frames * self._frame, self._remaining)
        if n <= 0:
            return b""
        data = self._fh.read(n)
        data = data[: len(data) // self._frame * self._frame]
        self._remaining -= len(data) if data else self._remaining
        return data

    def close(self) -> None:
        self._fh.close()


class G711Source:
    """G.711 bytes (one byte per sample) in a byte range of a file."""

    def __init__(
        self, path: str, law: Law, *, rate: int, channels: int, offset: int, length: int,
        opener: Opener = open_plain,
    ) -> None:
        self.path = path
        self.law: Law = law
        self.rate = rate
        self.channels = channels
        self.frames = length // channels
        self._remaining = self.frames * channels
        self._fh: BinaryIO = opener(path)  # closed by close()
        self._fh.seek(offset)

    def read(self, frames: int) -> bytes:
        n = min(frames * self.channels, self._remaining)
        if n <= 0:
            return b""
        data = self._fh.read(n)
        data = data[: len(data) // self.channels * self.channels]
        self._remaining -= len(data) if data else self._remaining
        return g711.decode(data, self.law)

    def close(self) -> None:
        self._fh.close()


class SoundFileSource:
    """Anything libsndfile decodes, read as int16 without building numpy arrays."""

    def __init__(self, path: str, opener: Opener = open_plain, **kwargs: Any) -> None:
        sf = import_soundfile(path)
        self.path = path
        # libsndfile reads through our file object: the open is the checked one.
        self._fh = opener(path)
        try:
            self._sf = sf.SoundFile(self._fh, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            self._fh.close()
            raise UnsupportedRecording(
                path, f"{path}: libsndfile cannot decode this file ({exc}); "
                "record in .wav or .raw (signed linear) instead",
            ) from exc
        self.rate = int(self._sf.samplerate)
        self.channels = int(self._sf.channels)
        self.frames = int(self._sf.frames)
        self._buf = bytearray()

    def read(self, frames: int) -> bytes:
        # Native int16, i.e. little-endian on every platform that matters (x86,
        # ARM). buffer_read_into, not buffer_read: libsndfile's frame count for
        # GSM is an estimate and buffer_read asserts it is exact.
        size = frames * self.channels * 2
        if len(self._buf) != size:
            self._buf = bytearray(size)
        got = self._sf.buffer_read_into(self._buf, dtype="int16")
        return bytes(memoryview(self._buf)[: got * self.channels * 2])

    def close(self) -> None:
        self._sf.close()
        self._fh.close()


def import_soundfile(path: str) -> Any:
    try:
        import soundfile  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UnsupportedRecording(
            path,
            f"{path}: converting this format (GSM and other compressed WAVs) needs the "
            "'soundfile' Python package with libsndfile: pip install soundfile",
        ) from exc
    return soundfile


class WindowSource:
    """Frames [start, end) of another source, in seconds: one conversation of
    a recording cut at a transfer. Skips by reading (every source streams), so
    memory stays at one chunk."""

    def __init__(self, source: PcmSource, start: float, end: float | None) -> None:
        self.path = source.path
        self.rate = source.rate
        self.channels = source.channels
        self._source = source
        self._frame = 2 * source.channels
        skip = min(source.frames, max(0, round(start * source.rate)))
        stop = source.frames if end is None else min(source.frames, round(end * source.rate))
        self.frames = max(0, stop - skip)
        self.skipped = skip
        self._skip = skip
        self._left = self.frames
        self.trailing_bytes = getattr(source, "trailing_bytes", 0)

    def read(self, frames: int) -> bytes:
        while self._skip > 0:
            data = self._source.read(min(self._skip, 64 * 1024))
            if not data:
                self._skip = 0
                break
            self._skip -= len(data) // self._frame
        n = min(frames, self._left)
        if n <= 0:
            return b""
        data = self._source.read(n)
        self._left -= len(data) // self._frame if data else self._left
        return data

    def close(self) -> None:
        self._source.close()
