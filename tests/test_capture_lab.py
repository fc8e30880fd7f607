"""`capture` against the real Asterisk lab: the stream a real PBX sends, recorded
with the service's own least-privileged AMI user while a real call is made,
stopped with Ctrl-C (SIGINT), replays to the call_data the service would send;
the AMI secret is nowhere in the file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import e2e
from tests.lab import Lab
from tests.lab.scenarios import CUSTOMER, SCENARIOS, Runner

pytestmark = pytest.mark.lab


def test_capture_a_real_call_and_replay_it(lab: Lab, tmp_path: Path) -> None:
    lab.wait_idle()
    config = e2e.write_config(tmp_path, lab, "https://acme.miitel.jp/webhook/Zk3QnVh2xYpL9sTq")
    out = tmp_path / "pbx.ami"
    proc = subprocess.Popen(
        [sys.executable, "-m", "asterisk_miitel", "capture", "--minutes", "5", "--out",
         str(out), "--config", str(config)],
        cwd=e2e.REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    runner = Runner(lab)
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert started.startswith(f"capturing AMI from {lab.ami_host}:{lab.ami_port} as "
                                  "'miitel' for 5 min"), started
        time.sleep(0.5)  # logged in: the banner and login answer come before the first event
        _flavour, play = SCENARIOS["inbound_answered"]
        play(lab, runner, duration_ms=2000)
        runner.wait_all()
        lab.wait_idle(timeout=30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: stop early, keep the file
        _stdout, err = proc.communicate(timeout=30)
    finally:
        runner.kill_all()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "capture: stopped after" in err and "1 recording(s) started" in err
    data = out.read_bytes()
    assert data.startswith(b"Asterisk Call Manager/") and b"Event: MixMonitorStart\r\n" in data
    assert lab.miitel_secret.encode() not in data and b"Action: Login" not in data
    replayed = subprocess.run(
        [sys.executable, "-m", "asterisk_miitel", "replay", str(out), "--config", str(config)],
        cwd=e2e.REPO, capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    [call] = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert call["event_type"] == "INCOMING_CALL"
    assert e2e.party(call, "FROM") == e2e.outside(CUSTOMER[1], "FROM", "left", CUSTOMER[0])
    assert e2e.party(call, "TO") == e2e.user("1001", "TO", "right")
    assert replayed.stderr.splitlines()[-1] == (
        "1 recording(s): 1 would be sent, 0 set aside, 0 skipped")
