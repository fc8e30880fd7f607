"""prepare(): what a MiiTel user cares about, checked on generated audio.

Each test puts a tone on one side and silence (or another tone) on the
other, converts, and checks by energy that the tone lands on the side it
should, that durations are right within a frame, and that Python's own
`wave` module agrees with the header.
"""

from __future__ import annotations

import bisect
import math
import os
import struct
import wave
from array import array
from pathlib import Path

import pytest

from asterisk_miitel.recordings import (
    EmptyRecording,
    IncompatibleLegs,
    InsufficientDiskSpace,
    RecordingMissing,
    RecordingSpec,
    UnsupportedRecording,
    g711,
    guess_interleaved_rate,
    prepare,
    prepare_async,
    probe,
)
from asterisk_miitel.recordings.probe import (
    WAVE_FORMAT_ALAW,
    WAVE_FORMAT_MULAW,
)

RATE = 8000
FRAME = 1 / RATE


# -- generated audio ------------------------------------------------------


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, amp: int = 10000) -> array:
    n = round(seconds * rate)
    return array("h", (int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))


def silence(seconds: float, rate: int = RATE) -> array:
    return array("h", bytes(2 * round(seconds * rate)))


def stereo(left: array, right: array) -> bytes:
    n = max(len(left), len(right))
    out = array("h", bytes(4 * n))
    out[0 : 2 * len(left) : 2] = left
    out[1 : 2 * len(right) : 2] = right
    return out.tobytes()


def write_wav(path: Path, samples: bytes, rate: int = RATE, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return path


def wav_header(tag: int, channels: int, rate: int, bits: int, data_bytes: int) -> bytes:
    align = channels * bits // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", min(36 + data_bytes, 0xFFFFFFFF), b"WAVE",
        b"fmt ", 16, tag, channels, rate, rate * align, align, bits, b"data", data_bytes,
    )


def rms(samples: array) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def read_back(path: str) -> tuple[wave._wave_params, list[array]]:
    """Header as `wave` reads it, and one sample array per channel."""
    with wave.open(path, "rb") as w:
        params = w.getparams()
        data = array("h", w.readframes(params.nframes))
    return params, [data[c :: params.nchannels] for c in range(params.nchannels)]


def g711_encoder(law: g711.Law):  # type: ignore[no-untyped-def]
    """Nearest-code encoder built from our decoder (tests only)."""
    decode = g711.ulaw_to_linear if law == "ulaw" else g711.alaw_to_linear
    pairs = sorted((decode(code), code) for code in range(256))
    values = [v for v, _ in pairs]

    def encode(samples: array) -> bytes:
        out = bytearray(len(samples))
        for i, s in enumerate(samples):
            j = bisect.bisect_left(values, s)
            j = min(max(j, 0), 255)
            if j > 0 and abs(values[j - 1] - s) <= abs(values[j] - s):
                j -= 1
            out[i] = pairs[j][1]
        return bytes(out)

    return encode


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


# -- interleaved .raw (MixMonitor D) ---------------------------------------


@pytest.mark.parametrize("tone_side", ["left", "right"])
def test_interleaved_raw_keeps_each_side_on_its_channel(
    tmp_path: Path, work: Path, tone_side: str
) -> None:
    t, s = tone(2.0), silence(2.0)
    raw = tmp_path / "call.raw"
    raw.write_bytes(stereo(t, s) if tone_side == "left" else stereo(s, t))

    result = prepare(RecordingSpec(str(raw), "interleaved", expected_duration=2.0), work)

    assert result.converted and result.path.startswith(str(work))
    assert (result.file_type, result.channel_type) == ("wav", "STEREO")
    assert result.warnings == []
    assert abs(result.duration - 2.0) <= FRAME
    params, (left, right) = read_back(result.path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert params.nframes == 16000
    loud, quiet = (left, right) if tone_side == "left" else (right, left)
    assert rms(loud) > 5000 and rms(quiet) == 0
    info = probe(result.path)
    assert info.problem is None and info.duration == pytest.approx(2.0)
    assert result.size_bytes == os.path.getsize(result.path) == 44 + 4 * 16000


def test_interleaved_raw_at_16k_and_rate_sanity_check(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "wide.raw"
    raw.write_bytes(stereo(tone(1.0, 16000), silence(1.0, 16000)))  # 1 s of 16 kHz

    # Read as the default 8 kHz it lasts 2 s: the bridged time says 16 kHz.
    wrong = prepare(RecordingSpec(str(raw), "interleaved", expected_duration=1.0), work)
    assert wrong.duration == pytest.approx(2.0)
    assert any("16000 Hz" in w for w in wrong.warnings)
    assert guess_interleaved_rate(raw.stat().st_size, 1.0) == 16000

    right = prepare(
        RecordingSpec(str(raw), "interleaved", sample_rate=16000, expected_duration=1.0), work
    )
    assert right.duration == pytest.approx(1.0) and right.warnings == []
    params, (left, _) = read_back(right.path)
    assert params.framerate == 16000 and rms(left) > 5000


def test_guess_interleaved_rate() -> None:
    assert guess_interleaved_rate(32000 * 60, 60.0) == 8000
    assert guess_interleaved_rate(64000 * 60, 60.0) == 16000
    assert guess_interleaved_rate(32000 * 60, 200.0) is None  # fits neither
    assert guess_interleaved_rate(1000, 0) is None


def test_half_length_interleaved_recording_is_flagged(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "half.raw"
    raw.write_bytes(stereo(tone(5.0), tone(5.0)))
    result = prepare(RecordingSpec(str(raw), "interleaved", expected_duration=10.0), work)
    assert result.duration == pytest.approx(5.0)
    assert any("half" in w for w in result.warnings)


def test_trailing_half_frame_is_dropped(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "cut.raw"
    raw.write_bytes(stereo(tone(1.0), silence(1.0)) + b"\x01\x02\x03")
    result = prepare(RecordingSpec(str(raw), "interleaved"), work)
    assert result.duration == pytest.approx(1.0)
    assert any("3 trailing bytes" in w for w in result.warnings)


def test_d_option_with_wav_name_is_read_as_stereo(tmp_path: Path, work: Path) -> None:
    # MixMonitor(x.wav,D) writes interleaved frames under a mono 8 kHz header.
    path = write_wav(tmp_path / "d.wav", stereo(silence(1.0), tone(1.0)))
    result = prepare(RecordingSpec(str(path), "interleaved"), work)
    assert result.channel_type == "STEREO" and result.duration == pytest.approx(1.0)
    assert any("D option" in w for w in result.warnings)
    _, (left, right) = read_back(result.path)
    assert rms(left) == 0 and rms(right) > 5000


def test_unknown_mode_raw_uses_the_bridged_time(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "what.raw"
    raw.write_bytes(tone(2.0).tobytes())  # mono 8 kHz, 2 s
    mono = prepare(RecordingSpec(str(raw), "unknown", expected_duration=2.0), work)
    assert mono.channel_type == "MONAURAL" and mono.duration == pytest.approx(2.0)
    stereo_guess = prepare(RecordingSpec(str(raw), "unknown"), work)
    assert stereo_guess.channel_type == "STEREO" and stereo_guess.duration == pytest.approx(1.0)
    assert any("interleaved" in w for w in stereo_guess.warnings)


# -- legs: r() / t() -------------------------------------------------------


@pytest.mark.parametrize("loud_leg", ["receive", "transmit"])
def test_legs_receive_left_transmit_right(tmp_path: Path, work: Path, loud_leg: str) -> None:
    rx, tx = tmp_path / "call-r.wav", tmp_path / "call-t.wav"
    write_wav(rx, (tone(2.0) if loud_leg == "receive" else silence(2.0)).tobytes())
    write_wav(tx, (tone(2.0) if loud_leg == "transmit" else silence(2.0)).tobytes())

    result = prepare(
        RecordingSpec(str(tmp_path / "call.wav"), "legs", receive=str(rx), transmit=str(tx),
                      expected_duration=2.0),
        work,
    )

    assert (result.channel_type, result.file_type, result.converted) == ("STEREO", "wav", True)
    assert result.warnings == []
    params, (left, right) = read_back(result.path)
    assert (params.nchannels, params.framerate, params.nframes) == (2, 8000, 16000)
    loud, quiet = (left, right) if loud_leg == "receive" else (right, left)
    assert rms(loud) > 5000 and rms(quiet) == 0


def test_legs_of_different_lengths_pad_the_shorter(tmp_path: Path, work: Path) -> None:
    rx, tx = tmp_path / "r.sln", tmp_path / "t.sln"  # raw slin legs
    rx.write_bytes(tone(3.0).tobytes())
    tx.write_bytes(tone(1.0, freq=1000).tobytes())

    result = prepare(RecordingSpec(str(tmp_path / "m.sln"), "legs", receive=str(rx),
                                   transmit=str(tx)), work)

    assert abs(result.duration - 3.0) <= FRAME  # the longer leg, nothing cut
    _, (left, right) = read_back(result.path)
    assert rms(left[-8000:]) > 5000  # receive still talking in the last second
    assert rms(right[:8000]) > 5000 and rms(right[8000:]) == 0  # transmit padded with silence
    assert any("2.0 s shorter" in w and str(tx) in w for w in result.warnings)


def test_legs_mixing_wav_and_raw_and_an_empty_leg(tmp_path: Path, work: Path) -> None:
    rx = write_wav(tmp_path / "r.wav", tone(1.0).tobytes())
    tx = tmp_path / "t.raw"
    tx.write_bytes(b"")  # the other side never sent a frame
    result = prepare(RecordingSpec(str(tmp_path / "m.wav"), "legs", receive=str(rx),
                                   transmit=str(tx)), work)
    _, (left, right) = read_back(result.path)
    assert rms(left) > 5000 and len(right) == 8000 and rms(right) == 0


def test_legs_with_different_rates_fail_clearly(tmp_path: Path, work: Path) -> None:
    rx = write_wav(tmp_path / "r.wav", tone(1.0).tobytes(), rate=8000)
    tx = write_wav(tmp_path / "t.wav", tone(1.0, 16000).tobytes(), rate=16000)
    with pytest.raises(IncompatibleLegs) as err:
        prepare(RecordingSpec(str(tmp_path / "m.wav"), "legs", receive=str(rx),
                              transmit=str(tx)), work)
    assert str(rx) in str(err.value) and "16000" in str(err.value)
    assert "same format" in str(err.value)
    assert not list(work.glob("*.wav"))  # nothing half-made left behind


def test_legs_with_one_leg_missing_fall_back_to_the_mix(tmp_path: Path, work: Path) -> None:
    rx = write_wav(tmp_path / "r.wav", tone(1.0).tobytes())
    mix = write_wav(tmp_path / "m.wav", tone(1.0).tobytes())
    result = prepare(RecordingSpec(str(mix), "legs", receive=str(rx),
                                   transmit=str(tmp_path / "t.wav")), work)
    assert result.path == str(mix) and result.channel_type == "MONAURAL"
    assert any("missing" in w for w in result.warnings)
    with pytest.raises(RecordingMissing):
        prepare(RecordingSpec(str(tmp_path / "none.wav"), "legs", receive=str(rx),
                              transmit=str(tmp_path / "t.wav")), work)


# -- files sent as they are ------------------------------------------------


def test_mono_wav_is_sent_as_is(tmp_path: Path, work: Path) -> None:
    path = write_wav(tmp_path / "in-100-200.wav", tone(1.5).tobytes())
    result = prepare(RecordingSpec(str(path), "mono", expected_duration=1.5), work)
    assert result.path == str(path) and not result.converted
    assert (result.file_type, result.channel_type) == ("wav", "MONAURAL")
    assert result.duration == pytest.approx(1.5) and result.warnings == []
    assert not work.exists() or not list(work.iterdir())


def test_stereo_wav_is_sent_as_is_but_a_declared_mix_stays_monaural(
    tmp_path: Path, work: Path
) -> None:
    path = write_wav(tmp_path / "s.wav", stereo(tone(1.0), silence(1.0)), channels=2)
    result = prepare(RecordingSpec(str(path)), work)
    assert (result.path, result.channel_type, result.converted) == (str(path), "STEREO", False)
    mix = prepare(RecordingSpec(str(path), "mono"), work)
    assert mix.channel_type == "MONAURAL" and mix.warnings


def test_long_recording_of_a_short_call_warns(tmp_path: Path, work: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone(3.0).tobytes())
    result = prepare(RecordingSpec(str(path), "mono", expected_duration=1.0), work)
    assert any("bridged for 1.0 s" in w for w in result.warnings)


def _mp3(path: Path, mono: bool, frames: int = 50) -> Path:
    # MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417-byte frames.
    header = bytes([0xFF, 0xFB, 0x90, 0xC4 if mono else 0x44])
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)
                     + (header + bytes(413)) * frames)
    return path


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _m4a(path: Path, channels: int, seconds: int = 7) -> Path:
    mvhd = _box(b"mvhd", bytes(4) + bytes(8) + struct.pack(">II", 1000, seconds * 1000)
                + bytes(80))
    mp4a = _box(b"mp4a", bytes(6) + struct.pack(">H", 1) + bytes(8)
                + struct.pack(">HH", channels, 16) + bytes(8))
    stsd = _box(b"stsd", bytes(4) + struct.pack(">I", 1) + mp4a)
    hdlr = _box(b"hdlr", bytes(8) + b"soun" + bytes(12))
    trak = _box(b"trak", _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", stsd))))
    path.write_bytes(_box(b"ftyp", b"M4A \x00\x00\x00\x00") + _box(b"mdat", bytes(100))
                     + _box(b"moov", mvhd + trak))
    return path


def test_mp3_and_m4a_are_sent_as_is_with_their_channel_count(
    tmp_path: Path, work: Path
) -> None:
    mono = prepare(RecordingSpec(str(_mp3(tmp_path / "a.mp3", mono=True))), work)
    assert (mono.file_type, mono.channel_type, mono.converted) == ("mp3", "MONAURAL", False)
    assert mono.duration == pytest.approx(50 * 417 * 8 / 128000, abs=0.01)
    two = prepare(RecordingSpec(str(_mp3(tmp_path / "b.mp3", mono=False))), work)
    assert two.channel_type == "STEREO"

    m4a = prepare(RecordingSpec(str(_m4a(tmp_path / "c.m4a", 2))), work)
    assert (m4a.file_type, m4a.channel_type, m4a.duration) == ("m4a", "STEREO", 7.0)
    assert prepare(RecordingSpec(str(_m4a(tmp_path / "d.m4a", 1))), work).channel_type == (
        "MONAURAL"
    )


def test_unreadable_channel_count_is_sent_monaural(tmp_path: Path, work: Path) -> None:
    path = tmp_path / "odd.m4a"
    path.write_bytes(_box(b"ftyp", b"M4A \x00\x00\x00\x00") + _box(b"mdat", bytes(64)))
    result = prepare(RecordingSpec(str(path)), work)
    assert result.channel_type == "MONAURAL" and any("channel count" in w
                                                      for w in result.warnings)


# -- headers that lie --------------------------------------------------------


@pytest.mark.parametrize("claimed", [0, 0xFFFFFFFF, 10**6])
def test_lying_wav_header_is_fixed_from_the_real_size(
    tmp_path: Path, work: Path, claimed: int
) -> None:
    data = tone(1.25).tobytes()
    path = tmp_path / "killed.wav"
    path.write_bytes(wav_header(1, 1, 8000, 16, claimed) + data)

    result = prepare(RecordingSpec(str(path), "mono", expected_duration=1.25), work)

    assert result.converted and result.path != str(path)
    assert abs(result.duration - 1.25) <= FRAME
    assert any("real size" in w for w in result.warnings)
    params, (mono,) = read_back(result.path)
    assert params.nframes == 10000 and rms(mono) > 5000
    assert probe(result.path).problem is None
    assert path.read_bytes()[40:44] == struct.pack("<I", claimed)  # original untouched


# -- empty, missing, unsupported ------------------------------------------------


def test_empty_files_raise_empty_recording(tmp_path: Path, work: Path) -> None:
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    with pytest.raises(EmptyRecording, match=r"zero\.wav is empty"):
        prepare(RecordingSpec(str(zero), "mono"), work)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(wav_header(1, 1, 8000, 16, 0))
    with pytest.raises(EmptyRecording, match=r"header\.wav") as err:
        prepare(RecordingSpec(str(header_only), "mono"), work)
    assert "Nothing to send" in str(err.value)
    one_byte = tmp_path / "tiny.raw"
    one_byte.write_bytes(b"\x00")
    with pytest.raises(EmptyRecording):
        prepare(RecordingSpec(str(one_byte), "interleaved"), work)


def test_missing_file_names_the_file_and_the_mount(tmp_path: Path, work: Path) -> None:
    gone = tmp_path / "nowhere" / "2024" / "05" / "01" / "x.wav"
    with pytest.raises(RecordingMissing) as err:
        prepare(RecordingSpec(str(gone), "mono"), work)
    assert str(gone) in str(err.value) and "mounted" in str(err.value)
    assert err.value.path == str(gone)
    with pytest.raises(RecordingMissing, match="Cannot open"):
        prepare(RecordingSpec(str(tmp_path / "y.wav"), "mono"), work)


def test_unknown_bytes_are_unsupported(tmp_path: Path, work: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"this is not audio at all\n" * 20)
    with pytest.raises(UnsupportedRecording) as err:
        prepare(RecordingSpec(str(junk)), work)
    assert str(junk) in str(err.value) and "MixMonitor" in str(err.value)
    g729 = tmp_path / "call.g729"
    g729.write_bytes(b"\x01" * 100)
    with pytest.raises(UnsupportedRecording, match="g729"):
        prepare(RecordingSpec(str(g729)), work)


def test_not_enough_disk_space_is_refused_before_writing(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "a.raw"
    raw.write_bytes(stereo(tone(0.5), silence(0.5)))
    with pytest.raises(InsufficientDiskSpace) as err:
        prepare(RecordingSpec(str(raw), "interleaved"), work, reserve_bytes=1 << 60)
    assert str(work) in str(err.value) and "free" in str(err.value)
    assert not list(work.glob("*"))


# -- formats MiiTel may not read -----------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_raw_and_wav_become_pcm(tmp_path: Path, work: Path, law: g711.Law) -> None:
    source = tone(1.0)
    encoded = g711_encoder(law)(source)
    raw = tmp_path / f"call.{law}"
    raw.write_bytes(encoded)
    tag = WAVE_FORMAT_MULAW if law == "ulaw" else WAVE_FORMAT_ALAW
    wav = tmp_path / f"{law}.wav"
    wav.write_bytes(wav_header(tag, 1, 8000, 8, len(encoded)) + encoded)

    for path in (raw, wav):
        result = prepare(RecordingSpec(str(path), "mono", expected_duration=1.0), work)
        assert (result.file_type, result.channel_type, result.converted) == (
            "wav", "MONAURAL", True)
        params, (mono,) = read_back(result.path)
        assert (params.sampwidth, params.framerate, params.nframes) == (2, 8000, 8000)
        # G.711 is within a few percent of the original everywhere
        error = rms(array("h", (a - b for a, b in zip(mono, source, strict=True))))
        assert error < 0.05 * rms(source)


def test_g711_decoder_matches_the_reference_tables() -> None:
    # Spot values from ITU-T G.711 (as audioop decodes them).
    assert [g711.ulaw_to_linear(c) for c in (0x00, 0x7F, 0x80, 0xFF)] == [-32124, 0, 32124, 0]
    assert [g711.alaw_to_linear(c) for c in (0x55, 0xD5, 0x2A, 0xAA)] == [-8, 8, -32256, 32256]
    audioop = pytest.importorskip("audioop", reason="audioop removed in Python 3.13")
    everything = bytes(range(256))
    assert g711.decode(everything, "ulaw") == audioop.ulaw2lin(everything, 2)
    assert g711.decode(everything, "alaw") == audioop.alaw2lin(everything, 2)


@pytest.mark.parametrize(("ext", "rate"), [("sln16", 16000), ("sln", 8000), ("slin", 8000)])
def test_headerless_slin_gets_a_header(tmp_path: Path, work: Path, ext: str, rate: int) -> None:
    path = tmp_path / f"call.{ext}"
    path.write_bytes(tone(1.0, rate).tobytes())
    result = prepare(RecordingSpec(str(path), "mono", expected_duration=1.0), work)
    params, (mono,) = read_back(result.path)
    assert (params.framerate, params.nframes, params.nchannels) == (rate, rate, 1)
    assert result.duration == pytest.approx(1.0) and rms(mono) > 5000


def test_gsm_wav49_and_raw_gsm_are_decoded(tmp_path: Path, work: Path) -> None:
    sf = pytest.importorskip("soundfile", reason="soundfile (libsndfile) not installed")
    np = pytest.importorskip("numpy")
    samples = np.frombuffer(tone(2.0).tobytes(), dtype="<i2")
    wav49 = tmp_path / "vm.WAV"
    sf.write(str(wav49), samples, 8000, format="WAV", subtype="GSM610")
    assert probe(wav49).format_tag == 0x31
    gsm = tmp_path / "call.gsm"
    sf.write(str(gsm), samples, 8000, format="RAW", subtype="GSM610")

    for path in (wav49, gsm):
        result = prepare(RecordingSpec(str(path), "mono", expected_duration=2.0), work)
        assert (result.file_type, result.channel_type, result.converted) == (
            "wav", "MONAURAL", True)
        params, (mono,) = read_back(result.path)
        assert (params.sampwidth, params.framerate) == (2, 8000)
        assert abs(params.nframes / 8000 - 2.0) <= 0.05  # GSM works in 20 ms frames
        assert rms(mono) > 3000  # the tone survived the lossy codec
        assert result.warnings == []


def test_gsm_wav49_with_a_lying_header(tmp_path: Path, work: Path) -> None:
    sf = pytest.importorskip("soundfile", reason="soundfile (libsndfile) not installed")
    np = pytest.importorskip("numpy")
    wav49 = tmp_path / "killed.WAV"
    sf.write(str(wav49), np.frombuffer(tone(2.0).tobytes(), dtype="<i2"), 8000,
             format="WAV", subtype="GSM610")
    info = probe(wav49)
    raw = bytearray(wav49.read_bytes())
    assert info.header_bytes is not None
    struct.pack_into("<I", raw, info.header_bytes - 4, 0)  # data size 0: never closed
    wav49.write_bytes(raw)
    result = prepare(RecordingSpec(str(wav49), "mono"), work)
    assert abs(result.duration - 2.0) <= 0.05
    assert any("real size" in w for w in result.warnings)
    assert [p.name for p in work.iterdir()] == [os.path.basename(result.path)]  # temp removed


async def test_prepare_async_runs_in_a_thread(tmp_path: Path, work: Path) -> None:
    raw = tmp_path / "a.raw"
    raw.write_bytes(stereo(tone(0.5), silence(0.5)))
    result = await prepare_async(RecordingSpec(str(raw), "interleaved"), work)
    assert result.channel_type == "STEREO"


def test_converted_files_are_the_owners_only_whatever_the_umask(
    tmp_path: Path, work: Path
) -> None:
    """Outside systemd (no UMask=0077) a umask of 022 made the call audio
    world-readable: 0644 files in a 0755 work folder."""
    raw = tmp_path / "call.raw"
    raw.write_bytes(stereo(tone(1.0), silence(1.0)))
    rx = write_wav(tmp_path / "r.wav", tone(1.0).tobytes())
    tx = write_wav(tmp_path / "t.wav", tone(1.0).tobytes())
    old = os.umask(0o022)
    try:
        one = prepare(RecordingSpec(str(raw), "interleaved"), work / "new")
        legs = prepare(RecordingSpec(str(tmp_path / "m.wav"), "legs", receive=str(rx),
                                     transmit=str(tx)), work / "new")
    finally:
        os.umask(old)
    assert one.converted and legs.converted
    for path in (one.path, legs.path):
        assert oct(os.stat(path).st_mode & 0o777) == "0o600", path
    assert oct(os.stat(work / "new").st_mode & 0o777) == "0o700"
