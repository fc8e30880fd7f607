"""The periodic CoreShowChannels resync never closes a call that is up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asterisk_miitel import resync as resync_module
from asterisk_miitel.ami.fake_server import FakeAmi
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
