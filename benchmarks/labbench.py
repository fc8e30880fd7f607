"""2, 4 and 6: on the real Asterisk 22 lab (tests/lab), with sipp phones.

One lab start serves all three (Lab.start() takes the machine-wide lock;
another engineer's test run may hold it: a full run waits for it, a smoke
run waits 20 s and then reports the lab rows as not measured).

2. Events per call at the source. Two fresh AMI sessions watch one call:
   `admin` (read=all, no filter) and `miitel` (the service's user: read =
   call,dialplan,agent,user and dialplan/manager_miitel.conf's filter).
   Events are counted from after both logins until the call is over and
   Asterisk idle; TestEvent (only Debian's developer-mode builds send it) is
   left out. The simple call is ext2ext (1001 -> 1002, 5 s), as in
   tests/lab/README.md's first measurement; a full run adds inbound and
   outbound.

4. Latency, hangup -> upload's 200 at the stand-in, for 30-second calls
   (smoke: 2 s): the service runs as users run it (`python -m
   asterisk_miitel run --config FILE`, the lab's `miitel` user) with the
   MiiTel stand-in in its own process; 20 ext2ext calls, one placed per
   second. Per call, on one clock (the lab runs on this machine):
     hangup     the last Hangup's Timestamp of the call (Asterisk)
     closed     close_write of the recording (inotify on Asterisk's spool)
     converted  close_write of the stereo WAV in the service's work_dir
     POST       the stand-in's received_at for the call history
     PUT 200    the stand-in's uploaded_at (just before it answers 200)
   and, as a cross-check, the service's own "N.NNs after hangup" log line.

6. Load: 200 customers call DID 0312345678 -> 1001 (sipp at 20 calls/s, 20 s
   each, so all 200 are up at once), then: every recording Asterisk
   announced (MiiTelRecording) reached the stand-in as uploaded, none lost,
   and the service's CPU time (utime + stime of its process, /proc) from
   before the first call to the last upload, per call. Smoke: 5 calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import streams
from .common import Section, cpu_seconds, median, peak_rss, percentile, python_env
from .upload import _start_standin

EVENT_TARGET = 0.25
LATENCY_TARGET = 1.0
EVENT_ROWS = (("2a", "events per simple call (ext2ext) without the filter (admin)", ""),
              ("2b", "events per simple call with the filter (miitel user)", ""),
              ("2c", "filtered / unfiltered events per simple call", "<= 25%"))
LATENCY_ROWS = (("4a", "latency hangup -> upload 200 at the stand-in, median", ""),
                ("4b", "latency hangup -> upload 200 at the stand-in, p95", "<= 1 s"),
                ("4c", "latency split, medians from the hangup: file closed, then each step", ""))
LOAD_ROWS = (("6a", "load: calls placed at once / uploaded / lost", "all, 0 lost"),
             ("6b", "load: service CPU seconds per call", ""),
             ("6c", "load: latency hangup -> upload 200 under load, median / p95", ""))


# -- calls ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """Who answers (a sipp UAS on a device) and who calls what (a sipp UAC)."""

    callee_sipp: str
    callee: str  # device: an extension of PHONES or "trunk"
    caller_sipp: str
    caller: str
    dial: str
    who: tuple[str, str]  # caller ID name, number


CALLS = {
    "ext2ext": Call("uas_answer", "1002", "uac_talk", "1001", "1002", ("Suzuki Ichiro", "1001")),
    "inbound": Call("uas_talk", "1001", "uac_silent", "trunk", "0312345678",
                    ("Tanaka Hanako", "0312349999")),
    "outbound": Call("uas_answer", "trunk", "uac_talk", "1001", "00312345678",
                     ("Suzuki Ichiro", "1001")),
}


def _ip(device: str) -> str:
    from tests.lab import PHONES, TRUNK

    return TRUNK.ip if device == "trunk" else PHONES[device].ip


def place(lab: Any, call: Call, *, calls: int = 1, rate: float | None = None,
          duration_ms: int = 5000, inf: list[list[str]] | None = None) -> None:
    """Run the calls to the end (sipp exits 0 on both sides, or this raises)."""
    limit = calls if calls > 1 else None
    budget = 60.0 + duration_ms / 1000 + calls / (rate or 1)
    callee = lab.sipp_start(call.callee_sipp, ip=_ip(call.callee), calls=calls,
                            timeout=budget)
    caller = lab.sipp(call.caller_sipp, ip=_ip(call.caller), service=call.dial,
                      inf=inf or [list(call.who)], calls=calls, rate=rate, limit=limit,
                      duration_ms=duration_ms, timeout=budget)
    caller.check()
    callee.wait().check()


# -- 2. events per call ------------------------------------------------------------------


def count_events(lab: Any, call: Call, duration_ms: int) -> tuple[int, int]:
    """(unfiltered, filtered) events one call caused, TestEvent left out."""
    miitel = lab.connect("miitel")
    admin = lab.connect("admin")
    try:
        time.sleep(0.5)  # the logins' own events (SuccessfulAuth, FullyBooted) pass first
        a0, m0 = len(admin.events), len(miitel.events)
        place(lab, call, duration_ms=duration_ms)
        lab.wait_idle()
        time.sleep(1.0)  # the last events of a hangup trail the channel's removal
        a = [m for m in admin.events[a0:] if m.event and m.event != "TestEvent"]
        f = [m for m in miitel.events[m0:] if m.event and m.event != "TestEvent"]
        return len(a), len(f)
    finally:
        admin.close()
        miitel.close()


def events_section(lab: Any, smoke: bool) -> Section:
    section = Section()
    duration = 3000 if smoke else 5000
    admin, filtered = count_events(lab, CALLS["ext2ext"], duration)
    share = filtered / admin
    section.add("2a", EVENT_ROWS[0][1], f"{admin}", "", None,
                "tests/lab/README.md's first measurement: 134")
    section.add("2b", EVENT_ROWS[1][1], f"{filtered}", "", None, "README: 23")
    section.add("2c", EVENT_ROWS[2][1], f"{share:.0%}", EVENT_ROWS[2][2], share <= EVENT_TARGET,
                f"1001 -> 1002, {duration / 1000:.0f} s, TestEvent excluded")
    if not smoke:
        for key, name, readme in (("2d", "inbound", "129 -> 25"), ("2e", "outbound", "126 -> 24")):
            a, f = count_events(lab, CALLS[name], duration)
            section.add(key, f"events per {name} call, unfiltered -> filtered", f"{a} -> {f}",
                        "<= 25%", f / a <= EVENT_TARGET, f"{f / a:.0%}; README: {readme}")
    return section


# -- the service and the stand-in ---------------------------------------------------------


class Service:
    """`python -m asterisk_miitel run --config FILE` against the lab, as users run it."""

    def __init__(self, tmp: Path, lab: Any, webhook: str) -> None:
        self.work_dir = tmp / "work"
        self.work_dir.mkdir()
        self.outbox = tmp / "outbox.sqlite3"
        self.log_path = tmp / "service.log"
        users = "\n".join(
            f'"{ext}" = {{ miitel_user_id = "{u["miitel_user_id"]}", name = "{u["name"]}"'
            + (f', endpoints = {json.dumps(u["endpoints"])}' if "endpoints" in u else "") + " }"
            for ext, u in streams.USERS.items())
        self.config = tmp / "config.toml"
        self.config.write_text(f"""
[ami]
host = "{lab.ami_host}"
port = {lab.ami_port}
username = "{lab.miitel_username}"
secret = "{lab.miitel_secret}"

[miitel]
webhook_url = "{webhook}"

[outbox]
path = "{self.outbox}"

[recordings]
work_dir = "{self.work_dir}"
min_free_mb = 0
dirs = ["{lab.recordings_dir}"]

[pbx]
id = "bench"
timezone = "Asia/Tokyo"

[users]
{users}
""")
        self.config.chmod(0o600)
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asterisk_miitel", "run", "--config", str(self.config),
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=python_env())

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_connected(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited: {self.tail()}")
            if any("AMI connected" in e.get("message", "") for e in self.log_lines()):
                time.sleep(0.5)  # its resync (CoreShowChannels, CoreStatus) follows
                return
            time.sleep(0.1)
        raise RuntimeError(f"the service did not connect to the lab's AMI: {self.tail()}")

    def latencies(self) -> dict[str, float]:
        """call_data_id -> the service's own "N.NNs after hangup"."""
        found = {}
        for e in self.log_lines():
            m = _AFTER_HANGUP.search(e.get("message", ""))
            if m:
                found[m.group(1)] = float(m.group(2))
        return found

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def peak_rss(self) -> int:
        return peak_rss(self.proc.pid)

    def states(self) -> dict[str, int]:
        with sqlite3.connect(self.outbox) as db:
            return dict(db.execute("SELECT state, count(*) FROM calls GROUP BY state").fetchall())

    def tail(self, lines: int = 8) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


_AFTER_HANGUP = re.compile(r"^call (\S+) .*?([0-9.]+)s after hangup")


def standin_calls(webhook: str) -> list[dict[str, Any]]:
    base = re.match(r"https?://[^/]+", webhook)
    assert base is not None
    with urllib.request.urlopen(base.group(0) + "/calls", timeout=10) as resp:
        calls: list[dict[str, Any]] = json.loads(resp.read())
    return calls


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


# -- 4 and 6: calls through the service ---------------------------------------------------


@dataclass
class Timing:
    file: str
    hangup: float
    closed: float | None = None
    converted: float | None = None
    post: float | None = None
    put: float | None = None
    service: float | None = None  # the service's own hangup -> 200, from its log

    @property
    def total(self) -> float | None:
        return None if self.put is None else self.put - self.hangup


@dataclass
class Batch:
    timings: list[Timing] = field(default_factory=list)
    announced: int = 0  # recordings Asterisk announced (MiiTelRecording)
    peak_channels: int = 0  # channels up at once, from Newchannel/Hangup
    uploaded: int = 0
    cpu: float = 0.0
    seconds: float = 0.0


def run_batch(lab: Any, service: Service, webhook: str, call: Call, *, calls: int,
              rate: float, duration_ms: int, inf: list[list[str]] | None = None,
              wait: float = 120.0) -> Batch:
    """Place `calls` calls, wait until the stand-in has every recording, time each."""
    from tests.lab.inotify import CloseWatcher

    watcher = CloseWatcher(lab.recordings_dir, service.work_dir)
    admin = lab.connect("admin")
    batch = Batch()
    try:
        time.sleep(0.3)
        mark = len(admin.events)
        known = {c["call_data_id"] for c in standin_calls(webhook)}
        cpu0, t0 = service.cpu(), time.monotonic()
        place(lab, call, calls=calls, rate=rate, duration_ms=duration_ms, inf=inf)
        lab.wait_idle(timeout=60)
        events = admin.events[mark:]
        files = {m.get("File"): m.get("Linkedid") for m in events
                 if m.event == "UserEvent" and m.get("UserEvent") == "MiiTelRecording"}
        batch.announced = len(files)
        up = 0
        for m in events:
            up += {"Newchannel": 1, "Hangup": -1}.get(m.event, 0)
            batch.peak_channels = max(batch.peak_channels, up)
        deadline = time.monotonic() + wait
        while True:
            new = [c for c in standin_calls(webhook) if c["call_data_id"] not in known]
            done = [c for c in new if c.get("uploaded_at")]
            if len(done) >= len(files) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        batch.cpu, batch.seconds = service.cpu() - cpu0, time.monotonic() - t0
        batch.uploaded = len(done)
        time.sleep(0.5)  # the service logs its line just after the 200
        own = service.latencies()
        hangups: dict[str, float] = {}
        for m in events:
            if m.event == "Hangup" and m.timestamp is not None:
                link = m.get("Linkedid")
                hangups[link] = max(hangups.get(link, 0.0), m.timestamp)
        by_name = {c["call_data_id"].split(":")[1]: c for c in new}
        for file, link in files.items():
            name = os.path.basename(file)
            t = Timing(file, hangups.get(link, 0.0), closed=watcher.last_close(file))
            stem = name.rsplit(".", 1)[0] + "."
            wavs = [when for when, p in watcher.closed
                    if p.startswith(str(service.work_dir)) and os.path.basename(p).startswith(stem)]
            t.converted = max(wavs) if wavs else None
            rec = by_name.get(name)
            if rec is not None:
                t.post, t.put = _epoch(rec.get("received_at")), _epoch(rec.get("uploaded_at"))
                t.service = own.get(rec["call_data_id"])
            batch.timings.append(t)
    finally:
        admin.close()
        watcher.close()
    return batch


def _secs(value: float) -> str:
    return f"{value:.3f} s"


def _split(timings: Sequence[Timing]) -> str:
    def med(fn: Callable[[Timing], float | None]) -> str:
        values = [v for t in timings if (v := fn(t)) is not None]
        return f"{round(median(values) * 1000) + 0:d}" if values else "?"  # no "-0"

    return (f"closed {med(lambda t: t.closed - t.hangup if t.closed else None)}, "
            "WAV +" + med(lambda t: t.converted - t.closed if t.converted and t.closed else None)
            + ", POST +" + med(lambda t: t.post - t.converted if t.post and t.converted else None)
            + ", PUT 200 +" + med(lambda t: t.put - t.post if t.put and t.post else None) + " ms")


def latency_section(lab: Any, service: Service, webhook: str, smoke: bool) -> Section:
    section = Section()
    calls, seconds = (2, 2) if smoke else (20, 30)
    batch = run_batch(lab, service, webhook, CALLS["ext2ext"], calls=calls, rate=1.0,
                      duration_ms=seconds * 1000)
    totals = [t.total for t in batch.timings if t.total is not None]
    if not totals:
        raise RuntimeError(f"no call reached the stand-in: {service.tail()}")
    p95 = percentile(totals, 95)
    own = [t.service for t in batch.timings if t.service is not None]
    scale = f"{len(totals)} of {calls} calls of {seconds} s, one placed per second"
    section.add("4a", LATENCY_ROWS[0][1], _secs(median(totals)), "", None, scale)
    section.add("4b", LATENCY_ROWS[1][1], _secs(p95), LATENCY_ROWS[1][2],
                p95 <= LATENCY_TARGET,
                f"max {_secs(max(totals))}; the service's own log (2 decimals): median "
                f"{median(own):.2f} s, p95 {percentile(own, 95):.2f} s" if own else "")
    section.add("4c", LATENCY_ROWS[2][1], _split(batch.timings), "", None,
                "closed: inotify on the spool; WAV: the converted file written; POST: the "
                "stand-in got the call history; PUT 200: it stored the upload")
    for t in sorted(batch.timings, key=lambda t: t.hangup):
        section.details.append(
            f"latency {os.path.basename(t.file)}: total "
            + (f"{t.total:.3f}" if t.total is not None else "?") + " s; "
            + ", ".join(f"{k} {v - t.hangup:+.3f}" for k, v in
                        (("closed", t.closed), ("wav", t.converted), ("post", t.post),
                         ("put", t.put)) if v is not None)
            + (f"; service says {t.service:.2f}" if t.service is not None else ""))
    return section


def load_section(lab: Any, service: Service, webhook: str, smoke: bool) -> Section:
    section = Section()
    calls, rate, seconds = (5, 5.0, 2) if smoke else (200, 20.0, 20)
    inf = [[f"Customer {i:03d}", f"0312{i:06d}"] for i in range(calls)]
    rss0 = service.peak_rss()
    batch = run_batch(lab, service, webhook, CALLS["inbound"], calls=calls, rate=rate,
                      duration_ms=seconds * 1000, inf=inf, wait=300.0)
    lost = batch.announced - batch.uploaded
    ok = batch.announced == calls and lost == 0
    states = service.states()
    section.add("6a", LOAD_ROWS[0][1], f"{calls} / {batch.uploaded} / {lost}", LOAD_ROWS[0][2],
                ok, f"{rate:.0f} calls/s, {seconds} s each, {batch.peak_channels} channels up "
                "at the peak; outbox: "
                + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    section.add("6b", LOAD_ROWS[1][1], f"{batch.cpu / calls:.3f} s", "", None,
                f"{batch.cpu:.1f} s CPU over {batch.seconds:.0f} s wall; service peak RSS "
                f"{max(rss0, service.peak_rss()) / 2**20:.0f} MB")
    totals = [t.total for t in batch.timings if t.total is not None]
    if totals:
        section.add("6c", LOAD_ROWS[2][1],
                    f"{_secs(median(totals))} / {_secs(percentile(totals, 95))}", "", None,
                    f"split {_split(batch.timings)}")
    else:
        section.add("6c", LOAD_ROWS[2][1], "no call uploaded", "", None, service.tail(2))
    return section


# -- the whole lab part -------------------------------------------------------------------


def run(smoke: bool) -> Section:
    section = Section()
    all_rows = EVENT_ROWS + LATENCY_ROWS + LOAD_ROWS
    from tests.lab import Lab, LabError, unavailable_reason

    reason = unavailable_reason()
    if reason is None and shutil.which("sipp") is None and not Path("/usr/bin/sipp").exists():
        reason = "sipp is not installed"
    if reason:
        section.skip(all_rows, reason)
        return section
    # LabBusy (another run holds the machine's lab too long) is a LabError.
    lab = Lab(lock_wait=20.0 if smoke else 1800.0)
    try:
        lab.start()
    except LabError as exc:
        section.skip(all_rows, str(exc).splitlines()[0][:100])
        return section
    try:
        lab.use_flavour("plain")
        _merge(section, events_section, EVENT_ROWS, lab, smoke)
        with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp_name:
            tmp = Path(tmp_name)
            standin, webhook = _start_standin(tmp / "standin")
            service = Service(tmp, lab, webhook)
            try:
                service.wait_connected()
                _merge(section, lambda lab, smoke: latency_section(lab, service, webhook, smoke),
                       LATENCY_ROWS, lab, smoke)
                _merge(section, lambda lab, smoke: load_section(lab, service, webhook, smoke),
                       LOAD_ROWS, lab, smoke)
            finally:
                service.stop()
                standin.terminate()
                standin.wait(10)
                problems = [e["message"] for e in service.log_lines()
                            if e.get("level") in ("warning", "error", "critical")]
                if problems:
                    section.details.append(f"service warnings/errors ({len(problems)}): "
                                           + " | ".join(problems[:5]))
    finally:
        lab.stop()
    return section


def _merge(section: Section, fn: Callable[[Any, bool], Section],
           rows: Sequence[tuple[str, str, str]], lab: Any, smoke: bool) -> None:
    """Run one part; if it fails, its rows say so and the other parts still run."""
    try:
        part = fn(lab, smoke)
    except Exception as exc:
        section.skip(rows, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        section.details.append(f"{rows[0][0]} failed: {exc!r}"[:2000])
        return
    section.rows += part.rows
    section.details += part.details
