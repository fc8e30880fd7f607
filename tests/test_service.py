"""The whole service in-process: a real captured call played by a fake AMI
server, the real tracker, outbox and client, the MiiTel stand-in over HTTP."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service

from .lab.audio import analyse
from .support import DEMO_DIR, TARO, done, running, service_config, wait_for

RECORDING = "miitel-1795472139-1795472139.4-1.raw"


def demo_events() -> list[bytes]:
    return shift_times(transcript_events((DEMO_DIR / "ami.log").read_bytes()), time.time() - 10)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    (tmp_path / "monitor").mkdir(exist_ok=True)
    return Path(shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING))


async def test_call_reaches_miitel_with_the_user_on_the_right_channel(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    async with FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["post_count"] == 1 and call["put_count"] == 1
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["audio_channel_type"] == "STEREO" and call["channels"] == 2
    [customer] = [p for p in data["participants"] if p["type"] == "FROM"]
    [user] = [p for p in data["participants"] if p["type"] == "TO"]
    assert user["miitel_user_id"] == TARO and customer["number"] == "0312349999"
    # The user talked and the customer was silent in this capture: the side
    # labelled as the user's must carry the audio.
    audio = analyse(call["file"])
    assert audio.louder_side() == user["stereo_lr"] == "right"
    assert abs(audio.seconds - call["duration"]) < 0.01
    # The converted WAV is cleaned up; Asterisk's own file is kept.
    assert not list((tmp_path / "work").glob("*.wav")) and recording.exists()


async def test_miitel_errors_then_recovery_nothing_lost_nothing_twice(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    standin.add_fault(method="POST", status=503, times=2)
    standin.add_fault(method="POST", status=429, retry_after="1", times=1)
    standin.add_fault(method="PUT", status=503, times=2)
    standin.add_fault(method="PUT", drop="after_body", times=1)
    async with FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service), 20)
    [call] = standin.calls()
    assert call["status"] == "uploaded"
    assert call["post_count"] == 1  # 503 and 429 created nothing; never POSTed twice
    assert service.sender is not None and service.sender.stats.retries >= 5


async def test_post_timeout_is_set_aside_not_repeated(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    # MiiTel stores the call, but its answer never arrives: the outcome is unknown.
    standin.add_fault(method="POST", process=True, drop="after_body", times=1)
    async with FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service), 20)
            [row] = await service.outbox.latest(["set_aside"])
    assert row.reason_code == "outcome_unknown" and "retry --force" in (row.reason or "")
    [call] = standin.calls()
    assert call["post_count"] == 1 and call["status"] != "uploaded"


async def test_missing_recording_is_set_aside_with_a_reason(
    tmp_path: Path, standin: StandIn
) -> None:
    async with FakeAmi(demo_events()) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                recordings={"wait_timeout": 0.5})
        async with running(config) as service:
            await wait_for(done(service))
            [row] = await service.outbox.latest(["set_aside"])
    assert row.reason_code == "recording"
    assert RECORDING in (row.reason or "") and "mounted" in (row.reason or "")
    assert standin.calls() == []  # nothing half-sent


async def test_without_webhook_calls_wait_in_the_outbox(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    async with FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, None)) as service:
            async def ready() -> bool:
                return (await service.outbox.counts())["ready"] == 1
            await wait_for(ready)
    # A second start with the URL set sends it.
    async with running(service_config(tmp_path, 1, standin.webhook_url)) as service:
        await wait_for(done(service))
    assert [c["status"] for c in standin.calls()] == ["uploaded"]


async def test_ami_cut_mid_call_finishes_the_recording_from_what_is_known(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    events = demo_events()
    hangups = [i for i, e in enumerate(events) if e.startswith(b"Event: Hangup")]
    ami = FakeAmi(events)

    def cut_before_hangup(index: int) -> None:
        if index == hangups[0] - 1:
            ami.cut()
            ami.skip(len(events))  # the hangups happen while we are away

    ami.on_event = cut_before_hangup
    async with ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
            [row] = await service.outbox.latest(["uploaded"])
    assert ami.logins == 2  # reconnected; CoreShowChannels listed no live channel
    assert row.source == "gap"
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["call_data"]["event_type"] == "INCOMING_CALL"


async def test_dead_link_is_noticed_and_replaced(tmp_path: Path, standin: StandIn) -> None:
    async with FakeAmi([], answer_pings=False) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            async def relogged() -> bool:
                return ami.logins >= 2
            await wait_for(relogged, 10)
    assert service.listener is not None and service.listener.stats.dead_links >= 1


async def test_refused_login_is_said_once_clearly_without_the_secret(
    tmp_path: Path, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeAmi([], secret="the-right-one") as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                ami={"secret": "wrong-s3cret-value", "reconnect_max": 5})
        async with running(config) as service:
            async def refused() -> bool:
                return bool(service.listener and service.listener.stats.login_failures)
            await wait_for(refused)
            await asyncio.sleep(0.5)
    text = caplog.text
    assert "login refused for user 'miitel'" in text
    assert "wrong-s3cret-value" not in text
    # Backs off to reconnect_max after a refusal instead of hammering Asterisk.
    assert service.listener.stats.login_failures == 1


async def test_restart_resumes_an_upload_and_sends_nothing_twice(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    # The first run dies (without any shutdown) while the upload hangs.
    standin.add_fault(method="PUT", delay=30, delay_phase="before_body")
    async with FakeAmi(demo_events()) as ami:
        first = Service(service_config(tmp_path, ami.port, standin.webhook_url))
        await first.start()

        async def created() -> bool:
            return (await first.outbox.counts())["created"] == 1
        await wait_for(created)
        await asyncio.sleep(0.2)
        for task in first._tasks:  # a crash: no stop(), no cleanup
            task.cancel()
        await asyncio.gather(*first._tasks, return_exceptions=True)
        if first.client is not None:
            await first.client.close()
        await first.watcher.aclose()
        await first.outbox.close()
        assert first.outbox_lock is not None
        first.outbox_lock.release()  # what the kernel does when a process dies
    standin.clear_faults()
    async with running(service_config(tmp_path, 1, standin.webhook_url)) as second:
        await wait_for(done(second))
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["post_count"] == 1


async def test_asterisk_restart_mid_call_sends_the_partial_recording_marked_truncated(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    events = demo_events()
    hangups = [i for i, e in enumerate(events) if e.startswith(b"Event: Hangup")]
    ami = FakeAmi(events, pace=0.02)  # the service has read Asterisk's start time by then

    def restart_before_hangup(index: int) -> None:
        if index == hangups[0] - 1:
            ami.cut()  # Asterisk goes down with the call up ...
            ami._next = len(events)
            ami._live.clear()
            ami._vars.clear()
            ami.startup = "2026-11-23 10:00:00"  # ... and comes back: a new start time

    ami.on_event = restart_before_hangup
    async with ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
            [row] = await service.outbox.latest(["uploaded"])
    assert row.source == "restart"
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["call_data"]["event_type"] == "INCOMING_CALL"
    # What a person sees (logs, the outbox row): why the recording is short.
    assert any("truncated by PBX restart" in n for n in row.notes)
    assert ami.logins == 2
