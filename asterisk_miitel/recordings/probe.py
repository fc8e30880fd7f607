"""What an audio file really is, read from its first bytes.

MiiTel fails a call whose `audio_file_type` does not match the bytes, so the
client, the stand-in and the converters all ask this one module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .spec import FileType

if TYPE_CHECKING:
    from .allowed import Opener

# WAVE format tags we meet on Asterisk systems.
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_GSM610 = 0x0031  # Asterisk's "wav49"
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """The container and, for WAV, what its header says."""

    file_type: FileType | None  # None: not a format MiiTel takes
    channels: int | None = None
    sample_rate: int | None = None
    bits_per_sample: int | None = None
    format_tag: int | None = None
    data_bytes: int | None = None  # size of the WAV data chunk as the header claims
    header_bytes: int | None = None  # offset of the WAV sample data
    problem: str | None = None  # why the file is not usable as it is
    block_align: int | None = None  # bytes per block (frame for PCM; 65 for GSM 'wav49')
    text: bool = False  # the head reads as text: not a recording, whatever its name

    @property
    def duration(self) -> float | None:
        """Seconds of audio, for PCM-family WAVs whose header is complete."""
        if (
            self.data_bytes is None
            or not self.channels
            or not self.sample_rate
            or not self.bits_per_sample
            or self.format_tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW,
                                       WAVE_FORMAT_EXTENSIBLE)
        ):
            return None
        frame = self.channels * self.bits_per_sample // 8
        return self.data_bytes / frame / self.sample_rate if frame else None


def sniff(head: bytes, total_size: int | None = None) -> AudioInfo:
    """Identify audio from the first bytes of a file (4 KiB are plenty)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _parse_wav(head, total_size)
    if head[4:8] == b"ftyp":
        return AudioInfo("m4a")
    if head[:3] == b"ID3" or _is_mpeg_audio_frame(head):
        return AudioInfo("mp3")
    if looks_like_text(head):
        return AudioInfo(None, problem="text, not audio", text=True)
    return AudioInfo(None, problem="not a WAV, MP3 or M4A file")


def looks_like_text(head: bytes) -> bool:
    """Printable UTF-8 without a NUL byte. Headerless PCM never looks so: silence
    and quiet sound are full of 0x00 and 0xFF bytes, G.711 silence is 0xFF/0xD5."""
    if len(head) < 2 or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")  # a character cut by the 4 KiB head
    return all(c.isprintable() or c in "\t\n\r\f\v" for c in text)


def probe(path: str | Path, opener: Opener | None = None) -> AudioInfo:
    """Identify the audio file at `path` (reads only its head)."""
    with (opener(str(path)) if opener is not None else open(path, "rb")) as fh:
        return probe_stream(fh)


def probe_stream(fh: BinaryIO) -> AudioInfo:
    head = fh.read(HEAD_BYTES)
    fh.seek(0, 2)
    size = fh.tell()
    return sniff(head, size)


def _is_mpeg_audio_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _parse_wav(head: bytes, total_size: int | None) -> AudioInfo:
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt " and body + 16 <= len(head):
            tag, channels, rate, _byte_rate, align, bits = struct.unpack_from(
                "<HHIIHH", head, body
            )
            if tag == WAVE_FORMAT_EXTENSIBLE and size >= 40 and body + 26 <= len(head):
                (tag,) = struct.unpack_from("<H", head, body + 24)
            fmt = (tag, channels, rate, bits, align)
        elif chunk_id == b"data":
            if fmt is None:
                return AudioInfo("wav", problem="WAV data chunk before its fmt chunk")
            tag, channels, rate, bits, align = fmt
            data_bytes = size
            problem = None
            if total_size is not None:
                actual = total_size - body
                # Asterisk leaves 0 (or 0xFFFFFFFF) in the header of a file it
                # has not closed yet; a header larger than the file lies.
                if size in (0, 0xFFFFFFFF) or size > actual:
                    problem = (
                        f"WAV header claims {size} data bytes but the file holds {actual}"
                    )
                    data_bytes = actual
            return AudioInfo(
                "wav",
                channels=channels,
                sample_rate=rate,
                bits_per_sample=bits,
                format_tag=tag,
                data_bytes=data_bytes,
                header_bytes=body,
                problem=problem,
                block_align=align,
            )
        pos = body + size + (size & 1)
    if fmt is None:
        return AudioInfo("wav", problem="WAV file without a fmt chunk in its first 4 KiB")
    tag, channels, rate, bits, align = fmt
    return AudioInfo(
        "wav", channels=channels, sample_rate=rate, bits_per_sample=bits, format_tag=tag,
        problem="WAV file without a data chunk in its first 4 KiB", block_align=align,
    )
