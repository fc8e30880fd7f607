"""`asterisk-miitel capture`: the PBX's raw AMI stream, written to a file for `replay`.

The admin's way to check a PBX before turning uploads on: capture a few real
calls with the service's own AMI user (so the event filter and privileges are
the ones `run` will have), then `asterisk-miitel replay FILE --explain`.

What is written is what the AMI socket sent after login: the banner, then
each event block as Asterisk framed it (CRLF, empty line), so `replay` reads
it like a live stream. Not written: our Login (it is never in the stream we
read, only in what we send), the answers to our own actions (Ping), and any
secret: a header whose name says secret/password/token gets its value
replaced, and so does any occurrence of a configured secret (AMI secret,
webhook URL, extra headers). Input from AMI is untrusted: any AMI user can
send a UserEvent with a `Secret:` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from ..config import AmiConfig
from .listener import ssl_context
from .parser import BANNER_PREFIX

REDACTED = b"<redacted>"
PING_EVERY = 20.0  # seconds: notice a dead link during a long capture
_SECRET_HEADER = re.compile(rb"^([^:\r\n]*(?:secret|password|passwd|token)[^:\r\n]*): ([^\r\n]*)",
                            re.IGNORECASE | re.MULTILINE)
_OWN_ACTION = re.compile(rb"^ActionID: miitel-capture-", re.MULTILINE)
_END = b"\r\n\r\n"


class CaptureError(Exception):
    """The capture could not start (connect, login): one line for the admin."""


@dataclass
class CaptureStats:
    events: int = 0
    recordings: int = 0  # MixMonitor starts seen (what replay will turn into call_data)
    bytes: int = 0
    redacted: int = 0
    seconds: float = 0.0
    ended: str = "time is up"
    banner: str = ""


class Redactor:
    """Removes secrets from one complete AMI block."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a URL is replaced before a shorter secret inside it.
        self._secrets = sorted({s.encode() for s in secrets if len(s) >= 8}, key=len,
                               reverse=True)
        self.count = 0

    def __call__(self, block: bytes) -> bytes:
        def header(m: re.Match[bytes]) -> bytes:
            self.count += 1
            return m.group(1) + b": " + REDACTED

        block = _SECRET_HEADER.sub(header, block)
        for secret in self._secrets:
            if secret in block:
                self.count += block.count(secret)
                block = block.replace(secret, REDACTED)
        return block


async def capture(
    cfg: AmiConfig,
    out: IO[bytes],
    seconds: float,
    *,
    secrets: Iterable[str] = (),
    stop: asyncio.Event | None = None,
    progress: Callable[[CaptureStats], None] | None = None,
    progress_every: float = 60.0,
) -> CaptureStats:
    """Log in as [ami] says, write the stream to `out` for `seconds` (or until
    `stop` is set, or the link drops). Raises CaptureError if it cannot start."""
    stop = stop or asyncio.Event()
    stats = CaptureStats()
    redact = Redactor([cfg.secret.get_secret_value(), *secrets])
    where = f"{cfg.host}:{cfg.port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port, ssl=ssl_context(cfg),
                                    server_hostname=cfg.host if cfg.tls else None),
            cfg.connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise CaptureError(f"cannot connect to AMI at {where} ({exc or type(exc).__name__}): "
                           "is Asterisk running, manager.conf enabled, [ami] host/port "
                           "right?") from None
    started = time.monotonic()
    try:
        banner = await asyncio.wait_for(reader.readline(), cfg.connect_timeout)
        if not banner.startswith(BANNER_PREFIX):
            raise CaptureError(f"{where} is not an Asterisk manager port (it said "
                               f"{banner[:40]!r})")
        stats.banner = banner.decode("utf-8", "replace").strip()
        out.write(banner)
        writer.write(_action("Login", "login", Username=cfg.username,
                             Secret=cfg.secret.get_secret_value(), Events="on"))
        buf = await _login(reader, cfg, where)
        pinger = asyncio.create_task(_ping(writer))
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                left = seconds - (time.monotonic() - started)
                if left <= 0:
                    break
                *blocks, buf = buf.split(_END)
                for block in blocks:
                    _write_block(block, out, stats, redact)
                if progress is not None and time.monotonic() - last_report >= progress_every:
                    last_report = time.monotonic()
                    stats.seconds = last_report - started
                    progress(stats)
                try:
                    data = await asyncio.wait_for(reader.read(65536), min(left, 1.0))
                except TimeoutError:
                    continue
                if not data:
                    stats.ended = "Asterisk closed the connection"
                    break
                buf += data
        except (OSError, ConnectionError) as exc:
            stats.ended = f"the connection was lost ({exc})"
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        if stop.is_set():
            stats.ended = "stopped"
        for block in buf.split(_END)[:-1]:
            _write_block(block, out, stats, redact)
        with contextlib.suppress(OSError, ConnectionError):
            writer.write(_action("Logoff", "logoff"))
            await asyncio.wait_for(writer.drain(), 1.0)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        out.flush()
    stats.seconds = time.monotonic() - started
    stats.redacted = redact.count
    return stats


def _write_block(block: bytes, out: IO[bytes], stats: CaptureStats, redact: Redactor) -> None:
    block = block.strip(b"\r\n")
    if not block or _OWN_ACTION.search(block):
        return  # our own Ping's answer is not the PBX's traffic
    block = redact(block)
    data = block + _END
    out.write(data)
    stats.bytes += len(data)
    if block.startswith(b"Event: "):
        stats.events += 1
        if block.startswith(b"Event: MixMonitorStart\r"):
            stats.recordings += 1


async def _login(reader: asyncio.StreamReader, cfg: AmiConfig, where: str) -> bytes:
    """Wait for the Login's answer; return what came after it (events already)."""
    buf = b""
    deadline = time.monotonic() + cfg.connect_timeout
    while True:
        while _END in buf:
            block, buf = buf.split(_END, 1)
            if b"ActionID: miitel-capture-login" not in block:
                continue
            if b"Response: Success" in block:
                return buf
            message = re.search(rb"Message: (.*)", block)
            why = message.group(1).decode("utf-8", "replace").strip() if message else "refused"
            raise CaptureError(f"login refused for user {cfg.username!r} at {where} ({why}): "
                               "check [ami] username and secret and the user's permit/deny in "
                               "manager.conf")
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaptureError(f"no answer to the AMI login from {where}")
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            continue
        if not data:
            raise CaptureError(f"{where} closed the connection during login")
        buf += data


async def _ping(writer: asyncio.StreamWriter) -> None:
    n = 0
    while True:
        await asyncio.sleep(PING_EVERY)
        n += 1
        writer.write(_action("Ping", f"ping-{n}"))


def _action(name: str, action_id: str, **headers: str) -> bytes:
    lines = [f"Action: {name}", f"ActionID: miitel-capture-{action_id}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
