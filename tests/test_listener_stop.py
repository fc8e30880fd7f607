"""A stop while the AMI link is still being made ends it at once.

A SIGTERM while the listener connected (Asterisk accepting TCP but slow with
the TLS handshake, the banner or the login reply) used to go unheard by the
connect: it went on to log in, ran the on_connected hook (resync, catch-up)
after the stop had begun, and the service's stop then waited on that link for
ever (Python 3.11's wait_for swallowed the cancellation that came as the
connection completed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
import time
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.ami.listener import AmiListener, AmiSession
from asterisk_miitel.config import AmiConfig

from .test_kill import write_config

DELAY = 30.0  # how long the slow Asterisk keeps the connecting listener waiting
QUICK = 3.0  # "at once", with room for a loaded test machine


class SlowDoor:
    """A TCP front for a FakeAmi that accepts at once but passes bytes on only
    after `delay` s: from the server (`replies`: TLS handshake, banner) or
    from the client (`requests`: the Login)."""

    def __init__(self, upstream: int, delay: float, *, replies: bool = True,
                 requests: bool = False) -> None:
        self.upstream, self.delay = upstream, delay
        self.replies, self.requests = replies, requests
        self.accepted = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> SlowDoor:
        self._server = await asyncio.start_server(self._door, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        assert self._server is not None
        self._server.close()

    async def _door(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.set()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            for src, dst, slow in ((up_reader, writer, self.replies),
                                   (reader, up_writer, self.requests)):
                task = asyncio.create_task(self._pipe(src, dst, self.delay if slow else 0))
                self._tasks.add(task)
        except OSError:
            writer.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    delay: float) -> None:
        with contextlib.suppress(OSError):
            await asyncio.sleep(delay)
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()


def tls_server(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def ami_config(port: int, *, tls: bool) -> AmiConfig:
    # connect_timeout above DELAY: only stop() can end the wait.
    return AmiConfig(host="127.0.0.1", port=port, secret="secret", tls=tls, tls_verify=False,
                     connect_timeout=DELAY + 10, reconnect_min=0.05, reconnect_max=0.1)


class Hooked:
    """A listener with an on_connected that records that it ran."""

    def __init__(self, cfg: AmiConfig) -> None:
        self.ran: list[float] = []
        self.listener = AmiListener(cfg, lambda event, at: None, on_connected=self._connected)
        self.task = asyncio.create_task(self.listener.run())

    async def _connected(self, session: AmiSession) -> None:
        self.ran.append(time.monotonic())

    async def stop(self) -> float:
        """Seconds until stop() returned and run() ended."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.listener.stop(), QUICK)
            await asyncio.wait_for(self.task, QUICK)
        finally:
            self.task.cancel()
        return time.monotonic() - started


@pytest.mark.parametrize("stage", ["tls_handshake", "banner", "login_reply"])
async def test_stop_while_asterisk_is_slow_to_answer_the_connect_ends_it_at_once(
    stage: str, self_signed: tuple[Path, Path],
) -> None:
    tls = stage == "tls_handshake"
    async with FakeAmi([], ssl=tls_server(*self_signed) if tls else None) as ami, \
            SlowDoor(ami.port, DELAY, replies=stage != "login_reply",
                     requests=stage == "login_reply") as door:
        hooked = Hooked(ami_config(door.port, tls=tls))
        await asyncio.wait_for(door.accepted.wait(), 5)
        await asyncio.sleep(0.3)  # well into the slow step
        took = await hooked.stop()
        assert took < QUICK
        assert hooked.ran == [] and ami.logins == 0
        assert not hooked.listener.stats.connected


async def test_a_connect_completing_after_stop_never_runs_on_connected(
    self_signed: tuple[Path, Path],
) -> None:
    # The TLS handshake completes 0.5 s after the stop; a quick banner and
    # login follow. Before, the login went through and the hook (resync and
    # catch-up in the service) started during the stop.
    async with FakeAmi([], ssl=tls_server(*self_signed)) as ami, \
            SlowDoor(ami.port, 0.8) as door:
        hooked = Hooked(ami_config(door.port, tls=True))
        await asyncio.wait_for(door.accepted.wait(), 5)
        await asyncio.sleep(0.3)
        took = await hooked.stop()
        await asyncio.sleep(1.5)  # the handshake would have completed by now
        assert took < QUICK
        assert hooked.ran == [] and ami.logins == 0


async def test_stop_after_the_link_is_up_still_stops_promptly() -> None:
    async with FakeAmi([]) as ami:
        hooked = Hooked(ami_config(ami.port, tls=False))
        await asyncio.wait_for(hooked.listener.wait_connected(), 5)
        assert await hooked.stop() < QUICK
        assert len(hooked.ran) == 1 and not hooked.listener.stats.connected


async def test_sigterm_while_the_service_connects_exits_at_once(tmp_path: Path) -> None:
    """`run` as users run it, SIGTERM as soon as it has started (AMI still on
    its way): it exits promptly, and nothing AMI-side starts after the stop."""
    async with FakeAmi([]) as ami:
        config = write_config(tmp_path, ami.port, "http://127.0.0.1:9/unused")
        log = tmp_path / "service.log"
        with open(log, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "asterisk_miitel", "run", "--config", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 30
            while b"started:" not in log.read_bytes():
                assert proc.returncode is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            await asyncio.wait_for(proc.wait(), 15)
            took = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert took < 5, text
    after_stop = text.partition("stopping:")[2]
    assert "AMI connected" not in after_stop and "catch-up" not in after_stop, text
