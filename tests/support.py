"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asterisk_miitel.config import Config

FIXTURES = Path(__file__).parent / "fixtures"
TARO = "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"
HANAKO = "5d7c3e1a-2b4f-4c6d-8e9f-0a1b2c3d4e5f"
JIRO = "0f1e2d3c-4b5a-4968-8776-655443322110"


def lab_config(**over: object) -> Config:
    """The config the lab PBX's transcripts are read with."""
    base: dict[str, object] = {
        "users": {
            "1001": {"miitel_user_id": TARO, "name": "Taro Yamada"},
            "1002": {"miitel_user_id": HANAKO, "name": "Hanako Sato"},
            "1003": {"miitel_user_id": JIRO, "name": "Jiro Suzuki"},
        },
        "numbers": {"outside_line_prefix": "0"},
        "pbx": {"id": "lab", "timezone": "Asia/Tokyo"},
    }
    base.update(over)
    return Config(**base)  # type: ignore[arg-type]


DEMO_DIR = Path(__file__).resolve().parents[1] / "asterisk_miitel" / "data" / "demo"
DEMO_RECORDING_DIR = "/tmp/asterisk-miitel-lab-0ro13im1/spool/monitor"


def service_config(tmp: Path, ami_port: int, webhook_url: str | None, **over: object) -> Config:
    """A config for an in-process Service against FakeAmi and the stand-in."""
    monitor = tmp / "monitor"
    monitor.mkdir(exist_ok=True)
    base: dict[str, object] = {
        "ami": {"host": "127.0.0.1", "port": ami_port, "username": "miitel", "secret": "secret",
                "ping_interval": 1, "ping_timeout": 1, "reconnect_min": 0.1, "reconnect_max": 0.5},
        "miitel": {"webhook_url": webhook_url, "retry_base": 0.05, "retry_max": 0.5,
                   "timeout": 3, "upload_idle_timeout": 3},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "recordings": {"work_dir": str(tmp / "work"), "wait_timeout": 3, "min_free_mb": 0,
                       "path_map": {DEMO_RECORDING_DIR: str(monitor)},
                       "dirs": [DEMO_RECORDING_DIR]},
        "users": {"1001": {"miitel_user_id": TARO, "name": "Suzuki Ichiro",
                           "endpoints": ["desk-suzuki"]}},
        "pbx": {"id": "test-pbx", "timezone": "Asia/Tokyo"},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    return Config(**base)  # type: ignore[arg-type]


def place_recordings(tmp: Path, files: list[str]) -> None:
    """A copy of the demo recording at each name the calls' MixMonitor used."""
    import os
    import shutil

    (tmp / "monitor").mkdir(exist_ok=True)
    for f in files:
        shutil.copy(DEMO_DIR / "miitel-1795472139-1795472139.4-1.raw",
                    tmp / "monitor" / os.path.basename(f))


async def wait_for(predicate: Any, limit: float = 10.0) -> None:
    """Poll an async predicate until it holds; fail the test after `limit` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def done(service: Any, n: int = 1) -> Any:
    """A predicate: `n` calls of the service's outbox reached a final state."""

    async def check() -> bool:
        c = await service.outbox.counts()
        return bool(c["uploaded"] + c["set_aside"] + c["skipped"] + c["sent"] >= n)

    return check


def tls_server(cert: Path, key: Path) -> Any:
    """A server-side ssl.SSLContext with that certificate."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Any]:
    """A started Service, stopped (as on SIGTERM) when the block ends."""
    from asterisk_miitel.service import Service

    service = Service(config)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
