"""Each party its own pure tone, so a test can tell who is heard on which side.

`tone_pcap` makes a sipp `play_pcap_audio` stream (Ethernet/IPv4/UDP/RTP,
G.711 A-law, the lab's silence.pcap timing) of one sine tone; `tone_seconds`
says, per side of a recording, for how long each party's tone was heard
(a Goertzel filter per 100 ms window: stdlib only, numpy is no dependency).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from .audio import RATE, _samples

# who plays which frequency (Hz); all whole Hz, so one second holds whole cycles
TONES = {"customer": 440, "1001": 700, "1002": 1000, "1003": 1300, "outside": 1150}
AMPLITUDE = 8000  # of 32767: about -12 dBFS, clear of clipping after G.711
_RTP_AT = 14 + 20 + 8  # Ethernet + IPv4 (no options) + UDP


def _alaw(sample: int) -> int:
    """One 16-bit linear sample to G.711 A-law (ITU-T G.711, with the 0x55 toggle)."""
    sign = 0x80 if sample >= 0 else 0x00
    mag = min(abs(sample) >> 3, 0xFFF)  # 13-bit magnitude
    if mag < 32:
        code = mag >> 1
    else:
        exp = mag.bit_length() - 5  # 1..7
        code = (exp << 4) | ((mag >> exp) & 0x0F)
    return (code | sign) ^ 0x55


def tone_payload(freq: int) -> bytes:
    """One second of `freq` Hz in A-law (whole cycles, so it loops seamlessly)."""
    return bytes(_alaw(round(AMPLITUDE * math.sin(2 * math.pi * freq * n / RATE)))
                 for n in range(RATE))


# How far a party's next stream (its second call) starts ahead in RTP
# sequence numbers: see tone_pcap.
STREAM_SEQ_STEP = 0x6000


def tone_pcap(silence_pcap: bytes, freq: int, stream: int = 0) -> bytes:
    """`silence_pcap` (one RTP stream, see sipp.repeat_rtp_pcap) with every
    payload replaced by the running tone: same packets, same timing. Each tone
    gets its own SSRC and sequence/timestamp origin, as phones have: with the
    same stream in every party, Asterisk dropped a transfer target's first
    seconds (as many as the call had run) from the recording.

    Asterisk 22 leaves the audio written to a recorded channel out of its
    MixMonitor (the transmit side) while the new source's RTP sequence numbers
    lie behind, in 16-bit serial order, those the channel carried before; the
    far end still hears it. Seen on the lab: with 1002 (seq ~48300) before
    1001 (seq ~31900) every second of 1001 is missing, with 1002, 1003
    (~64700), 1001 none is. So a party's `stream` n > 0 (its n-th next call)
    starts n * STREAM_SEQ_STEP further on, with its own SSRC: 1001 called back
    after 1002 is ahead of both earlier streams."""
    second = tone_payload(freq)
    out = bytearray(silence_pcap[:24])
    off, sample = 24, 0
    shift = freq * 7919  # any per-tone offset
    ahead = stream * STREAM_SEQ_STEP
    while off + 16 <= len(silence_pcap):
        incl = struct.unpack("<I", silence_pcap[off + 8:off + 12])[0]
        body = bytearray(silence_pcap[off + 16:off + 16 + incl])
        seq, ts = struct.unpack(">HI", body[_RTP_AT + 2:_RTP_AT + 8])
        struct.pack_into(">HII", body, _RTP_AT + 2, (seq + shift + ahead) & 0xFFFF,
                         (ts + (shift + ahead) * 160) & 0xFFFFFFFF,
                         0x4C410000 + freq + (stream << 12))
        start = _RTP_AT + 12 + 4 * (body[_RTP_AT] & 0x0F)
        size = len(body) - start
        body[start:] = bytes(second[(sample + i) % RATE] for i in range(size))
        sample = (sample + size) % RATE
        out += silence_pcap[off:off + 16] + body
        off += 16 + incl
    return bytes(out)


def _goertzel(chunk: list[float], freq: int, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in chunk:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_seconds(path: Path | str, *, channels: int = 2, rate: int = RATE,
                 freqs: tuple[int, ...] = tuple(TONES.values()),
                 share: float = 0.25) -> list[dict[int, float]]:
    """Per side (left, right) of a .wav/.raw s16le file: seconds in which each
    frequency carries at least `share` of the 100 ms window's energy (a pure
    tone carries ~1, two tones mixed ~0.5 each; silence and speech ~0)."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() == ".wav":
        import wave
        with wave.open(str(path), "rb") as wav:
            channels, rate = wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    samples = _samples(data)
    window = rate // 10
    out: list[dict[int, float]] = []
    for side in range(channels):
        mono = [float(s) for s in samples[side::channels]]
        heard = dict.fromkeys(freqs, 0)
        for i in range(0, len(mono) - window + 1, window):
            chunk = mono[i:i + window]
            energy = math.fsum(x * x for x in chunk)
            if energy / window < 100.0 ** 2:  # quieter than ~-50 dBFS: nobody
                continue
            for f in freqs:
                if 2 * _goertzel(chunk, f, rate) / (window * energy) >= share:
                    heard[f] += 1
        out.append({f: round(n * window / rate, 1) for f, n in heard.items()})
    return out
