"""Keeps one AMI session alive: connect, log in, watch the link, reconnect.

What panoramisk's Manager does not do, and we need:
- a Ping that is not answered within `ping_timeout` drops the link (a dead
  TCP connection otherwise goes unnoticed for hours);
- reconnects back off exponentially with jitter, and a refused login is said
  once, clearly, and retried slowly instead of every 2 seconds forever;
- no dependency on `FullyBooted`, which Asterisk sends only to read=system;
- stop() ends a connect or login still on its way at once, and nothing
  (on_connected: resync, catch-up) starts once it was called.
Timeouts use `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11,
wait_for swallows a cancellation that arrives as the awaited step completes
(a connection made just as the service stopped went on to log in, run the
hook and wait for ever on the link).
The secret is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import AmiConfig
from ..logs import WARN_EVERY, Throttle
from .parser import PROBLEMS, OnProblem, Problem
from .protocol import EventSink, MiitelAmiProtocol

log = logging.getLogger(__name__)

# Dropped input is said at most once a minute per reason (an attacker or a
# broken peer must not flood the log); the counts are in /metrics.
PROBLEM_LOG_EVERY = WARN_EVERY
# stop() waits this long for the link to close before dropping it (a TLS
# peer that never answers our close_notify would hold it for 30 s).
STOP_GRACE = 1.0


class LoginRefused(Exception):
    pass


@dataclass
class ListenerStats:
    connects: int = 0
    reconnects: int = 0
    login_failures: int = 0
    dead_links: int = 0
    connected: bool = False
    connected_since: float | None = None
    last_event_at: float | None = None  # monotonic
    version: str | None = None  # the AMI protocol's (banner), e.g. 11.0.0
    asterisk_version: str | None = None  # Asterisk's own (CoreSettings), e.g. 22.10.1
    # Input the parser dropped or repaired, by reason (parser.PROBLEMS), over
    # every connection of this listener.
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))


OnSession = Callable[["AmiSession"], Awaitable[None]]
OnGap = Callable[[], None]
# Starts a named task (the service's Supervisor.start: restarted after a bug).
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]


def _plain_spawn(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def main() -> None:
        await run()
    return asyncio.create_task(main(), name=name)


class AmiSession:
    """A logged-in connection, handed to on_connected to run actions."""

    def __init__(self, protocol: MiitelAmiProtocol, timeout: float) -> None:
        self._protocol = protocol
        self._timeout = timeout
        self.version = protocol.version

    async def action(
        self, action: dict[str, Any], *, as_list: bool | None = None, hold: bool = False
    ) -> Any:
        """Run an action. `hold`: events after its answer wait until release()."""
        future = self._protocol.send_action(action, as_list=as_list, hold=hold)
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except BaseException:
            if hold:
                self.release()
            raise

    def release(self) -> None:
        self._protocol.release()


class AmiListener:
    def __init__(
        self,
        config: AmiConfig,
        sink: EventSink,
        *,
        on_connected: OnSession | None = None,
        on_disconnected: OnGap | None = None,
        on_problem: OnProblem | None = None,
        spawn: Spawn = _plain_spawn,
    ) -> None:
        self.config = config
        self.stats = ListenerStats()
        self._sink = sink
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_problem = on_problem
        self._problem_log = ProblemLog()
        self._spawn = spawn
        self._stopping = asyncio.Event()
        self._protocol: MiitelAmiProtocol | None = None
        self._connected_event = asyncio.Event()
        # What stop() must end besides the link: a connect or login on its
        # way, and the on_connected hook of the current session.
        self._connecting: asyncio.Task[MiitelAmiProtocol | BaseException | str] | None = None
        self._hook: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # run() is not running
        self._idle.set()

    # -- public -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected until stop()."""
        delay = self.config.reconnect_min
        self._idle.clear()
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                why = await self._one_session()
                if self._stopping.is_set():
                    break
                if time.monotonic() - started > 60:
                    delay = self.config.reconnect_min  # it was a healthy session
                if isinstance(why, LoginRefused):
                    delay = self.config.reconnect_max
                wait = backoff_wait(delay, self.config.reconnect_max, random.random())
                log.warning("AMI %s; reconnecting in %.1f s", why, wait)
                self.stats.reconnects += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stopping.wait()
                delay = min(delay * 2, self.config.reconnect_max)
        finally:
            self._idle.set()

    async def stop(self) -> None:
        """Stop for good: end the session or the connect on its way, start nothing
        more; returns once run() has (or the link was dropped after STOP_GRACE)."""
        self._stopping.set()
        # Synchronously, before anything else may run: a login completing now
        # must not go on to the hook.
        if self._connecting is not None:
            self._connecting.cancel()
        if self._hook is not None:
            self._hook.cancel()
        if self._protocol is not None:
            self._protocol.close()
        try:
            async with asyncio.timeout(STOP_GRACE):
                await self._idle.wait()
        except TimeoutError:
            if self._protocol is not None:
                self._protocol.abort()

    async def wait_connected(self) -> None:
        await self._connected_event.wait()

    # -- one connection -----------------------------------------------------------

    async def _one_session(self) -> BaseException | str:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        # Its own task, so stop() can end it whatever step it is at.
        connecting = asyncio.create_task(self._connect(where), name="ami-connect")
        self._connecting = connecting
        try:
            got = await connecting
        except asyncio.CancelledError:
            _drop(connecting)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our own task is cancelled: not ours to swallow
            return "stopped"  # stop() ended the connect
        finally:
            self._connecting = None
        if not isinstance(got, MiitelAmiProtocol):
            return got
        protocol = got
        if self._stopping.is_set():  # stop() came as the login completed
            protocol.close()
            return "stopped"
        self._protocol = protocol
        log.info("AMI connected to %s (Asterisk Call Manager %s)", where, protocol.version)
        self.stats.connected = True
        self.stats.connected_since = time.time()
        self._connected_event.set()
        pinger = asyncio.create_task(self._ping_loop(protocol))
        versioner = asyncio.create_task(self._learn_version(protocol))
        on_connected = self._on_connected
        if on_connected is not None:
            session = AmiSession(protocol, cfg.ping_timeout * 4)
            self._hook = self._spawn("resync", lambda: on_connected(session))
        try:
            exc = await protocol.lost
        finally:
            pinger.cancel()
            versioner.cancel()
            if self._hook is not None and not self._hook.done():
                self._hook.cancel()
            self._hook = None
            self.stats.connected = False
            self._connected_event.clear()
            self._protocol = None
            if self._on_disconnected is not None:
                self._on_disconnected()
        if self._stopping.is_set():
            return "stopped"
        return f"connection to {where} lost ({_short(exc) if exc else 'closed by Asterisk'})"

    async def _connect(self, where: str) -> MiitelAmiProtocol | BaseException | str:
        """Connect (TLS too), read the banner, log in: the logged-in protocol,
        or why not. Each step within connect_timeout."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                _transport, protocol = await loop.create_connection(
                    self._new_protocol,
                    cfg.host,
                    cfg.port,
                    ssl=self._ssl_context(),
                    server_hostname=cfg.host if cfg.tls else None,
                )
        except ssl.SSLCertVerificationError as exc:
            return f"TLS certificate of {where} not trusted ({_short(exc)}): {untrusted_hint(cfg)}"
        except (OSError, TimeoutError) as exc:
            return f"connection to {where} failed ({_short(exc)})"
        self.stats.connects += 1
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                await protocol.banner
            self.stats.version = protocol.version
            await self._login(protocol)
        except LoginRefused as exc:
            protocol.close()
            self.stats.login_failures += 1
            return exc
        except (OSError, TimeoutError, ConnectionError) as exc:
            protocol.abort()
            return f"session with {where} failed before login ({_short(exc)})"
        except BaseException:  # cancelled by stop() (or with our task)
            protocol.abort()
            raise
        return protocol

    def _new_protocol(self) -> MiitelAmiProtocol:
        protocol = MiitelAmiProtocol(self._on_event, self._problem)
        # A link dropped before its banner (stop() during the connect) fails a
        # banner nobody awaits any more: not worth asyncio's ERROR line.
        protocol.banner.add_done_callback(_retrieve)
        return protocol

    async def _login(self, protocol: MiitelAmiProtocol) -> None:
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout):
            resp = await protocol.send_action(
                {
                    "Action": "Login",
                    "Username": cfg.username,
                    "Secret": cfg.secret.get_secret_value(),
                    "Events": "on",
                }
            )
        if resp.get("Response") != "Success":
            raise LoginRefused(
                f"login refused for user {cfg.username!r} ({resp.get('Message', 'no reason')}):"
                " check [ami] username and secret and the user's permit/deny in manager.conf"
            )

    async def _learn_version(self, protocol: MiitelAmiProtocol) -> None:
        """Asterisk's version for /healthz (the banner only names the AMI protocol)."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(self.config.ping_timeout * 4):
                reply = await protocol.send_action({"Action": "CoreSettings"})
            version = reply.get("AsteriskVersion") if hasattr(reply, "get") else None
            if version:
                self.stats.asterisk_version = str(version)

    async def _ping_loop(self, protocol: MiitelAmiProtocol) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.ping_interval)
            try:
                async with asyncio.timeout(cfg.ping_timeout):
                    await protocol.send_action({"Action": "Ping"})
            except (TimeoutError, ConnectionError):
                self.stats.dead_links += 1
                log.warning(
                    "AMI Ping unanswered for %.1f s: the link is dead, dropping it",
                    cfg.ping_timeout,
                )
                protocol.abort()
                return

    def _on_event(self, event: dict[str, str], received_at: float) -> None:
        self.stats.last_event_at = time.monotonic()
        self._sink(event, received_at)

    def _problem(self, kind: Problem, text: str) -> None:
        self.stats.dropped[kind] = self.stats.dropped.get(kind, 0) + 1
        self._problem_log.say(kind, text)
        if self._on_problem is not None:
            self._on_problem(kind, text)

    def _ssl_context(self) -> ssl.SSLContext | None:
        return ssl_context(self.config)


def ssl_context(cfg: AmiConfig) -> ssl.SSLContext | None:
    """The TLS context for AMI over TLS ([ami] tls), None for plain TCP: the
    one definition the service, `check` and `capture` use."""
    if not cfg.tls:
        return None
    ca = cfg.tls_ca_file.expanduser() if cfg.tls_ca_file else None
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    except OSError as exc:  # ssl.SSLError too: not a PEM bundle
        # The default message names neither the file nor the setting.
        raise OSError(f"cannot use [ami] tls_ca_file {ca}: "
                      f"{getattr(exc, 'strerror', None) or _short(exc)}") from exc
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def untrusted_hint(cfg: AmiConfig) -> str:
    """What to do when Asterisk's TLS certificate is not trusted."""
    if cfg.tls_ca_file is not None:
        return (f"[ami] tls_ca_file {cfg.tls_ca_file} does not vouch for it, or [ami] host "
                f"{cfg.host!r} is not a name in the certificate")
    return ("set [ami] tls_ca_file to the CA (or the self-signed certificate) of "
            "manager.conf's tlscertfile")


class ProblemLog:
    """A rate-limited WARNING per reason: the first at once, then at most one
    every `every` seconds, saying how many more there were meanwhile."""

    def __init__(self, every: float = PROBLEM_LOG_EVERY,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._throttle = Throttle(every, monotonic)

    def say(self, kind: str, text: str) -> bool:
        more = self._throttle.allow(kind)
        if more is None:
            return False
        log.warning("AMI input %s: %s%s", kind, text,
                    f" ({more} more since the last warning)" if more else "")
        return True


def backoff_wait(delay: float, maximum: float, rand: float) -> float:
    """Seconds before the next reconnect: `delay` (capped at `maximum`) with
    +-20 % jitter, never above `maximum` (`rand` in [0, 1))."""
    return min(min(delay, maximum) * (0.8 + 0.4 * rand), maximum)


def _drop(connecting: asyncio.Task[MiitelAmiProtocol | BaseException | str]) -> None:
    """A connect abandoned half-way: cancel it, or close what it got."""
    if not connecting.done():
        connecting.cancel()  # it aborts its own link
    elif (not connecting.cancelled() and connecting.exception() is None
          and isinstance(got := connecting.result(), MiitelAmiProtocol)):
        got.abort()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
