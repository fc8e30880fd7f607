"""Catch-up on the real Asterisk lab: the service is stopped, calls are
placed, the service starts again, and every call reaches the MiiTel
stand-in once, caught up from Asterisk's own cdr_csv (Master.csv), with the
right event_type and audio. Restarting once more sends nothing twice.

Also `python -m tests.test_catchup_lab capture [SCENARIO..]` records the
fixtures of tests/fixtures/cdr/ (AMI, cdr_csv, FreePBX-shaped CDR, files).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.catchup import CatchupConfig
from asterisk_miitel.catchup.runner import CatchUpTask
from asterisk_miitel.config import Config
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.outbox.store import Outbox
from asterisk_miitel.service import Service
from tests.lab import PHONES, SIP_PORT, TRUNK, Lab
from tests.lab.audio import analyse

from .support import HANAKO, JIRO, TARO

pytestmark = pytest.mark.lab
ASTERISK = f"127.0.0.1:{SIP_PORT}"
CUSTOMER = ["Tanaka Hanako", "0312349999"]


def _service(config: Config, cc: CatchupConfig) -> Service:
    return Service(config)


def _config(lab: Lab, tmp: Path, url: str) -> tuple[Config, CatchupConfig]:
    cc = CatchupConfig(cdr_csv=[str(lab.log_dir / "cdr-csv" / "Master.csv")],
                       csv_timezone="UTC", voicemail_dirs=[str(lab.voicemail_dir)],
                       settle_seconds=1.0, second_pass_seconds=0)
    data: dict[str, Any] = {
        "ami": {"host": lab.ami_host, "port": lab.ami_port, "username": lab.miitel_username,
                "secret": lab.miitel_secret, "ping_interval": 2, "ping_timeout": 2,
                "reconnect_min": 0.2, "reconnect_max": 1},
        "miitel": {"webhook_url": url, "retry_base": 0.05, "retry_max": 0.5},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "recordings": {"work_dir": str(tmp / "work"), "wait_timeout": 5, "min_free_mb": 0,
                       "dirs": [str(lab.recordings_dir)]},
        "numbers": {"outside_line_prefix": "0"},
        "pbx": {"id": "lab-catchup", "timezone": "Asia/Tokyo"},
        "users": {"1001": {"miitel_user_id": TARO, "name": "Suzuki Ichiro",
                           "endpoints": ["desk-suzuki"]},
                  "1002": {"miitel_user_id": HANAKO, "name": "Ishikawa Jiro"},
                  "1003": {"miitel_user_id": JIRO, "name": "Ueda Saburo"}},
    }
    data["catchup"] = cc.model_dump(mode="json")
    return Config(**data), cc


async def _until(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached in {limit:.0f} s: {what}")


def _place_calls(lab: Lab) -> dict[str, str]:
    """Calls made while the service is down: what each must become."""
    (lab.log_dir / "cdr-csv").mkdir(exist_ok=True)  # cdr_csv does not create it
    expected: dict[str, str] = {}
    # inbound: the customer is silent, 1001 talks
    callee = lab.sipp_start("uas_talk", ip=PHONES["1001"].ip)
    lab.sipp("uac_silent", ip=TRUNK.ip, service="0312345678", inf=[CUSTOMER],
             duration_ms=4000).check()
    callee.wait().check()
    expected["inbound"] = "INCOMING_CALL"
    # outbound: 1001 talks to the carrier
    callee = lab.sipp_start("uas_answer", ip=TRUNK.ip)
    lab.sipp("uac_talk", ip=PHONES["1001"].ip, service="00312345678",
             inf=[["Suzuki Ichiro", "1001"]], duration_ms=4000).check()
    callee.wait().check()
    expected["outbound"] = "OUTGOING_CALL"
    # between extensions
    callee = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
    lab.sipp("uac_talk", ip=PHONES["1001"].ip, service="1002",
             inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000).check()
    callee.wait().check()
    expected["ext2ext"] = "EXTENSION"
    # a caller named 山田太郎 who talks
    callee = lab.sipp_start("uas_answer", ip=PHONES["1001"].ip)
    lab.sipp("uac_talk", ip=TRUNK.ip, service="0312345678", inf=[["山田太郎", "0312349999"]],
             duration_ms=3000).check()
    callee.wait().check()
    expected["japanese"] = "INCOMING_CALL"
    # blind transfer: 1001 answers and REFERs the customer to 1002 (two recordings)
    target = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
    transferer = lab.sipp_start("uas_refer_bye", ip=PHONES["1001"].ip, inf=[["1002", ASTERISK]])
    lab.sipp("uac_talk", ip=TRUNK.ip, service="0312345678", inf=[CUSTOMER],
             duration_ms=9000).check()
    transferer.wait().check()
    target.wait().check()
    expected["transfer"] = "INCOMING_CALL+EXTENSION_TRANSFER"
    # busy: nothing to send
    callee = lab.sipp_start("uas_busy", ip=TRUNK.ip)
    lab.sipp("uac_unanswered", ip=PHONES["1001"].ip, service="00312345678",
             inf=[["Suzuki Ichiro", "1001"]]).check()
    callee.wait().check()
    lab.wait_idle()
    time.sleep(1.0)
    return expected


def test_calls_made_while_the_service_was_down_are_caught_up(lab: Lab, tmp_path: Path) -> None:
    asyncio.run(_scenario(lab, tmp_path))


async def _scenario(lab: Lab, tmp: Path) -> None:
    timings: dict[str, float] = {}
    async with StandIn(tmp / "miitel", port=0) as standin:
        config, cc = _config(lab, tmp, standin.webhook_url)
        # 1. The service runs once (learns how far it has seen), then stops.
        first = _service(config, cc)
        await first.start()
        await _until(lambda: _meta(first.outbox, "catchup.seen_until"), 20, "AMI followed")
        await first.stop()
        before = {p.name for p in lab.recordings_dir.iterdir()}
        # 2. Calls while it is down.
        t0 = time.monotonic()
        expected = await asyncio.to_thread(_place_calls, lab)
        timings["calls placed"] = time.monotonic() - t0
        made = sorted(p for p in lab.recordings_dir.iterdir() if p.name not in before)
        assert len(made) == 7, [p.name for p in made]  # 6 calls, the transfer recorded twice
        # 3. It starts again: catch-up finds them in Master.csv and sends them.
        t0 = time.monotonic()
        second = _service(config, cc)
        await second.start()
        try:
            async def sent() -> bool:
                return sum(c["status"] == "uploaded" for c in ours(standin.calls(), made)) >= 6
            await _until(sent, 60, "6 caught-up calls uploaded")
            timings["start -> 6 calls uploaded"] = time.monotonic() - t0
            async def settled() -> bool:
                c = await second.outbox.counts()
                return c["waiting_recording"] + c["ready"] + c["created"] == 0
            await _until(settled, 30, "outbox settled")
            rows = [await second.outbox.get(i) for i in await second.outbox.all_ids()]
        finally:
            await second.stop()
        # Calls an earlier test made on this lab shortly before, that no service
        # sent, are caught up too (rightly): judge the ones made while it was down.
        assert all(c["post_count"] == 1 for c in standin.calls())
        calls = ours(standin.calls(), made)
        assert len(calls) == 6, [c["call_data_id"] for c in standin.calls()]
        by_file = {Path(r.file).name: r for r in rows
                   if r is not None and Path(r.file).name in {p.name for p in made}}
        assert {r.source for r in by_file.values()} == {"catchup"}
        assert sorted(r.state for r in by_file.values()) == ["skipped"] + ["uploaded"] * 6
        kinds = sorted(c["call_data"]["event_type"] for c in calls)
        assert kinds == sorted(["INCOMING_CALL", "OUTGOING_CALL", "EXTENSION", "INCOMING_CALL",
                                "INCOMING_CALL", "EXTENSION_TRANSFER"]), kinds
        assert sorted(expected.values()) == sorted(
            ["INCOMING_CALL", "OUTGOING_CALL", "EXTENSION", "INCOMING_CALL",
             "INCOMING_CALL+EXTENSION_TRANSFER"])
        tanaka = sorted((c for c in calls if c["call_data"]["event_type"] == "INCOMING_CALL"
                         and c["call_data"]["participants"][0]["name"] == CUSTOMER[0]),
                        key=lambda c: c["call_data"]["call_starts_at"])
        assert len(tanaka) == 2  # the inbound call, then the transfer's first leg
        for call in calls:
            data = call["call_data"]
            assert data["audio_channel_type"] == "STEREO" and call["channels"] == 2
            names = {p["type"]: p for p in data["participants"]}
            audio = analyse(call["file"])
            if data["event_type"] == "OUTGOING_CALL":  # 1001 talked: FROM's side
                assert audio.louder_side() == names["FROM"]["stereo_lr"] == "left"
            if data["event_type"] == "INCOMING_CALL" and names["FROM"]["name"] == "山田太郎":
                assert audio.louder_side() == names["FROM"]["stereo_lr"] == "left"
            if call is tanaka[0]:  # the inbound call: 1001 talked, the customer did not
                assert audio.louder_side() == names["TO"]["stereo_lr"] == "right"
            if call is tanaka[1]:  # the transfer's first leg: the customer talked
                assert audio.louder_side() == names["FROM"]["stereo_lr"] == "left"
            if data["event_type"] == "EXTENSION_TRANSFER":
                assert names["FROM"]["number"] == "1001" and names["TO"]["number"] == "1002"
        # 4. Once more: the window overlaps, nothing is sent twice.
        third = _service(config, cc)
        await third.start()
        try:
            task: CatchUpTask = third.catchup
            async def ran() -> bool:
                return task.runs >= 1
            await _until(ran, 30, "second catch-up")
            assert task.last is not None and task.last.sent == 0 and task.last.known >= 7
        finally:
            await third.stop()
        assert len(ours(standin.calls(), made)) == 6
        assert all(c["post_count"] == 1 for c in standin.calls())
    print("\ntimings: " + json.dumps({k: round(v, 1) for k, v in timings.items()}))


def ours(calls: list[dict[str, Any]], made: list[Path]) -> list[dict[str, Any]]:
    """The stand-in's calls whose recording is one of `made` (its name is in the id)."""
    names = [f":{p.name}:" for p in made]
    return [c for c in calls if any(n in c["call_data_id"] for n in names)]


async def _meta(outbox: Outbox, key: str) -> bool:
    try:
        return bool(await outbox.get_meta(key))
    except RuntimeError:
        return False


# -- fixture capture -----------------------------------------------------------------------


def capture(names: list[str], outdir: Path) -> None:
    """Record tests/fixtures/cdr/<scenario>/ from the lab's scenarios."""
    from tests.lab.scenarios import SCENARIOS, Runner

    todo = names or list(SCENARIOS)
    with Lab() as lab:
        (lab.log_dir / "cdr-csv").mkdir(exist_ok=True)
        for name in todo:
            flavour, fn = SCENARIOS[name]
            lab.use_flavour(flavour)
            lab.wait_idle()
            folder = outdir / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for box in ("1001", "1002", "1003"):
                (lab.voicemail_dir / "default" / box / "INBOX").mkdir(parents=True,
                                                                     exist_ok=True)
            csv = lab.log_dir / "cdr-csv" / "Master.csv"
            js = lab.log_dir / "freepbx-cdr.json"
            at_csv = csv.stat().st_size if csv.exists() else 0
            at_js = js.stat().st_size if js.exists() else 0
            before = {p for p in (lab.run_dir / "spool").rglob("*") if p.is_file()}
            with open(folder / "ami_miitel.log", "wb") as sink:
                miitel = lab.connect("miitel", sink=sink)
                time.sleep(0.3)
                runner = Runner(lab)
                try:
                    truth = fn(lab, runner)
                    runner.wait_all()
                finally:
                    runner.kill_all()
                lab.wait_idle(timeout=30)
                time.sleep(2.0)
                miitel.close()
            (folder / "Master.csv").write_bytes(csv.read_bytes()[at_csv:] if csv.exists() else b"")
            (folder / "freepbx-cdr.json").write_bytes(js.read_bytes()[at_js:] if js.exists()
                                                      else b"")
            files = sorted({p for p in (lab.run_dir / "spool").rglob("*") if p.is_file()}
                           - before)
            (folder / "files.json").write_text(json.dumps(
                {"run_dir": str(lab.run_dir), "asterisk": lab.asterisk_version,
                 "files": [[str(p), p.stat().st_size] for p in files],
                 "truth": {"description": truth.description, "expected": truth.expected}},
                indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"captured {name}", file=sys.stderr, flush=True)
        lab.use_flavour("plain")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] != ["capture"]:
        raise SystemExit("usage: python -m tests.test_catchup_lab capture [SCENARIO..]")
    capture(sys.argv[2:], Path(__file__).parent / "fixtures" / "cdr")
