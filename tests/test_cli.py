"""The command line as a person uses it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from asterisk_miitel import __version__
from asterisk_miitel.outbox.store import NewCall, Outbox

from .support import FIXTURES, TARO

LAB = FIXTURES / "captures"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asterisk_miitel", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def write_config(tmp: Path, users: str = "") -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""
[pbx]
id = "cli-test"
timezone = "Asia/Tokyo"
[numbers]
outside_line_prefix = "0"
[outbox]
path = "{tmp / 'outbox.sqlite3'}"
[users]
{users}
""")
    return path


def test_version() -> None:
    assert cli("--version").stdout.strip() == f"asterisk-miitel {__version__}"


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[ami]\nport = "five"\n')
    result = cli("replay", str(LAB / "outbound" / "ami_miitel.log"), "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ami.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_prints_each_call_data_as_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'"1001" = {{ miitel_user_id = "{TARO}", endpoints = ["desk-suzuki"] }}')
    result = cli("replay", str(LAB / "ten_at_once" / "ami_miitel.log"), "--config", str(config))
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 10
    assert {p["number"] for c in lines for p in c["participants"] if p["type"] == "FROM"} == {
        f"031234000{n}" for n in range(10)}


def test_replay_explain_names_the_rule_for_each_party(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = cli("replay", str(LAB / "inbound_answered" / "ami_miitel.log"), "--explain",
                 "--config", str(config))
    assert "external by rule freepbx-context" in result.stdout
    assert "internal by rule" in result.stdout
    assert "needs a MiiTel user for TO" in result.stdout  # no [users]: it would be set aside


async def _seed(path: Path) -> None:
    async with Outbox(path) as outbox:
        await outbox.add(NewCall(
            id="cli-test:a.raw:1", file="/x/a.raw", state="set_aside", reason_code="users",
            reason="INCOMING_CALL needs a MiiTel user for TO but extension 1001 has none",
            audio={"file": "/x/a.raw", "mode": "interleaved", "receive": None, "transmit": None,
                   "file_type": "wav", "channel_type": "STEREO", "expected_duration": 5.0,
                   "voicemail": False, "expect_audio": True},
            call_data={"call_data_id": "cli-test:a.raw:1", "event_type": "INCOMING_CALL",
                       "call_answered_at": "2026-11-23T10:00:05+09:00", "groupname": None,
                       "participants": [
                           {"type": "FROM", "stereo_lr": "left", "miitel_user_id": None,
                            "number": "0312349999", "name": None},
                           {"type": "TO", "stereo_lr": "right", "miitel_user_id": None,
                            "number": "1001", "name": None}]},
            parties=[{"type": "FROM", "extension": None}, {"type": "TO", "extension": "1001"}],
        ))
        await outbox.add(NewCall(
            id="cli-test:b.raw:2", file="/x/b.raw", state="set_aside",
            reason_code="outcome_unknown", reason="no answer from MiiTel",
            audio={"file": "/x/b.raw"}, call_data={"call_data_id": "cli-test:b.raw:2"},
        ))


def test_status_and_retry(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    asyncio.run(_seed(tmp_path / "outbox.sqlite3"))
    status = cli("status", "--config", str(config))
    assert status.returncode == 0
    assert "set_aside          2" in status.stdout and "extension 1001 has none" in status.stdout
    # Still no user for 1001: retry says why and changes nothing.
    again = cli("retry", "cli-test:a.raw:1", "--config", str(config))
    assert again.returncode == 1 and "still cannot be sent" in again.stdout
    # Outcome unknown: only with --force, after a person checked MiiTel.
    refused = cli("retry", "cli-test:b.raw:2", "--config", str(config))
    assert refused.returncode == 1 and "--force" in refused.stdout
    forced = cli("retry", "cli-test:b.raw:2", "--force", "--config", str(config))
    assert forced.returncode == 0 and "queued again" in forced.stdout
    # The admin adds the user: the call goes back in line with the user's id.
    config = write_config(tmp_path, f'"1001" = {{ miitel_user_id = "{TARO}", name = "Taro" }}')
    fixed = cli("--config", str(config), "retry", "--all-set-aside")
    assert fixed.returncode == 0 and "queued again" in fixed.stdout

    async def row() -> dict:
        async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
            r = await outbox.get("cli-test:a.raw:1")
            assert r is not None
            return {"state": r.state, "to": r.call_data["participants"][1]}
    got = asyncio.run(row())
    assert got["state"] == "waiting_recording"
    assert got["to"]["miitel_user_id"] == TARO and got["to"]["name"] == "Taro"


def test_every_command_has_help_with_an_example() -> None:
    for command in ("run", "replay", "status", "retry", "check", "demo", "mock-miitel"):
        result = cli(command, "--help")
        assert result.returncode == 0, command
        assert "example" in result.stdout.lower(), command


def test_replay_shows_progress_on_long_inputs(tmp_path: Path) -> None:
    from asterisk_miitel.ami.synth import synth_stream

    base = (LAB / "inbound_answered" / "ami_miitel.log").read_bytes()
    big = tmp_path / "big.log"
    big.write_bytes(synth_stream(base, 500))
    assert big.stat().st_size > 4 * 1024 * 1024
    result = cli("replay", str(big), "--config", str(write_config(tmp_path)))
    assert result.returncode == 0
    steps = [line for line in result.stderr.splitlines() if line.endswith("%")]
    assert len(steps) >= 10 and steps[-1] == "replay: 100%"
    assert "replay: done, 500 recording(s)" in result.stderr
    # Without a MiiTel user for 1001 each call would be set aside, but replay
    # still prints what it would send.
    assert len(result.stdout.splitlines()) == 500
