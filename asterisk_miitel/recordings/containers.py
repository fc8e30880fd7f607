"""Channel count and duration of MP3 and M4A files, best effort, headers only.

Asterisk never writes these itself; they come from post-processing scripts
(lame, ffmpeg). We send them as they are and only need to know how to declare
them: the channel count (to choose STEREO or MONAURAL) and the duration. Both
are read from headers with a handful of seeks, never by decoding.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .allowed import Opener, open_plain

# MPEG audio: bitrate (kbit/s) by [version is MPEG-1][layer index], sample rates.
_BITRATES = {
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_SCAN_BYTES = 64 * 1024
_MAX_BOXES = 10_000  # a corrupt M4A must not keep us walking forever


@dataclass(frozen=True, slots=True)
class StreamInfo:
    channels: int | None
    duration: float | None


def mp3_info(path: str, opener: Opener = open_plain) -> StreamInfo:
    """Channels from the first frame header; duration from a Xing/Info header or CBR size."""
    with opener(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            tag = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            start = 10 + tag + (10 if head[5] & 0x10 else 0)
        fh.seek(start)
        buf = fh.read(_SCAN_BYTES)
    for i in range(len(buf) - 4):
        frame = _mpeg_frame(buf, i)
        if frame is None:
            continue
        channels, rate, bitrate, samples, side = frame
        duration: float | None = None
        xing = i + 4 + side
        if buf[xing : xing + 4] in (b"Xing", b"Info"):
            (flags,) = struct.unpack_from(">I", buf, xing + 4)
            if flags & 1 and len(buf) >= xing + 12:
                (count,) = struct.unpack_from(">I", buf, xing + 8)
                duration = count * samples / rate
        if duration is None and bitrate:
            duration = (size - start - i) * 8 / (bitrate * 1000)
        return StreamInfo(channels, duration)
    return StreamInfo(None, None)


def _mpeg_frame(buf: bytes, i: int) -> tuple[int, int, int, int, int] | None:
    if buf[i] != 0xFF or (buf[i + 1] & 0xE0) != 0xE0:
        return None
    version = (buf[i + 1] >> 3) & 3  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    layer = (buf[i + 1] >> 1) & 3  # 3 = layer I, 2 = II, 1 = III
    bitrate_index = buf[i + 2] >> 4
    rate_index = (buf[i + 2] >> 2) & 3
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index]
    rate = _RATES[version][rate_index]
    channels = 1 if (buf[i + 3] >> 6) == 3 else 2
    samples = 384 if layer == 3 else (1152 if mpeg1 or layer == 2 else 576)
    # Where a Xing/Info header sits in layer III: after the side information.
    side = (32 if channels == 2 else 17) if mpeg1 else (17 if channels == 2 else 9)
    return channels, rate, bitrate, samples, side


def m4a_info(path: str, opener: Opener = open_plain) -> StreamInfo:
    """Channels from the first sound track's sample entry; duration from mvhd."""
    channels: int | None = None
    duration: float | None = None
    with opener(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        for kind, start, end in _boxes(fh, 0, size):
            if kind != b"moov":
                continue
            for sub, s_start, s_end in _boxes(fh, start, end):
                if sub == b"mvhd":
                    duration = _mvhd_duration(fh, s_start, s_end)
                elif sub == b"trak" and channels is None:
                    channels = _trak_channels(fh, s_start, s_end)
            break
    return StreamInfo(channels, duration)


def _boxes(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box between start and end."""
    pos = start
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return
        size, kind = struct.unpack_from(">I4s", head)
        body = pos + 8
        if size == 1 and len(head) == 16:
            (size,) = struct.unpack_from(">Q", head, 8)
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            return
        yield kind, body, pos + size
        pos += size


def _mvhd_duration(fh: BinaryIO, start: int, end: int) -> float | None:
    fh.seek(start)
    data = fh.read(min(end - start, 32))
    if len(data) < 20:
        return None
    if data[0] == 1 and len(data) >= 32:
        timescale, length = struct.unpack_from(">IQ", data, 20)
    else:
        timescale, length = struct.unpack_from(">II", data, 12)
    return length / timescale if timescale else None


def _trak_channels(fh: BinaryIO, start: int, end: int) -> int | None:
    # trak > mdia > [hdlr 'soun'] minf > stbl > stsd > first sample entry
    for kind, s, e in _boxes(fh, start, end):
        if kind != b"mdia":
            continue
        sound = False
        for k2, s2, e2 in _boxes(fh, s, e):
            if k2 == b"hdlr":
                fh.seek(s2 + 8)
                sound = fh.read(4) == b"soun"
            elif k2 == b"minf" and sound:
                for k3, s3, e3 in _boxes(fh, s2, e2):
                    if k3 == b"stbl":
                        for k4, s4, _e4 in _boxes(fh, s3, e3):
                            if k4 == b"stsd":
                                # stsd: version/flags(4) count(4), then the entry
                                # box (8); its channelcount is 16 bytes into its body.
                                fh.seek(s4 + 8 + 8 + 16)
                                raw = fh.read(2)
                                if len(raw) == 2:
                                    (count,) = struct.unpack(">H", raw)
                                    return count or None
    return None
