"""The lab's party tones (tests/lab/tones.py): the pcap sipp plays carries the
tone asked for, and the Goertzel check tells the parties apart per side."""

from __future__ import annotations

import re
import struct
import wave
from pathlib import Path

from tests.lab.sipp import repeat_rtp_pcap
from tests.lab.tones import TONES, tone_pcap, tone_seconds

RTP_AT = 14 + 20 + 8


def template(seconds: float = 3.0) -> bytes:
    """A silence stream shaped like the lab's (20 ms PCMA packets), built here."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    packets = bytearray(header)
    for n in range(2):
        rtp = struct.pack(">BBHII", 0x80, 8, 100 + n, 1000 + 160 * n, 0x1234) + b"\xd5" * 160
        udp = struct.pack(">HHHH", 6000, 7000, 8 + len(rtp), 0) + rtp
        ip = b"\x45" + b"\x00" * 19 + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        packets += struct.pack("<IIII", 1, n * 20000, len(frame), len(frame)) + frame
    return repeat_rtp_pcap(bytes(packets), seconds, silence=True)


def alaw_decode(byte: int) -> int:
    """G.711 A-law to linear, written from the standard (not from tones.py)."""
    a = byte ^ 0x55
    seg = (a >> 4) & 0x07
    t = ((a & 0x0F) << 4) + 8
    if seg:
        t = (t + 0x100) << (seg - 1)
    return t if a & 0x80 else -t


def payload(pcap: bytes) -> list[int]:
    out, off = [], 24
    while off + 16 <= len(pcap):
        incl = struct.unpack("<I", pcap[off + 8:off + 12])[0]
        body = pcap[off + 16:off + 16 + incl]
        out += [alaw_decode(b) for b in body[RTP_AT + 12:]]
        off += 16 + incl
    return out


def stereo(path: Path, left: list[int], right: list[int]) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"".join(struct.pack("<hh", a, b)
                                 for a, b in zip(left, right, strict=True)))
    return path


def test_each_party_is_heard_on_its_own_side(tmp_path: Path) -> None:
    silence = template()
    customer = payload(tone_pcap(silence, TONES["customer"]))
    target = payload(tone_pcap(silence, TONES["1003"]))
    assert len(customer) == len(payload(silence)) == 3 * 8000  # same packets, same timing
    quiet = [0] * len(customer)
    left, right = tone_seconds(stereo(tmp_path / "a.wav", customer, target))
    assert left == {440: 3.0, 700: 0.0, 1000: 0.0, 1300: 0.0, 1150: 0.0}
    assert right == {440: 0.0, 700: 0.0, 1000: 0.0, 1300: 3.0, 1150: 0.0}
    # nobody on a side: no tone; two parties mixed on one side: both heard
    mixed = [a + b for a, b in zip(customer, payload(tone_pcap(silence, TONES["1002"])),
                                   strict=True)]
    left, right = tone_seconds(stereo(tmp_path / "b.wav", quiet, mixed))
    assert set(left.values()) == {0.0}
    assert right[440] == right[1000] == 3.0 and right[700] == right[1300] == 0.0


def test_each_party_has_its_own_rtp_stream() -> None:
    # one SSRC and RTP origin shared by every party made Asterisk leave a blind
    # transfer target's first seconds out of the recording
    silence = template(0.1)
    heads = {tone_pcap(silence, f)[24 + 16 + RTP_AT + 2:24 + 16 + RTP_AT + 12]
             for f in TONES.values()}
    assert len(heads) == len(TONES)


def test_a_phones_second_call_plays_a_stream_ahead_of_the_others(tmp_path: Path) -> None:
    # uas_refer_then_answer plays one pcap per call: in the transfer back
    # (customer -> 1001 -> 1002 -> 1001) the second call's stream must start
    # ahead (16-bit serial order) of 1001's and 1002's first ones, or Asterisk
    # leaves it out of the customer's recording (tones.tone_pcap)
    from tests.lab.sipp import SCENARIO_DIR, with_audio
    (tmp_path / "pcap").mkdir()
    (tmp_path / "pcap" / "silence.pcap").write_bytes(template(0.1))
    out = with_audio(SCENARIO_DIR / "uas_refer_then_answer.xml", tmp_path,
                     f"tone-{TONES['1001']}")
    plays = re.findall(r'play_pcap_audio="(pcap/[^"]+)"', out.read_text())
    assert plays == [f"pcap/tone-{TONES['1001']}.pcap", f"pcap/tone-{TONES['1001']}-1.pcap"]

    def head(pcap: bytes) -> tuple[int, int]:
        seq, _ts, ssrc = struct.unpack(">HII", pcap[24 + 16 + RTP_AT + 2:24 + 16 + RTP_AT + 12])
        return seq, ssrc

    again, ssrc = head((tmp_path / plays[1]).read_bytes())
    firsts = {who: head(tone_pcap(template(0.1), TONES[who])) for who in ("1001", "1002")}
    for who, (seq, other) in firsts.items():
        assert 0 < (again - seq) % 65536 < 32768, (who, seq, again)
        assert other != ssrc
