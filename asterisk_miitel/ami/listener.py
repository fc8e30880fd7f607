"""Keeps one AMI session alive: connect, log in, watch the link, reconnect.

What panoramisk's Manager does not do, and we need:
- a Ping that is not answered within `ping_timeout` drops the link (a dead
  TCP connection otherwise goes unnoticed for hours);
- reconnects back off exponentially with jitter, and a refused login is said
  once, clearly, and retried slowly instead of every 2 seconds forever;
- no dependency on `FullyBooted`, which Asterisk sends only to read=system.
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
from .parser import PROBLEMS, OnProblem, Problem
from .protocol import EventSink, MiitelAmiProtocol

log = logging.getLogger(__name__)

# Dropped input is said at most once a minute per reason (an attacker or a
# broken peer must not flood the log); the counts are in /metrics.
PROBLEM_LOG_EVERY = 60.0


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
            return await asyncio.wait_for(future, self._timeout)
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

    # -- public -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected until stop()."""
        delay = self.config.reconnect_min
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
                await asyncio.wait_for(self._stopping.wait(), wait)
            delay = min(delay * 2, self.config.reconnect_max)

    async def stop(self) -> None:
        self._stopping.set()
        if self._protocol is not None:
            self._protocol.close()

    async def wait_connected(self) -> None:
        await self._connected_event.wait()

    def abort_connection(self) -> None:
        """Drop the current connection (tests; a `check` that wants a fresh one)."""
        if self._protocol is not None:
            self._protocol.abort()

    # -- one connection -----------------------------------------------------------

    async def _one_session(self) -> BaseException | str:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        loop = asyncio.get_running_loop()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: MiitelAmiProtocol(self._on_event, self._problem),
                    cfg.host,
                    cfg.port,
                    ssl=self._ssl_context(),
                    server_hostname=cfg.host if cfg.tls else None,
                ),
                cfg.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            return f"connection to {where} failed ({_short(exc)})"
        self._protocol = protocol
        self.stats.connects += 1
        try:
            await asyncio.wait_for(protocol.banner, cfg.connect_timeout)
            self.stats.version = protocol.version
            await self._login(protocol)
        except LoginRefused as exc:
            protocol.close()
            self.stats.login_failures += 1
            return exc
        except (OSError, TimeoutError, ConnectionError) as exc:
            protocol.abort()
            return f"session with {where} failed before login ({_short(exc)})"
        log.info("AMI connected to %s (Asterisk Call Manager %s)", where, protocol.version)
        self.stats.connected = True
        self.stats.connected_since = time.time()
        self._connected_event.set()
        pinger = asyncio.create_task(self._ping_loop(protocol))
        versioner = asyncio.create_task(self._learn_version(protocol))
        hook: asyncio.Task[None] | None = None
        on_connected = self._on_connected
        if on_connected is not None:
            session = AmiSession(protocol, cfg.ping_timeout * 4)
            hook = self._spawn("resync", lambda: on_connected(session))
        try:
            exc = await protocol.lost
        finally:
            pinger.cancel()
            versioner.cancel()
            if hook is not None and not hook.done():
                hook.cancel()
            self.stats.connected = False
            self._connected_event.clear()
            self._protocol = None
            if self._on_disconnected is not None:
                self._on_disconnected()
        if self._stopping.is_set():
            return "stopped"
        return f"connection to {where} lost ({_short(exc) if exc else 'closed by Asterisk'})"

    async def _login(self, protocol: MiitelAmiProtocol) -> None:
        cfg = self.config
        resp = await asyncio.wait_for(
            protocol.send_action(
                {
                    "Action": "Login",
                    "Username": cfg.username,
                    "Secret": cfg.secret.get_secret_value(),
                    "Events": "on",
                }
            ),
            cfg.connect_timeout,
        )
        if resp.get("Response") != "Success":
            raise LoginRefused(
                f"login refused for user {cfg.username!r} ({resp.get('Message', 'no reason')}):"
                " check [ami] username and secret and the user's permit/deny in manager.conf"
            )

    async def _learn_version(self, protocol: MiitelAmiProtocol) -> None:
        """Asterisk's version for /healthz (the banner only names the AMI protocol)."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            reply = await asyncio.wait_for(
                protocol.send_action({"Action": "CoreSettings"}), self.config.ping_timeout * 4)
            version = reply.get("AsteriskVersion") if hasattr(reply, "get") else None
            if version:
                self.stats.asterisk_version = str(version)

    async def _ping_loop(self, protocol: MiitelAmiProtocol) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.ping_interval)
            try:
                await asyncio.wait_for(protocol.send_action({"Action": "Ping"}), cfg.ping_timeout)
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
    """The TLS context for AMI over TLS ([ami] tls), None for plain TCP."""
    if not cfg.tls:
        return None
    ca = cfg.tls_ca_file
    ctx = ssl.create_default_context(cafile=str(ca.expanduser()) if ca else None)
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ProblemLog:
    """A rate-limited WARNING per reason: the first at once, then at most one
    every `every` seconds, saying how many more there were meanwhile."""

    def __init__(self, every: float = PROBLEM_LOG_EVERY,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.monotonic = monotonic
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}  # not logged since the last line

    def say(self, kind: str, text: str) -> bool:
        now = self.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return False
        self._last[kind] = now
        more = self._quiet.pop(kind, 0)
        log.warning("AMI input %s: %s%s", kind, text,
                    f" ({more} more since the last warning)" if more else "")
        return True


def backoff_wait(delay: float, maximum: float, rand: float) -> float:
    """Seconds before the next reconnect: `delay` (capped at `maximum`) with
    +-20 % jitter, never above `maximum` (`rand` in [0, 1))."""
    return min(min(delay, maximum) * (0.8 + 0.4 * rand), maximum)


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
