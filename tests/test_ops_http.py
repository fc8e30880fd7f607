"""/healthz and /metrics over real HTTP: against a fake service (health rules)
and against the whole service after a real call (the counters move)."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.ami.listener import ListenerStats
from asterisk_miitel.calls.tracker import TrackerStats
from asterisk_miitel.config import HttpConfig
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.ops.http import bound_port, make_app, start_http
from asterisk_miitel.ops.metrics import ServiceMetrics
from asterisk_miitel.outbox.sender import SenderStats
from asterisk_miitel.outbox.store import NewCall, Outbox
from asterisk_miitel.service import Service

from .support import DEMO_DIR, service_config, wait_for

RECORDING = "miitel-1795472139-1795472139.4-1.raw"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Stats:
    stats: Any


@dataclass
class FakeService:
    """What ops.view.ServiceView asks for, from the real stats classes."""

    outbox: Outbox
    clock: Clock
    listener: Stats | None = field(default_factory=lambda: Stats(ListenerStats()))
    tracker: Stats = field(default_factory=lambda: Stats(TrackerStats()))
    sender: Stats | None = field(default_factory=lambda: Stats(SenderStats()))
    accepting: bool = True


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeService]:
    clock = Clock()
    async with Outbox(tmp_path / "outbox.sqlite3", clock=clock) as outbox:
        yield FakeService(outbox, clock)


class Ops:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def get(self, path: str) -> tuple[int, Any, str]:
        async with aiohttp.ClientSession() as session, session.get(self.base + path) as resp:
            text = await resp.text()
            body = await resp.json() if path == "/healthz" else text
            return resp.status, body, resp.headers["Content-Type"]


async def serve(service: Any, metrics: ServiceMetrics | None = None,
                **config: Any) -> tuple[Ops, Any]:
    app = make_app(service, HttpConfig(enabled=True, port=0, **config), metrics)
    runner = await start_http(app, "127.0.0.1", 0)
    return Ops(bound_port(runner)), runner


async def test_healthy_service_answers_200_with_the_numbers(fake: FakeService) -> None:
    fake.listener.stats.connected = True  # type: ignore[union-attr]
    fake.listener.stats.last_event_at = time.monotonic() - 5  # type: ignore[union-attr]
    ops, runner = await serve(fake)
    try:
        status, body, _ = await ops.get("/healthz")
    finally:
        await runner.cleanup()
    assert status == 200 and body["status"] == "ok" and body["problems"] == []
    assert body["ami"]["connected"] is True and body["ami"]["seconds_since_last_event"] >= 5
    assert body["outbox"] == {"depth": 0, "oldest_waiting_seconds": None, "set_aside": 0,
                              "writable": True}


async def test_503_when_ami_is_down_for_long_and_200_again_after_reconnect(
    fake: FakeService,
) -> None:
    stats = fake.listener.stats  # type: ignore[union-attr]
    stats.connected = True
    ops, runner = await serve(fake, unhealthy_after_seconds=60)
    try:
        assert (await ops.get("/healthz"))[0] == 200
        stats.connected = False  # the link drops
        fake.clock.advance(1)
        status, body, _ = await ops.get("/healthz")
        assert status == 200 and body["ami"]["connected"] is False  # a short gap is fine
        fake.clock.advance(45)
        assert (await ops.get("/healthz"))[0] == 200
        fake.clock.advance(30)
        status, body, _ = await ops.get("/healthz")
        assert status == 503 and body["status"] == "unhealthy"
        assert body["problems"] == ["AMI disconnected for 75 s"]
        stats.connected = True
        assert (await ops.get("/healthz"))[0] == 200
    finally:
        await runner.cleanup()


async def test_503_when_ami_never_connects(fake: FakeService) -> None:
    fake.listener.stats.login_failures = 3  # type: ignore[union-attr]
    ops, runner = await serve(fake, unhealthy_after_seconds=60)
    try:
        assert (await ops.get("/healthz"))[0] == 200  # just started
        fake.clock.advance(61)
        status, body, _ = await ops.get("/healthz")
    finally:
        await runner.cleanup()
    assert status == 503 and "login refused" in body["problems"][0]


async def test_503_when_a_call_waits_too_long(fake: FakeService) -> None:
    fake.listener.stats.connected = True  # type: ignore[union-attr]
    await fake.outbox.add(NewCall(id="pbx:a.raw:1", file="/r/a.raw", state="ready", audio={}))
    ops, runner = await serve(fake, max_wait_seconds=600)
    try:
        fake.clock.advance(30)
        status, body, _ = await ops.get("/healthz")
        assert status == 200
        assert body["outbox"]["depth"] == 1 and body["outbox"]["oldest_waiting_seconds"] == 30
        fake.clock.advance(600)
        status, body, _ = await ops.get("/healthz")
    finally:
        await runner.cleanup()
    assert status == 503 and "a call has waited 630 s" in body["problems"][0]


async def test_503_when_the_outbox_cannot_be_written(fake: FakeService) -> None:
    fake.listener.stats.connected = True  # type: ignore[union-attr]
    fake.accepting = False  # the service hit OutboxFull
    ops, runner = await serve(fake)
    try:
        status, body, _ = await ops.get("/healthz")
    finally:
        await runner.cleanup()
    assert status == 503 and body["outbox"]["writable"] is False
    assert "outbox cannot be written" in body["problems"][0]


async def test_without_ami_listening_only_the_outbox_counts(fake: FakeService) -> None:
    fake.listener = None
    fake.clock.advance(10_000)
    ops, runner = await serve(fake)
    try:
        status, body, _ = await ops.get("/healthz")
    finally:
        await runner.cleanup()
    assert status == 200 and body["ami"] == {"connected": None}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_read_the_stats_at_scrape_time(fake: FakeService) -> None:
    metrics = ServiceMetrics(fake)
    other = ServiceMetrics(fake)  # a second registry in the same process: no clash
    ops, runner = await serve(fake, metrics)
    try:
        status, text, ctype = await ops.get("/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        before = samples(text)
        fake.listener.stats.reconnects = 2  # type: ignore[union-attr]
        fake.tracker.stats.by_event["Hangup"] = 7
        fake.sender.stats.retries = 3  # type: ignore[union-attr]
        await fake.outbox.add(NewCall(id="x", file="/r/x.raw", state="set_aside", audio={}))
        after = samples((await ops.get("/metrics"))[1])
    finally:
        await runner.cleanup()
    assert before[("asterisk_miitel_ami_reconnects_total", ())] == 0
    assert after[("asterisk_miitel_ami_reconnects_total", ())] == 2
    assert after[("asterisk_miitel_ami_events_total", (("event", "Hangup"),))] == 7
    assert after[("asterisk_miitel_retries_total", ())] == 3
    assert after[("asterisk_miitel_outbox_calls", (("state", "set_aside"),))] == 1
    assert after[("asterisk_miitel_outbox_depth", ())] == 0
    assert other.registry is not metrics.registry


def test_metrics_observer_never_breaks_the_sender(fake: FakeService) -> None:
    metrics = ServiceMetrics(fake)
    metrics.observe("uploaded", object(), {"latency": "not a number"})
    metrics.observe("retry", None, {})
    metrics.count_skipped({"event_type": "EXTENSION"}, "send.exclude_directions: internal")
    assert metrics.calls.labels("EXTENSION", "skipped")._value.get() == 1
    assert metrics.skipped.labels("send.exclude_directions")._value.get() == 1


# -- the whole service ------------------------------------------------------------------


async def test_metrics_count_a_real_call_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    events = shift_times(transcript_events((DEMO_DIR / "ami.log").read_bytes()),
                         time.time() - 10)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(events) as ami:
        service = Service(service_config(tmp_path, ami.port, standin.webhook_url))
        metrics = service.metrics  # its Sender reports to them
        ops, runner = await serve(service, metrics)
        await service.start()
        try:
            async def uploaded() -> bool:
                return (await service.outbox.counts())["uploaded"] == 1

            await wait_for(uploaded, 20)
            text = (await ops.get("/metrics"))[1]
            status, health, _ = await ops.get("/healthz")
        finally:
            await service.stop()
            await runner.cleanup()
    got = samples(text)
    key = ("asterisk_miitel_calls_total", (("event_type", "INCOMING_CALL"),
                                           ("outcome", "uploaded")))
    assert got[key] == 1
    assert got[("asterisk_miitel_hangup_to_upload_seconds_count", ())] == 1
    assert got[("asterisk_miitel_upload_size_bytes_count", ())] == 1
    assert got[("asterisk_miitel_uploaded_bytes_total", ())] > 0
    assert got[("asterisk_miitel_ami_events_total", (("event", "Newchannel"),))] == 2
    assert got[("asterisk_miitel_ami_connected", ())] == 1
    assert got[("asterisk_miitel_outbox_calls", (("state", "uploaded"),))] == 1
    assert status == 200 and health["ami"]["connected"] is True
    assert health["outbox"]["depth"] == 0
    assert standin.webhook_url.split("/")[-1] not in text + str(health)  # nothing secret
