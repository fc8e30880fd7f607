"""One outbox, one service: a second `run` on the same outbox is refused in
one line naming the process that holds it; `retry` and `backfill` keep
working beside a running service; an error no step expects backs off per
call and is logged once per step, not once per loop."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.catchup.cli import backfill_main
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.outbox.lock import OutboxLock, OutboxLocked, lock_path
from asterisk_miitel.outbox.sender import Sender
from asterisk_miitel.outbox.store import Outbox

from .support import DEMO_DIR, done, running, service_config, wait_for
from .test_catchup_runner import make_pbx
from .test_kill import RECORDING, write_config
from .test_service import demo_events


async def _run(config: Path, log: Path | None = None) -> asyncio.subprocess.Process:
    """`asterisk-miitel run` as users run it; a long-lived one logs to a file
    (a pipe nobody reads would fill up and block it)."""
    out: int | io.BufferedWriter = asyncio.subprocess.PIPE
    if log is not None:
        out = open(log, "ab")  # closed below: the child has its own copy
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "asterisk_miitel", "run", "--config", str(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    finally:
        if not isinstance(out, int):
            out.close()


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asterisk_miitel", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _holding(proc: asyncio.subprocess.Process, outbox: Path, log: Path) -> None:
    """Wait until `proc` has the outbox (its PID is in the lock file), has started
    and is connected to AMI (a SIGTERM in the middle of connecting is another
    test's matter)."""
    async def holds() -> bool:
        assert proc.returncode is None, "the service exited: " + log.read_text()
        path = lock_path(outbox)
        text = log.read_bytes()
        return (path.exists() and path.read_text().strip() == str(proc.pid)
                and b"started:" in text and b"AMI connected" in text)
    await wait_for(holds, 30)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_a_second_run_on_the_same_outbox_exits_with_one_line_naming_the_holder(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    async with FakeAmi([]) as ami, StandIn(tmp_path / "miitel", port=0) as standin:
        config = write_config(tmp_path, ami.port, standin.webhook_url)
        log = tmp_path / "service.log"
        first = await _run(config, log)
        try:
            await _holding(first, outbox, log)
            second = await _run(config)
            out, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 1
            assert out == b""
            [line] = err.decode().splitlines()
            assert f"process {first.pid}" in line and str(outbox) in line, line
            assert first.returncode is None  # the first one goes on, untouched
            # A service killed outright leaves no lock behind: the next start works.
            first.kill()
            await first.wait()
            log3 = tmp_path / "third.log"
            third = await _run(config, log3)
            await _holding(third, outbox, log3)
            assert await _stop(third) == 0
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()


def test_the_lock_is_exclusive_and_given_back(tmp_path: Path) -> None:
    outbox = tmp_path / "state" / "outbox.sqlite3"
    one = OutboxLock(outbox).acquire()
    with pytest.raises(OutboxLocked, match=f"process {os.getpid()}"):
        OutboxLock(outbox).acquire()
    assert oct(lock_path(outbox).stat().st_mode & 0o777) == "0o600"
    one.release()
    OutboxLock(outbox).acquire().release()


async def test_retry_works_beside_a_running_service(tmp_path: Path) -> None:
    # The recording is missing: the running service sets the call aside ...
    async with FakeAmi(demo_events()) as ami, StandIn(tmp_path / "miitel", port=0) as standin:
        config = write_config(tmp_path, ami.port, standin.webhook_url)
        service = await _run(config, tmp_path / "service.log")
        try:
            async def set_aside() -> bool:
                assert service.returncode is None
                if not (tmp_path / "outbox.sqlite3").exists():
                    return False
                async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
                    return (await outbox.counts())["set_aside"] == 1
            await wait_for(set_aside, 30)
            # ... the admin fixes the cause and retries while it runs.
            (tmp_path / "monitor").mkdir(exist_ok=True)
            shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
            code, out = await _cli("retry", "--all-set-aside", "--config", str(config))
            assert code == 0, out

            async def uploaded() -> bool:
                return [c["status"] for c in standin.calls()] == ["uploaded"]
            await wait_for(uploaded, 30)
            assert standin.calls()[0]["post_count"] == 1
        finally:
            assert await _stop(service) == 0


async def test_backfill_works_beside_a_running_service(tmp_path: Path) -> None:
    config, cc, since, _until = make_pbx(tmp_path)
    toml = tmp_path / "service.toml"
    async with FakeAmi([]) as ami:
        toml.write_text(f"""
[ami]
host = "127.0.0.1"
port = {ami.port}
username = "miitel"
secret = "secret"

[outbox]
path = "{config.outbox.path}"

[recordings]
work_dir = "{tmp_path / 'work'}"
dirs = ["{tmp_path / 'spool' / 'monitor'}"]
min_free_mb = 0
wait_timeout = 2

[catchup]
enabled = false
voicemail_dirs = ["{tmp_path / 'spool' / 'voicemail'}"]

[pbx]
id = "lab"
""")
        log = tmp_path / "service.log"
        service = await _run(toml, log)
        try:
            await _holding(service, config.outbox.path, log)
            from datetime import UTC, datetime

            day = datetime.fromtimestamp(since, UTC).date().isoformat()
            config.pbx.timezone = "UTC"
            err = io.StringIO()
            code = await asyncio.to_thread(backfill_main, config, day, day, False,
                                           out=io.StringIO(), err=err, cc=cc)
            assert code == 0 and "queued: 5" in err.getvalue(), err.getvalue()

            async def prepared_by_the_service() -> bool:  # no webhook: they wait as ready
                async with Outbox(config.outbox.path) as outbox:
                    return (await outbox.counts())["ready"] >= 1
            await wait_for(prepared_by_the_service, 30)
        finally:
            assert await _stop(service) == 0


async def test_an_unexpected_error_backs_off_and_is_logged_once_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    broken = True
    real_upload = Sender._upload

    async def upload(self: Sender, row: object) -> None:
        if broken:
            raise AssertionError("a row no step expects")
        await real_upload(self, row)  # type: ignore[arg-type]

    monkeypatch.setattr(Sender, "_upload", upload)
    monkeypatch.setattr(Sender, "unexpected_base", 0.2)
    caplog.set_level(logging.INFO)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            async def created() -> bool:
                return (await service.outbox.counts())["created"] == 1
            await wait_for(created)
            t0 = time.monotonic()
            await asyncio.sleep(2.5)
            lines = [r for r in caplog.records if "unexpected error" in r.getMessage()]
            # Steps of 0.2, 0.4, 0.8, 1.6 s: at most 5 lines in 2.5 s (a loop: thousands).
            assert 2 <= len(lines) <= 5, [r.getMessage() for r in lines]
            assert lines[0].exc_info is not None  # the first one with its traceback
            assert all(r.exc_info is None for r in lines[1:])
            assert "again (2 times)" in lines[1].getMessage()
            broken = False  # the cause is gone: the call goes on from its saved step
            await wait_for(done(service), 10)
            assert time.monotonic() - t0 < 10
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["post_count"] == 1
