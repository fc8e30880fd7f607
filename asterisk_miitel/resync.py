"""Brings the tracker back in step with Asterisk whenever AMI (re)connects.

Events tell the tracker what happens while AMI is up. What happened while it
was not (the link dropped, the service was down, Asterisk restarted) is
asked for on each connect, in this order:

- CoreSettings: the PBX's SystemName, the pbx id in call_data_id (only when
  neither the config nor the outbox has one yet);
- CoreStatus: when Asterisk started; a new start time means it restarted, so
  every open recording ends there, truncated, and no channel state is live;
- CoreShowChannels: the live channels. Known channels no longer listed hung
  up during the gap (CallTracker.reconcile); calls journaled before a
  service restart resume or finish (calls/restore.py);
- Getvar MIXMONITOR_FILENAME on each live channel with no recording: one
  that started while we were away is tracked from now on.

Then CoreShowChannels again every RESYNC_EVERY seconds: a missed Hangup must
not keep a call open for ever. Events after a channel list are held back
until the tracker has taken the list in, so no call moves on in between.

`Resync` gets its collaborators (tracker, outbox, journal, hooks that open,
close and time calls) from the service, which calls `connected` and
`disconnected` from its AMI session hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .calls.restore import restore

if TYPE_CHECKING:
    from .ami.listener import AmiSession
    from .calls.journal import Journal
    from .calls.state import Recording
    from .calls.tracker import CallTracker
    from .outbox.store import Outbox

log = logging.getLogger("asterisk_miitel.service")

RESYNC_EVERY = 300.0  # seconds between CoreShowChannels checks for missed hangups


class Resync:
    def __init__(
        self,
        tracker: CallTracker,
        outbox: Outbox,
        journal: Journal,
        *,
        now: Callable[[], float],
        opened: Callable[[Recording], None],
        closed: Callable[[Recording], None],
        journal_changed: Callable[[], None],
        audio_seconds: Callable[[Recording], float | None],
        pbx_id_learned: Callable[[str], None],
        ami_host: str,
    ) -> None:
        self.tracker = tracker
        self.outbox = outbox
        self.journal = journal
        self._now = now  # Asterisk's clock (CallTracker.asterisk_time)
        self._opened = opened  # an adopted recording: expect its files
        self._closed = closed  # a finished one: queue it like any closed recording
        self._journal_changed = journal_changed
        self._audio_seconds = audio_seconds  # how much audio a recording's file holds
        self._pbx_id_learned = pbx_id_learned
        self._ami_host = ami_host  # names the PBX when Asterisk gives no SystemName
        # When AMI went down; None while connected (and before the first connect).
        self.gap_started: float | None = None
        # Journal entries from before a restart, resumed or finished once AMI is up.
        self._orphans: list[tuple[str, dict[str, Any], float]] = []
        self._last_alive: float | None = None

    # -- journal from before a restart ------------------------------------------------

    async def load_journal(self) -> None:
        """At start: what was in progress when the service last stopped."""
        alive = await self.outbox.get_meta("alive_at")
        self._last_alive = float(alive) if alive else None
        self._orphans = await self.outbox.journaled()
        if self._orphans:
            log.info("%d call(s) were in progress when the service stopped: resuming them "
                     "once Asterisk says which are still up", len(self._orphans))

    def will_resume(self, file: str) -> bool:
        """Is this recording journaled, to be resumed or finished on connect?"""
        return any(k == file for k, _d, _t in self._orphans)

    def _resume_orphans(self, live_ids: set[str], pbx_restarted: bool) -> None:
        if not self._orphans:
            return
        adopted, finished, bad = restore(
            self._orphans, self.tracker, self.journal, live_ids,
            pbx_restarted=pbx_restarted, last_alive=self._last_alive, now=self._now(),
            audio_seconds=self._audio_seconds,
        )
        self._orphans = []
        for rec in adopted:
            self._opened(rec)
        for rec in finished:
            self._closed(rec)
        for key in bad:
            log.error("journal entry %s cannot be read: left for catch-up", key)
        self._journal_changed()

    # -- AMI session ------------------------------------------------------------------

    @property
    def in_gap(self) -> bool:
        return self.gap_started is not None

    def disconnected(self) -> None:
        if self.gap_started is None:
            self.gap_started = self._now()

    async def connected(self, session: AmiSession, *, learn_pbx_id: bool) -> None:
        """Catch the tracker up with Asterisk after a connect (see the module's
        docstring). Raises TimeoutError or ConnectionError if AMI fails us."""
        gap = self.gap_started
        self.gap_started = None
        if learn_pbx_id:
            await self._learn_pbx_id(session)
        restarted = await self._pbx_restarted(session)
        at = gap if gap is not None else self._now()
        if restarted and self.tracker.recordings:
            for rec in self.tracker.close_all("pbx_restart", at):
                rec.notes.append("truncated by PBX restart: Asterisk restarted during the call")
            self.tracker.forget_all()
        live = await self._live_channels(session, hold=True)
        try:
            closed = self.tracker.reconcile(live, at)
            if closed:
                log.warning(
                    "%d recording(s) ended while AMI was disconnected; finished from what "
                    "was known", len(closed),
                )
            self._resume_orphans({ev.get("Uniqueid", "") for ev in live}, restarted)
            await self._discover_recordings(session, live)
        finally:
            session.release()

    async def keep_in_step(self, session: AmiSession) -> None:
        """Reconcile with CoreShowChannels every RESYNC_EVERY s, while the session lasts."""
        while True:
            await asyncio.sleep(RESYNC_EVERY)
            # Held: a channel born after the list must not look hung up.
            live = await self._live_channels(session, hold=True)
            try:
                self.tracker.reconcile(live, self._now())
            finally:
                session.release()

    async def _discover_recordings(self, session: AmiSession, live: list[dict[str, str]]) -> None:
        """Recordings that started while we were away: ask each live channel."""
        for ev in live:
            uid = ev.get("Uniqueid", "")
            ch = self.tracker.channels.get(uid)
            if ch is None or ch.recordings:
                continue
            reply = await session.action(
                {"Action": "Getvar", "Channel": ev.get("Channel", ""),
                 "Variable": "MIXMONITOR_FILENAME"}
            )
            file = reply.get("Value", "") if hasattr(reply, "get") else ""
            if not file or file == "(null)" or await self.outbox.has_file(file):
                continue
            rec = self.tracker.discovered(uid, file, self._now())
            if rec is not None:
                log.info("found recording %s running on %s: tracking it", file, ch.name)

    async def _live_channels(
        self, session: AmiSession, hold: bool = False
    ) -> list[dict[str, str]]:
        reply = await session.action({"Action": "CoreShowChannels"}, as_list=True, hold=hold)
        if not isinstance(reply, list):
            raise ConnectionError(f"CoreShowChannels refused: {reply.get('Message', reply)}")
        return [dict(m) for m in reply if m.get("Event") == "CoreShowChannel"]

    async def _learn_pbx_id(self, session: AmiSession) -> None:
        name = ""
        with contextlib.suppress(TimeoutError, ConnectionError):
            reply = await session.action({"Action": "CoreSettings"})
            name = reply.get("SystemName", "") if hasattr(reply, "get") else ""
        pbx_id = _clean_id(name) or _clean_id(f"asterisk-{self._ami_host}")
        await self.outbox.set_meta("pbx_id", pbx_id)
        self._pbx_id_learned(pbx_id)
        log.info("PBX id for call_data_id: %s", pbx_id)

    async def _pbx_restarted(self, session: AmiSession) -> bool:
        try:
            reply = await session.action({"Action": "CoreStatus"})
        except (TimeoutError, ConnectionError):
            return False
        if not hasattr(reply, "get") or reply.get("Response") != "Success":
            return False
        started = f"{reply.get('CoreStartupDate', '')} {reply.get('CoreStartupTime', '')}".strip()
        previous = await self.outbox.get_meta("pbx_started")
        if started and started != previous:
            await self.outbox.set_meta("pbx_started", started)
        return bool(previous and started and started != previous)


def _clean_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "-", text.strip())[:64].strip("-")
