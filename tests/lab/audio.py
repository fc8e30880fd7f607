"""Look at recordings: which stereo side carries audio, and for how long (stdlib only)."""

from __future__ import annotations

import array
import math
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

RATE = 8000


@dataclass(frozen=True)
class Channel:
    rms: float
    active_seconds: float  # time in 100 ms windows louder than the threshold


@dataclass(frozen=True)
class AudioInfo:
    path: str
    channels: int
    rate: int
    seconds: float
    sides: tuple[Channel, ...]  # (left, right) or (mono,)

    @property
    def left(self) -> Channel:
        return self.sides[0]

    @property
    def right(self) -> Channel:
        return self.sides[-1]

    def louder_side(self) -> str | None:
        """'left' or 'right' when one side clearly carries the audio, 'both', or None.

        Decided on time with audio (100 ms windows), not on energy: a single
        stray frame on the silent side (seen at the start of a recording made
        after a transfer) must not count as that side talking.
        """
        if len(self.sides) != 2:
            return None
        if self.left.rms < SILENCE_RMS and self.right.rms < SILENCE_RMS:
            return None
        a, b = self.left.active_seconds, self.right.active_seconds
        if a > 3 * b + 0.1:
            return "left"
        if b > 3 * a + 0.1:
            return "right"
        return "both"

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"channels": self.channels, "rate": self.rate,
                                  "seconds": round(self.seconds, 3)}
        names = ("left", "right") if self.channels == 2 else ("mono",)
        for name, side in zip(names, self.sides, strict=True):
            out[name] = {"rms": round(side.rms, 1), "active_seconds": side.active_seconds}
        if self.channels == 2:
            out["louder_side"] = self.louder_side()
        return out


SILENCE_RMS = 30.0  # of 32767: sipp's silent parties send nothing, Asterisk writes zeros
_WINDOW = RATE // 10


def _samples(data: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def _channel(samples: array.array[int], rate: int) -> Channel:
    if not samples:
        return Channel(0.0, 0.0)
    total = math.fsum(float(s) * s for s in samples)
    window = max(rate // 10, 1)
    active = 0
    for i in range(0, len(samples), window):
        chunk = samples[i:i + window]
        if math.sqrt(math.fsum(float(s) * s for s in chunk) / len(chunk)) > SILENCE_RMS * 3:
            active += 1
    return Channel(math.sqrt(total / len(samples)), round(active * window / rate, 1))


def analyse(path: Path | str, *, raw_channels: int = 2, raw_rate: int = RATE) -> AudioInfo:
    """Energy per side of a .raw (MixMonitor D: s16le interleaved stereo) or .wav file."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "rb") as wav:
            channels, rate = wav.getnchannels(), wav.getframerate()
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit WAV is supported")
            data = wav.readframes(wav.getnframes())
    else:
        channels, rate = raw_channels, raw_rate
        data = path.read_bytes()
    samples = _samples(data)
    sides = tuple(_channel(samples[i::channels], rate) for i in range(channels))
    frames = len(samples) // channels
    return AudioInfo(str(path), channels, rate, frames / rate, sides)
