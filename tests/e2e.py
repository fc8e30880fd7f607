"""End to end on the real lab: the MiiTel stand-in, the service as its own process, sipp.

    with E2E(lab, tmp_path) as env:         # stand-in + `asterisk-miitel run --config ...`
        truth = env.play("outbound")        # the shared scenario driver (tests/lab/scenarios.py)
        [call] = env.sent(1)                # what the stand-in received, bounded wait
        rec = env.recording_for(call)       # the lab's admin AMI view of that recording

The stand-in runs in this process, on its own event-loop thread, so that the
tests can drive the lab (blocking sipp runs) without stopping it. The service
runs exactly as a user runs it, with the lab's least-privileged `miitel` AMI
user and its own TOML file, outbox and work directory under the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.outbox.states import FINAL  # outbox states with nothing to do

from .lab import Lab
from .lab.ami import AmiMessage
from .lab.analysis import Recording, bridged_seconds, hangup_time, recordings
from .lab.audio import AudioInfo, analyse
from .lab.scenarios import SCENARIOS, Runner, SipMessage, Truth, first_at, sip_messages
from .lab.sipp import SippResult
from .support import HANAKO, JIRO, TARO

REPO = Path(__file__).resolve().parents[1]
# Who is who in MiiTel (the [users] of every e2e config).
USERS = {
    "1001": {"miitel_user_id": TARO, "name": "Suzuki Ichiro", "endpoints": ["desk-suzuki"]},
    "1002": {"miitel_user_id": HANAKO, "name": "Ishikawa Jiro"},
    "1003": {"miitel_user_id": JIRO, "name": "Ueda Saburo"},
}


class ThreadedStandIn:
    """The MiiTel stand-in on an event loop of its own (a daemon thread)."""

    def __init__(self, data_dir: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="standin",
                                        daemon=True)
        self._standin = StandIn(data_dir, port=0)

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> ThreadedStandIn:
        self._thread.start()
        self._call(self._standin.start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._standin.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    @property
    def webhook_url(self) -> str:
        return self._standin.webhook_url

    def calls(self) -> list[dict[str, Any]]:
        """What the stand-in received (a copy, taken on its own thread)."""
        async def snapshot() -> list[dict[str, Any]]:
            return copy.deepcopy(self._standin.calls())
        return self._call(snapshot())  # type: ignore[no-any-return]


def write_config(tmp: Path, lab: Lab, webhook_url: str, *, pbx: str = "",
                 users_of: dict[str, dict[str, Any]] | None = None, tables: str = "") -> Path:
    """The TOML a user would write for this PBX (plus short test timeouts); `pbx`:
    more lines for its [pbx] section; `users_of`: the [users] (default USERS);
    `tables`: more tables at the end (e.g. [transfers])."""
    users = "\n".join(
        f'"{ext}" = {{ miitel_user_id = "{u["miitel_user_id"]}", name = "{u["name"]}"'
        + (f', endpoints = {json.dumps(u["endpoints"])}' if "endpoints" in u else "")
        + " }"
        for ext, u in (users_of or USERS).items())
    path = tmp / "config.toml"
    path.write_text(f"""\
[ami]
host = "{lab.ami_host}"
port = {lab.ami_port}
username = "{lab.miitel_username}"
secret = "{lab.miitel_secret}"
ping_interval = 2
ping_timeout = 2
reconnect_min = 0.2
reconnect_max = 1

[miitel]
webhook_url = "{webhook_url}"
timeout = 5
upload_idle_timeout = 5
retry_base = 0.1
retry_max = 1

[numbers]
outside_line_prefix = "0"

[pbx]
id = "lab-e2e"
timezone = "Asia/Tokyo"
{pbx}

[recordings]
work_dir = "{tmp / 'work'}"
wait_timeout = 5
min_free_mb = 0
dirs = ["{lab.recordings_dir}"]

[catchup]
voicemail_dirs = ["{lab.voicemail_dir}"]  # the lab's spool: the path rule allows it

[outbox]
path = "{tmp / 'outbox.sqlite3'}"

[log]
level = "DEBUG"

[users]
{users}
{tables}
""", encoding="utf-8")
    return path


class ServiceProcess:
    """`asterisk-miitel run --config FILE`, as its own process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ASTERISK_MIITEL_") and k != "MIITEL_WEBHOOK_URL"}
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asterisk_miitel", "run", "--config", str(config)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Logged in to AMI (the lab is idle, so nothing can be missed after this)."""
        deadline = time.monotonic() + timeout
        while "AMI connected" not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited ({self.proc.returncode}):\n"
                                     f"{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not log in to AMI in {timeout} s:\n"
                                     f"{self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


@dataclass
class OutboxRow:
    id: str
    file: str
    state: str
    reason: str | None
    reason_code: str | None
    call_data: dict[str, Any] | None
    posts: int


def _stops_mixmonitor(m: AmiMessage) -> bool:
    """MixMonitorStop, or (Asterisk before 16.17/18.3/19 has no such event) the
    StopMixMonitor step itself: our snippet runs it as ExecIf(1?StopMixMonitor(id))."""
    if m.event == "MixMonitorStop":
        return True
    if m.event != "Newexten":
        return False
    app, data = m.get("Application") or "", m.get("AppData") or ""
    return app == "StopMixMonitor" or (app == "ExecIf" and data.startswith("1?StopMixMonitor("))


class E2E:
    """One test's world: stand-in, service process, and a mark in the lab's AMI events."""

    def __init__(self, lab: Lab, tmp: Path, *, pbx: str = "",
                 users: dict[str, dict[str, Any]] | None = None, tables: str = "") -> None:
        self.lab = lab
        self.users = users
        self.tables = tables
        self.tmp = tmp
        self.standin = ThreadedStandIn(tmp / "miitel")
        self.pbx_config = pbx
        self.service: ServiceProcess | None = None
        self.mark = 0
        self.truth: Truth | None = None
        self.runner = Runner(lab)  # the sipp instances of this test's scenario

    def __enter__(self) -> E2E:
        self.lab.wait_idle()
        self.standin.start()
        try:
            config = write_config(self.tmp, self.lab, self.standin.webhook_url,
                                  pbx=self.pbx_config, users_of=self.users,
                                  tables=self.tables)
            self.service = ServiceProcess(config, self.tmp / "service.log")
            self.service.wait_ready()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        self.mark = self.lab.mark()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.kill_all()
        if self.lab.channels():  # a failed test: leave the lab idle for the next one
            self.lab.admin().command("channel request hangup all")
        try:
            if self.service is not None:
                code = self.service.stop()
                if not exc or exc[0] is None:
                    assert code == 0, f"the service exited {code}:\n{self.service.tail()}"
        finally:
            self.standin.stop()

    # -- driving the lab ------------------------------------------------------------
    def play(self, name: str, **options: Any) -> Truth:
        """Run the shared scenario `name` (tests/lab/scenarios.py) and return its truth."""
        flavour, fn = SCENARIOS[name]
        assert self.lab.flavour == flavour, f"{name} needs the {flavour} dialplan"
        self.truth = fn(self.lab, self.runner, **options)
        self.runner.wait_all()
        failed = {role: r.summary() for role, r in self.runner.results.items() if not r.ok}
        assert not failed, f"sipp failed: {failed}"
        self.lab.wait_idle(timeout=30)
        return self.truth

    def events(self) -> list[AmiMessage]:
        return self.lab.events_since(self.mark)

    def recordings(self) -> list[Recording]:
        """The recordings this test's calls made (from the admin AMI view)."""
        return recordings(self.events())

    def recording_for(self, call: dict[str, Any]) -> Recording:
        """The recording (admin AMI view) a call history was made from."""
        name = call["call_data_id"].split(":")[1].split("#")[0]
        recs = [r for r in self.recordings() if Path(r.file).name == name]
        assert len(recs) == 1, f"no recording {name} in this test's calls: {self.recordings()}"
        return recs[0]

    def bridged(self, rec: Recording, *, alone: bool = False) -> float:
        """Seconds the recorded channel was bridged with somebody while it recorded
        (`alone`: in a bridge at all, e.g. on hold; see analysis.bridged_seconds)."""
        events = self.events()
        stop = next((m.timestamp for m in events if _stops_mixmonitor(m)
                     and m.get("Uniqueid") == rec.uniqueid and m.timestamp
                     and rec.started and m.timestamp >= rec.started), None)
        return bridged_seconds(events, rec.uniqueid, since=rec.started,
                               until=stop or hangup_time(events, rec.uniqueid), alone=alone)

    def index(self, match: Callable[[AmiMessage], bool]) -> int:
        """Where the first event that matches is in this test's events (-1: none)."""
        return next((i for i, m in enumerate(self.events()) if match(m)), -1)

    def announced_before_hangup(self, rec: Recording) -> bool:
        """Our MiiTelRecording for `rec` came on its channel, before that channel's Hangup."""
        events = self.events()
        said = [i for i, m in enumerate(events) if m.event == "UserEvent"
                and m.get("UserEvent") == "MiiTelRecording" and m.get("File") == rec.file]
        hangup = [i for i, m in enumerate(events)
                  if m.event == "Hangup" and m.get("Uniqueid") == rec.uniqueid]
        return (len(said) == 1 and len(hangup) == 1 and said[0] < hangup[0]
                and events[said[0]].get("Uniqueid") == rec.uniqueid)

    def variable(self, name: str) -> list[str]:
        """Values a channel variable was set to during this test (VarSet, admin view)."""
        return [m.get("Value") for m in self.events()
                if m.event == "VarSet" and m.get("Variable") == name]

    # -- what reached MiiTel -------------------------------------------------------------
    def wait_calls(self, count: int, *, timeout: float = 20.0,
                   settle: float = 1.0) -> list[dict[str, Any]]:
        """Wait until the stand-in holds `count` calls, each uploaded (or failed), and
        the outbox has nothing in flight; then `settle` s more to catch a duplicate."""
        def ready() -> bool:
            calls = self.standin.calls()
            rows = self.outbox()
            return (len(calls) >= count
                    and all(c["status"] != "waiting_upload" for c in calls)
                    and all(r.state in FINAL for r in rows))
        self._wait(ready, timeout, f"{count} call(s) at the stand-in")
        time.sleep(settle)
        return self.standin.calls()

    def sent(self, count: int, *, skipped: int = 0,
             timeout: float = 20.0) -> list[dict[str, Any]]:
        """Exactly `count` call histories, each POSTed once and uploaded once, and an
        outbox that agrees (those calls uploaded, POSTed once; `skipped` more rows
        skipped, never POSTed); sorted by start, then id."""
        calls = self.wait_calls(count, timeout=timeout)
        assert len(calls) == count, [c["call_data_id"] for c in calls]
        for call in calls:
            assert call["status"] == "uploaded", (call["status"], call["error_detail"])
            assert (call["post_count"], call["put_count"]) == (1, 1), call["call_data_id"]
        rows = self.outbox()
        assert sorted((r.id, r.state, r.posts) for r in rows if r.state != "skipped") == sorted(
            (c["call_data_id"], "uploaded", 1) for c in calls), rows
        assert [r.posts for r in rows if r.state == "skipped"] == [0] * skipped, rows
        self.check_log()
        return sorted(calls, key=lambda c: (c["call_data"]["call_starts_at"], c["call_data_id"]))

    def check_log(self) -> None:
        """Nothing went wrong in the service (warnings are allowed, errors are not)."""
        assert self.service is not None
        bad = [line for line in self.service.text().splitlines()
               if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]
        assert not bad, "\n".join(bad)

    def wait_outbox(self, count: int, *, timeout: float = 20.0) -> list[OutboxRow]:
        """Wait until the outbox holds `count` finished rows (uploaded/skipped/set aside)."""
        def ready() -> bool:
            rows = self.outbox()
            return len(rows) >= count and all(r.state in FINAL for r in rows)
        self._wait(ready, timeout, f"{count} finished row(s) in the outbox")
        return self.outbox()

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                assert self.service is not None
                raise AssertionError(
                    f"no {what} after {timeout} s; stand-in: {self.standin.calls()}; "
                    f"outbox: {self.outbox()}\nservice log:\n{self.service.tail()}")
            time.sleep(0.1)

    def outbox(self) -> list[OutboxRow]:
        path = self.tmp / "outbox.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT id, file, state, reason, reason_code, call_data, posts "
                              "FROM calls ORDER BY created_at").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            db.close()
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None,
                          r[6]) for r in rows]


# -- assertions shared by the scenarios ---------------------------------------------------
SILENT = 0.2  # s of audio a silent side may show (one stray frame after a transfer)
# call_data times are whole seconds (truncated): what a phone saw at 12:00:05.9 reads
# 12:00:05; SLACK covers Asterisk acting a few ms before or after the phone's message.
SLACK = 0.25


def when(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text).timestamp()


def party(call_data: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [p for p in call_data["participants"] if p["type"] == kind]
    return found


def check_file(call: dict[str, Any]) -> AudioInfo:
    """The uploaded bytes are what call_data says they are (type, channels)."""
    data = call["call_data"]
    assert data["audio_file_type"] == call["format"] == "wav"
    assert call["channels"] == {"STEREO": 2, "MONAURAL": 1}[data["audio_channel_type"]]
    info = analyse(call["file"])
    assert info.channels == call["channels"] and info.rate == call["sample_rate"]
    assert abs(info.seconds - call["duration"]) < 0.05
    return info


def check_sides(info: AudioInfo, call_data: dict[str, Any], talker: str,
                min_active: float) -> None:
    """The side labelled for `talker` (FROM/TO) carries the audio, the other is silent."""
    talking = party(call_data, talker)["stereo_lr"]
    silent = party(call_data, "TO" if talker == "FROM" else "FROM")["stereo_lr"]
    assert {talking, silent} == {"left", "right"}
    sides = {"left": info.left, "right": info.right}
    assert sides[talking].active_seconds >= min_active, (talking, info.as_dict())
    assert sides[silent].active_seconds <= SILENT, (silent, info.as_dict())


def check_times(call_data: dict[str, Any], *, answer: float | None, end: float,
                start: float | None = None) -> None:
    """start <= answer <= end, each the second in which the phones saw it happen."""
    starts, ends = when(call_data["call_starts_at"]), when(call_data["call_ends_at"])
    if answer is None:
        assert call_data["call_answered_at"] is None
        assert starts <= ends
    else:
        answered = when(call_data["call_answered_at"])
        assert starts <= answered <= ends, call_data
        near(call_data["call_answered_at"], answer)
    near(call_data["call_ends_at"], end)
    if start is not None:
        near(call_data["call_starts_at"], start)


def near(reported: str, seen: float) -> None:
    """`reported` (whole seconds) is the second of `seen` (a phone's clock reading)."""
    assert -SLACK <= seen - when(reported) < 1.0 + SLACK, (
        reported, datetime.fromtimestamp(seen).astimezone().isoformat())


def check_length(info: AudioInfo, bridged: float) -> None:
    """The recording lasts as long as the parties were bridged (Asterisk's own events)."""
    assert bridged > 0
    assert abs(info.seconds - bridged) < 0.5, (info.seconds, bridged)


def user(ext: str, kind: str, side: str) -> dict[str, Any]:
    """A participant that is a MiiTel user of the lab, as call_data should name them."""
    u = USERS[ext]
    return {"type": kind, "stereo_lr": side, "miitel_user_id": u["miitel_user_id"],
            "number": ext, "name": u["name"]}


def outside(number: str, kind: str, side: str, name: str | None = None) -> dict[str, Any]:
    """A participant that is an outside number."""
    return {"type": kind, "stereo_lr": side, "miitel_user_id": None, "number": number,
            "name": name}


# -- what the phones saw (sipp's SIP traces) ---------------------------------------------
def at(result: SippResult, match: Callable[[SipMessage], bool], what: str) -> float:
    stamp = first_at(result, match)
    assert stamp is not None, f"sipp {result.name} has no {what}"
    return stamp


def answer_at(result: SippResult) -> float:
    """The 200 OK to the INVITE (sent or received)."""
    return at(result, lambda m: m.is_response(200, "INVITE"), "200 OK to INVITE")


def invite_at(result: SippResult) -> float:
    return at(result, lambda m: m.is_request("INVITE"), "INVITE")


def bye_at(result: SippResult) -> float:
    return at(result, lambda m: m.is_request("BYE"), "BYE")


def refer_at(result: SippResult) -> float:
    return at(result, lambda m: m.is_request("REFER"), "REFER")


_FROM_USER = re.compile(r"<sips?:([^@>;]+)@")


def presented_number(result: SippResult) -> str:
    """The caller number in the From of the first INVITE this sipp saw (the caller ID
    the carrier was shown on an outgoing call)."""
    invite = next((m for m in sip_messages(result) if m.is_request("INVITE")), None)
    assert invite is not None, f"sipp {result.name} saw no INVITE"
    found = _FROM_USER.search(invite.header("From"))
    assert found, invite.header("From")
    return found.group(1)


@dataclass
class SipCall:
    """One call of a sipp run with several calls (-m N), by its Call-ID."""

    number: str  # the From user of its INVITE
    invite: float
    answer: float | None
    bye: float | None


def sip_calls(result: SippResult) -> dict[str, SipCall]:
    """The calls of a UAC sipp run, keyed by the number each one presented."""
    by_id: dict[str, SipCall] = {}
    for m in sip_messages(result):
        if m.sent and m.is_request("INVITE") and m.call_id not in by_id:
            found = _FROM_USER.search(m.header("From"))
            assert found and m.at is not None
            by_id[m.call_id] = SipCall(found.group(1), m.at, None, None)
        call = by_id.get(m.call_id)
        if call is None:
            continue
        if call.answer is None and m.is_response(200, "INVITE"):
            call.answer = m.at
        elif call.bye is None and m.is_request("BYE"):
            call.bye = m.at
    return {c.number: c for c in by_id.values()}
