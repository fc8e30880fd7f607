"""Traps that broke a real install (issue 15), each with the behaviour a user needs.

Every alert docs/OPERATIONS.md documents is triggered here against a running
service's /metrics, so an alert that can never fire is caught.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service

from .support import DEMO_DIR, service_config, wait_for

REPO = Path(__file__).resolve().parents[1]
RECORDING = "miitel-1795472139-1795472139.4-1.raw"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (PromQL's selector)."""
    return sum(v for (n, ls), v in got.items()
               if n == name and all((k, w) in ls for k, w in labels.items()))


async def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from asterisk_miitel.ops.http import bound_port

    port = bound_port(service._http)
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        return samples(await resp.text())


def demo_events(ended_ago: float = 10.0) -> list[bytes]:
    return shift_times(transcript_events((DEMO_DIR / "ami.log").read_bytes()),
                       time.time() - ended_ago)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HTTP = {"enabled": True, "port": 0}


# -- the documented alerts ------------------------------------------------------------


def documented_alerts() -> list[str]:
    text = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    para = text.split("Example alerts:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"`([^`]+)`", para)


ALERTS_TESTED = {
    "asterisk_miitel_ami_connected == 0": "test_alert_ami_down",
    'increase(asterisk_miitel_calls_total{outcome="set_aside"}[1h]) > 0':
        "test_alert_set_aside_fires_for_a_call_set_aside_at_intake",
    "asterisk_miitel_outbox_oldest_waiting_seconds > 1800": "test_alert_call_waiting",
    "histogram_quantile(0.95, rate(asterisk_miitel_hangup_to_upload_seconds_bucket[1h])) > 300":
        "test_alert_slow_uploads",
}


def test_every_documented_alert_has_a_test() -> None:
    documented = documented_alerts()
    assert documented, "docs/OPERATIONS.md lists no alerts"
    assert set(documented) == set(ALERTS_TESTED), documented
    for name in ALERTS_TESTED.values():
        assert name in globals(), name


async def test_alert_set_aside_fires_for_a_call_set_aside_at_intake(tmp_path: Path) -> None:
    """A call whose user is missing is set aside before the sender sees it; it
    must still count as outcome="set_aside" (it did not: the alert never fired)."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi([]) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, users={"1001": {}}, http=HTTP)
        service = Service(config)
        await service.start()
        try:
            before = await scrape(service)
            ami.events = demo_events()  # the call happens: the next session streams it
            ami.cut()

            async def set_aside() -> bool:
                return (await service.outbox.counts())["set_aside"] == 1

            await wait_for(set_aside, 20)
            after = await scrape(service)
        finally:
            await service.stop()
    name = "asterisk_miitel_calls_total"
    # The series exists at 0 before the first such call: Prometheus' increase()
    # cannot see a series that appears already at 1.
    key = (name, (("event_type", "INCOMING_CALL"), ("outcome", "set_aside")))
    assert before[key] == 0
    increase = (total(after, name, outcome="set_aside")
                - total(before, name, outcome="set_aside"))
    assert increase > 0  # the alert's condition
    assert total(after, name, outcome="set_aside", event_type="INCOMING_CALL") == 1


async def test_alert_ami_down(tmp_path: Path) -> None:
    config = service_config(tmp_path, free_port(), None, http=HTTP)  # nothing listens
    service = Service(config)
    await service.start()
    try:
        got = await scrape(service)
    finally:
        await service.stop()
    assert got[("asterisk_miitel_ami_connected", ())] == 0


async def test_alert_call_waiting(tmp_path: Path) -> None:
    """No webhook URL: the call waits; after 30 minutes the alert's gauge passes 1800."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    now = [time.time()]
    async with FakeAmi(demo_events()) as ami:
        service = Service(service_config(tmp_path, ami.port, None, http=HTTP),
                          clock=lambda: now[0])
        await service.start()
        try:

            async def queued() -> bool:
                return service.stats.queued == 1

            await wait_for(queued, 20)
            assert total(await scrape(service),
                         "asterisk_miitel_outbox_oldest_waiting_seconds") < 1800
            now[0] += 1801
            got = await scrape(service)
        finally:
            await service.stop()
    assert got[("asterisk_miitel_outbox_oldest_waiting_seconds", ())] > 1800


def quantile(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], q: float) -> float:
    """histogram_quantile over the cumulative buckets, as Prometheus computes it."""
    buckets = sorted(
        ((float("inf") if dict(ls)["le"] == "+Inf" else float(dict(ls)["le"])), v)
        for (n, ls), v in got.items() if n == "asterisk_miitel_hangup_to_upload_seconds_bucket")
    count = buckets[-1][1]
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(cumulative - below, 1e-9)
        lower, below = upper, cumulative
    return lower


async def test_alert_slow_uploads(tmp_path: Path) -> None:
    """A call that ended 10 minutes before MiiTel took its audio: p95 above 300 s."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(demo_events(ended_ago=600)) as ami:
        service = Service(service_config(tmp_path, ami.port, standin.webhook_url, http=HTTP))
        await service.start()
        try:

            async def uploaded() -> bool:
                return (await service.outbox.counts())["uploaded"] == 1

            await wait_for(uploaded, 20)
            got = await scrape(service)
        finally:
            await service.stop()
    assert got[("asterisk_miitel_hangup_to_upload_seconds_count", ())] == 1
    assert quantile(got, 0.95) > 300
