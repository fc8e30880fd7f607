"""5. Upload: peak memory while sending a 500 MB recording, and loopback throughput.

Two processes besides this one: the MiiTel stand-in (`python -m
asterisk_miitel.miitel.standin`, which streams the PUT to disk and probes
it, as the tests use it) and the client (`python -m benchmarks.upload
client`): `MiitelClient.create_call_history` then `upload_recording` of a
500 MB stereo WAV (smoke: 50 MB) over 127.0.0.1. The client process holds
nothing else, so its peak RSS (VmHWM, and /proc sampled every 5 ms during
the PUT) is the upload's. Not ru_maxrss: a child inherits its parent's peak
there on Linux (see common.peak_rss). The WAV is sparse: reading it costs no
disk time, so the throughput is the client's and the stand-in's (which
writes every byte to its data directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import MB, Section, peak_rss, python_env, rss_now, run_python

PEAK_TARGET = 100 * MB
CALL_DATA: dict[str, Any] = {
    "call_data_id": "bench:upload:1",
    "audio_file_type": "wav",
    "event_type": "OUTGOING_CALL",
    "groupname": None,
    "queue_name": None,
    "call_starts_at": "2026-11-23T10:00:00+09:00",
    "call_answered_at": "2026-11-23T10:00:05+09:00",
    "call_ends_at": "2026-11-23T14:22:00+09:00",
    "circuit_number": None,
    "audio_channel_type": "STEREO",
    "participants": [
        {"type": "FROM", "stereo_lr": "left",
         "miitel_user_id": "9b1d82f5-9845-4158-9c7b-75e7c235d8e7", "number": "1001",
         "name": "Suzuki Ichiro"},
        {"type": "TO", "stereo_lr": "right", "miitel_user_id": None, "number": "0312345678",
         "name": None},
    ],
    "tags": [],
}


def sparse_wav(path: Path, size: int) -> Path:
    """A stereo 8 kHz 16-bit WAV of `size` bytes, all holes (silence) but its header."""
    data = size - 44
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, 8000, 32000, 4, 16)
              + b"data" + struct.pack("<I", data))
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(size)
    return path


async def _client(webhook: str, path: str) -> dict[str, float]:
    from asterisk_miitel.miitel.client import MiitelClient

    before = rss_now()
    peak = [before]
    peak_at = [0.0]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            now = rss_now()
            if now > peak[0]:
                peak[0], peak_at[0] = now, time.perf_counter() - start
            await asyncio.sleep(0.005)

    async with MiitelClient(webhook) as client:
        url = await client.create_call_history(CALL_DATA)
        start = time.perf_counter()
        sampler = asyncio.create_task(sample())
        sent = await client.upload_recording(url, path, "wav")
        seconds = time.perf_counter() - start
        stop.set()
        await sampler
    return {"rss_before": before, "rss_peak_sampled": peak[0], "peak_at": peak_at[0],
            "hwm": peak_rss(), "bytes": sent, "seconds": seconds}


def _start_standin(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "asterisk_miitel.miitel.standin", "--port", "0",
         "--data-dir", str(data_dir), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=python_env())
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("webhook URL: "):
            return proc, line.split(": ", 1)[1].strip()
    raise RuntimeError(f"the stand-in exited ({proc.wait()}) before printing its URL")


def run(smoke: bool) -> Section:
    section = Section()
    size = (50 if smoke else 500) * MB
    runs = 1 if smoke else 3
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        wav = sparse_wav(Path(tmp) / "long.wav", size)
        standin, webhook = _start_standin(Path(tmp) / "standin")
        try:
            for _ in range(runs):  # a fresh client process each time: its own peak
                proc = run_python(["-m", "benchmarks.upload", "client", webhook, str(wav)],
                                  timeout=600)
                if proc.returncode != 0:
                    raise RuntimeError(f"upload client failed: {proc.stderr.strip()[-400:]}")
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        finally:
            standin.terminate()
            standin.wait(10)
    peak = max(max(r["hwm"], r["rss_peak_sampled"]) for r in results)
    before = max(r["rss_before"] for r in results)
    rates = sorted(r["bytes"] / MB / r["seconds"] for r in results)
    section.add("5a", f"peak RSS of the client process uploading a {size // MB} MB WAV",
                f"{peak / MB:.1f} MB", f"<= {PEAK_TARGET // MB} MB", peak <= PEAK_TARGET,
                f"worst of {runs}; {before / MB:.1f} MB before the PUT (Python, aiohttp, "
                "pydantic loaded)")
    section.add("5b", "upload throughput to the stand-in on loopback",
                f"{rates[len(rates) // 2]:.0f} MB/s", "", None,
                f"median of {runs} ({', '.join(f'{r:.0f}' for r in rates)}); {size // MB} MB, "
                "the stand-in writes it to disk")
    for r in results:
        section.details.append(
            f"upload: {r['bytes'] / MB:.0f} MB in {r['seconds']:.2f} s, RSS before "
            f"{r['rss_before'] / MB:.1f} MB, sampled peak {r['rss_peak_sampled'] / MB:.1f} MB "
            f"at {r['peak_at']:.2f} s, VmHWM {r['hwm'] / MB:.1f} MB")
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upload")
    sub = parser.add_subparsers(dest="cmd", required=True)
    client = sub.add_parser("client", help="create a call history, upload FILE, print JSON")
    client.add_argument("webhook")
    client.add_argument("file")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_client(args.webhook, args.file))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
