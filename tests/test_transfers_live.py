"""A transferred call through the whole service (issue 13): the real attended
transfer captured on Asterisk 22 (its AMI stream and its own recordings),
replayed by the fake AMI server into a running Service that uploads to the
MiiTel stand-in over HTTP. Each conversation arrives as its own call
history holding only its part of the file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.miitel.standin import StandIn

from .lab.audio import analyse
from .support import running, service_config, wait_for
from .test_classify_lab import CAPTURES, USERS

CAPTURE = CAPTURES / "attended_transfer"
SPOOL = "/tmp/asterisk-miitel-lab-y9q3vxzm/spool/monitor"  # where the lab recorded
CUSTOMER = "miitel-1795473840-1795473840.27-1.raw"
CONSULT = "miitel-1795473843-1795473843.30-1.raw"


def _config(tmp: Path, port: int, url: str, report: str, delete: bool,
            files: tuple[str, ...]) -> object:
    monitor = tmp / "monitor"
    monitor.mkdir(exist_ok=True)
    for name in files:
        shutil.copy(CAPTURE / name, monitor / name)
    return service_config(
        tmp, port, url, users=USERS, transfers={"report": report},
        recordings={"path_map": {SPOOL: str(monitor)}, "dirs": [SPOOL],
                    "delete_after_upload": delete},
    )


async def _run(tmp: Path, report: str, delete: bool = False,
               files: tuple[str, ...] = (CUSTOMER, CONSULT),
               post_fault: int | None = None) -> tuple[list, list]:
    events = shift_times(transcript_events((CAPTURE / "ami_miitel.log").read_bytes()),
                         time.time() - 20)
    async with StandIn(tmp / "miitel", port=0) as standin:
        if post_fault is not None:
            standin.add_fault(method="POST", status=post_fault, times=1)
        async with FakeAmi(events) as ami:
            config = _config(tmp, ami.port, standin.webhook_url, report, delete, files)
            async with running(config) as service:  # type: ignore[arg-type]
                async def settled() -> bool:
                    c = await service.outbox.counts()
                    return c["uploaded"] + c["skipped"] + c["set_aside"] >= 4
                await wait_for(settled, 20)
                rows = await service.outbox.latest(["uploaded", "skipped", "set_aside"], 10)
                assert service.stats.intake_errors == 0
        return standin.calls(), rows


@pytest.mark.parametrize("report", ["literal", "speakers"])
async def test_attended_transfer_each_conversation_its_own_upload(
    tmp_path: Path, report: str,
) -> None:
    calls, rows = await _run(tmp_path, report)
    states = sorted((r.state, r.id.rsplit(":", 2)[1]) for r in rows)
    # one outbox row per conversation: the Local half's copy of the customer
    # with 1003 is skipped, sent from the customer's own recording
    assert states == sorted([("skipped", CONSULT + "#2"), ("uploaded", CONSULT),
                             ("uploaded", CUSTOMER), ("uploaded", CUSTOMER + "#2")])
    by_id = {c["call_data_id"].rsplit(":", 2)[1]: c for c in calls}
    assert set(by_id) == {CUSTOMER, CUSTOMER + "#2", CONSULT}
    for call in by_id.values():
        assert call["status"] == "uploaded" and call["put_count"] == 1, call
    whole = analyse(CAPTURE / CUSTOMER)
    first, second = analyse(by_id[CUSTOMER]["file"]), analyse(by_id[CUSTOMER + "#2"]["file"])
    # the customer's 16.02 s file: 9.84 s with 1002 (the hold inside), then 6.18 s with 1003
    assert first.seconds == pytest.approx(9.84, abs=0.02)
    assert second.seconds == pytest.approx(whole.seconds - 9.84, abs=0.02)
    # the customer talked throughout, on the left of both; 1002 and 1003 were silent
    for piece in (first, second):
        assert piece.louder_side() == "left" and piece.channels == 2
    sides = {p["stereo_lr"]: p["number"]
             for p in by_id[CUSTOMER + "#2"]["call_data"]["participants"]}
    if report == "literal":
        assert by_id[CUSTOMER + "#2"]["call_data"]["event_type"] == "EXTENSION_TRANSFER"
        assert sides == {"left": "1002", "right": "1003"}
    else:
        assert by_id[CUSTOMER + "#2"]["call_data"]["event_type"] == "INCOMING_CALL"
        assert sides == {"left": "0312349999", "right": "1003"}
        assert by_id[CUSTOMER + "#2"]["call_data"]["tags"] == [{"value": "transferred by 1002"}]
    assert by_id[CUSTOMER]["call_data"]["event_type"] == "INCOMING_CALL"
    # the customer's pieces match their bridged time, holds included: no warning
    for row in rows:
        if row.id.rsplit(":", 2)[1] in (CUSTOMER, CUSTOMER + "#2"):
            assert not any("bridged for" in n for n in row.notes), row.notes


async def test_a_file_two_conversations_share_is_deleted_after_both(tmp_path: Path) -> None:
    calls, rows = await _run(tmp_path, "literal", delete=True)
    assert sorted(r.state for r in rows) == ["skipped", "uploaded", "uploaded", "uploaded"]
    assert len(calls) == 3 and all(c["status"] == "uploaded" for c in calls)
    assert not (tmp_path / "monitor" / CUSTOMER).exists()  # once both pieces were sent


async def test_a_shared_file_is_kept_while_another_piece_may_still_need_it(
    tmp_path: Path,
) -> None:
    """One of the customer's two pieces gets a 500 (outcome unknown: a person
    may `retry --force` it later); the other is uploaded. With
    delete_after_upload, the file must stay for the first."""
    _, rows = await _run(tmp_path, "literal", delete=True, files=(CUSTOMER,), post_fault=500)
    mine = sorted((r.state, r.reason_code) for r in rows
                  if r.id.rsplit(":", 2)[1] in (CUSTOMER, CUSTOMER + "#2"))
    assert mine == [("set_aside", "outcome_unknown"), ("uploaded", None)]
    assert (tmp_path / "monitor" / CUSTOMER).exists()
