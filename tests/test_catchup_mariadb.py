"""Backfill from a real MariaDB holding FreePBX's asteriskcdrdb.cdr, filled
with the rows of calls the test PBX (the lab's FreePBX-style dialplan on
Asterisk 22) really made: each recorded call reaches the MiiTel stand-in
once; a second backfill sends nothing.

The rows come from Asterisk's CDR engine through cdr_custom (the lab writes
FreePBX's columns as JSON, tests/lab/conf/cdr_custom.conf); the harness
inserts them as FreePBX's cdr_adaptive_odbc would (calldate = start, no
answer/end columns).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.catchup.cli import backfill_main
from asterisk_miitel.catchup.config import CatchupConfig
from asterisk_miitel.config import Config
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service
from tests.lab import PHONES, TRUNK, Lab
from tests.lab.audio import analyse
from tests.mariadb import MariaDB
from tests.mariadb.fixtures import mariadb

from .support import HANAKO, JIRO, TARO

__all__ = ["mariadb"]
pytestmark = pytest.mark.lab
CUSTOMER = ["Tanaka Hanako", "0312349999"]


def _calls(lab: Lab) -> None:
    # outbound: 1001 -> outrt-1 -> trunk; the customer talks
    callee = lab.sipp_start("uas_talk", ip=TRUNK.ip)
    lab.sipp("uac_silent", ip=PHONES["1001"].ip, service="00312345678",
             inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000).check()
    callee.wait().check()
    # inbound DID 0312345678 -> 1001 (route recording "force"); the customer talks
    callee = lab.sipp_start("uas_answer", ip=PHONES["1001"].ip)
    lab.sipp("uac_talk", ip=TRUNK.ip, service="0312345678", inf=[["山田太郎", "0312349999"]],
             duration_ms=3000).check()
    callee.wait().check()
    # queue 400: 1002 answers, 1003 rings
    m2 = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
    m3 = lab.sipp_start("uas_noanswer", ip=PHONES["1003"].ip)
    lab.sipp("uac_talk", ip=TRUNK.ip, service="0312345679", inf=[CUSTOMER],
             duration_ms=4000).check()
    m2.wait().check()
    m3.wait().check()
    # ring group 600: 1003 answers, 1002 rings
    m2 = lab.sipp_start("uas_noanswer", ip=PHONES["1002"].ip)
    m3 = lab.sipp_start("uas_answer", ip=PHONES["1003"].ip)
    lab.sipp("uac_talk", ip=TRUNK.ip, service="0312345680", inf=[CUSTOMER],
             duration_ms=4000).check()
    m2.wait().check()
    m3.wait().check()
    lab.wait_idle()
    time.sleep(1.0)


def _freepbx_rows(path: Path, offset: int) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_bytes()[offset:].decode("utf-8").splitlines():
        v = json.loads(line)
        v["calldate"] = v.pop("start")  # cdr_adaptive_odbc: alias start => calldate
        v.pop("answer")
        v.pop("end")
        rows.append(v)
    return rows


def test_backfill_from_freepbx_mariadb_sends_each_call_once(
    freepbx_lab: Lab, mariadb: MariaDB, tmp_path: Path
) -> None:
    lab = freepbx_lab
    custom = lab.log_dir / "freepbx-cdr.json"
    offset = custom.stat().st_size if custom.exists() else 0
    since = time.time() - 2
    before = {p for p in lab.recordings_dir.rglob("*") if p.is_file()}
    _calls(lab)
    made = sorted({p for p in lab.recordings_dir.rglob("*") if p.is_file()} - before)
    freepbx_files = [p for p in made if "/miitel/" not in str(p)]
    assert len(freepbx_files) == 4, made  # FreePBX's own WAVs (plus our legs)
    rows = _freepbx_rows(custom, offset)
    assert mariadb.insert_cdr(rows) == len(rows) >= 8
    asyncio.run(_backfill_and_send(lab, mariadb, tmp_path, since))


async def _backfill_and_send(lab: Lab, db: MariaDB, tmp: Path, since: float) -> None:
    async with StandIn(tmp / "miitel", port=0) as standin:
        cc = CatchupConfig(source="sql", database_url=db.url, sql_timezone="UTC",
                           voicemail_dirs=[str(lab.voicemail_dir)])
        data: dict[str, Any] = {
            "miitel": {"webhook_url": standin.webhook_url, "retry_base": 0.05,
                       "retry_max": 0.5},
            "outbox": {"path": str(tmp / "outbox.sqlite3")},
            "recordings": {"work_dir": str(tmp / "work"), "wait_timeout": 5, "min_free_mb": 0,
                           "dirs": [str(lab.recordings_dir)]},
            "numbers": {"outside_line_prefix": "0"},
            "pbx": {"id": "lab-freepbx", "timezone": "Asia/Tokyo"},
            "users": {"1001": {"miitel_user_id": TARO, "name": "Suzuki Ichiro",
                               "endpoints": ["desk-suzuki"]},
                      "1002": {"miitel_user_id": HANAKO, "name": "Ishikawa Jiro"},
                      "1003": {"miitel_user_id": JIRO, "name": "Ueda Saburo"}},
        }
        if "catchup" in Config.model_fields:
            data["catchup"] = cc.model_dump(mode="json") | {"database_url": db.url}
        config = Config(**data)
        day_from = datetime.fromtimestamp(since - 60, UTC).isoformat(timespec="seconds")
        day_to = datetime.fromtimestamp(time.time() + 60, UTC).isoformat(timespec="seconds")

        def backfill(dry: bool) -> tuple[int, str, str, float]:
            out, err = io.StringIO(), io.StringIO()
            t0 = time.monotonic()
            code = backfill_main(config, day_from, day_to, dry, out=out, err=err, cc=cc)
            return code, out.getvalue(), err.getvalue(), time.monotonic() - t0

        code, out, err, dry_s = await asyncio.to_thread(backfill, True)
        assert code == 0, err
        dry = [json.loads(x) for x in out.splitlines()]
        assert sorted(d["event_type"] for d in dry) == [
            "INCOMING_CALL", "INCOMING_CALL", "INCOMING_CALL", "OUTGOING_CALL"], err
        code, _out, err, first_s = await asyncio.to_thread(backfill, False)
        assert code == 0 and "queued: 4" in err, err
        service = Service(config, listen=False)  # the running service sends what was queued
        await service.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                c = await service.outbox.counts()
                if c["uploaded"] >= 4:
                    break
                await asyncio.sleep(0.2)
            rows = [await service.outbox.get(i) for i in await service.outbox.all_ids()]
        finally:
            await service.stop()
        assert sorted((r.source, r.state) for r in rows if r) == [("backfill", "uploaded")] * 4
        calls = standin.calls()
        assert len(calls) == 4 and all(c["post_count"] == 1 for c in calls)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for c in calls:
            by_type.setdefault(c["call_data"]["event_type"], []).append(c)
            assert c["call_data"]["audio_channel_type"] == "STEREO" and c["channels"] == 2
        [out_call] = by_type["OUTGOING_CALL"]
        parties = {p["type"]: p for p in out_call["call_data"]["participants"]}
        assert parties["FROM"]["number"] == "1001" and parties["TO"]["number"] == "0312345678"
        # the customer talked: the side labelled TO carries the audio
        assert analyse(out_call["file"]).louder_side() == parties["TO"]["stereo_lr"]
        names = {(c["call_data"].get("queue_name"), c["call_data"].get("groupname"))
                 for c in by_type["INCOMING_CALL"]}
        assert names == {(None, None), (None, "600"), ("400", None)}
        code, _out, err, again_s = await asyncio.to_thread(backfill, False)
        assert code == 0 and "queued: 0" in err and "already known" in err, err
        assert len(standin.calls()) == 4
    print(f"\nbackfill over MariaDB: dry run {dry_s:.2f} s, first {first_s:.2f} s, "
          f"second {again_s:.2f} s (MariaDB {db.version}, started in {db.started_in:.1f} s)")
