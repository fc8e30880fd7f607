"""prepare() with a window: one conversation of a recording cut at a transfer
(issue 13). Each side carries its own tone per conversation, so a test can
tell by frequency which conversation landed in the output and on which side."""

from __future__ import annotations

import itertools
import math
from array import array
from pathlib import Path

import pytest

from asterisk_miitel.recordings import EmptyRecording, RecordingSpec, prepare

from .test_recordings_convert import read_back, silence, stereo, tone, write_wav

RATE = 8000


def freq_of(samples: array) -> float:
    """Zero crossings per second / 2: the tone's frequency."""
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE)


def rms(samples: array) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def two_conversations(tmp_path: Path) -> Path:
    """Left: the customer throughout (440 Hz). Right: user A (1000 Hz) for
    3 s, then user B (2000 Hz) for 2 s."""
    left = tone(5.0)
    right = array("h", tone(3.0, freq=1000.0)) + array("h", tone(2.0, freq=2000.0))
    raw = tmp_path / "call.raw"
    raw.write_bytes(stereo(left, right))
    return raw


@pytest.mark.parametrize(("window", "seconds", "right_freq"),
                         [((0.0, 3.0), 3.0, 1000.0), ((3.0, None), 2.0, 2000.0)])
def test_interleaved_window_holds_only_its_conversation(
    tmp_path: Path, window: tuple[float, float | None], seconds: float, right_freq: float,
) -> None:
    raw = two_conversations(tmp_path)
    result = prepare(RecordingSpec(str(raw), "interleaved", expected_duration=seconds,
                                   window=window), tmp_path / "work")
    assert result.channel_type == "STEREO" and result.warnings == []
    assert result.duration == pytest.approx(seconds, abs=1 / RATE)
    params, (left, right) = read_back(result.path)
    assert params.nframes == round(seconds * RATE)
    assert freq_of(left) == pytest.approx(440.0, rel=0.02)
    assert freq_of(right) == pytest.approx(right_freq, rel=0.02)


def test_legs_are_cut_alike(tmp_path: Path) -> None:
    rx, tx = tmp_path / "c-in.wav", tmp_path / "c-out.wav"
    write_wav(rx, tone(5.0).tobytes())
    write_wav(tx, (array("h", silence(3.0)) + array("h", tone(2.0, freq=2000.0))).tobytes())
    result = prepare(RecordingSpec(str(tmp_path / "c.wav"), "legs", receive=str(rx),
                                   transmit=str(tx), window=(3.0, None)), tmp_path / "work")
    _, (left, right) = read_back(result.path)
    assert len(left) == 2 * RATE
    assert freq_of(right) == pytest.approx(2000.0, rel=0.02) and rms(left) > 5000


def test_a_mono_wav_with_a_window_is_cut_not_sent_as_is(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "m.wav",
                    (array("h", tone(3.0, freq=1000.0)) + array("h", silence(2.0))).tobytes())
    result = prepare(RecordingSpec(str(wav), "mono", window=(0.0, 3.0)), tmp_path / "work")
    assert result.converted and result.channel_type == "MONAURAL"
    _, (mono,) = read_back(result.path)
    assert len(mono) == 3 * RATE and rms(mono) > 5000
    whole = prepare(RecordingSpec(str(wav), "mono"), tmp_path / "work")
    assert not whole.converted  # without a window, as before


def test_a_window_past_the_files_end_says_why(tmp_path: Path) -> None:
    """A D file grows only while audio flows: it can end before the cut."""
    raw = tmp_path / "short.raw"
    raw.write_bytes(stereo(tone(1.0), silence(1.0)))
    with pytest.raises(EmptyRecording):
        prepare(RecordingSpec(str(raw), "interleaved", window=(4.0, None)), tmp_path / "work")


def test_a_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        RecordingSpec("/x.raw", "interleaved", window=(3.0, 1.0))
