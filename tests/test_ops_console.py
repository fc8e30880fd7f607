"""The browser console (ops/console.py) over real HTTP, without the lab: escaping of
what AMI sent, no secrets, read-only by default, CSRF-checked retry buttons."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asterisk_miitel.ami.listener import ListenerStats
from asterisk_miitel.calls.tracker import TrackerStats
from asterisk_miitel.config import Config
from asterisk_miitel.ops.http import bound_port, make_app, start_http
from asterisk_miitel.outbox.sender import SenderStats
from asterisk_miitel.outbox.store import NewCall, Outbox

from .support import TARO

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">&amp;'
WEBHOOK = "https://acme.miitel.jp/webhook/Zk3QnVh2xYpL9sTqWb7"
UPLOAD = "https://s3.example/upload/abc?X-Amz-Signature=deadbeefdeadbeefdeadbeef"


@dataclass
class Stats:
    stats: Any


@dataclass
class Sender:
    stats: SenderStats = field(default_factory=SenderStats)
    wakes: int = 0

    def wake(self) -> None:
        self.wakes += 1


@dataclass
class FakeService:
    """What the console reads from asterisk_miitel.service.Service."""

    outbox: Outbox
    config: Config
    listener: Stats = field(default_factory=lambda: Stats(ListenerStats(connected=True)))
    tracker: Stats = field(default_factory=lambda: Stats(TrackerStats()))
    sender: Sender = field(default_factory=Sender)
    accepting: bool = True
    client: object | None = object()  # uploads on
    pbx_id: str = "pbx1"

    def clock(self) -> float:
        import time

        return time.time()


def config(tmp: Path, *, actions: bool) -> Config:
    return Config(
        miitel={"webhook_url": WEBHOOK},  # type: ignore[arg-type]
        ami={"secret": "the-ami-secret-value"},  # type: ignore[arg-type]
        http={"enabled": True, "port": 0, "console_actions": actions},  # type: ignore[arg-type]
        outbox={"path": str(tmp / "outbox.sqlite3")},  # type: ignore[arg-type]
        pbx={"id": "pbx1", "timezone": "Asia/Tokyo"},  # type: ignore[arg-type]
        users={"1001": {"miitel_user_id": TARO, "name": "Suzuki"}},  # type: ignore[dict-item]
    )


def new_call(call_id: str, *, code: str = "users", name: str = HOSTILE,
             reason: str = "INCOMING_CALL needs a MiiTel user for TO") -> NewCall:
    return NewCall(
        id=call_id, file=f"/var/spool/asterisk/monitor/{call_id}.raw", state="set_aside",
        reason=reason, reason_code=code, audio={"file": "x.raw", "expect_audio": True},
        call_data={"call_data_id": call_id, "event_type": "INCOMING_CALL",
                   "call_answered_at": "2026-11-23T10:00:05+09:00", "groupname": None,
                   "participants": [
                       {"type": "FROM", "stereo_lr": "left", "miitel_user_id": None,
                        "number": "0312349999", "name": name},
                       {"type": "TO", "stereo_lr": "right", "miitel_user_id": None,
                        "number": "1001", "name": None}]},
        parties=[{"type": "FROM", "extension": None}, {"type": "TO", "extension": "1001"}],
    )


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.host = base.removeprefix("http://")

    async def get(self, path: str, **headers: str) -> tuple[int, str, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.base + path,
                                                         headers=headers) as r:
            return r.status, await r.text(), r.headers

    async def post(self, path: str, form: dict[str, str], **headers: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.post(self.base + path, data=form,
                                                          headers=headers) as r:
            return r.status, await r.text()


async def serve(tmp: Path, *, actions: bool) -> AsyncIterator[tuple[Browser, FakeService]]:
    cfg = config(tmp, actions=actions)
    async with Outbox(cfg.outbox.path) as outbox:
        await outbox.add(new_call("pbx1:a.raw:1"))
        await outbox.add(new_call("pbx1:b.raw:2", code="outcome_unknown", name="Tanaka",
                                  reason=f"no answer from MiiTel after POST {WEBHOOK}"))
        await outbox.update("pbx1:b.raw:2", upload_url=UPLOAD)
        service = FakeService(outbox, cfg)
        runner = await start_http(make_app(service, cfg.http, console=cfg), "127.0.0.1", 0)
        try:
            yield Browser(f"http://127.0.0.1:{bound_port(runner)}"), service
        finally:
            await runner.cleanup()


@pytest.fixture
async def readonly(tmp_path: Path) -> AsyncIterator[tuple[Browser, FakeService]]:
    async for pair in serve(tmp_path, actions=False):
        yield pair


@pytest.fixture
async def actions(tmp_path: Path) -> AsyncIterator[tuple[Browser, FakeService]]:
    async for pair in serve(tmp_path, actions=True):
        yield pair


def token_of(page: str, call_id: str) -> tuple[str, str]:
    action = "/calls/" + call_id.replace(":", "%3A") + "/retry"
    form = re.search(r'<form method="post" action="' + re.escape(action)
                     + r'".*?name="token" value="([0-9a-f]+)".*?name="force" value="(\d)"', page)
    assert form, page
    return form.group(1), form.group(2)


async def test_the_overview_lists_calls_with_reasons_and_actions(readonly: Any) -> None:
    browser, _ = readonly
    status, page, headers = await browser.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "Healthy" in page and "connected" in page
    assert "1 call(s) set aside after MiiTel&#x27;s answer" in page  # the outcome_unknown one
    assert re.search(r'<span class="n warn">2</span><span>set aside</span>', page)
    assert "Set aside (2)" in page and "pbx1:a.raw:1" in page
    assert "give extension 1001 a miitel_user_id in [users]" in page
    assert "`asterisk-miitel retry --force pbx1:b.raw:2`" in page
    # nothing to load, nothing to run
    assert "<script" not in page and not re.search(r"<[^>]+\s(src|href)=\"?https?:", page)
    status, page, _ = await browser.get("/?state=uploaded")
    assert status == 200 and "No calls yet" in page
    status, page, _ = await browser.get("/?state=nonsense")
    assert status == 400 and "nonsense" in page


async def test_a_hostile_caller_name_is_shown_as_text(readonly: Any) -> None:
    browser, _ = readonly
    escaped = ("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;"
               "&gt;&amp;amp;")
    for path in ("/", "/calls/pbx1%3Aa.raw%3A1"):
        status, page, _ = await browser.get(path)
        assert status == 200
        assert "<script>" not in page and "<img" not in page
        assert escaped in page, path


async def test_no_secret_is_ever_shown(readonly: Any) -> None:
    browser, _ = readonly
    for path in ("/", "/calls/pbx1%3Ab.raw%3A2", "/calls/pbx1%3Aa.raw%3A1"):
        _, page, _ = await browser.get(path)
        for secret in ("Zk3QnVh2xYpL9sTqWb7", "deadbeefdeadbeef", "the-ami-secret-value"):
            assert secret not in page, (path, secret)
    _, page, _ = await browser.get("/calls/pbx1%3Ab.raw%3A2")
    assert "no answer from MiiTel after POST https://acme.miitel.jp/webhook/" in page


async def test_read_only_has_no_forms_and_refuses_a_post(readonly: Any) -> None:
    browser, service = readonly
    for path in ("/", "/calls/pbx1%3Aa.raw%3A1"):
        _, page, _ = await browser.get(path)
        assert "<form" not in page and "console_actions = true" in page
    status, page = await browser.post("/calls/pbx1%3Aa.raw%3A1/retry", {"token": "x"})
    assert status == 403 and "Actions are off" in page
    row = await service.outbox.get("pbx1:a.raw:1")
    assert row.state == "set_aside" and service.sender.wakes == 0


async def test_a_retry_button_puts_the_call_back_in_line(actions: Any) -> None:
    browser, service = actions
    _, page, _ = await browser.get("/")
    token, force = token_of(page, "pbx1:a.raw:1")
    assert force == "0" and token_of(page, "pbx1:b.raw:2")[1] == "1"  # outcome unknown: force
    assert "only after checking MiiTel" in page
    status, page = await browser.post("/calls/pbx1%3Aa.raw%3A1/retry",
                                      {"token": token, "force": force},
                                      Origin=browser.base)
    assert status == 200 and "queued again (waiting_recording)" in page
    row = await service.outbox.get("pbx1:a.raw:1")
    assert row.state == "waiting_recording" and service.sender.wakes == 1
    # today's [users] map was applied, as `retry` does
    assert row.call_data["participants"][1]["miitel_user_id"] == TARO
    steps = await service.outbox.steps("pbx1:a.raw:1")
    assert steps[-1].detail == "put back in line by a person (retry)"
    _, page, _ = await browser.get("/calls/pbx1%3Aa.raw%3A1")
    assert "put back in line by a person (retry)" in page and "<form" not in page


async def test_csrf_and_cross_site_posts_are_refused(actions: Any) -> None:
    browser, service = actions
    _, page, _ = await browser.get("/calls/pbx1%3Ab.raw%3A2")
    token, force = token_of(page, "pbx1:b.raw:2")
    path = "/calls/pbx1%3Ab.raw%3A2/retry"
    other = "/calls/pbx1%3Aa.raw%3A1/retry"
    refused = [
        await browser.post(path, {"force": force}),  # no token
        await browser.post(path, {"token": "0" * 64, "force": force}),
        await browser.post(other, {"token": token, "force": "0"}),  # another call's token
        await browser.post(path, {"token": token, "force": force}, Origin="https://evil.example"),
        await browser.post(path, {"token": token, "force": force}, Origin="null"),
        await browser.post(path, {"token": token, "force": force}, **{"Sec-Fetch-Site":
                                                                      "cross-site"}),
    ]
    assert [status for status, _ in refused] == [403] * 6
    async with aiohttp.ClientSession() as s, s.get(browser.base + path) as r:
        assert r.status == 405  # nothing changes state on a GET
    row = await service.outbox.get("pbx1:b.raw:2")
    assert row.state == "set_aside" and service.sender.wakes == 0
    # the real form, from the console's own page, works
    status, page = await browser.post(path, {"token": token, "force": force},
                                      Origin=browser.base)
    assert status == 200 and "queued again" in page


async def test_another_host_name_is_refused(readonly: Any) -> None:
    browser, _ = readonly
    status, page, _ = await browser.get("/", Host="attacker.example:9797")  # DNS rebinding
    assert status == 421 and "pbx1:a.raw:1" not in page
    assert (await browser.get("/", Host="localhost:9797"))[0] == 200
    assert (await browser.get("/healthz", Host="attacker.example"))[0] == 200  # probes stay
