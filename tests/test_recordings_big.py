"""Large recordings convert in bounded memory (and quickly).

The inputs are sparse files (holes read as silence, created instantly) with
a marked last frame, so the test also proves the whole file went through.
"""

from __future__ import annotations

import os
import resource
import struct
import time
import tracemalloc
import wave
from pathlib import Path

from asterisk_miitel.recordings import RecordingSpec, prepare

MB = 1024 * 1024
LIMIT = 50 * MB


def sparse(path: Path, size: int, tail: bytes) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size - len(tail))
        fh.seek(size - len(tail))
        fh.write(tail)
    return path


def last_frame(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        n = w.getnframes()
        w.setpos(n - 1)
        return w.readframes(1)


def measure(run):  # type: ignore[no-untyped-def]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = run()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    return result, peak, rss_growth, seconds


def test_300mb_interleaved_raw_converts_in_bounded_memory(tmp_path: Path) -> None:
    size = 300 * MB
    raw = sparse(tmp_path / "long.raw", size, struct.pack("<hh", 1234, -4321))

    result, peak, rss_growth, seconds = measure(
        lambda: prepare(RecordingSpec(str(raw), "interleaved"), tmp_path / "work",
                        reserve_bytes=0)
    )

    assert result.duration == size / 4 / 8000
    assert os.path.getsize(result.path) == size + 44
    assert last_frame(result.path) == struct.pack("<hh", 1234, -4321)
    assert peak < LIMIT and rss_growth < LIMIT, (peak, rss_growth)
    print(f"\n300 MB .raw -> WAV: {size / MB / seconds:.0f} MB/s, "
          f"traced peak {peak / MB:.1f} MB, ru_maxrss growth {rss_growth / MB:.1f} MB")


def test_large_legs_merge_in_bounded_memory(tmp_path: Path) -> None:
    size = 75 * MB  # each leg; the stereo result is 150 MB
    rx = sparse(tmp_path / "r.raw", size, struct.pack("<h", 111))
    tx = sparse(tmp_path / "t.raw", size - 2 * 8000, struct.pack("<h", 222))  # 1 s shorter

    result, peak, rss_growth, seconds = measure(
        lambda: prepare(RecordingSpec(str(tmp_path / "m.raw"), "legs", receive=str(rx),
                                      transmit=str(tx)), tmp_path / "work", reserve_bytes=0)
    )

    assert result.duration == size / 2 / 8000
    assert last_frame(result.path) == struct.pack("<hh", 111, 0)  # transmit padded
    assert peak < LIMIT and rss_growth < LIMIT, (peak, rss_growth)
    print(f"\n2 x 75 MB legs -> stereo WAV: {2 * size / MB / seconds:.0f} MB/s in, "
          f"traced peak {peak / MB:.1f} MB, ru_maxrss growth {rss_growth / MB:.1f} MB")
