"""Small helpers of the recordings package: disk checks, file names, headers."""

from __future__ import annotations

import asyncio
import shutil
import struct
import sys
import time
import wave
from pathlib import Path

import pytest

from asterisk_miitel.recordings import (
    RecordingSpec,
    RecordingWatcher,
    disk_space_problem,
    free_bytes,
    mixmonitor_output_path,
    probe,
)
from asterisk_miitel.recordings.containers import mp3_info
from asterisk_miitel.recordings.convert import interleave


def test_free_bytes_walks_up_to_an_existing_folder(tmp_path: Path) -> None:
    real = shutil.disk_usage(tmp_path).free
    assert abs(free_bytes(tmp_path / "not" / "yet") - real) < 64 * 1024 * 1024


def test_disk_space_problem(tmp_path: Path) -> None:
    assert disk_space_problem(tmp_path, 1024, reserve_bytes=0) is None
    huge = disk_space_problem(tmp_path, 10**18, reserve_bytes=0)
    assert huge and str(tmp_path) in huge and "conversion" in huge
    reserve = disk_space_problem(tmp_path, 0, reserve_bytes=10**18)
    assert reserve and "kept free" in reserve and "conversion" not in reserve


def test_mixmonitor_output_path() -> None:
    assert mixmonitor_output_path("/rec/abc") == "/rec/abc.raw"
    assert mixmonitor_output_path("/rec/vm.wav49") == "/rec/vm.WAV"
    assert mixmonitor_output_path("/rec/x.wav") == "/rec/x.wav"
    assert mixmonitor_output_path("/rec.d/name") == "/rec.d/name.raw"


def test_spec_validation_and_paths() -> None:
    with pytest.raises(ValueError, match="receive and transmit"):
        RecordingSpec("/r/x.wav", "legs", receive="/r/x-r.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        RecordingSpec("/r/x.raw", "interleaved", sample_rate=7)
    legs = RecordingSpec("/r/x.wav", "legs", receive="/r/r.wav", transmit="/r/t.wav")
    assert legs.paths == ("/r/r.wav", "/r/t.wav")
    assert RecordingSpec("/r/x.raw", "interleaved").paths == ("/r/x.raw",)


def test_interleave_puts_left_first() -> None:
    left = struct.pack("<3h", 1, 2, 3)
    right = struct.pack("<3h", -1, -2, -3)
    assert bytes(interleave(left, right)) == struct.pack("<6h", 1, -1, 2, -2, 3, -3)


def test_probe_reports_block_align(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(400))
    info = probe(path)
    assert info.block_align == 4 and info.duration == pytest.approx(100 / 8000)


def test_mp3_info_skips_an_id3_tag_and_reads_xing_frames(tmp_path: Path) -> None:
    # MPEG-1 layer III mono 44.1 kHz with a Xing header announcing 1000 frames.
    header = bytes([0xFF, 0xFB, 0x90, 0xC4])
    xing = header + bytes(17) + b"Xing" + struct.pack(">II", 1, 1000)
    body = xing.ljust(417, b"\0") + (header + bytes(413)) * 3
    tag = b"ID3\x04\x00\x00\x00\x00\x01\x00" + bytes(128)  # 128-byte tag, syncsafe size
    path = tmp_path / "x.mp3"
    path.write_bytes(tag + body)
    info = mp3_info(str(path))
    assert info.channels == 1
    assert info.duration == pytest.approx(1000 * 1152 / 44100)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")
async def test_watched_folder_deleted_and_recreated(tmp_path: Path) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    path = folder / "x.raw"
    async with RecordingWatcher(poll_interval=0.02) as watcher:
        watcher.expect(str(path))
        folder.rmdir()  # the kernel drops the watch (IN_IGNORED)

        async def asterisk() -> None:
            await asyncio.sleep(0.05)
            folder.mkdir()
            path.write_bytes(b"\0" * 640)

        task = asyncio.create_task(asterisk())
        t0 = time.perf_counter()
        result = await watcher.closed(str(path), timeout=5)
        await task
        assert result.finished and result.files[0].size == 640
        assert time.perf_counter() - t0 < 1
