"""File names from AMI are untrusted: any AMI user may send `UserEvent:
MiiTelRecording` with `File: /any/path`, and a careless dialplan may name any
file. Only files whose real path lies under `[recordings] dirs` (or the
voicemail spool) are opened, sent or deleted; anything else is set aside as
`recording` with a reason that names the path and the setting.

The whole service runs here: the fake AMI server plays a real captured call,
the MiiTel stand-in answers over real HTTP."""

from __future__ import annotations

import math
import os
import shutil
import struct
import time
import wave
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.recordings import AllowedDirs, OutsideRecordingDirs

from .support import DEMO_DIR, DEMO_RECORDING_DIR, done, running, service_config, wait_for

RECORDING = "miitel-1795472139-1795472139.4-1.raw"
ASTERISK_NAME = f"{DEMO_RECORDING_DIR}/{RECORDING}".encode()


def events_naming(path: str) -> list[bytes]:
    """The demo call, with every mention of its recording replaced by `path`
    (a dialplan that names that file)."""
    raw = (DEMO_DIR / "ami.log").read_bytes().replace(ASTERISK_NAME, path.encode())
    return shift_times(transcript_events(raw), time.time() - 10)


def events_with_forged_userevent(path: str) -> list[bytes]:
    """The demo call as recorded, plus what an AMI user with `write = user`
    can send: a MiiTelRecording UserEvent on the call's channel naming `path`."""
    events = transcript_events((DEMO_DIR / "ami.log").read_bytes())
    [real] = [i for i, e in enumerate(events) if b"UserEvent: MiiTelRecording" in e]
    forged = events[real].replace(ASTERISK_NAME, path.encode())
    events.insert(real + 1, forged)
    return shift_times(events, time.time() - 10)


def write_wav(path: Path, seconds: float = 2.0) -> Path:
    """A real stereo WAV (a tone on the left): what an uploader would accept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<hh", int(8000 * math.sin(i / 8)), 0) for i in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return path


def write_text(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    return path


async def _run(tmp_path: Path, standin: StandIn, events: list[bytes], calls: int = 1,
               **over: object) -> list:  # type: ignore[type-arg]
    async with FakeAmi(events) as ami:
        async with running(service_config(tmp_path, ami.port, standin.webhook_url,
                                          **over)) as service:
            await wait_for(done(service, calls), 15)
            return await service.outbox.latest(["set_aside"])


def _refused(row: object, shown: str) -> None:
    reason = row.reason or ""  # type: ignore[attr-defined]
    assert row.reason_code == "recording", reason  # type: ignore[attr-defined]
    assert shown in reason and "[recordings] dirs" in reason, reason


async def test_a_wav_outside_dirs_is_neither_read_nor_sent(
    tmp_path: Path, standin: StandIn
) -> None:
    outside = write_wav(tmp_path / "outside" / "secret.wav")
    [row] = await _run(tmp_path, standin, events_naming(str(outside)))
    _refused(row, str(outside))
    assert standin.calls() == []  # not even the call history
    assert outside.exists()


async def test_a_text_file_named_raw_outside_dirs_is_not_sent(
    tmp_path: Path, standin: StandIn
) -> None:
    outside = write_text(tmp_path / "outside" / "passwd.raw")
    [row] = await _run(tmp_path, standin, events_naming(str(outside)))
    _refused(row, str(outside))
    assert standin.calls() == []


async def test_a_text_file_named_raw_inside_dirs_is_not_sent_as_audio(
    tmp_path: Path, standin: StandIn
) -> None:
    write_text(tmp_path / "monitor" / RECORDING)
    [row] = await _run(tmp_path, standin, events_naming(f"{DEMO_RECORDING_DIR}/{RECORDING}"))
    assert row.reason_code == "recording" and "holds text, not audio" in (row.reason or "")
    assert standin.calls() == []


async def test_dot_dot_out_of_dirs_is_refused(tmp_path: Path, standin: StandIn) -> None:
    # Asterisk's dirs/../../x.wav is, on this host, tmp/spool/monitor/../../x.wav = tmp/x.wav
    spool = tmp_path / "spool" / "monitor"
    spool.mkdir(parents=True)
    target = write_wav(tmp_path / "x.wav")
    name = f"{DEMO_RECORDING_DIR}/../../x.wav"
    [row] = await _run(tmp_path, standin, events_naming(name),
                       recordings={"path_map": {DEMO_RECORDING_DIR: str(spool)}})
    _refused(row, "/../../x.wav")
    assert str(target) in (row.reason or "")  # says where it really points
    assert standin.calls() == [] and target.exists()


async def test_a_symlink_inside_dirs_pointing_outside_is_refused(
    tmp_path: Path, standin: StandIn
) -> None:
    outside = write_wav(tmp_path / "outside" / "secret.wav")
    (tmp_path / "monitor").mkdir(exist_ok=True)
    (tmp_path / "monitor" / "link.wav").symlink_to(outside)
    name = f"{DEMO_RECORDING_DIR}/link.wav"
    [row] = await _run(tmp_path, standin, events_naming(name))
    _refused(row, "link.wav")
    assert standin.calls() == [] and outside.exists()


async def test_a_forged_userevent_costs_nothing_and_the_real_call_is_sent(
    tmp_path: Path, standin: StandIn
) -> None:
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    outside = write_wav(tmp_path / "outside" / "secret.wav")
    [row] = await _run(tmp_path, standin, events_with_forged_userevent(str(outside)), calls=2)
    _refused(row, str(outside))
    [call] = standin.calls()  # the real recording only
    assert call["status"] == "uploaded" and call["post_count"] == 1
    assert call["channels"] == 2 and call["call_data"]["audio_channel_type"] == "STEREO"


async def test_delete_after_upload_never_deletes_a_file_outside_dirs(
    tmp_path: Path, standin: StandIn
) -> None:
    (tmp_path / "monitor").mkdir()
    inside = Path(shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING))
    outside = write_wav(tmp_path / "outside" / "secret.wav")
    [row] = await _run(tmp_path, standin, events_with_forged_userevent(str(outside)), calls=2,
                       recordings={"delete_after_upload": True})
    _refused(row, str(outside))
    assert outside.exists() and outside.stat().st_size > 44
    assert not inside.exists()  # the real one was deleted after its 200, as configured
    assert [c["status"] for c in standin.calls()] == ["uploaded"]


# -- the rule itself: checked again at the moment of the open and the delete -------------


def _rule(tmp_path: Path) -> tuple[AllowedDirs, Path, Path]:
    inside = tmp_path / "spool" / "sub"
    outside = tmp_path / "outside"
    write_wav(inside / "a.wav", 0.1)
    write_wav(outside / "a.wav", 0.1)
    return AllowedDirs((str(tmp_path / "spool"),)), inside, outside


def _swap_after_check(monkeypatch: pytest.MonkeyPatch, inside: Path, outside: Path) -> None:
    """After the name was checked, the folder becomes a symlink to elsewhere."""
    original = AllowedDirs.check

    def check_then_swap(self: AllowedDirs, path: str) -> str:
        real = original(self, path)
        shutil.rmtree(inside)
        inside.symlink_to(outside)
        return real

    monkeypatch.setattr(AllowedDirs, "check", check_then_swap)


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, inside, outside = _rule(tmp_path)
    with allowed.open_file(str(inside / "a.wav")) as fh:
        assert fh.read(4) == b"RIFF"
    _swap_after_check(monkeypatch, inside, outside)
    with pytest.raises(OutsideRecordingDirs):
        allowed.open_file(str(inside / "a.wav"))


def test_a_folder_swapped_for_a_symlink_after_the_check_loses_nothing_on_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, inside, outside = _rule(tmp_path)
    _swap_after_check(monkeypatch, inside, outside)
    with pytest.raises(OutsideRecordingDirs):
        allowed.unlink_file(str(inside / "a.wav"))
    assert (outside / "a.wav").exists()


def test_the_rule_resolves_names_and_keeps_to_its_folders(tmp_path: Path) -> None:
    allowed, inside, outside = _rule(tmp_path)
    (inside / "link.wav").symlink_to(outside / "a.wav")
    os.mkfifo(inside / "fifo.raw")
    assert allowed.permits(str(inside / "a.wav"))
    assert allowed.permits(str(inside / ".." / "sub" / "a.wav"))
    for bad in (outside / "a.wav", inside / "link.wav", inside / ".." / ".." / "outside" /
                "a.wav", Path("spool/sub/a.wav"), tmp_path / "spool-other" / "a.wav"):
        assert not allowed.permits(str(bad)), bad
    assert not allowed.unlink_file(str(inside / "gone.wav"))  # already gone: fine
    with pytest.raises(OutsideRecordingDirs):
        allowed.unlink_file(str(inside / "link.wav"))
    assert (outside / "a.wav").exists() and (inside / "link.wav").is_symlink()
    with pytest.raises(Exception, match="not a regular file"):
        allowed.open_file(str(inside / "fifo.raw"))  # never blocks on a FIFO
    assert allowed.unlink_file(str(inside / "a.wav")) and not (inside / "a.wav").exists()


# -- what the service deletes after MiiTel's 200 ------------------------------------------

FREEPBX = Path(__file__).parent / "fixtures" / "captures" / "freepbx_outbound"
FREEPBX_SPOOL = "/tmp/asterisk-miitel-lab-y9q3vxzm/spool/monitor"
FREEPBX_WAV = "2026/11/23/out-00312345678-1001-20261123-224540-1795473940.81.wav"
LEGS = ("miitel/miitel-1795473940-1795473940.81-1-in.wav",
        "miitel/miitel-1795473940-1795473940.81-1-out.wav")


def _freepbx_call(tmp_path: Path, legs: tuple[str, str] = LEGS) -> tuple[list[bytes], list[Path]]:
    """The FreePBX-style capture (our hooks add r()/t() legs to FreePBX's own
    MixMonitor), its files placed under tmp/monitor."""
    raw = (FREEPBX / "ami_miitel.log").read_bytes()
    for ours, theirs in zip(LEGS, legs, strict=True):
        raw = raw.replace(ours.encode(), theirs.encode())
    files = []
    for name, source in ((FREEPBX_WAV, FREEPBX_WAV), *zip(legs, LEGS, strict=True)):
        target = tmp_path / "monitor" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        files.append(Path(shutil.copy(FREEPBX / Path(source).name, target)))
    return shift_times(transcript_events(raw), time.time() - 10), files


def _freepbx_config(**over: object) -> dict[str, object]:
    return {"pbx": {"id": "test-pbx", "timezone": "Asia/Tokyo"},
            "numbers": {"outside_line_prefix": "0"}, **over}


async def test_our_freepbx_legs_are_deleted_after_the_200_and_freepbx_wav_is_kept(
    tmp_path: Path, standin: StandIn
) -> None:
    events, (freepbx_wav, *legs) = _freepbx_call(tmp_path)
    monitor = str(tmp_path / "monitor")
    async with FakeAmi(events) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, **_freepbx_config(
            recordings={"path_map": {FREEPBX_SPOOL: monitor}, "dirs": [FREEPBX_SPOOL]}))
        assert not config.recordings.delete_after_upload  # FreePBX's advice: keep it off
        async with running(config) as service:
            await wait_for(done(service), 15)
    [call] = standin.calls()
    assert call["status"] == "uploaded" and call["channels"] == 2  # the legs were merged
    assert not any(leg.exists() for leg in legs)  # the service's own files: gone
    assert freepbx_wav.exists()  # FreePBX's recording (its CDR reports play it) stays


async def test_legs_not_named_by_our_dialplan_are_kept_unless_configured(
    tmp_path: Path, standin: StandIn
) -> None:
    events, (freepbx_wav, *legs) = _freepbx_call(
        tmp_path, ("custom/rx-1795473940.81.wav", "custom/tx-1795473940.81.wav"))
    async with FakeAmi(events) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, **_freepbx_config(
            recordings={"path_map": {FREEPBX_SPOOL: str(tmp_path / "monitor")},
                        "dirs": [FREEPBX_SPOOL]}))
        async with running(config) as service:
            await wait_for(done(service), 15)
    assert [c["status"] for c in standin.calls()] == ["uploaded"]
    assert all(leg.exists() for leg in legs) and freepbx_wav.exists()


def test_check_fails_when_no_recordings_folder_is_allowed(tmp_path: Path) -> None:
    from asterisk_miitel.ops.check import recordings_result

    config = service_config(tmp_path, 1, None, recordings={"dirs": []})
    result = recordings_result(config)
    assert result.ok is False and "none can be sent" in result.detail


# -- voicemail: VM_MESSAGEFILE names the message without its extension -------------------

VOICEMAIL = Path(__file__).parent / "fixtures" / "captures" / "inbound_voicemail"
VM_RUN = "/tmp/asterisk-miitel-lab-9lajqw51/spool"
VM_MESSAGE = f"{VM_RUN}/voicemail/default/1003/INBOX/msg0000"


async def _voicemail_call(tmp_path: Path, standin: StandIn, message: str) -> list:  # type: ignore[type-arg]
    raw = (VOICEMAIL / "ami_miitel.log").read_bytes().replace(VM_MESSAGE.encode(),
                                                               message.encode())
    events = shift_times(transcript_events(raw), time.time() - 10)
    (tmp_path / "spool" / "monitor").mkdir(parents=True)
    shutil.copy(VOICEMAIL / "miitel-1795474031-1795474031.0-1.raw", tmp_path / "spool" / "monitor")
    async with FakeAmi(events) as ami:
        config = service_config(
            tmp_path, ami.port, standin.webhook_url, **_freepbx_config(
                recordings={"path_map": {VM_RUN: str(tmp_path / "spool")},
                            "dirs": [f"{VM_RUN}/monitor"]},
                catchup={"voicemail_dirs": [f"{VM_RUN}/voicemail"]}))
        async with running(config) as service:
            await wait_for(done(service, 2), 15)
            return await service.outbox.latest(["set_aside", "uploaded"])


async def test_a_voicemail_message_in_the_spool_is_sent(tmp_path: Path, standin: StandIn) -> None:
    box = tmp_path / "spool" / "voicemail" / "default" / "1003" / "INBOX"
    box.mkdir(parents=True)
    shutil.copy(VOICEMAIL / "msg0000.wav", box)
    rows = await _voicemail_call(tmp_path, standin, VM_MESSAGE)
    assert [r.state for r in rows] == ["uploaded"]
    [call] = standin.calls()
    assert call["call_data"]["event_type"] == "AUTOMATIC_RECORD"


async def test_a_voicemail_message_named_outside_the_spool_is_refused(
    tmp_path: Path, standin: StandIn
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(VOICEMAIL / "msg0000.wav", outside / "msg0000.wav")
    [row] = await _voicemail_call(tmp_path, standin, str(outside / "msg0000"))
    assert row.state == "set_aside" and row.reason_code == "recording"
    assert str(outside / "msg0000") in (row.reason or "") and "voicemail_dirs" in (row.reason or "")
    assert standin.calls() == [] and (outside / "msg0000.wav").exists()


async def test_legs_that_cannot_be_deleted_cost_one_warning_not_the_call(
    tmp_path: Path, standin: StandIn, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As root every delete is allowed: the service's user without write access, simulated.
    def refuse(self: AllowedDirs, path: str) -> bool:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(AllowedDirs, "unlink_file", refuse)
    events, (_wav, *legs) = _freepbx_call(tmp_path)
    async with FakeAmi(events) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, **_freepbx_config(
            recordings={"path_map": {FREEPBX_SPOOL: str(tmp_path / "monitor")},
                        "dirs": [FREEPBX_SPOOL]}))
        async with running(config) as service:
            await wait_for(done(service), 15)
            [row] = await service.outbox.latest(["uploaded"])
    assert [c["status"] for c in standin.calls()] == ["uploaded"] and row.state == "uploaded"
    assert all(leg.exists() for leg in legs)
    warnings = [r.getMessage() for r in caplog.records if "could not be deleted" in r.getMessage()]
    assert len(warnings) == 1 and "write access" in warnings[0]  # once per folder
