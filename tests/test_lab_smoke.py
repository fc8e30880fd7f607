"""Smoke test of the real-Asterisk lab (tests/lab): Asterisk 22 in a chroot, sipp phones.

Skips where the lab cannot run (not Linux, not root) and fails there under
CI=true. With a warm cache (the Debian root already built) it takes about
half a minute.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import PHONES, TRUNK, AmiMessage, Lab
from tests.lab.analysis import bridged_seconds, service_wants
from tests.lab.audio import analyse
from tests.lab.fixtures import freepbx_lab, lab

__all__ = ["freepbx_lab", "lab"]  # the fixtures, until tests/conftest.py provides them

pytestmark = pytest.mark.lab


def _user_event(name: str) -> Callable[[AmiMessage], bool]:
    return lambda m: m.event == "UserEvent" and m.get("UserEvent") == name


def test_lab_records_a_call_in_stereo(lab: Lab) -> None:
    print(f"\nAsterisk {lab.asterisk_version}")
    assert lab.asterisk_version.startswith(("2", "1"))
    mark = lab.mark()
    service = lab.connect("miitel")  # the service's user: filtered, least privilege
    try:
        callee = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
        caller = lab.sipp("uac_talk", ip=PHONES["1001"].ip, service="1002",
                          inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000)
        caller.check()
        callee.wait().check()
        lab.wait_idle()

        rec = lab.wait_event(_user_event("MiiTelRecording"), since=mark)
        assert rec.get("Mode") == "interleaved"
        assert rec.get("CallerIDNum") == "1001"
        path = Path(rec.get("File"))
        assert path.parent == lab.recordings_dir and path.suffix == ".raw"
        hangup = lab.wait_event(lambda m: m.event == "Hangup"
                                and m.get("Uniqueid") == rec.get("Uniqueid"), since=mark)
        assert hangup.timestamp is not None

        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        info = analyse(path)
        print(f"recording {path.name}: {info.as_dict()}")
        # LEFT = audio from the channel that runs MixMonitor (1001, who talks)
        assert info.channels == 2
        assert info.louder_side() == "left"
        assert info.left.active_seconds >= 2.0
        bridged = bridged_seconds(lab.events_since(mark), rec.get("Uniqueid"))
        assert abs(info.seconds - bridged) < 0.5, (info.seconds, bridged)

        # the miitel user got the recording and nothing the service does not use
        time.sleep(0.5)
        got = [m for m in service.events if m.event]
        assert any(m.event == "UserEvent" and m.get("File") == str(path) for m in got)
        assert all(service_wants(m) for m in got), {m.event for m in got if not service_wants(m)}
    finally:
        service.close()


def test_lab_tag_text_reaches_the_service_intact(lab: Lab) -> None:
    tag = 'Order 42, "VIP" \\ 山田 http://crm?id=1:2 ${EPOCH}'
    mark = lab.mark()
    lab.originate("Local/tag@lab-tests", application="Wait", data="1",
                  variables={"LAB_TAG_B64": base64.b64encode(tag.encode()).decode()})
    first = lab.wait_event(_user_event("MiiTelTag"), since=mark)
    assert first.get("Tag") == tag
    group = lab.wait_event(_user_event("MiiTelGroup"), since=mark)
    assert group.get("Group") == "Sales Tokyo"
    lab.wait_idle()


def test_lab_legs_mode_for_older_asterisk(lab: Lab) -> None:
    mark = lab.mark()
    callee = lab.sipp_start("uas_talk", ip=PHONES["1002"].ip)
    lab.sipp("uac_silent", ip=PHONES["1001"].ip, service="legs-1002",
             inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000).check()
    callee.wait().check()
    lab.wait_idle()
    rec = lab.wait_event(_user_event("MiiTelRecording"), since=mark)
    assert rec.get("Mode") == "legs"
    receive, transmit = Path(rec.get("Receive")), Path(rec.get("Transmit"))
    time.sleep(0.5)
    # r() = audio from the recorded channel (1001, silent), t() = audio to it (1002 talks)
    assert analyse(transmit).left.active_seconds >= 2.0
    assert analyse(receive).left.active_seconds < 0.3
    assert Path(rec.get("File")).exists()


def test_lab_freepbx_style_recording_gets_legs(freepbx_lab: Lab) -> None:
    lab = freepbx_lab
    mark = lab.mark()
    callee = lab.sipp_start("uas_talk", ip=TRUNK.ip)
    lab.sipp("uac_silent", ip=PHONES["1001"].ip, service="00312345678",
             inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000).check()
    callee.wait().check()
    lab.wait_idle()
    rec = lab.wait_event(_user_event("MiiTelRecording"), since=mark)
    mono = Path(rec.get("File"))
    # FreePBX's own file: YYYY/MM/DD/out-<number>-<ext>-<time>-<uniqueid>.wav, mono
    assert mono.name.startswith("out-00312345678-1001-") and mono.suffix == ".wav"
    assert analyse(mono).channels == 1
    assert rec.get("Mode") == "legs"
    # the phone's channel is recorded: transmit (audio to it) holds the customer
    assert analyse(Path(rec.get("Transmit"))).left.active_seconds >= 2.0
    assert analyse(Path(rec.get("Receive"))).left.active_seconds < 0.3
