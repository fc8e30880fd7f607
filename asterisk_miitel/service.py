"""Wires the stages together and owns their tasks and shutdown.

    AmiListener --events--> CallTracker --closed recordings--> intake (classify)
      --> Outbox (SQLite) --> Sender --> MiiTel

The tracker is fed synchronously in arrival order; everything slow (SQLite,
files, HTTP) happens in tasks after it, so a busy PBX never waits for us.

On each AMI connect, Resync (resync.py) asks Asterisk what happened while we
were not listening and resumes the calls journaled before a restart
(calls/journal.py writes them, calls/restore.py reads them back); catch-up
(catchup/) then sends the calls that began and ended meanwhile, from the CDR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ami.listener import AmiListener, AmiSession
from .calls.classify import Context, Outcome, classify_segments
from .calls.journal import Journal
from .calls.restore import estimate_answer
from .calls.state import Channel, Recording
from .calls.tracker import CallTracker
from .catchup.runner import CatchUpTask
from .config import Config, ConfigError
from .intake import admit, count_queued, log_outcome
from .miitel.client import MiitelClient, Timeouts
from .ops.metrics import ServiceMetrics
from .outbox.lock import OutboxLock
from .outbox.sender import Sender
from .outbox.store import NewCall, Outbox, OutboxFull
from .recordings import AllowedDirs, RecordingWatcher, map_path, recording_seconds
from .resync import Resync
from .supervisor import Supervisor, about_call

log = logging.getLogger("asterisk_miitel.service")
calls_log = logging.getLogger("asterisk_miitel.calls")

JOURNAL_EVERY = 0.1  # seconds between journal writes (changes are coalesced)
HEARTBEAT_EVERY = 5.0  # seconds between "still alive" marks in the outbox
HELD_RETRY = 1.0  # seconds between tries to queue calls held while the outbox was full


@dataclass
class ServiceStats:
    closed: int = 0
    queued: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    set_aside_at_intake: int = 0
    duplicates: int = 0
    intake_errors: int = 0


class Service:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        listen: bool = True,
        config_path: str | None = None,
        outbox_lock: OutboxLock | None = None,
    ) -> None:
        self.config = config
        # One service per outbox (outbox/lock.py): `run` passes the lock it
        # took; otherwise start() takes it and stop() gives it back.
        self.outbox_lock = outbox_lock
        self._own_lock = False
        self.config_path = config_path  # re-read for the users map on SIGHUP
        # Read at scrape time from the stats below; fed per call by the sender.
        self.metrics = ServiceMetrics(self)
        self._http: Any = None  # aiohttp AppRunner while /healthz and /metrics are served
        self.clock = clock
        self.stats = ServiceStats()
        self.outbox = Outbox(config.outbox.path, clock=clock)
        self.watcher = RecordingWatcher(allowed=AllowedDirs.from_config(config))
        self.client: MiitelClient | None = None
        self.sender: Sender | None = None
        self.tracker = CallTracker(
            self._on_closed, self._on_opened, self._on_changed, self._on_gone
        )
        # Every long-lived task runs under it: restarted after a bug, on /healthz.
        self.supervisor = Supervisor(clock=clock)
        self.listener: AmiListener | None = (
            AmiListener(
                config.ami,
                self.tracker.feed,
                on_connected=self._on_connected,
                on_disconnected=self._on_disconnected,
                spawn=self.supervisor.start,
            )
            if listen
            else None
        )
        self.pbx_id: str | None = config.pbx.id
        self._pbx_id_known = asyncio.Event()
        self._ctx: Context | None = None  # classify's context, made once per pbx_id
        self._closed: asyncio.Queue[Recording] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        # Calls the outbox could not take yet (disk full), with their journal key.
        # Only the intake task touches it (see _intake).
        self._held: list[tuple[NewCall, str | None]] = []
        self.accepting = True
        self.journal = Journal()
        self._journal_wake = asyncio.Event()
        # On each AMI connect: what Asterisk did while we were not listening,
        # and the calls journaled before a restart.
        self.resync = Resync(
            self.tracker, self.outbox, self.journal, now=self._now,
            opened=self._on_opened, closed=self._on_closed,
            journal_changed=self._journal_wake.set, audio_seconds=self._audio_seconds,
            pbx_id_learned=self._pbx_id_learned, ami_host=config.ami.host,
        )
        # Calls that began and ended while we were not listening: from the CDR.
        self.catchup = CatchUpTask(
            config, self.outbox, pbx_id=self._catchup_pbx_id, is_live=self._catchup_is_live,
            spawn=self.supervisor.start, counter=self.metrics,
        )
        self._status_task: asyncio.Future[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.outbox_lock is None or not self.outbox_lock.held:  # OutboxLocked: nothing ran
            self.outbox_lock = OutboxLock(self.config.outbox.path).acquire()
            self._own_lock = True
        await self.outbox.open()
        unknown = await self.outbox.recover_after_crash()
        for call_id in unknown:
            calls_log.warning(
                "call %s: set aside (outcome_unknown): the service stopped mid-POST", call_id
            )
        if self.pbx_id is None:
            self.pbx_id = await self.outbox.get_meta("pbx_id")
        if self.pbx_id is not None:
            self._pbx_id_known.set()
        await self.resync.load_journal()
        await self.watcher.start()
        url = self.config.miitel.webhook_url
        if url is not None:
            headers = self.config.miitel.headers
            self.client = MiitelClient(
                url.get_secret_value(),
                extra_headers={k: v.get_secret_value() for k, v in headers.items()},
                timeouts=Timeouts(
                    connect=min(10.0, self.config.miitel.timeout),
                    post_total=self.config.miitel.timeout,
                    upload_idle=self.config.miitel.upload_idle_timeout,
                ),
                verify_tls=self.config.miitel.verify_tls,
            )
        self.sender = Sender(self.config, self.outbox, self.watcher, self.client, clock=self.clock,
                             observer=self.metrics.observe)
        supervise = self.supervisor.start
        self._tasks.append(supervise("sender", self.sender.run))
        self._tasks.append(supervise("intake", self._intake))
        self._tasks.append(supervise("journal", self._journal_writer))
        self._tasks.append(supervise("heartbeat", self._heartbeat))
        if self.listener is not None:
            self._tasks.append(supervise("ami", self.listener.run))
        if self.config.http.enabled:
            await self._start_http()
        log.info(
            "started: outbox %s, recordings watched by %s, uploads %s",
            self.config.outbox.path, self.watcher.mode,
            "on" if self.client else "off (no webhook URL)",
        )

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop taking calls, persist what is known, let in-flight steps finish."""
        if self.outbox_lock is None or not self.outbox_lock.held:
            return  # never started: the outbox is another service's
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        self.accepting = False
        if self.listener is not None:
            await self.listener.stop()
        # Recordings still open are not finished calls: their journal entries
        # stay, and the next start resumes them (or finishes them if over).
        start = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.join(), deadline)
        self.journal.snapshot_all(self.tracker.recordings.values())
        with contextlib.suppress(OutboxFull):
            await self._flush_journal()
        if self.sender is not None:
            await self.sender.stop(max(0.5, deadline - (time.monotonic() - start)))
        await self.catchup.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.supervisor.stop()  # and any other it runs (a resync, a catch-up)
        if self.client is not None:
            await self.client.close()
        await self.watcher.aclose()
        with contextlib.suppress(Exception):  # a status line must never fail a stop
            await self._write_status(stopped=True)
        await self.outbox.close()
        if self._own_lock and self.outbox_lock is not None:
            self.outbox_lock.release()  # last: nothing of ours touches the outbox after it

    async def run_until_signalled(self, deadline: float = 10.0) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Before start(): a SIGTERM while starting still ends in a clean stop.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_users)
        try:
            await self.start()
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopping: finishing in-flight work (up to %.0f s)", deadline)
            await self.stop(deadline)
            log.info("stopped")

    def reload_users(self) -> None:
        """SIGHUP: read the users map again; swap it whole, or keep the old one."""
        from .ops.users import reload_users, swap_users

        try:
            users = reload_users(self.config_path)
        except ConfigError as exc:
            log.error("users not reloaded, the current map stays: %s", exc)
            return
        log.info("%s", swap_users(self.config, users).describe())

    async def _start_http(self) -> None:
        from .ops.http import bound_port, make_app, start_http

        cfg = self.config.http
        try:
            self._http = await start_http(make_app(self, cfg, self.metrics, console=self.config),
                                          cfg.host, cfg.port)
        except OSError as exc:  # monitoring must not stop calls from being sent
            log.error("cannot serve /healthz and /metrics on %s:%d (%s): running without them",
                      cfg.host, cfg.port, exc.strerror or exc)
            return
        log.info("console on http://%s:%d/ (%s), health and metrics on /healthz and /metrics",
                 cfg.host, bound_port(self._http),
                 "retry buttons on" if cfg.console_actions else "read-only")

    # -- events -> outbox ----------------------------------------------------------------

    def _on_opened(self, rec: Recording) -> None:
        for path in (rec.file, rec.receive, rec.transmit):
            if path:
                self.watcher.expect(map_path(path, self.config))

    def _on_changed(self, rec: Recording) -> None:
        self.journal.changed(rec)
        self._journal_wake.set()

    def _on_closed(self, rec: Recording) -> None:
        self.stats.closed += 1
        if rec.resumed and rec.left and not rec.right and rec.ended is not None:
            # Resumed after a restart with no partner seen: it may have been
            # answered in the moments our journal missed. The audio tells.
            estimate_answer(rec, rec.ended, self._audio_seconds(rec))
        self.journal.closed(rec)
        self._journal_wake.set()
        self._closed.put_nowait(rec)

    def _on_gone(self, channel: Channel) -> None:
        self.journal.gone(channel)

    def _audio_seconds(self, rec: Recording) -> float | None:
        return recording_seconds(map_path(rec.file, self.config), rec.mode,
                                 self.config.recordings.sample_rate, self.watcher.allowed)

    async def _journal_writer(self) -> None:
        while True:
            await self._journal_wake.wait()
            self._journal_wake.clear()
            try:
                await self._flush_journal()
            except OutboxFull as exc:
                self._outbox_full(exc)
            await asyncio.sleep(JOURNAL_EVERY)

    async def _flush_journal(self) -> None:
        batch = self.journal.take()
        try:
            await self.outbox.journal(batch)
        except Exception:  # OutboxFull, or a bug the supervisor restarts us after
            for key, value in batch.items():  # keep them for the next try
                self.journal.pending.setdefault(key, value)
            raise

    async def _heartbeat(self) -> None:
        beat = 0.0
        while True:
            with contextlib.suppress(OutboxFull):
                if time.monotonic() - beat >= HEARTBEAT_EVERY:
                    await self.outbox.set_meta("alive_at", repr(self.clock()))
                    await self._write_status()
                    connected = bool(self.listener is not None and self.listener.stats.connected
                                     and not self.resync.in_gap)
                    await self.catchup.heartbeat(self._now(), connected)
                    beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_EVERY)

    def _status_soon(self) -> None:
        """AMI went up or down: `status` should know now, not at the next heartbeat."""
        async def write() -> None:
            with contextlib.suppress(Exception):  # closed outbox at stop, disk full
                await self._write_status()

        self._status_task = asyncio.ensure_future(write())

    async def _write_status(self, stopped: bool = False) -> None:
        """For `status` and `calls`, which read the outbox, not this process."""
        from .ops.calls import META_SERVICE, service_heartbeat

        ami = None
        if self.listener is not None:
            s = self.listener.stats
            ami = {"connected": s.connected, "since": s.connected_since, "version": s.version,
                   "host": f"{self.config.ami.host}:{self.config.ami.port}"}
        await self.outbox.set_meta(META_SERVICE, service_heartbeat(
            os.getpid(), self.clock(), ami, self.client is not None, stopped=stopped))

    async def _intake(self) -> None:
        """The one writer of new calls into the outbox.

        It alone owns the held list (calls the outbox could not take yet):
        it tries them again with each new call and every HELD_RETRY seconds,
        so no two flushes ever race over the same held call."""
        while True:
            rec = await self._next_closed()
            try:
                if rec is not None:
                    await self._hold(rec)
                with contextlib.suppress(OutboxFull):  # held, said once by _outbox_full
                    await self._flush_held()
            finally:
                if rec is not None:
                    self._closed.task_done()

    async def _next_closed(self) -> Recording | None:
        """The next closed recording; None after HELD_RETRY s when calls are held."""
        if not self._held:
            return await self._closed.get()
        try:
            return await asyncio.wait_for(self._closed.get(), HELD_RETRY)
        except TimeoutError:
            return None

    async def _hold(self, rec: Recording) -> None:
        """Assemble the call (classify, [send] rules) and put it in line for the outbox."""
        try:
            await self._pbx_id_known.wait()
            assert self.pbx_id is not None
            ctx = self._ctx
            if ctx is None or ctx.pbx_id != self.pbx_id:
                ctx = self._ctx = Context(self.config, self.pbx_id, self.config.pbx.tz())
            outcomes = classify_segments(rec, ctx)  # one per conversation (transfers)
            for n, outcome in enumerate(outcomes, 1):
                # The journal entry goes with the last piece: a crash between
                # pieces finishes the recording again, and the pieces already
                # queued are refused as duplicates.
                self._queue(outcome, closes=n == len(outcomes))
        except Exception:  # this call's bug: the next call goes on
            self.stats.intake_errors += 1
            log.exception("could not assemble the call for %s", rec.file)

    def _queue(self, outcome: Outcome, *, closes: bool = True) -> None:
        """Intake ([send] rules, id, state: intake.py), then in line for the outbox."""
        call = admit(outcome, "live", pbx_id=self.pbx_id or "", config=self.config)
        if call.state == "skipped":
            reason = call.reason or ""
            self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
        elif call.state == "set_aside":
            self.stats.set_aside_at_intake += 1
        log_outcome(call)
        for note in outcome.notes:
            calls_log.warning("call %s: %s", call.id, note)
        self._held.append((call, outcome.file if closes else None))

    async def _flush_held(self) -> None:
        """Queue held calls in order. OutboxFull leaves them held (in memory).
        Only the intake task calls it."""
        while self._held:
            call, closes = self._held[0]
            try:
                with about_call(call.id):
                    added = await self.outbox.add(call, closes=closes)
            except OutboxFull as exc:
                self._outbox_full(exc)
                raise
            self._held.pop(0)
            if added:
                self.stats.queued += 1
                # Skipped by [send] or set aside before the sender ever saw it
                # (a missing user, the commonest case): the sender counts the rest.
                count_queued(call, self.metrics)
            else:
                self.stats.duplicates += 1
                log.info("call %s was already in the outbox: not queued twice", call.id)
        if not self.accepting:
            self.accepting = True
            log.warning("the outbox can be written again: every held call is queued")
        if self.sender is not None:
            self.sender.wake()

    def _outbox_full(self, exc: OutboxFull) -> None:
        """Said once per episode, loudly; calls wait in memory meanwhile."""
        if self.accepting:
            self.accepting = False
            log.critical(
                "%s: the disk holding the outbox is full; finished calls are held in memory "
                "(%d now) and nothing new is written until it has room", exc, len(self._held),
            )

    # -- AMI session hooks ------------------------------------------------------------

    async def _on_connected(self, session: AmiSession) -> None:
        self._status_soon()
        try:
            await self.resync.connected(session, learn_pbx_id=self.pbx_id is None)
            await self.catchup.connected(self._now())
            await self.resync.keep_in_step(session)  # until the session ends
        except (TimeoutError, ConnectionError) as exc:
            log.warning("AMI resync after connect failed: %s", exc)

    def _pbx_id_learned(self, pbx_id: str) -> None:
        self.pbx_id = pbx_id
        self._pbx_id_known.set()

    async def _catchup_pbx_id(self) -> str:
        await self._pbx_id_known.wait()
        assert self.pbx_id is not None
        return self.pbx_id

    def _catchup_is_live(self, file: str) -> bool:
        """Live tracking follows this recording (or will resume it): not catch-up's."""
        return file in self.tracker.recordings or self.resync.will_resume(file)

    def _on_disconnected(self) -> None:
        self._status_soon()
        self.catchup.disconnected()
        self.resync.disconnected()

    def _now(self) -> float:
        """Now, on Asterisk's clock (event times), so times of one call never mix clocks."""
        return self.tracker.asterisk_time(self.clock())
