"""Moves each queued call through its states until MiiTel has it.

    waiting_recording --(file closed, converted)--> ready
    ready --(POST: written as `posting` first)--> created
    created --(PUT 200)--> uploaded

Every step is persisted before the next network call. Failures decide by
error class alone (miitel.errors): retry with backoff what is safe to
repeat, set aside at once what a person must look at, and never repeat a
POST whose outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..miitel.client import MiitelClient
from ..miitel.errors import (
    MiitelError,
    NotSent,
    OutcomeUnknown,
    Permanent,
    RetryableAnswer,
    ServerError,
    UploadExpired,
    UploadForbidden,
)
from ..recordings import (
    AllowedDirs,
    InsufficientDiskSpace,
    OutsideRecordingDirs,
    PreparedAudio,
    RecordingError,
    RecordingMissing,
    RecordingWatcher,
    disk_space_problem,
    prepare_async,
)
from ..recordings.allowed import map_path
from ..recordings.spec import is_own_leg
from .audio import AudioPlan
from .states import SetAsideCode, State
from .store import Outbox, OutboxFull, Row

log = logging.getLogger("asterisk_miitel.calls")

UPLOAD_WINDOW = 3 * 3600.0  # MiiTel's upload URLs live 3 hours
UPLOAD_MARGIN = 120.0  # stop trying this long before the URL dies
RETRY_AFTER_CAP = 3600.0
VOICEMAIL_EXTENSIONS = (".wav", ".WAV", ".gsm", ".wav49", ".mp3")


@dataclass
class SenderStats:
    posted: int = 0
    uploaded: int = 0
    retries: int = 0
    set_aside: int = 0
    upload_bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # hangup -> upload 200, seconds
    by_outcome: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


Observer = Callable[[str, Row, dict[str, Any]], None]


@dataclass(slots=True)
class _Backoff:
    """A call whose last step raised an error no step expects (a bug, an odd row)."""

    error: str
    step: int
    until: float


class Sender:
    def __init__(
        self,
        config: Config,
        outbox: Outbox,
        watcher: RecordingWatcher,
        client: MiitelClient | None,
        *,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.watcher = watcher
        self.client = client
        self.stats = SenderStats()
        self._clock = clock
        self._observer = observer
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._upload_slots = asyncio.Semaphore(config.miitel.upload_concurrency)
        self._convert_slots = asyncio.Semaphore(2)  # CPU and disk bound: two at a time
        self._warned_no_url = False
        self._last_disk_warning = 0.0
        self._last_full_warning = 0.0
        # Only files under [recordings] dirs / the voicemail spool are opened,
        # uploaded or deleted: names come from AMI, which anyone may write to.
        self.allowed = AllowedDirs.from_config(config)
        self._delete_warned: set[str] = set()  # folders we could not delete in
        # Calls whose step raised unexpectedly: not picked again before `until`,
        # and the same error is logged once per step, never once per loop.
        self._backoff: dict[str, _Backoff] = {}

    # -- control ----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        """Pick due calls and work on them until stop()."""
        while not self._stopping:
            self._wake.clear()
            now = self._clock()
            free = 200 - len(self._in_flight)
            started = 0
            if free > 0:
                resting = {i for i, b in self._backoff.items() if b.until > now}
                for row in await self.outbox.due(now, free, exclude={*self._in_flight, *resting}):
                    if row.state == "ready" and self.client is None:
                        self._say_no_url()
                        continue
                    task = asyncio.create_task(self._process(row.id), name=f"call {row.id}")
                    self._in_flight[row.id] = task
                    task.add_done_callback(lambda t, i=row.id: self._done(i, t))
                    started += 1
            next_at = await self.outbox.next_due_at()
            now = self._clock()
            if next_at is not None and next_at <= now and not started:
                # Every due call is in flight, resting after an error, or waiting for a
                # webhook URL: sleep until a rest ends (or a call finishes and wakes us).
                ends = [b.until - now for b in self._backoff.values() if b.until > now]
                delay = min([5.0, *ends])
            else:
                delay = 5.0 if next_at is None else min(5.0, max(0.05, next_at - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def stop(self, deadline: float) -> None:
        """Take no new work; let in-flight steps finish for `deadline` seconds."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._in_flight.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning(
                    "stopped with %d call(s) mid-step; they resume from the outbox on restart "
                    "(a POST cut short is set aside as outcome unknown)", len(pending)
                )

    # Unexpected errors back off per call: 1 s, 2 s, 4 s ... up to 5 minutes.
    unexpected_base = 1.0
    unexpected_max = 300.0

    def _done(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(call_id, None)
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            self._backoff.pop(call_id, None)
        else:
            self._unexpected(call_id, exc)
        self._wake.set()

    def _unexpected(self, call_id: str, exc: BaseException) -> None:
        """One line per backoff step; the traceback when the error is new."""
        error = f"{type(exc).__name__}: {exc}"
        last = self._backoff.get(call_id)
        same = last is not None and last.error == error
        step = last.step + 1 if same and last is not None else 1
        delay = min(self.unexpected_max, self.unexpected_base * 2 ** min(step - 1, 16))
        self._backoff[call_id] = _Backoff(error, step, self._clock() + delay)
        if same:
            log.error("call %s: unexpected error again (%d times): %s; next try in %.0f s",
                      call_id, step, error, delay)
        else:
            log.error("call %s: unexpected error %s; it stays at its last saved step, next try "
                      "in %.0f s", call_id, error, delay, exc_info=exc)

    def _say_no_url(self) -> None:
        if not self._warned_no_url:
            self._warned_no_url = True
            log.warning(
                "no MiiTel webhook URL is configured (miitel.webhook_url or MIITEL_WEBHOOK_URL):"
                " calls are prepared and wait in the outbox until one is set"
            )

    # -- one call -----------------------------------------------------------------------

    async def _process(self, call_id: str) -> None:
        try:
            row = await self.outbox.get(call_id)
            while row is not None and not self._stopping:
                if row.state == "waiting_recording":
                    async with self._convert_slots:
                        await self._prepare(row)
                elif row.state == "ready":
                    if self.client is None or row.next_attempt_at > self._clock():
                        return
                    await self._post(row)
                elif row.state == "created":
                    if row.next_attempt_at > self._clock():
                        return
                    async with self._upload_slots:
                        await self._upload(row)
                else:
                    return
                new = await self.outbox.get(call_id)
                if new is None or new.state == row.state:
                    return  # rescheduled: run() picks it up again when due
                row = new
        except OutboxFull as exc:
            now = self._clock()
            if now - self._last_full_warning > 60:  # the service says it loudly, once
                self._last_full_warning = now
                log.warning("call %s: %s; it stays at its last saved step", call_id, exc)
            await asyncio.sleep(5)

    async def _prepare(self, row: Row) -> None:
        plan = AudioPlan.from_dict(row.audio)
        if not plan.expect_audio:
            await self._save(row.id, state="ready", prepared=None)
            return
        try:
            if plan.voicemail:  # refused before we even look for its files
                self.allowed.check(map_path(plan.file, self.config))
            file = await self._voicemail_file(plan) if plan.voicemail else plan.file
            spec = _mapped(plan.spec(file), self.config)
            self.allowed.check_all(spec.paths)
            waited = await self.watcher.closed(
                spec.paths, timeout=self.config.recordings.wait_timeout, channel_gone=True
            )
            self._check_disk()
            prepared = await prepare_async(
                spec, self.config.recordings.work_dir,
                reserve_bytes=self.config.recordings.min_free_mb * 1024 * 1024,
                allowed=self.allowed,
            )
        except InsufficientDiskSpace as exc:
            await self._retry(row, f"waiting for disk space: {exc}", None,
                              state="waiting_recording")
            return
        except RecordingError as exc:
            await self._aside(row, "recording", str(exc))
            return
        notes = list(prepared.warnings)
        if not waited.finished and waited.reason:
            notes.append(waited.reason)
        call_data = _finalise(row.call_data, prepared)
        await self._save(
            row.id,
            state="ready",
            call_data=call_data,
            prepared=_prepared_dict(prepared),
            notes=[*row.notes, *notes],
            last_error=None,
            attempts=0,
            next_attempt_at=0,
        )
        for note in notes:
            log.warning("call %s: %s", row.id, note)

    async def _voicemail_file(self, plan: AudioPlan) -> str:
        """VM_MESSAGEFILE names the message without its extension: find the file."""
        names = [plan.file + ext for ext in VOICEMAIL_EXTENSIONS]
        if Path(plan.file).suffix:
            names.insert(0, plan.file)
        deadline = self._clock() + self.config.recordings.wait_timeout
        while True:
            for name in names:
                local = map_path(name, self.config)
                if self.allowed.permits(local) and await asyncio.to_thread(os.path.isfile, local):
                    return name
            if self._clock() >= deadline:
                raise RecordingMissing(
                    plan.file,
                    f"the voicemail message {plan.file}.* was not found: check that the "
                    "service can read Asterisk's voicemail spool (same path, asterisk group)",
                )
            await asyncio.sleep(0.5)

    async def _post(self, row: Row) -> None:
        assert self.client is not None and row.call_data is not None
        await self.outbox.mark_posting(row.id)
        try:
            url = await self.client.create_call_history(row.call_data)
        except ServerError as exc:
            if self.config.miitel.resend_on_server_error:  # the site confirmed it is safe
                await self._retry(row, str(exc), exc.retry_after, state="ready")
                return
            await self._aside(
                row, "outcome_unknown",
                f"{exc}: a server error may come after MiiTel created the call history, so it "
                f"is not sent again by itself. Check MiiTel, then `asterisk-miitel retry --force "
                f"{row.id}` if it is missing (or set [miitel] resend_on_server_error = true once "
                "MiiTel is known to ignore a repeated call_data_id)",
            )
            return
        except OutcomeUnknown as exc:
            # The message says what came back (nothing, or a 2xx without a URL).
            await self._aside(
                row, "outcome_unknown",
                f"{exc}: MiiTel may or may not have this call history. Check MiiTel, then "
                f"`asterisk-miitel retry --force {row.id}` if it is missing",
            )
            return
        except (NotSent, RetryableAnswer) as exc:
            await self._retry(row, str(exc), getattr(exc, "retry_after", None), state="ready")
            return
        except Permanent as exc:  # the message already quotes MiiTel's answer
            await self._aside(row, "rejected", f"MiiTel refused the call history: {exc}")
            return
        except MiitelError as exc:  # any other class is treated as the worst case
            await self._aside(row, "outcome_unknown", f"unexpected error while posting: {exc}")
            return
        self.stats.posted += 1
        await self._save(
            row.id,
            state="created",
            upload_url=url,
            upload_expires_at=self._clock() + UPLOAD_WINDOW,
            attempts=0,
            next_attempt_at=0,
            last_error=None,
        )

    async def _upload(self, row: Row) -> None:
        now = self._clock()
        if row.prepared is None:  # a missed call: no audio to send
            await self._finish(row, "sent", "sent without audio (missed call)", 0)
            return
        expires = row.upload_expires_at or 0.0
        if now >= expires - UPLOAD_MARGIN:
            await self._expired(row)
            return
        assert self.client is not None and row.upload_url is not None
        path = row.prepared["path"]
        if not row.prepared.get("converted") and not self.allowed.permits(path):
            # Sent as it is, so it is Asterisk's file: the rule again, just before the read.
            await self._aside(row, "recording", self.allowed.refusal(path))
            return
        try:
            sent = await self.client.upload_recording(
                row.upload_url, path, row.prepared["file_type"], expires_at=expires
            )
        except UploadExpired:
            await self._expired(row)
            return
        except UploadForbidden as exc:
            await self._aside(row, "upload_refused", f"the upload URL was refused: {exc}")
            return
        except (NotSent, RetryableAnswer, OutcomeUnknown) as exc:
            # A PUT may be repeated: it replaces the file.
            delay = await self._retry(
                row, str(exc), getattr(exc, "retry_after", None), state="created"
            )
            if self._clock() + delay >= expires - UPLOAD_MARGIN:
                await self._expired(row)
            return
        except Permanent as exc:
            await self._aside(row, "upload_refused", f"the recording cannot be sent: {exc}")
            return
        except OSError as exc:
            await self._aside(
                row, "recording", f"the recording {path} could not be read for upload: {exc}"
            )
            return
        await self._finish(row, "uploaded", None, sent)
        # A recording cut at a transfer is several calls on one file: its
        # files go only once no other of them still needs them.
        shared = await self.outbox.file_needed_by_others(row.file, row.id)
        await asyncio.to_thread(self._cleanup, row, shared)

    async def _finish(self, row: Row, state: State, reason: str | None, sent: int) -> None:
        now = self._clock()
        await self._save(
            row.id, state=state, reason=reason, uploaded_at=now, upload_url=None,
            next_attempt_at=0, last_error=None,
        )
        self.stats.uploaded += 1
        self.stats.upload_bytes += sent
        latency = now - row.ended_at if row.ended_at else None
        if latency is not None:
            self.stats.latencies.append(latency)
            del self.stats.latencies[:-1000]
        self.stats.count(state)
        cd = row.call_data or {}
        duration = _duration(cd)
        log.info(
            "call %s %s %s: %s%s%s",
            row.id,
            cd.get("event_type", "?"),
            f"{duration:.1f}s" if duration is not None else "-",
            state,
            f" {sent} bytes" if sent else "",
            f", {latency:.2f}s after hangup" if latency is not None else "",
        )
        self._notify(state, row, {"latency": latency, "bytes": sent})

    async def _expired(self, row: Row) -> None:
        await self._aside(
            row, "upload_expired",
            "upload window expired: MiiTel's upload URL lives 3 hours and the recording was not "
            "uploaded in time. MiiTel has the call history without audio; `asterisk-miitel retry "
            f"--force {row.id}` creates a new one with the audio",
        )

    async def _aside(self, row: Row, code: SetAsideCode, reason: str) -> None:
        await self._save(row.id, state="set_aside", reason_code=code, reason=reason)
        self.stats.set_aside += 1
        self.stats.count(f"set_aside:{code}")
        cd = row.call_data or {}
        log.warning("call %s %s: set aside (%s): %s", row.id, cd.get("event_type", "?"), code,
                    reason)
        self._notify("set_aside", row, {"code": code})

    async def _retry(
        self, row: Row, error: str, retry_after: float | None, *, state: State
    ) -> float:
        attempts = row.attempts + 1
        cfg = self.config.miitel
        delay = min(cfg.retry_max, cfg.retry_base * 2 ** min(attempts - 1, 16))
        delay *= random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        await self._save(
            row.id, state=state, attempts=attempts, next_attempt_at=self._clock() + delay,
            last_error=error,
        )
        self.stats.retries += 1
        log.info("call %s: %s; retry %d in %.1f s", row.id, error, attempts, delay)
        self._notify("retry", row, {"delay": delay})
        return delay

    async def _save(self, call_id: str, **fields: Any) -> None:
        """Persist a step. A full disk must not lose what MiiTel already
        answered (an upload URL, a 200): keep trying until it is written."""
        delay = 1.0
        while True:
            try:
                await self.outbox.update(call_id, **fields)
                return
            except OutboxFull as exc:
                if self._stopping:
                    raise
                now = self._clock()
                if now - self._last_full_warning > 60:
                    self._last_full_warning = now
                    log.warning("call %s: %s; retrying the write", call_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _cleanup(self, row: Row, shared: bool = False) -> None:
        """After MiiTel's 200 (blocking): our converted WAV; the r()/t() legs
        our dialplan wrote, whatever delete_after_upload says (they exist only
        for us to merge); Asterisk's own files only with delete_after_upload.
        Never a voicemail message (the mailbox owns it), never a file outside
        the path rule, never a symlink's target. A failure costs a warning,
        never the call: it is uploaded."""
        assert row.prepared is not None
        if row.prepared.get("converted"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(row.prepared["path"])
        plan = AudioPlan.from_dict(row.audio)
        if plan.voicemail or shared:
            return
        legs = [p for p in (plan.receive, plan.transmit) if p]
        doomed = [p for p in legs if is_own_leg(p)]
        if self.config.recordings.delete_after_upload:
            doomed += [plan.file, *legs]
        for path in dict.fromkeys(doomed):
            local = map_path(path, self.config)
            try:
                self.allowed.unlink_file(local)
            except OutsideRecordingDirs as exc:
                log.warning("call %s: not deleted: %s", row.id, exc)
            except OSError as exc:
                folder = os.path.dirname(local)
                if folder in self._delete_warned:
                    log.debug("call %s: could not delete %s: %s", row.id, local, exc)
                    continue
                self._delete_warned.add(folder)
                log.warning(
                    "call %s: uploaded, but %s could not be deleted (%s): the service's user "
                    "needs write access to %s (group write for the asterisk group; under "
                    "systemd also ReadWritePaths=). Said once per folder",
                    row.id, local, exc.strerror or exc, folder,
                )

    def _check_disk(self) -> None:
        problem = disk_space_problem(
            self.config.recordings.work_dir,
            reserve_bytes=self.config.recordings.min_free_mb * 1024 * 1024 * 2,
        )
        now = self._clock()
        if problem and now - self._last_disk_warning > 300:
            self._last_disk_warning = now
            log.warning("disk space is low: %s", problem)

    def _notify(self, what: str, row: Row, info: dict[str, Any]) -> None:
        if self._observer is not None:
            self._observer(what, row, info)


# -- helpers ---------------------------------------------------------------------------


def _mapped(spec: Any, config: Config) -> Any:
    if not config.recordings.path_map:
        return spec
    from dataclasses import replace

    return replace(
        spec,
        file=map_path(spec.file, config),
        receive=map_path(spec.receive, config) if spec.receive else None,
        transmit=map_path(spec.transmit, config) if spec.transmit else None,
    )


def _finalise(call_data: dict[str, Any] | None, prepared: PreparedAudio) -> dict[str, Any]:
    """The real file decides audio_file_type and audio_channel_type."""
    assert call_data is not None
    data = dict(call_data)
    data["audio_file_type"] = prepared.file_type
    data["audio_channel_type"] = prepared.channel_type
    if prepared.channel_type == "MONAURAL":
        data["participants"] = [
            {**p, "stereo_lr": "left" if p["type"] == "FROM" else "right"}
            for p in data["participants"]
        ]
    return data


def _prepared_dict(prepared: PreparedAudio) -> dict[str, Any]:
    return {
        "path": prepared.path,
        "file_type": prepared.file_type,
        "channel_type": prepared.channel_type,
        "duration": prepared.duration,
        "converted": prepared.converted,
        "size_bytes": prepared.size_bytes,
        "warnings": list(prepared.warnings),
    }


def _duration(call_data: dict[str, Any]) -> float | None:
    from datetime import datetime

    try:
        start = call_data.get("call_answered_at") or call_data["call_starts_at"]
        return (
            datetime.fromisoformat(call_data["call_ends_at"]) - datetime.fromisoformat(start)
        ).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None
