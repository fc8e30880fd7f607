"""RecordingWatcher: wakes within milliseconds of Asterisk's close, and says why when not.

"Asterisk" here is a task writing a file in 20 ms frames like MixMonitor
does, and closing it when "the channel hangs up".
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import pytest

from asterisk_miitel.recordings import (
    RecordingMissing,
    RecordingUnreadable,
    RecordingWatcher,
    check_access,
    wait_closed,
)
from asterisk_miitel.recordings import watcher as watcher_module

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")

FRAME = b"\x00\x01" * 320  # 20 ms of 8 kHz stereo s16


class FakeMixMonitor:
    """Opens the file at start (as MixMonitor does), writes frames, closes at hangup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "wb")  # closed in hangup()
        self.closed_at: float | None = None

    async def talk(self, frames: int) -> None:
        for _ in range(frames):
            self.fh.write(FRAME)
            self.fh.flush()
            await asyncio.sleep(0)

    def hangup(self) -> None:
        self.fh.close()
        self.closed_at = time.perf_counter()


@pytest.fixture
async def watcher():  # type: ignore[no-untyped-def]
    async with RecordingWatcher(poll_interval=0.05) as w:
        assert w.mode == "inotify"
        yield w


async def test_close_wakes_the_waiter_within_milliseconds(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    latencies = []
    for i in range(20):
        path = tmp_path / f"call-{i}.raw"
        watcher.expect(str(path))
        mixmonitor = FakeMixMonitor(path)
        await mixmonitor.talk(5)

        async def hang_up_soon(m: FakeMixMonitor = mixmonitor) -> None:
            await asyncio.sleep(0.01)
            m.hangup()

        task = asyncio.create_task(hang_up_soon())
        result = await watcher.closed(str(path), timeout=5)
        woke = time.perf_counter()
        await task
        assert mixmonitor.closed_at is not None
        assert result.finished and result.files[0].how == "closed"
        assert result.files[0].size == 5 * len(FRAME)
        latencies.append(woke - mixmonitor.closed_at)
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[int(0.95 * len(latencies)) - 1]
    print(f"\nwatcher wake-up after close(): p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms")
    assert p95 < 0.02  # far below the 0.05 s poll interval: the event woke it


async def test_close_before_the_wait_returns_at_once(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    path = tmp_path / "early.raw"
    watcher.expect(str(path))
    mixmonitor = FakeMixMonitor(path)
    await mixmonitor.talk(2)
    mixmonitor.hangup()  # StopMixMonitor, or a close racing the Hangup event
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    result = await watcher.closed(str(path), timeout=5)
    assert result.files[0].how == "closed" and time.perf_counter() - t0 < 0.01


async def test_file_never_created_raises_missing_after_the_timeout(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    path = tmp_path / "never.raw"
    watcher.expect(str(path))
    t0 = time.perf_counter()
    with pytest.raises(RecordingMissing) as err:
        await watcher.closed(str(path), timeout=0.3)
    assert 0.3 <= time.perf_counter() - t0 < 1.0
    message = str(err.value)
    assert f"MixMonitor never wrote {path}" in message
    assert "mounted at the same path" in message and "asterisk group" in message


async def test_missing_folder_is_named(tmp_path: Path, watcher: RecordingWatcher) -> None:
    path = tmp_path / "not-mounted" / "x.raw"
    with pytest.raises(RecordingMissing, match="does not exist on this machine"):
        await watcher.closed(str(path), timeout=0.1)


async def test_still_open_at_the_timeout_is_reported_not_raised(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    path = tmp_path / "long.raw"
    watcher.expect(str(path))
    mixmonitor = FakeMixMonitor(path)  # created after the watch: its close will come
    await mixmonitor.talk(1)
    result = await watcher.closed(str(path), timeout=0.3)
    mixmonitor.hangup()
    assert not result.finished and result.files[0].how == "timeout"
    assert result.reason is not None and str(path) in result.reason


async def test_legs_wait_for_both_files(tmp_path: Path, watcher: RecordingWatcher) -> None:
    rx, tx = tmp_path / "c-r.wav", tmp_path / "c-t.wav"
    for p in (rx, tx):
        watcher.expect(str(p))
    r, t = FakeMixMonitor(rx), FakeMixMonitor(tx)
    await r.talk(3)
    await t.talk(2)
    r.hangup()

    async def close_transmit_later() -> None:
        await asyncio.sleep(0.1)
        t.hangup()

    task = asyncio.create_task(close_transmit_later())
    result = await watcher.closed([str(rx), str(tx)], timeout=5)
    await task
    assert t.closed_at is not None
    assert [f.how for f in result.files] == ["closed", "closed"]
    assert time.perf_counter() - t.closed_at < 0.02  # woke for the second close
    assert [f.size for f in result.files] == [3 * len(FRAME), 2 * len(FRAME)]


async def test_many_recordings_at_once(tmp_path: Path, watcher: RecordingWatcher) -> None:
    folders = [tmp_path / "2024" / "05" / f"{d:02d}" for d in range(1, 5)]
    for folder in folders:
        folder.mkdir(parents=True)
    paths = [folders[i % 4] / f"q-{i}.raw" for i in range(200)]
    for p in paths:
        watcher.expect(str(p))
    assert len(watcher._dirs) == 4  # one watch per folder, shared
    calls = [FakeMixMonitor(p) for p in paths]
    for call in calls:
        await call.talk(1)

    async def hang_up_all() -> None:
        await asyncio.sleep(0.02)
        for call in calls:
            call.hangup()

    task = asyncio.create_task(hang_up_all())
    t0 = time.perf_counter()
    results = await asyncio.gather(*(watcher.closed(str(p), timeout=5) for p in paths))
    await task
    assert all(r.files[0].how == "closed" for r in results)
    assert time.perf_counter() - t0 < 0.5
    assert watcher._dirs == {} and watcher._states == {}  # watches dropped when unused


async def test_freepbx_day_folder_created_after_expect(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    day = tmp_path / "2024" / "05" / "02"
    path = day / "in-200-100-20240502-101010-1714640000.12.wav"
    watcher.expect(str(path))  # the folder does not exist yet

    async def asterisk() -> None:
        await asyncio.sleep(0.02)
        day.mkdir(parents=True)  # MixMonitor's ast_mkdir
        m = FakeMixMonitor(path)
        await m.talk(3)
        await asyncio.sleep(0.1)
        m.hangup()

    task = asyncio.create_task(asterisk())
    result = await watcher.closed(str(path), timeout=5)
    await task
    assert result.finished and result.files[0].size == 3 * len(FRAME)


async def test_moved_into_place_counts_as_closed(
    tmp_path: Path, watcher: RecordingWatcher
) -> None:
    # asterisk.conf cache_record_files: written elsewhere, mv-ed in at the close
    final = tmp_path / "rec" / "x.wav"
    final.parent.mkdir()
    cache = tmp_path / "cache.wav"
    watcher.expect(str(final))
    cache.write_bytes(b"RIFF")

    async def move_later() -> None:
        await asyncio.sleep(0.02)
        os.rename(cache, final)

    task = asyncio.create_task(move_later())
    result = await watcher.closed(str(final), timeout=5)
    await task
    assert result.files[0].how == "closed" and result.waited < 0.05


async def test_deleted_after_writing_says_so(tmp_path: Path, watcher: RecordingWatcher) -> None:
    path = tmp_path / "post.wav"
    path.write_bytes(FRAME)
    watcher.expect(str(path))

    async def post_process() -> None:
        await asyncio.sleep(0.02)
        path.unlink()  # e.g. a post-processing command converting to mp3

    task = asyncio.create_task(post_process())
    t0 = time.perf_counter()
    with pytest.raises(RecordingMissing, match="deleted or moved away"):
        await watcher.closed(str(path), timeout=5)
    await task
    assert time.perf_counter() - t0 < 0.5


async def test_polling_fallback_without_inotify(tmp_path: Path) -> None:
    path = tmp_path / "nfs.raw"
    async with RecordingWatcher(use_inotify=False, poll_interval=0.02, stable_polls=2) as w:
        assert w.mode == "poll"
        w.expect(str(path))
        m = FakeMixMonitor(path)

        async def drain_after_hangup() -> None:
            # Asterisk still flushes buffered frames for a moment after the
            # hangup, faster than we poll: a growing file is not finished.
            for _ in range(10):
                await m.talk(1)
                await asyncio.sleep(0.01)
            m.hangup()

        task = asyncio.create_task(drain_after_hangup())
        result = await w.closed(str(path), timeout=5)
        await task
    assert result.files[0].how == "stable"
    assert result.files[0].size == 10 * len(FRAME)  # nothing cut
    assert m.closed_at is not None
    print(f"\npolling fallback settled {time.perf_counter() - m.closed_at:.3f} s after close")
    assert result.waited < 0.1 + 0.02 * 5


async def test_polling_never_calls_a_file_finished_while_the_channel_is_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "up.raw"
    path.write_bytes(FRAME)
    async with RecordingWatcher(use_inotify=False, poll_interval=0.02) as w:
        result = await w.closed(str(path), timeout=0.15, channel_gone=False)
    assert not result.finished


async def test_file_closed_before_anyone_watched_is_found_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "old.raw"
    path.write_bytes(FRAME * 4)  # service restarted after the call ended
    result = await wait_closed(str(path), channel_gone=True, timeout=2, poll_interval=0.02)
    assert result.files[0].how == "stable" and result.files[0].size == 4 * len(FRAME)


async def test_unreadable_recording_names_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret.raw"
    path.write_bytes(FRAME)
    real_open = open

    def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    # We run as root in CI, where chmod 000 does not deny anything.
    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(RecordingUnreadable) as err:
        await wait_closed(str(path), channel_gone=True, timeout=2, poll_interval=0.02)
    assert str(path) in str(err.value) and "asterisk" in str(err.value)


def test_check_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_access(str(tmp_path)) is None
    missing = check_access(str(tmp_path / "monitor"))
    assert missing and "does not exist" in missing and "mount" in missing
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert "not a folder" in (check_access(str(a_file)) or "")
    monkeypatch.setattr(watcher_module.os, "access", lambda *_a, **_k: False)
    denied = check_access(str(tmp_path))
    assert denied and "may not list and read" in denied and "group" in denied


async def test_forget_drops_the_watch(tmp_path: Path, watcher: RecordingWatcher) -> None:
    path = tmp_path / "x.raw"
    watcher.expect(str(path))
    assert str(tmp_path) in watcher._dirs
    watcher.forget(str(path))
    assert watcher._dirs == {} and watcher._states == {}
