"""`capture` records the PBX's AMI stream without secrets; `replay` reads it back
(a file or standard input) and refuses what is not an AMI transcript."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from asterisk_miitel.ami.capture import capture
from asterisk_miitel.ami.fake_server import FakeAmi, transcript_events
from asterisk_miitel.config import AmiConfig, load_config
from asterisk_miitel.replay import replay_bytes

from .support import FIXTURES, TARO, lab_config

CAPTURES = FIXTURES / "captures"
SECRET = "s3cr3t-of-the-ami-user"
WEBHOOK = "https://acme.miitel.jp/webhook/Zk3QnVh2xYpL9sTq"
# Any AMI user may send a UserEvent with any headers: a hostile or careless one.
HOSTILE = (
    "Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Debug\r\n"
    f"Secret: {SECRET}\r\nAuthToken: abc123\r\nNote: the hook is {WEBHOOK}\r\n\r\n"
).encode()


def transcript(name: str) -> bytes:
    return (CAPTURES / name / "ami_miitel.log").read_bytes()


def payloads(data: bytes, config: Path | None = None) -> list[dict]:
    outcomes, _t, _p = replay_bytes(data, load_config(config) if config else lab_config())
    return [o.call_data.payload() for o in outcomes if o.call_data is not None]


def ami_config(port: int, secret: str = SECRET) -> AmiConfig:
    return AmiConfig(host="127.0.0.1", port=port, username="miitel", secret=secret,  # type: ignore[arg-type]
                     connect_timeout=5)


def write_config(tmp: Path, port: int, secret: str = SECRET, users: bool = True) -> Path:
    user = (f'"1001" = {{ miitel_user_id = "{TARO}", name = "Taro Yamada", '
            'endpoints = ["desk-suzuki"] }' if users else "")
    path = tmp / "config.toml"
    path.write_text(f"""
[ami]
host = "127.0.0.1"
port = {port}
username = "miitel"
secret = "{secret}"
[miitel]
webhook_url = "{WEBHOOK}"
[pbx]
id = "lab"
timezone = "Asia/Tokyo"
[numbers]
outside_line_prefix = "0"
[outbox]
path = "{tmp / 'outbox.sqlite3'}"
[users]
{user}
""")
    return path


async def run(*args: str, stdin: bytes | None = None) -> tuple[int, bytes, str]:
    """The CLI as its own process, without blocking this loop (the fake AMI runs here)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asterisk_miitel", *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_capture_writes_what_replay_reads_without_secrets() -> None:
    data = transcript("inbound_answered")
    events = transcript_events(data)
    async with FakeAmi([*events[:5], HOSTILE, *events[5:]], secret=SECRET) as ami:
        out = io.BytesIO()
        stats = await capture(ami_config(ami.port), out, 1.5, secrets=[WEBHOOK])
    written = out.getvalue()
    assert written.startswith(b"Asterisk Call Manager/11.0.0\r\n")
    assert stats.events == len(events) + 1 and stats.recordings == 1 and stats.redacted == 3
    assert stats.ended == "time is up" and 1.4 < stats.seconds < 3
    for secret in (SECRET, WEBHOOK, "abc123"):
        assert secret.encode() not in written
    assert b"Secret: <redacted>\r\nAuthToken: <redacted>\r\nNote: the hook is <redacted>" in (
        written)
    assert b"Action: Login" not in written and b"Response:" not in written
    assert payloads(written) == payloads(data) and len(payloads(data)) == 1


async def test_capture_then_replay_round_trip_on_the_command_line(tmp_path: Path) -> None:
    data = transcript("ten_at_once")
    async with FakeAmi(transcript_events(data), secret=SECRET) as ami:
        config = write_config(tmp_path, ami.port)
        out = tmp_path / "pbx.ami"
        code, _, err = await run("capture", "--minutes", "0.03", "--out", str(out),
                                 "--config", str(config))
        assert code == 0, err
        assert f"next: asterisk-miitel replay {out} --explain" in err
        assert out.stat().st_mode & 0o777 == 0o600  # callers' numbers: owner only
        again, _, err = await run("capture", "--minutes", "0.03", "--out", str(out),
                                  "--config", str(config))
        assert again == 2 and "exists" in err  # never over an earlier capture
    code, stdout, err = await run("replay", str(out), "--config", str(config))
    assert code == 0, err
    sent = [json.loads(line) for line in stdout.splitlines()]
    assert sent == payloads(data, config) and len(sent) == 10
    assert all(p["miitel_user_id"] == TARO for c in sent for p in c["participants"]
               if p["type"] == "TO")
    assert err.splitlines()[-1] == "10 recording(s): 10 would be sent, 0 set aside, 0 skipped"
    # the same through a pipe: capture to standard output, replay standard input
    async with FakeAmi(transcript_events(data), secret=SECRET) as ami:
        config = write_config(tmp_path, ami.port)
        code, piped, err = await run("capture", "--minutes", "0.03", "--out", "-",
                                     "--config", str(config))
        assert code == 0, err
    code, stdout, _ = await run("replay", "-", "--config", str(config), stdin=piped)
    assert code == 0 and [json.loads(line) for line in stdout.splitlines()] == sent


async def test_capture_with_a_wrong_secret_says_so_and_leaves_no_file(tmp_path: Path) -> None:
    async with FakeAmi([], secret=SECRET) as ami:
        config = write_config(tmp_path, ami.port, secret="not-the-right-one")
        out = tmp_path / "pbx.ami"
        code, _, err = await run("capture", "--minutes", "1", "--out", str(out),
                                 "--config", str(config))
    assert code == 2 and "login refused for user 'miitel'" in err and "not-the-right" not in err
    assert err.strip().splitlines()[-1].startswith("asterisk-miitel: login refused")
    assert not out.exists()


async def test_replay_refuses_empty_and_non_ami_input(tmp_path: Path) -> None:
    config = write_config(tmp_path, 5038)
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, out, err = await run("replay", str(empty), "--config", str(config))
    assert code == 1 and out == b"" and "is empty" in err and "capture" in err
    log = tmp_path / "full.log"
    log.write_text("[Nov 23 10:00:00] VERBOSE[123] pbx.c: Executing [1001@from-internal:1]\n")
    code, _, err = await run("replay", str(log), "--config", str(config))
    assert code == 1 and "is not an AMI transcript" in err
    code, _, err = await run("replay", "-", "--config", str(config), stdin=b"")
    assert code == 1 and "standard input is empty" in err
    banner_only = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\n"
    code, _, err = await run("replay", "-", "--config", str(config), stdin=banner_only)
    assert code == 1 and "has no AMI events" in err
    code, _, err = await run("replay", str(tmp_path / "nope.log"), "--config", str(config))
    assert code == 2 and "cannot read" in err


async def test_replay_explain_and_plain_agree_on_what_would_be_set_aside(tmp_path: Path) -> None:
    config = write_config(tmp_path, 5038, users=False)
    data = transcript("inbound_answered")  # answered by 1001, who has no MiiTel user here
    started = time.monotonic()
    code, out, err = await run("replay", "-", "--config", str(config), stdin=data)
    assert code == 0 and time.monotonic() - started < 30
    [line] = [x for x in err.splitlines() if x.startswith("# ")]
    assert "would be set aside (users)" in line and "lab:" in line
    assert err.splitlines()[-1] == "1 recording(s): 0 would be sent, 1 set aside, 0 skipped"
    assert len(out.splitlines()) == 1  # still printed: what it would send once fixed
    code, out, _ = await run("replay", "-", "--explain", "--config", str(config), stdin=data)
    assert b"# would be set aside (users)" in out


def test_replay_dash_on_a_terminal_says_what_to_pipe(tmp_path: Path) -> None:
    import os
    import pty

    config = write_config(tmp_path, 5038)
    _master, terminal = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "asterisk_miitel", "replay", "-",
                                 "--config", str(config)], stdin=terminal,
                                capture_output=True, text=True, timeout=30)
    finally:
        os.close(terminal)
        os.close(_master)
    assert result.returncode == 2 and "pipe one in" in result.stderr  # it does not hang
