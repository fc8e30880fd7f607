"""`asterisk-miitel demo`: a real captured call, end to end, on this machine.

Nothing needs configuring. The demo starts the bundled MiiTel stand-in, a
small AMI server that plays the call's transcript (captured from a real
Asterisk), and the service itself with the same code `run` uses: it logs in
over TCP, tracks the call, waits for the recording, converts it to a stereo
WAV, creates the call history and uploads it. Then it prints what the
stand-in received, and which speaker is on which stereo channel.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import wave
from importlib import resources
from pathlib import Path
from typing import Any

from .ami.fake_server import FakeAmi, shift_times, transcript_events
from .config import Config
from .logs import setup_logging
from .miitel.standin import StandIn
from .outbox.states import FINAL
from .service import Service

DEMO_USERS = {
    "1001": {
        "miitel_user_id": "9b1d82f5-9845-4158-9c7b-75e7c235d8e7",
        "name": "Suzuki Ichiro",
        "endpoints": ["desk-suzuki"],
    },
}
SPEAKING = 100.0  # RMS above this: someone talks on that channel


def _bundled() -> tuple[bytes, list[Path]]:
    base = resources.files("asterisk_miitel") / "data" / "demo"
    transcript = (base / "ami.log").read_bytes()
    recordings = [Path(str(p)) for p in base.iterdir() if p.name.endswith((".raw", ".wav"))]
    return transcript, recordings


def _recording_dirs(transcript: bytes) -> set[str]:
    dirs = set()
    for line in transcript.decode("utf-8", "replace").splitlines():
        if line.startswith("Value: /") and "monitor" in line:
            dirs.add(os.path.dirname(line[len("Value: ") :].strip()))
    return dirs


async def run_demo(keep: str | None = None, debug: bool = False) -> int:
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="asterisk-miitel-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    setup_logging("text", "DEBUG" if debug else "WARNING")
    transcript, recordings = _bundled()
    monitor = work / "monitor"
    monitor.mkdir(exist_ok=True)
    for rec in recordings:
        shutil.copy(rec, monitor / rec.name)
    # Replay the call as if it happened just now (the captured times, shifted).
    events = shift_times(transcript_events(transcript), time.time() - 10.0)
    _say("1/4", "starting the MiiTel stand-in and an AMI server playing a real captured call")
    async with StandIn(work / "miitel", port=0) as standin, FakeAmi(events, pace=0.005) as ami:
        config = Config(
            ami={"host": "127.0.0.1", "port": ami.port, "username": "miitel",
                 "secret": "secret", "ping_interval": 5},
            miitel={"webhook_url": standin.webhook_url},
            outbox={"path": str(work / "outbox.sqlite3")},
            recordings={
                "work_dir": str(work / "converted"),
                "path_map": {d: str(monitor) for d in _recording_dirs(transcript)},
                "dirs": sorted(_recording_dirs(transcript)),
                "wait_timeout": 5,
                "min_free_mb": 0,
            },
            users=DEMO_USERS,
            numbers={"outside_line_prefix": "0"},
            pbx={"id": "demo-pbx"},
        )
        _say("2/4", f"running the service (AMI 127.0.0.1:{ami.port}, outbox {work})")
        service = Service(config)
        await service.start()
        try:
            await _wait_until_done(service, ami)
        finally:
            await service.stop(deadline=5)
        _say("3/4", "what the MiiTel stand-in received:")
        calls = standin.calls()
        for call in calls:
            _print_call(call)
    _say("4/4", f"done; files are in {work}" if keep else "done")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    ok = bool(calls) and all(c["status"] == "uploaded" for c in calls)
    if ok:
        print(NEXT_STEP)
    return 0 if ok else 1


# Said once the demo call is in: where a user goes from here.
NEXT_STEP = """
Next: connect it to your PBX.
  asterisk-miitel setup --pbx plain --dry-run    (or --pbx freepbx) what installing changes
  asterisk-miitel capture --minutes 10           record your PBX's AMI stream meanwhile, then
  asterisk-miitel replay FILE --explain          what each of your calls would become
docs/OPERATIONS.md is the guide (docs/FREEPBX.md for FreePBX 17)."""


async def _wait_until_done(service: Service, ami: FakeAmi, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    shown = -1
    while time.monotonic() < deadline:
        counts = await service.outbox.counts()
        total = sum(counts.values())
        done = sum(counts[s] for s in FINAL)
        if ami.sent_events != shown:
            shown = ami.sent_events
            _progress(f"events {ami.sent_events}/{len(ami.events)}, calls {done}/{total} done")
        if ami.finished.is_set() and total and done == total and not service.tracker.recordings:
            _progress(f"events {ami.sent_events}/{len(ami.events)}, calls {done}/{total} done\n")
            return
        await asyncio.sleep(0.05)
    print("\n  the demo did not finish in time; see `asterisk-miitel status`", file=sys.stderr)


def _print_call(call: dict[str, Any]) -> None:
    data = call["call_data"]
    print(json.dumps(data, ensure_ascii=False, indent=2))
    if "group_name" in data and "groupname" in data:
        print("  groupname and group_name carry the same value: MiiTel's schema names the "
              "field groupname,\n  its official code samples send group_name; the service "
              "sends both.")
    print(
        f"  status: {call['status']}"
        + (f" ({call['error']})" if call.get("error") else "")
        + f"; file: {call.get('format')}, {call.get('channels')} channel(s), "
        f"{call.get('duration') or 0:.1f} s, {call.get('bytes')} bytes"
    )
    path = call.get("file")
    if path and call.get("channels") == 2:
        left, right = _rms(path)
        who = {p["stereo_lr"]: p for p in data["participants"]}
        silent = []
        for side, level in (("left", left), ("right", right)):
            p = who.get(side, {})
            label = f"{p.get('type')} {p.get('number')} {p.get('name') or ''}".strip()
            print(f"  {side:<5} channel: {label:<40} audio level {level:7.1f}"
                  + ("  (speaking)" if level > SPEAKING else "  (silent)"))
            if level <= SPEAKING:
                silent.append(p.get("name") or p.get("number") or side)
        if len(silent) == 1:
            print(f"  {silent[0]}'s side is silent because the captured caller was: the "
                  "call was recorded\n  in the test lab with a phone that sent no audio. "
                  "On your PBX both channels carry\n  speech; what matters here is that "
                  "each speaker is on their own channel.")


def _rms(path: str) -> tuple[float, float]:
    with wave.open(path, "rb") as wav:
        samples = array.array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    left, right = samples[0::2], samples[1::2]

    def rms(xs: array.array[int]) -> float:
        return (sum(x * x for x in xs) / len(xs)) ** 0.5 if xs else 0.0

    return rms(left), rms(right)


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def _progress(text: str) -> None:
    if sys.stdout.isatty():
        print(f"\r      {text}", end="", flush=True)
    elif text.endswith("\n"):
        print(f"      {text}", end="", flush=True)
