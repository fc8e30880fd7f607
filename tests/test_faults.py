"""Faults the service must survive without losing or doubling a call, and
without ever printing a secret."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.logs import setup_logging
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service

from .support import DEMO_DIR, done, place_recordings, running, service_config, tls_server, wait_for
from .test_kill import RECORDING, burst
from .test_service import demo_events


async def test_full_outbox_disk_holds_calls_loudly_and_loses_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events, files = burst(6)
    place_recordings(tmp_path, files)
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(events, pace=0.01) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            # The disk is full: SQLite may not grow the database by a single page.
            async with service.outbox.db.execute("PRAGMA page_count") as cur:
                pages = (await cur.fetchone())[0]
            await service.outbox.db.execute(f"PRAGMA max_page_count = {pages}")

            async def held() -> bool:
                return len(service._held) >= 3 and ami.finished.is_set()
            await wait_for(held, 20)
            assert not service.accepting
            criticals = [r for r in caplog.records if r.levelno == logging.CRITICAL]
            assert len(criticals) == 1 and "disk holding the outbox is full" in criticals[0].message
            # Room again: every held call is queued and sent, none twice.
            await service.outbox.db.execute("PRAGMA max_page_count = 1073741823")
            await wait_for(done(service, 6), 30)
            assert service.accepting and not service._held
    calls = standin.calls()
    assert len(calls) == 6 and all(c["post_count"] == 1 and c["status"] == "uploaded" for c in calls)
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_outbox_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    service = Service(service_config(tmp_path, 1, None))
    await service.start()
    await service.stop()
    mode = stat.S_IMODE(os.stat(tmp_path / "outbox.sqlite3").st_mode)
    assert mode == 0o600


async def test_recordings_are_deleted_only_when_configured_and_only_after_a_200(
    tmp_path: Path,
) -> None:
    (tmp_path / "monitor").mkdir()
    original = tmp_path / "monitor" / RECORDING
    shutil.copy(DEMO_DIR / RECORDING, original)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        standin.add_fault(method="PUT", status=500, times=3)
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                recordings={"delete_after_upload": True},
                                miitel={"retry_base": 0.3})
        async with running(config) as service:
            async def failing() -> bool:
                return service.sender is not None and service.sender.stats.retries >= 1
            await wait_for(failing)
            assert original.exists()  # a failed upload never costs the recording
            await wait_for(done(service), 20)
    assert standin.calls()[0]["status"] == "uploaded"
    assert not original.exists()


async def test_by_default_recordings_are_kept(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    original = tmp_path / "monitor" / RECORDING
    shutil.copy(DEMO_DIR / RECORDING, original)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
    assert original.exists() and not list((tmp_path / "work").glob("*"))


async def test_no_secret_in_anything_the_service_prints(tmp_path: Path) -> None:
    """Every fault at once, every log line at DEBUG: neither the webhook URL,
    nor its token, nor an upload URL, nor the AMI secret is ever printed."""
    ami_secret = "Am1-s3cret-Value-42"
    events, files = burst(3)
    place_recordings(tmp_path, files)
    out = io.StringIO()
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(events, secret=ami_secret, pace=0.01) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                ami={"secret": ami_secret})
        setup_logging("text", "DEBUG", [ami_secret, standin.webhook_url], stream=out)
        standin.add_fault(method="POST", status=500, times=1)
        standin.add_fault(method="POST", process=True, drop="after_body", times=1)
        standin.add_fault(method="PUT", status=503, times=1)
        standin.add_fault(method="PUT", drop="after_body", times=1)
        async with running(config) as service:
            await asyncio.sleep(0.5)
            ami.cut()  # and an AMI drop
            await wait_for(done(service, 3), 30)
            logging.getLogger().handlers.clear()
        uploads = [c["upload_url"] for c in standin.calls() if c.get("upload_url")]
    text = out.getvalue()
    assert "POST" in text and "PUT" in text  # it did log the requests
    token = standin.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    for secret in (ami_secret, standin.webhook_url, token, *uploads):
        assert secret not in text
    for path in tmp_path.rglob("*.log"):
        assert token not in path.read_text(errors="replace")


async def test_ami_over_tls_verified_with_the_pbx_ca(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(demo_events(), ssl=tls_server(cert, key)) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                ami={"host": "localhost", "tls": True, "tls_ca_file": str(cert)})
        async with running(config) as service:
            await wait_for(done(service))
    assert [c["status"] for c in standin.calls()] == ["uploaded"]


async def test_ami_over_tls_refuses_an_unknown_certificate_by_default(
    tmp_path: Path, self_signed: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed
    async with FakeAmi(demo_events(), ssl=tls_server(cert, key)) as ami:
        config = service_config(tmp_path, ami.port, None,
                                ami={"host": "localhost", "tls": True})
        async with running(config):
            await asyncio.sleep(1.0)
    assert ami.logins == 0  # never logged in: the secret was never sent
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate verify" in caplog.text


# -- bad recordings: a clear reason, and other calls unaffected ---------------------------


def as_mono_wav_call(events: list[bytes]) -> list[bytes]:
    """The demo call, as if MixMonitor had written a mono .wav (FreePBX's default)."""
    return [e.replace(b".raw", b".wav").replace(b"Mode: interleaved", b"Mode: mono")
            .replace(b",bD", b",b") for e in events]


def lying_wav(path: Path, seconds: float, claimed: int) -> None:
    import math
    import struct

    frames = int(8000 * seconds)
    data = b"".join(struct.pack("<h", int(6000 * math.sin(i / 4))) for i in range(frames))
    header = (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
              + b"data" + struct.pack("<I", claimed))
    path.write_bytes(header + data)


async def test_a_wav_with_a_lying_header_is_fixed_and_sent(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    # Asterisk was killed before it closed the file: the header says 0xFFFFFFFF.
    lying_wav(tmp_path / "monitor" / RECORDING.replace(".raw", ".wav"), 3.0, 0xFFFFFFFF)
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(as_mono_wav_call(demo_events())) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service))
            [row] = await service.outbox.latest(["uploaded"])
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["channels"] == 1
    assert call["call_data"]["audio_channel_type"] == "MONAURAL"
    assert abs(call["duration"] - 3.0) < 0.01
    assert any("header" in note for note in row.notes)  # said, for the record


async def test_an_empty_recording_is_set_aside_and_the_next_call_goes_through(
    tmp_path: Path,
) -> None:
    events, files = burst(2)
    place_recordings(tmp_path, files)
    (tmp_path / "monitor" / os.path.basename(files[0])).write_bytes(b"")  # MixMonitor wrote nothing
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(events) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url)) as service:
            await wait_for(done(service, 2))
            [aside] = await service.outbox.latest(["set_aside"])
    assert aside.reason_code == "recording" and "empty" in (aside.reason or "").lower()
    assert os.path.basename(files[0]) in (aside.reason or "")
    assert [c["status"] for c in standin.calls()] == ["uploaded"]


async def test_a_recording_still_growing_is_sent_as_it_is_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    path = tmp_path / "monitor" / RECORDING
    writer = open(path, "wb")  # kept open: Asterisk never closes it
    writer.write((DEMO_DIR / RECORDING).read_bytes())
    writer.flush()

    async def keep_writing() -> None:
        while not writer.closed:
            writer.write(b"\0" * 3200)
            writer.flush()
            await asyncio.sleep(0.1)

    grower = asyncio.create_task(keep_writing())
    try:
        async with StandIn(tmp_path / "miitel", port=0) as standin, \
                FakeAmi(demo_events()) as ami:
            config = service_config(tmp_path, ami.port, standin.webhook_url,
                                    recordings={"wait_timeout": 1.0})
            async with running(config) as service:
                await wait_for(done(service), 20)
                [row] = await service.outbox.latest(["uploaded"])
    finally:
        writer.close()
        await grower
    assert any("still open or growing" in note for note in row.notes)
    assert standin.calls()[0]["status"] == "uploaded"


async def test_slow_miitel_upload_times_out_and_is_retried_safely(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        # The storage takes the body, then answers far too late, twice.
        standin.add_fault(method="PUT", delay=5, delay_phase="after_body", times=2)
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                miitel={"upload_idle_timeout": 0.5})
        async with running(config) as service:
            await wait_for(done(service), 30)
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["post_count"] == 1 and call["put_count"] >= 3


async def test_miitel_certificate_is_verified(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    """A MiiTel host whose certificate is not trusted gets nothing: NotSent."""
    from aiohttp import web

    from asterisk_miitel.miitel.client import MiitelClient
    from asterisk_miitel.miitel.errors import NotSent

    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"audio_upload_urls": []})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_server(*self_signed))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with MiitelClient(f"https://localhost:{port}/webhook/secret-token-123") as client:
            with pytest.raises(NotSent) as err:
                await client.create_call_history({"call_data_id": "x"})
        assert "secret-token" not in str(err.value)
        assert hits == []
    finally:
        await runner.cleanup()


async def test_no_room_to_convert_waits_with_a_warning_then_sends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi(demo_events()) as ami:
        # Keeping this much free would leave no room for the converted WAV.
        config = service_config(tmp_path, ami.port, standin.webhook_url,
                                recordings={"min_free_mb": free_mb + 1000})
        async with running(config) as service:
            async def waiting() -> bool:
                row = await service.outbox.get(
                    (await service.outbox.all_ids())[0]) if await service.outbox.all_ids() else None
                return bool(row and row.state == "waiting_recording" and row.last_error)
            await wait_for(waiting)
            [row] = [await service.outbox.get(i) for i in await service.outbox.all_ids()]
            assert "disk" in (row.last_error or "")
            assert "disk space is low" in caplog.text
            assert standin.calls() == []
            config.recordings.min_free_mb = 0  # an admin made room
            await wait_for(done(service), 30)
    assert [c["status"] for c in standin.calls()] == ["uploaded"]
