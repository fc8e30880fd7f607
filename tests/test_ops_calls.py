"""`calls`, `calls show` and `status`: what a person sees of the outbox, and the
steps (with their times) the outbox records for each call."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.ops import calls as ops_calls
from asterisk_miitel.outbox.store import NewCall, Outbox

from .support import done, running, service_config, wait_for
from .test_service import demo_events, recording  # noqa: F401 - a fixture

TZ = ZoneInfo("Asia/Tokyo")
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asterisk_miitel", *args],
                          capture_output=True, text=True, timeout=60)


def call(call_id: str, state: str = "set_aside", *, code: str | None = None,
         reason: str | None = None, ended: float | None = None, ext: str = "1001",
         number: str = "0312349999", name: str | None = "田中花子") -> NewCall:
    return NewCall(
        id=call_id, file=f"/var/spool/asterisk/monitor/{call_id}.raw", state=state,  # type: ignore[arg-type]
        reason=reason, reason_code=code, ended_at=ended,
        audio={"file": f"/var/spool/asterisk/monitor/{call_id}.raw"},
        call_data={"call_data_id": call_id, "event_type": "INCOMING_CALL", "participants": [
            {"type": "FROM", "stereo_lr": "left", "miitel_user_id": None, "number": number,
             "name": name},
            {"type": "TO", "stereo_lr": "right", "miitel_user_id": None, "number": ext,
             "name": None}]},
        parties=[{"type": "FROM", "extension": None}, {"type": "TO", "extension": ext}],
    )


async def test_every_step_of_a_real_call_is_recorded_with_its_time(
    tmp_path: Path, recording: Path  # noqa: F811
) -> None:
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
            [call_id] = await service.outbox.all_ids()
            steps = await service.outbox.steps(call_id)
            shown = await ops_calls.show(service.outbox, call_id.split(":")[-1], TZ)
    assert [s.state for s in steps] == ["waiting_recording", "ready", "posting", "created",
                                        "uploaded"]
    assert all(a.at <= b.at for a, b in itertools.pairwise(steps))
    assert time.time() - 60 < steps[0].at <= steps[-1].at <= time.time()
    assert shown.line.id == call_id and shown.line.action == "nothing: MiiTel has it"
    text = shown.text()
    for s in steps:
        assert f"{ops_calls.when(s.at, TZ, precise=True)}  {s.state}" in text
    assert "MiiTel has the recording" in text
    assert '"event_type": "INCOMING_CALL"' in text and shown.prepared is not None
    assert "upload_url" not in json.dumps(shown.as_dict())  # the signed URL is a secret


async def status_of(config: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asterisk_miitel", "status", "--config", str(config),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    return out.decode()


async def test_status_says_whether_the_service_runs_and_ami_is_connected(
    tmp_path: Path, recording: Path  # noqa: F811
) -> None:
    toml = tmp_path / "status.toml"
    toml.write_text(f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n')
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
            state = await ops_calls.service_state(service.outbox)
            running_text = await status_of(toml)
            ami.cut()  # the link drops: status knows at once, not at the next heartbeat

            async def down() -> bool:
                s = await ops_calls.service_state(service.outbox)
                return s.ami is not None and s.ami["connected"] is False
            await wait_for(down, 3.0)
        stopped_text = await status_of(toml)
    assert state.running is True and state.ami is not None and state.uploads is True
    assert state.ami["connected"] is True and state.ami["host"] == f"127.0.0.1:{ami.port}"
    lines = running_text.splitlines()
    assert lines[0].startswith("service: running (heartbeat ") and f"pid {os.getpid()}" in lines[0]
    assert lines[1].startswith(f"AMI: connected to 127.0.0.1:{ami.port} since ")
    assert lines[2].startswith("last call: ") and "INCOMING_CALL" in lines[2] and "uploaded" in (
        lines[2])
    assert stopped_text.startswith("service: NOT running (it stopped at ")


async def test_retries_and_a_person_s_retry_are_steps(tmp_path: Path) -> None:
    clock = Clock()
    async with Outbox(tmp_path / "o.sqlite3", clock=clock) as outbox:
        await outbox.add(call("c1", "ready"))
        clock.now += 1
        await outbox.mark_posting("c1")
        clock.now += 1
        await outbox.update("c1", state="ready", last_error="MiiTel answered 503", attempts=1)
        clock.now += 1
        await outbox.set_aside("c1", "rejected", "MiiTel refused the call history: 400")
        clock.now += 1
        await outbox.update("c1", note="put back in line by a person (retry)", state="ready",
                            reason=None)
        await outbox.update("c1", notes=["no step for this"])
        steps = await outbox.steps("c1")
    assert [(s.at - NOW, s.state, s.detail) for s in steps] == [
        (0, "ready", None),
        (1, "posting", "the call history is being sent to MiiTel"),
        (2, "ready", "MiiTel answered 503"),
        (3, "set_aside", "MiiTel refused the call history: 400"),
        (4, "ready", "put back in line by a person (retry)"),
    ]


OLD_SCHEMA = """
CREATE TABLE calls (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    reason_code TEXT, source TEXT NOT NULL DEFAULT 'live', call_data TEXT,
    audio TEXT NOT NULL, parties TEXT, prepared TEXT, upload_url TEXT,
    upload_expires_at REAL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, ended_at REAL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, uploaded_at REAL,
    posts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO calls (id, file, state, reason, reason_code, audio, created_at, updated_at)
VALUES ('old:a.raw:1', '/x/a.raw', 'set_aside', 'the file is missing', 'recording', '{}',
        1800000000, 1800000100);
INSERT INTO meta VALUES ('alive_at', '1800000100.0');
"""


async def test_an_outbox_from_before_steps_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    async with Outbox(path, clock=Clock()) as outbox:
        shown = await ops_calls.show(outbox, "old:a.raw:1", TZ)
        state = await ops_calls.service_state(outbox, now=NOW + 3600)
        await outbox.update("old:a.raw:1", state="waiting_recording", reason=None)
        assert [s.state for s in await outbox.steps("old:a.raw:1")] == ["waiting_recording"]
    text = shown.text()
    assert "2027-01-15T17:00:00+09:00  queued" in text
    assert "2027-01-15T17:01:40+09:00  set_aside (last change)" in text
    assert "`asterisk-miitel retry old:a.raw:1`" in shown.line.action
    assert state.running is False and "no heartbeat for 3500 s" in state.how


async def test_recent_calls_newest_first_with_filters(tmp_path: Path) -> None:
    clock = Clock()
    async with Outbox(tmp_path / "o.sqlite3", clock=clock) as outbox:
        await outbox.add(call("a", "uploaded", ended=NOW - 7200, ext="1001"))
        await outbox.add(call("b", "set_aside", code="users", ended=NOW - 600, ext="1002",
                              reason="INCOMING_CALL needs a MiiTel user for TO"))
        await outbox.add(call("c", "skipped", code="unanswered", ended=NOW - 60, ext="1001",
                              reason="nobody answered", number="0501112222"))
        await outbox.add(call("d", "waiting_recording", ended=None, ext="1003"))  # at NOW

        async def ids(**kw: object) -> list[str]:
            return [c.id for c in await ops_calls.recent(outbox, TZ, **kw)]  # type: ignore[arg-type]

        assert await ids() == ["d", "c", "b", "a"]
        assert await ids(limit=2) == ["d", "c"]
        assert await ids(states=["set_aside", "skipped"]) == ["c", "b"]
        assert await ids(states=ops_calls.parse_states(["in_progress"])) == ["d"]
        assert await ids(since=ops_calls.parse_since("15m", TZ, now=NOW)) == ["d", "c", "b"]
        assert await ids(extension="1001") == ["c", "a"]
        assert await ids(extension="0501112222") == ["c"]  # a party's number
        [b] = await ops_calls.recent(outbox, TZ, states=["set_aside"])
    assert b.time == "2027-01-15T16:50:00+09:00"
    assert b.parties == "FROM 0312349999 田中花子 -> TO 1002"
    assert b.text() == ("2027-01-15T16:50:00+09:00  b  INCOMING_CALL  FROM 0312349999 田中花子 "
                        "-> TO 1002  set_aside  [users] INCOMING_CALL needs a MiiTel user for TO")
    assert b.action.startswith("give extension 1002 a miitel_user_id in [users]")
    assert b.action.endswith("applies it to new calls") and "`asterisk-miitel retry b`" in b.action


def test_since_and_state_filters_say_what_they_accept() -> None:
    assert ops_calls.parse_since("2026-11-23T14:00", TZ) == 1795410000.0
    assert ops_calls.parse_since("2h", TZ, now=NOW) == NOW - 7200
    with pytest.raises(ops_calls.BadFilter, match="30m, 2h, 1d"):
        ops_calls.parse_since("yesterday", TZ)
    assert ops_calls.parse_states(["set_aside,skipped", "done"]) == [
        "set_aside", "skipped", "uploaded", "sent"]
    with pytest.raises(ops_calls.BadFilter, match="set_aside"):
        ops_calls.parse_states(["aside"])


@pytest.mark.parametrize(("state", "code", "expected"), [
    ("set_aside", "users", "`asterisk-miitel retry x`"),
    ("set_aside", "number", "caller ID the trunk sends"),
    ("set_aside", "recording", "can read it"),
    ("set_aside", "rejected", "fix what MiiTel said"),
    ("set_aside", "outcome_unknown", "if it is missing, `asterisk-miitel retry --force x`"),
    ("set_aside", "upload_expired", "`asterisk-miitel retry --force x` creates one with the audio"),
    ("set_aside", "upload_refused", "`asterisk-miitel retry --force x`"),
    ("set_aside", "incomplete", "see the CDR"),
    ("skipped", "unanswered", "`asterisk-miitel retry --force x` sends it anyway"),
    ("uploaded", None, "nothing: MiiTel has it"),
    ("ready", None, "nothing: on its way to MiiTel"),
])
async def test_the_next_action_is_exact(tmp_path: Path, state: str, code: str | None,
                                        expected: str) -> None:
    async with Outbox(tmp_path / "o.sqlite3") as outbox:
        await outbox.add(call("x", state, code=code, reason="why"))
        row = await outbox.get("x")
    assert row is not None and expected in ops_calls.next_action(row)


async def _seed(path: Path) -> None:
    async with Outbox(path) as outbox:
        await outbox.add(call("cli:a.raw:1", "set_aside", code="users", ended=time.time() - 30,
                              reason="INCOMING_CALL needs a MiiTel user for TO"))
        await outbox.add(call("cli:b.raw:2", "uploaded", ended=time.time() - 3 * 86400))


def test_the_commands(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[pbx]\ntimezone = "Asia/Tokyo"\n[outbox]\npath = "{tmp_path / "o.db"}"\n')
    missing = cli("calls", "--config", str(config))
    assert missing.returncode == 2 and "no outbox at" in missing.stderr
    asyncio.run(_seed(tmp_path / "o.db"))
    listed = cli("calls", "--config", str(config))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and "cli:a.raw:1  INCOMING_CALL  FROM 0312349999 田中花子" in lines[0]
    recent = cli("calls", "--since", "1d", "--json", "--config", str(config))
    [doc] = [json.loads(x) for x in recent.stdout.splitlines()]
    assert doc["id"] == "cli:a.raw:1" and doc["state"] == "set_aside"
    assert doc["reason_code"] == "users" and "retry cli:a.raw:1" in doc["action"]
    shown = cli("calls", "show", "a.raw", "--config", str(config))
    assert shown.returncode == 0 and "steps:" in shown.stdout
    # the command to run names the same config: another config is another outbox
    assert f"`asterisk-miitel retry cli:a.raw:1 --config {config}`" in shown.stdout
    assert json.loads(cli("calls", "show", "cli:b.raw:2", "--json", "--config",
                          str(config)).stdout)["state"] == "uploaded"
    ambiguous = cli("calls", "show", "cli:", "--config", str(config))
    assert ambiguous.returncode == 2 and "matches 2 calls" in ambiguous.stderr
    bad = cli("calls", "--since", "soon", "--config", str(config))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    status = cli("status", "--config", str(config))
    assert status.returncode == 0
    assert status.stdout.startswith("service: unknown")
    assert "last call: " in status.stdout and "cli:a.raw:1" in status.stdout
    doc = json.loads(cli("status", "--json", "--config", str(config)).stdout)
    assert doc["service"]["running"] is None and doc["last_call"]["id"] == "cli:a.raw:1"
    assert doc["counts"]["set_aside"] == 1 and doc["counts"]["uploaded"] == 1


async def test_status_reads_the_outbox_lock_too(tmp_path: Path) -> None:
    from asterisk_miitel.outbox.lock import OutboxLock, lock_path

    path = tmp_path / "o.sqlite3"
    async with Outbox(path) as outbox:
        lock_path(path).write_text("999999999\n")  # a killed service's stale PID: not alive
        assert (await ops_calls.service_state(outbox)).running is None
        lock = OutboxLock(path).acquire()  # as `run` does, before its first heartbeat
        try:
            state = await ops_calls.service_state(outbox)
            assert state.running is True and state.pid == os.getpid()
            assert state.how == f"process {os.getpid()} holds the outbox lock"
            await outbox.set_meta(ops_calls.META_SERVICE, ops_calls.service_heartbeat(
                os.getpid(), NOW, None, True))
            stuck = await ops_calls.service_state(outbox, now=NOW + 120)
            assert stuck.running is True and "no heartbeat for 120 s: stuck?" in stuck.how
        finally:
            lock.release()
        gone = await ops_calls.service_state(outbox, now=NOW + 120)
        assert gone.running is False and "no heartbeat for 120 s" in gone.how


def test_the_new_commands_have_help_with_an_example() -> None:
    for command in (["calls"], ["calls", "show"], ["capture"], ["status"]):
        result = cli(*command, "--help")
        assert result.returncode == 0 and "example" in result.stdout.lower(), command
    assert "--state STATE" in cli("calls", "--help").stdout
