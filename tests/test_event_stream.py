"""The AMI event stream under bad input and bad luck: dropped input is said
and counted, an unexpected error in a task is survived and reported, and
events in an unusual order still close every call."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asterisk_miitel import service as service_module
from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.ami.listener import ProblemLog
from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.ami.synth import call_events, renumber
from asterisk_miitel.calls.journal import Journal
from asterisk_miitel.calls.restore import restore
from asterisk_miitel.calls.state import Recording
from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.ops.http import bound_port
from asterisk_miitel.service import Service
from asterisk_miitel.supervisor import Supervisor

from .support import DEMO_DIR, FIXTURES, done, place_recordings, running, service_config, wait_for
from .test_kill import burst

OVERSIZED = b"Event: VarSet\r\nVariable: X\r\nValue: " + b"x" * 200_000 + b"\r\n\r\n"
GARBAGE = b"\x16\x03\x01 not AMI at all\r\n\r\n"
BAD_HEADER = b"Event: Newexten\r\nUniqueid: 5.5\r\nthis line has no colon\r\n\r\n"
BAD_UTF8 = b"Event: Newexten\r\nUniqueid: 5.6\r\nAppData: \xff\xfe\r\n\r\n"


async def metrics_text(service: object) -> str:
    port = bound_port(service._http)  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


async def test_dropped_input_is_warned_once_per_reason_and_counted_in_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events, files = burst(2)
    place_recordings(tmp_path, files)
    junk = [OVERSIZED, GARBAGE, BAD_HEADER, BAD_UTF8] * 5
    stream = events[:5] + junk + events[5:]  # in the middle of the calls
    caplog.set_level(logging.WARNING, "asterisk_miitel.ami")
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(stream) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                http={"enabled": True, "host": "127.0.0.1", "port": 0})
        async with running(config) as service:
            await wait_for(done(service, 2), 20)
            text = await metrics_text(service)
    for reason in ("oversized", "malformed", "bad_header", "invalid_utf8"):
        assert f'asterisk_miitel_ami_dropped_total{{reason="{reason}"}} 5.0' in text, text
        said = [r for r in caplog.records if f"AMI input {reason}:" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]  # five times, said once
        assert said[0].levelno == logging.WARNING
    assert len(standin.calls()) == 2 and all(c["post_count"] == 1 for c in standin.calls())


def test_problem_log_says_how_many_it_kept_quiet(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    plog = ProblemLog(every=60, monotonic=lambda: now[0])
    caplog.set_level(logging.WARNING, "asterisk_miitel.ami")
    said = [plog.say("malformed", f"junk {i}") for i in range(100)]
    assert said.count(True) == 1
    now[0] += 61
    assert plog.say("malformed", "junk again")
    assert plog.say("oversized", "big")  # each reason has its own minute
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["AMI input malformed: junk 0", "AMI input malformed: junk again "
                     "(99 more since the last warning)", "AMI input oversized: big"]





# -- a Hangup before the channel is known -------------------------------------------

CAPTURE = FIXTURES / "captures" / "inbound_answered" / "ami_miitel.log"


def capture_events() -> list[dict[str, str]]:
    parser = AmiParser()
    return [m for m in parser.feed(CAPTURE.read_bytes()) if "Event" in m]


def split_at_hangups(events: list[dict[str, str]]) -> tuple[list, list, list]:
    """(before the first Hangup, the Hangups, the channels as a list made just before)."""
    first = next(i for i, e in enumerate(events) if e["Event"] == "Hangup")
    hangups = [e for e in events[first:] if e["Event"] == "Hangup"]
    live = [{"Event": "CoreShowChannel", **{k: e[k] for k in ("Channel", "Uniqueid", "Linkedid")},
             "ChannelStateDesc": "Up", "BridgeId": "b-1"} for e in hangups]
    return events[:first], hangups, live


def stamp(event: dict[str, str]) -> float:
    return float(event["Timestamp"])


def test_hangup_during_a_channel_list_leaves_no_call_open() -> None:
    """A call that began while AMI was down hangs up while CoreShowChannels is
    being answered: its Hangup arrives before the list that still shows it."""
    _, hangups, live = split_at_hangups(capture_events())
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    for h in hangups:
        tracker.feed(h, stamp(h))
    tracker.reconcile(live, stamp(hangups[0]))
    uid = hangups[0]["Uniqueid"]
    assert tracker.discovered(uid, "/x/miitel-1.raw", stamp(hangups[-1])) is None
    assert not tracker.channels and not tracker.recordings and not tracker.bridges


def test_journaled_call_whose_hangup_beat_the_channel_list_closes_at_that_hangup() -> None:
    before, hangups, live = split_at_hangups(capture_events())
    first = CallTracker(lambda rec: None)
    journal = Journal()
    first.on_changed = journal.changed
    for e in before:
        first.feed(e, stamp(e))
    (file,) = first.recordings
    entries = [(k, v, stamp(before[-1])) for k, v in journal.take().items() if v]
    # The service restarts; on reconnect the Hangups arrive while the list is on its way.
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    for h in hangups:
        tracker.feed(h, stamp(h))
    tracker.reconcile(live, stamp(hangups[0]))
    adopted, finished, bad = restore(
        entries, tracker, journal, {e["Uniqueid"] for e in live}, pbx_restarted=False,
        last_alive=stamp(before[-1]), now=stamp(hangups[-1]) + 1)
    assert not bad and not finished
    assert [r.file for r in closed] == [file] == [r.file for r in adopted]
    rec = closed[0]
    recorded = next(h for h in hangups if h["Uniqueid"] == rec.channel.uniqueid)
    assert rec.end_reason == "hangup" and rec.ended == stamp(recorded)
    assert rec.left and rec.right  # the parties the journal knew are kept
    assert not tracker.channels and not tracker.recordings


def test_hangup_before_newchannel_leaves_no_zombie_channel() -> None:
    events = capture_events()
    hangup = next(e for e in events if e["Event"] == "Hangup")
    newchannel = next(e for e in events if e["Event"] == "Newchannel"
                      and e["Uniqueid"] == hangup["Uniqueid"])
    tracker = CallTracker(lambda rec: None)
    tracker.feed(hangup, stamp(hangup))
    tracker.feed(newchannel, stamp(newchannel))
    tracker.feed({**newchannel, "Event": "Newstate"}, stamp(newchannel))
    assert not tracker.channels


# -- calls held while the outbox was full -------------------------------------------

def demo_call(copy: int) -> list[dict[str, str]]:
    parser = AmiParser()
    base = call_events((DEMO_DIR / "ami.log").read_bytes())
    return [m for m in parser.feed(b"".join(renumber(base, copy))) if "Event" in m]


def feed(service: Service, events: list[dict[str, str]]) -> None:
    for e in events:
        service.tracker.feed(e, float(e.get("Timestamp", time.time())))


async def test_calls_held_for_the_outbox_are_queued_once_by_one_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in the field: calls held while the outbox was full were flushed by
    the heartbeat's retry and by the next call's intake at the same time:
    'already in the outbox', then `IndexError: pop from empty list` (which
    killed the heartbeat). Here the outbox is slow (each write 0.2 s) and the
    heartbeat runs every 50 ms, so both would see the same held calls."""
    monkeypatch.setattr(service_module, "HEARTBEAT_EVERY", 0.05)
    caplog.set_level(logging.INFO)
    service = Service(service_config(tmp_path, 1, None), listen=False)
    await service.start()
    try:
        real_add = service.outbox.add

        async def slow_add(*args: Any, **kw: Any) -> bool:  # a slow disk
            await asyncio.sleep(0.2)
            return await real_add(*args, **kw)
        service.outbox.add = slow_add  # type: ignore[method-assign]
        for copy in range(1, 7):
            feed(service, demo_call(copy))
            await asyncio.sleep(0.05)

        async def queued() -> bool:
            return len(await service.outbox.all_ids()) == 6 and not service._held
        await wait_for(queued, 15)
        await asyncio.sleep(0.5)  # a flush that was under way has finished too
        assert service.stats.queued == 6 and service.stats.duplicates == 0
        assert not [t.get_name() for t in service._tasks if t.done()]  # all alive
        said = [r.getMessage() for r in caplog.records if r.name.startswith("asterisk_miitel.s")]
        assert not [m for m in said if "already in the outbox" in m or "failed" in m], said
        assert service.stats.intake_errors == 0
    finally:
        await service.stop()


# -- supervised tasks -----------------------------------------------------------------

async def healthz(service: Service) -> tuple[int, dict[str, Any]]:
    port = bound_port(service._http)
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, await resp.json()


async def test_a_task_that_fails_on_a_call_is_logged_restarted_and_on_healthz(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = service_config(tmp_path, 1, None,
                            http={"enabled": True, "host": "127.0.0.1", "port": 0})
    service = Service(config, listen=False)
    await service.start()
    try:
        real_add = service.outbox.add
        failures = [1]

        async def buggy_add(*args: Any, **kw: Any) -> bool:
            if failures:
                failures.pop()
                raise AssertionError("a bug")
            return await real_add(*args, **kw)
        service.outbox.add = buggy_add  # type: ignore[method-assign]
        feed(service, demo_call(1))

        async def queued() -> bool:
            return len(await service.outbox.all_ids()) == 1
        await wait_for(queued, 10)  # after the restart (1 s backoff), the call goes in
        [call_id] = await service.outbox.all_ids()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert errors[0].getMessage().startswith(f"task intake failed on call {call_id} "
                                                 "(AssertionError: a bug): restarting it in 1 s")
        status, body = await healthz(service)
        assert status == 503
        intake = body["tasks"]["intake"]
        assert intake["failures"] == 1 and intake["running"]
        assert intake["last_error"] == "AssertionError" and intake["last_call"] == call_id
        assert any(p.startswith("task intake failed") for p in body["problems"]), body
        assert set(body["tasks"]) >= {"intake", "sender", "journal", "heartbeat"}
        assert service.stats.queued == 1 and service.stats.duplicates == 0
    finally:
        await service.stop()


async def test_a_task_that_always_fails_backs_off_instead_of_spinning(
    caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = Supervisor(backoff_min=0.01, backoff_max=0.08)
    runs = [0]

    async def broken() -> None:
        runs[0] += 1
        raise RuntimeError("fails at once, every time")
    task = supervisor.start("broken", broken)
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # 0.01 + 0.02 + 0.04 + 0.08 + 0.08 ...: about 8 tries in 0.5 s, not thousands.
    assert 4 <= runs[0] <= 10
    logged = [r for r in caplog.records if "task broken failed" in r.getMessage()]
    assert len(logged) == runs[0] == supervisor.tasks["broken"].failures


async def test_a_task_that_ends_is_done_not_restarted() -> None:
    supervisor = Supervisor(backoff_min=0.01)
    runs = [0]

    async def once() -> None:
        runs[0] += 1
    await supervisor.start("once", once)
    await asyncio.sleep(0.05)
    assert runs[0] == 1 and supervisor.tasks["once"].done


# -- a caller name with line breaks, on the real Asterisk ----------------------------

LINEBREAK_NAMES = {  # what an external lookup could set as CALLERID(name)
    "crlf": "Evil\r\n\r\nEvent: UserEvent\r\nPrivilege: user,all\r\nUniqueid: 1.1\r\n"
            "UserEvent: MiiTelRecording\r\nFile: /etc/passwd\r\nApplication: MixMonitor\r\nX: y",
    "lf": "Evil\n\nEvent: UserEvent\nUniqueid: 1.1\nUserEvent: MiiTelRecording\nFile: /etc/passwd",
    "header": "Evil\r\nUniqueid: 1.1\r\nFile: /etc/passwd",
    "quotes": 'Sato "Q" \\ back\ttab',
}
LINEBREAK_DIALPLAN = [  # added at run time (CLI), so no lab config changes
    "cidnl,1,Set(CALLERID(name)=${BASE64_DECODE(${LAB_NAME_B64})})",
    "cidnl,2,Set(MIITEL_LAB=${CALLERID(name)})",  # a VarSet the filter lets through
    "cidnl,3,Answer()",
    "cidnl,4,UserEvent(MiiTelTag,Tag: ${CALLERID(name)})",  # careless: the name raw
    "cidnl,5,Set(MIITEL_TAG=${CALLERID(name)})",
    "cidnl,6,Gosub(miitel-tag,s,1)",  # ours: line breaks removed
    "cidnl,7,Hangup()",
]


@pytest.mark.lab
@pytest.mark.parametrize("case", sorted(LINEBREAK_NAMES))
def test_lab_caller_name_with_line_breaks(lab: Any, case: str) -> None:
    """On Asterisk 22, what the `miitel` user (dialplan/manager_miitel.conf)
    receives when CALLERID(name) holds line breaks, read the way the service
    reads it: no event is forged, no header of a real one overridden."""
    import base64

    admin = lab.admin()
    for line in LINEBREAK_DIALPLAN:
        admin.command(f'dialplan add extension "{line}" into lab-tests replace')
    miitel = lab.connect("miitel")
    try:
        start, mark = len(miitel.raw), lab.mark()
        name = LINEBREAK_NAMES[case]
        lab.originate("Local/cidnl@lab-tests", application="Wait", data="1",
                      variables={"LAB_NAME_B64": base64.b64encode(name.encode()).decode()})
        lab.wait_event(lambda m: m.get("Event") == "Hangup"
                       and m.get("Channel", "").startswith("Local/cidnl@lab-tests"),
                       since=mark, timeout=10)
        lab.wait_idle(10)
        time.sleep(0.2)
        raw = bytes(miitel.raw[start:])
    finally:
        miitel.close()
        admin.command("dialplan remove extension cidnl@lab-tests")
    events = [m for m in AmiParser(strict_crlf=True).feed(raw) if "Event" in m]
    ours = [e for e in events if e.get("Channel", "").endswith(";2")]
    assert ours and {e["Uniqueid"] for e in ours} == {ours[0]["Uniqueid"]}
    assert all("Privilege" in e and "Timestamp" in e for e in events), "a forged event"
    assert {e.get("UserEvent", "MiiTelTag") for e in events} == {"MiiTelTag"}
    [shown] = {e["CallerIDName"] for e in ours if e["Event"] == "NewCallerid"}
    assert "\r" not in shown and "\n" not in shown  # escaped: \\r\\n, \\", \\\\, \\t
    if case == "quotes":
        assert shown == 'Sato \\"Q\\" \\\\ back\\ttab'
    tags = [e["Tag"] for e in ours if e.get("Context") == "miitel-userevent"]
    assert tags and "\r" not in tags[0] and "\n" not in tags[0]
    if case == "crlf":  # the raw UserEvent held a blank line: the filter dropped it whole
        assert not [e for e in ours if e.get("UserEvent") and e["Context"] == "lab-tests"]


def test_the_filter_drops_an_event_whose_raw_text_holds_a_blank_line() -> None:
    """`check` reads the filter the way Asterisk applies it, exclude line included."""
    from asterisk_miitel.ops.check import filter_would_pass

    newexten = {"Event": "Newexten", "Channel": "Local/x;2", "Application": "Set",
                "AppData": "CALLERID(name)=Evil\r\n\r\nEvent: UserEvent\r\n"
                           "UserEvent: MiiTelRecording\r\nApplication: MixMonitor\r\nX: y"}
    assert not filter_would_pass(newexten)
    newexten["AppData"] = "/var/spool/asterisk/monitor/x.raw,bD"
    newexten["Application"] = "MixMonitor"
    assert filter_would_pass(newexten)
