"""Shared helpers for tests that talk to the MiiTel stand-in over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

import asterisk_miitel

SHARED = Path("/work/shared/miitel")
PACKAGE_PARENT = Path(asterisk_miitel.__file__).resolve().parent.parent
USER_ID = "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"


class FakeClock:
    """A clock the tests move by hand: `clock.advance(3600)`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sample(n: int) -> dict[str, Any]:
    """Official sample 1 or 2 from MiiTel's repository."""
    return json.loads((SHARED / f"incoming_webhook.sample{n}.json").read_text("utf-8"))


def call_data(call_data_id: str = "call-1", **changes: Any) -> dict[str, Any]:
    """A valid call_data entry (an answered outgoing stereo WAV call)."""
    entry: dict[str, Any] = {
        "call_data_id": call_data_id,
        "audio_file_type": "wav",
        "event_type": "OUTGOING_CALL",
        "groupname": None,
        "queue_name": None,
        "call_starts_at": "2026-11-23T10:00:00+09:00",
        "call_answered_at": "2026-11-23T10:00:05+09:00",
        "call_ends_at": "2026-11-23T10:03:00+09:00",
        "circuit_number": "0501111222",
        "audio_channel_type": "STEREO",
        "participants": [
            {"type": "FROM", "stereo_lr": "left", "miitel_user_id": USER_ID,
             "number": "201", "name": "山田太郎"},
            {"type": "TO", "stereo_lr": "right", "miitel_user_id": None,
             "number": "0312345678", "name": None},
        ],
        "tags": [{"value": "test"}],
    }
    entry.update(copy.deepcopy(changes))
    return entry


def write_wav(path: Path, *, channels: int = 2, rate: int = 8000, seconds: float = 1.0,
              data_bytes: int | None = None, sparse: bool = False) -> Path:
    """A 16-bit PCM WAV. `sparse=True` makes a large file of silence without writing it."""
    frame = channels * 2
    size = data_bytes if data_bytes is not None else int(seconds * rate) * frame
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * frame, frame, 16)
    header += b"data" + struct.pack("<I", size)
    with open(path, "wb") as fh:
        fh.write(header)
        if sparse:
            fh.truncate(len(header) + size)
        else:
            # A quiet saw-tooth, so the file is not all zeros.
            fh.write(bytes((i * 7) & 0x0F for i in range(size)))
    return path


def write_mp3(path: Path, size: int = 4096) -> Path:
    # An MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz), then padding.
    path.write_bytes(b"\xff\xfb\x90\x64" + bytes(size - 4))
    return path


def write_m4a(path: Path, size: int = 4096) -> Path:
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(size - 12))
    return path


async def post_json(url: str, body: object, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, **kw) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


# -- the stand-in as a subprocess -------------------------------------------------------


@dataclass
class StandInProcess:
    proc: subprocess.Popen[str]
    webhook_url: str
    base_url: str

    async def calls(self) -> list[dict[str, Any]]:
        return list(await get_json(f"{self.base_url}/calls"))

    async def control(self, doc: dict[str, Any]) -> Any:
        status, answer = await post_json(f"{self.base_url}/_control", doc)
        assert status == 200, answer
        return answer


@asynccontextmanager
async def standin_process(data_dir: Path, *args: str) -> AsyncIterator[StandInProcess]:
    """`python -m asterisk_miitel.miitel.standin --port 0`, stopped with SIGTERM."""
    proc = _spawn_standin(data_dir, args)
    try:
        webhook_url = await asyncio.wait_for(asyncio.to_thread(_read_webhook_url, proc), 20)
        base = re.match(r"https?://[^/]+", webhook_url)
        assert base is not None
        yield StandInProcess(proc, webhook_url, base.group(0))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()


def _spawn_standin(data_dir: Path, args: tuple[str, ...]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    return subprocess.Popen(
        [sys.executable, "-m", "asterisk_miitel.miitel.standin", "--port", "0",
         "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )


def _read_webhook_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("webhook URL: "):
            return line.split(": ", 1)[1].strip()
    raise RuntimeError(f"stand-in exited with {proc.wait()} before printing its URL")


# -- a raw HTTP server that records what went over the wire ---------------------------


@dataclass
class WireRequest:
    head: str
    headers: dict[str, str]
    body_bytes: int


@dataclass
class WireRecorder:
    """Answers 200 to anything and keeps each request's head as sent on the wire."""

    requests: list[WireRequest] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/upload/secret-token-1234?X-Amz-Signature=abc%2Fdef"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {}
        for line in head.split("\r\n")[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        received = 0
        while received < length:
            chunk = await reader.read(min(1 << 16, length - received))
            if not chunk:
                break
            received += len(chunk)
        self.requests.append(WireRequest(head, headers, received))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def wire_recorder() -> AsyncIterator[WireRecorder]:
    recorder = WireRecorder()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    recorder.port = server.sockets[0].getsockname()[1]
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()


def file_size(path: Path) -> int:
    return path.stat().st_size


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def rss_bytes() -> int:
    """This process's resident set size now (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
