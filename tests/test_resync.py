"""Resync on connect: the periodic CoreShowChannels check never closes a call
that is up; a PBX with no configured id is named after Asterisk's SystemName."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel import resync as resync_module
from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.calls.journal import Journal
from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.miitel.standin import StandIn

from .support import done, place_recordings, running, service_config, wait_for
from .test_kill import burst


async def test_resync_during_a_burst_closes_nothing_early(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(resync_module, "RESYNC_EVERY", 0.05)  # resync all the time
    events, files = burst(8)
    place_recordings(tmp_path, files)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(events, pace=0.002) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service, 8), 30)
            rows = [await service.outbox.get(i) for i in await service.outbox.all_ids()]
    assert {r.source for r in rows if r} == {"live"}  # none finished as "gap"
    assert sorted(c["status"] for c in standin.calls()) == ["uploaded"] * 8
    await asyncio.sleep(0)


class Session:
    """What Resync asks of an AMI session: answers by action name."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    async def action(self, action: dict[str, str], *, as_list: bool | None = None,
                     hold: bool = False) -> Any:
        return self.answers[action["Action"]]

    def release(self) -> None:
        pass


class Meta:
    """The outbox's meta table, and no journal."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}

    async def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value


@pytest.mark.parametrize(("system_name", "pbx_id"), [
    ("Sales PBX #1", "Sales-PBX--1"),  # only what a call_data_id may hold
    ("", "asterisk-10.0.0.5"),  # no SystemName set: the AMI host names it
])
async def test_pbx_id_is_learned_from_asterisk_and_kept(system_name: str, pbx_id: str) -> None:
    learned: list[str] = []
    outbox = Meta()
    resync = resync_module.Resync(
        CallTracker(lambda rec: None), outbox, Journal(),  # type: ignore[arg-type]
        now=lambda: 0.0, opened=lambda rec: None, closed=lambda rec: None,
        journal_changed=lambda: None, audio_seconds=lambda rec: None,
        pbx_id_learned=learned.append, ami_host="10.0.0.5",
    )
    session = Session({
        "CoreSettings": {"Response": "Success", "SystemName": system_name},
        "CoreStatus": {"Response": "Success", "CoreStartupDate": "2026-11-23",
                       "CoreStartupTime": "09:00:00"},
        "CoreShowChannels": [],
    })
    await resync.connected(session, learn_pbx_id=True)  # type: ignore[arg-type]
    assert learned == [pbx_id]
    assert outbox.meta["pbx_id"] == pbx_id  # the next start reads it from the outbox
