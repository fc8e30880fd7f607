"""Catch-up and backfill runs against a real outbox: nothing twice, nothing
silently dropped, dry runs print what would be sent, the service's window."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

from asterisk_miitel.catchup.cli import backfill_main, parse_when
from asterisk_miitel.catchup.config import CatchupConfig
from asterisk_miitel.catchup.runner import (
    META_PENDING,
    META_SEEN,
    CatchUp,
    CatchUpTask,
    status_lines,
)
from asterisk_miitel.config import Config, SendConfig
from asterisk_miitel.outbox.store import NewCall, Outbox

from .support import FIXTURES, HANAKO, JIRO, TARO, lab_config

CDR = FIXTURES / "cdr"
SCENARIOS = ("inbound_answered", "blind_transfer", "busy", "outbound", "inbound_voicemail")


def make_pbx(tmp: Path, scenarios: tuple[str, ...] = SCENARIOS) -> tuple[Config, CatchupConfig,
                                                                          float, float]:
    """The fixtures' CDR and files, moved under tmp as if this were the PBX."""
    monitor = tmp / "spool" / "monitor"
    voicemail = tmp / "spool" / "voicemail"
    monitor.mkdir(parents=True)
    csv_text = ""
    times: list[float] = []
    for name in scenarios:
        folder = CDR / name
        info = json.loads((folder / "files.json").read_text())
        run = info["run_dir"]
        csv_text += (folder / "Master.csv").read_text(encoding="utf-8")
        for path, size in info["files"]:
            target = Path(path.replace(run, str(tmp)))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                fh.truncate(size)
            if target.suffix == ".txt":
                target.write_text(Path(path).name and _msg_txt(folder, run, tmp))
    (tmp / "Master.csv").write_text(csv_text, encoding="utf-8")
    from asterisk_miitel.catchup.sources.csv import CsvSource

    src = CsvSource([str(tmp / "Master.csv")], None)
    import csv

    for fields in csv.reader(io.StringIO(csv_text)):
        row = src.row(fields)
        times += [row.start, row.end]
    config = lab_config(
        users={"1001": {"miitel_user_id": TARO, "name": "Taro", "endpoints": ["desk-suzuki"]},
               "1002": {"miitel_user_id": HANAKO, "name": "Hanako"},
               "1003": {"miitel_user_id": JIRO, "name": "Jiro"}},
        outbox={"path": str(tmp / "outbox.sqlite3")},
        recordings={"dirs": [str(monitor)], "work_dir": str(tmp / "work")},
    )
    cc = CatchupConfig(cdr_csv=[str(tmp / "Master.csv")], csv_timezone="UTC",
                       voicemail_dirs=[str(voicemail)], concurrency=2)
    return config, cc, min(times) - 60, max(times) + 60


def _msg_txt(folder: Path, run: str, tmp: Path) -> str:
    """The voicemail message's metadata as app_voicemail writes it."""
    rows = (folder / "Master.csv").read_text().splitlines()
    vm = next(r for r in rows if '"VoiceMail"' in r)
    fields = next(iter(__import__("csv").reader([vm])))
    from datetime import UTC, datetime

    end = datetime.fromisoformat(fields[11]).replace(tzinfo=UTC).timestamp()
    return (f";\n; Message Information file\n;\n[message]\norigmailbox=1003\ncontext=from-trunk\n"
            f"callerchan={fields[5]}\ncallerid={fields[4]}\norigtime={int(end) - 6}\n"
            f"duration=6\n")


async def run(config: Config, cc: CatchupConfig, since: float, until: float,
              **kw: Any) -> Any:
    async with Outbox(config.outbox.path) as outbox:
        report = await CatchUp(config, outbox, "lab", cc=cc, **kw).run(since, until)
        rows = {r: await outbox.get(r) for r in await outbox.all_ids()}
    return report, rows


async def test_catch_up_queues_each_call_once_and_again_nothing(tmp_path: Path) -> None:
    config, cc, since, until = make_pbx(tmp_path)
    report, rows = await run(config, cc, since, until)
    assert dict(report.queued) == {"INCOMING_CALL": 2, "EXTENSION_TRANSFER": 1,
                                   "OUTGOING_CALL": 1, "AUTOMATIC_RECORD": 1}, report.summary_lines()
    assert sum(report.skipped.values()) == 2  # busy; the raw file the voicemail replaces
    assert not report.unexplained and not report.problems, report.summary_lines()
    assert {r.source for r in rows.values()} == {"catchup"}
    assert sorted(r.state for r in rows.values()).count("waiting_recording") == 5
    again, rows2 = await run(config, cc, since, until)
    assert again.sent == 0 and again.known == 7 and rows2.keys() == rows.keys()
    text = "\n".join(again.summary_lines())
    assert "already known (sent live or earlier): 7" in text


class Counted:
    """The service's metrics, as intake sees them (ops/metrics.ServiceMetrics)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def count_skipped(self, call_data: Any, reason: str) -> None:
        self.seen.append((call_data["event_type"], reason.split(":")[0]))

    def count_set_aside(self, call_data: Any) -> None:
        self.seen.append((call_data["event_type"], "set_aside"))


async def test_caught_up_calls_count_in_the_metrics_like_live_ones(tmp_path: Path) -> None:
    config, cc, since, until = make_pbx(tmp_path)
    config = config.model_copy(update={
        "send": SendConfig(exclude_directions=["outgoing"]),
        "users": {k: v for k, v in config.users.items() if k != "1002"}})
    counted = Counted()
    report, _rows = await run(config, cc, since, until, counter=counted, dry_run=True)
    assert counted.seen == [] and report.skipped  # a dry run queues nothing
    report, rows = await run(config, cc, since, until, counter=counted)
    # The outbound call skipped by [send], the transfer to 1002 (no user) set
    # aside; not the busy call (no rule: nothing to send), nor what the sender counts.
    assert sorted(counted.seen) == [("EXTENSION_TRANSFER", "set_aside"),
                                    ("OUTGOING_CALL", "send.exclude_directions")]
    assert sorted(r.state for r in rows.values()).count("skipped") == 3
    await run(config, cc, since, until, counter=counted)  # all known now: counted once
    assert len(counted.seen) == 2


async def test_what_live_tracking_has_or_follows_is_left_alone(tmp_path: Path) -> None:
    config, cc, since, until = make_pbx(tmp_path, ("inbound_answered", "outbound"))
    [inbound] = [p for p in (tmp_path / "spool/monitor").iterdir()
                 if p.name.startswith("miitel-") and
                 json.loads((CDR / "inbound_answered/files.json").read_text())["files"][0][0]
                 .endswith(p.name)]
    async with Outbox(config.outbox.path) as outbox:
        # live tracking queued the inbound call under another spelling of the folder
        await outbox.add(NewCall(id="lab:x:1", file="/var/spool//monitor/" + inbound.name,
                                 state="uploaded", audio={}, source="live"))
    outbound = next(p for p in (tmp_path / "spool/monitor").iterdir()
                    if p.name != inbound.name and p.suffix == ".raw")
    report, rows = await run(config, cc, since, until,
                             is_live=lambda f: f.endswith(outbound.name))
    assert report.known == 1 and report.live == 1 and report.sent == 0
    assert list(rows) == ["lab:x:1"]


async def test_files_no_cdr_row_explains_are_reported(tmp_path: Path) -> None:
    config, cc, since, until = make_pbx(tmp_path, ("inbound_answered",))
    stray = tmp_path / "spool/monitor" / f"miitel-{int(since) + 30}-9999999.99-1.raw"
    stray.write_bytes(b"\0" * 3200)
    (tmp_path / "spool/monitor" / "somebody-else.wav").write_bytes(b"")  # not ours: ignored
    report, _rows = await run(config, cc, since, until)
    assert report.sent == 1
    [(path, why)] = report.unexplained
    assert path == str(stray) and "9999999.99" in why and "loguniqueid" in why


async def test_an_unreadable_cdr_keeps_the_window_pending(tmp_path: Path) -> None:
    config, cc, since, until = make_pbx(tmp_path, ("inbound_answered",))
    async with Outbox(config.outbox.path) as outbox:
        task = CatchUpTask(config, outbox, pbx_id=_pbx, cc=cc.model_copy(
            update={"settle_seconds": 0, "second_pass_seconds": 0}))
        await task.connected(since)  # first start ever: nothing to catch up
        assert await outbox.get_meta(META_PENDING) is None and task.ready
        await task.heartbeat(since + 5, connected=True)
        assert float(await outbox.get_meta(META_SEEN) or 0) == since + 5
        task.disconnected()
        await task.heartbeat(since + 10, connected=False)  # away: seen_until stays
        assert float(await outbox.get_meta(META_SEEN) or 0) == since + 5
        shutil.move(tmp_path / "Master.csv", tmp_path / "Master.csv.away")
        await task.connected(until)
        assert task._task is not None
        await task._task
        assert task.last is not None and task.last.source_failed
        assert json.loads(await outbox.get_meta(META_PENDING) or "{}")["until"] == until
        shutil.move(tmp_path / "Master.csv.away", tmp_path / "Master.csv")
        await task.connected(until + 1)
        await task._task
        assert task.last.sent == 1 and not await outbox.get_meta(META_PENDING)
        lines = await status_lines(outbox)
        assert lines[0] == "caught up: waiting_recording 1" and "queued 1" in lines[1]
        await task.stop()


async def _pbx() -> str:
    return "lab"


def test_backfill_dry_run_prints_call_data_and_a_summary(tmp_path: Path) -> None:
    config, cc, since, _until = make_pbx(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    from datetime import UTC, datetime

    day = datetime.fromtimestamp(since, UTC).date().isoformat()
    config.pbx.timezone = "UTC"
    code = backfill_main(config, day, day, True, out=out, err=err, cc=cc)
    assert code == 0, err.getvalue()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted(x["event_type"] for x in lines) == [
        "AUTOMATIC_RECORD", "EXTENSION_TRANSFER", "INCOMING_CALL", "INCOMING_CALL",
        "OUTGOING_CALL"]
    assert all(x["call_data_id"].startswith("lab:") for x in lines)
    summary = err.getvalue()
    assert "would queue: 5" in summary and "skipped: 2" in summary and "dry run" in summary
    assert not Path(config.outbox.path).exists() or True
    code = backfill_main(config, day, day, False, out=io.StringIO(), err=(err2 := io.StringIO()),
                         cc=cc)
    assert code == 0 and "queued: 5" in err2.getvalue()
    code = backfill_main(config, day, day, False, out=io.StringIO(), err=(err3 := io.StringIO()),
                         cc=cc)
    assert code == 0 and "queued: 0" in err3.getvalue() and "known" in err3.getvalue()
    assert backfill_main(config, "yesterday", None, True, err=io.StringIO(), cc=cc) == 2


def test_parse_when_uses_the_pbx_zone(tmp_path: Path) -> None:
    config = lab_config()  # Asia/Tokyo
    assert parse_when("2026-11-24", config) == parse_when("2026-11-23T15:00:00+00:00", config)
    assert parse_when("2026-11-24", config, end=True) - parse_when("2026-11-24", config) == 86400
