"""intake.admit(): a classified call -> the outbox row, the same for live
tracking and catch-up; its one log line and its /metrics count."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from asterisk_miitel.calls.classify import Outcome, call_data_id
from asterisk_miitel.config import Config
from asterisk_miitel.intake import admit, count_queued, log_outcome
from asterisk_miitel.replay import replay_file

from .support import DEMO_DIR, TARO, lab_config

NO_INCOMING = {"exclude_directions": ["incoming"]}


def config(**send: Any) -> Config:
    return lab_config(users={"1001": {"miitel_user_id": TARO, "endpoints": ["desk-suzuki"]}},
                      send=send)


@pytest.fixture(scope="module")
def demo() -> Outcome:
    """The bundled real inbound call: customer -> extension 1001, sendable as it is."""
    [outcome] = replay_file(str(DEMO_DIR / "ami.log"), config())
    assert outcome.call_data is not None and not outcome.skip and not outcome.set_aside
    return outcome


def missed(demo: Outcome, **over: Any) -> Outcome:
    """A call classify() skipped before assembling call_data (no id of its own)."""
    return replace(demo, call_data=None, skip="unanswered: nobody picked up", **over)


class Counter:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def count_skipped(self, call_data: Any, reason: str) -> None:
        self.seen.append(("skipped", reason))

    def count_set_aside(self, call_data: Any) -> None:
        self.seen.append(("set_aside", call_data["event_type"]))


def test_a_sendable_call_waits_for_its_recording(demo: Outcome) -> None:
    call = admit(demo, "live", pbx_id="lab", config=config())
    assert (call.state, call.reason, call.reason_code, call.source) == (
        "waiting_recording", None, None, "live")
    assert call.id == demo.call_data_id and call.file == demo.file
    assert demo.call_data is not None and call.call_data == demo.call_data.payload()
    assert call.parties == [{"type": "FROM", "extension": None},
                            {"type": "TO", "extension": "1001"}]


def test_a_send_rule_skips_the_call_and_overrides_a_set_aside(demo: Outcome) -> None:
    aside = replace(demo, set_aside="no MiiTel user for extension 1001", set_aside_code="users")
    for outcome in (demo, aside):
        call = admit(outcome, "live", pbx_id="lab", config=config(**NO_INCOMING))
        assert (call.state, call.reason_code) == ("skipped", "policy")
        assert call.reason is not None and call.reason.startswith("send.exclude_directions:")
        assert call.call_data is not None  # kept: `retry --force` can still send it


def test_a_call_skipped_by_classify_is_not_judged_by_send_rules(demo: Outcome) -> None:
    call = admit(missed(demo), "live", pbx_id="lab", config=config(**NO_INCOMING))
    assert (call.state, call.reason, call.reason_code) == (
        "skipped", "unanswered: nobody picked up", "unanswered")


def test_set_aside_code_defaults_to_users(demo: Outcome) -> None:
    why = "no MiiTel user for extension 1001"
    call = admit(replace(demo, set_aside=why), "live", pbx_id="lab", config=config())
    assert (call.state, call.reason, call.reason_code) == ("set_aside", why, "users")
    call = admit(replace(demo, set_aside="bad number", set_aside_code="number"), "catchup",
                 pbx_id="lab", config=config())
    assert (call.state, call.reason_code) == ("set_aside", "number")


def test_the_id_is_the_same_live_and_caught_up_so_the_outbox_refuses_a_duplicate(
        demo: Outcome) -> None:
    live = admit(demo, "live", pbx_id="lab", config=config())
    caught = admit(demo, "catchup", pbx_id="lab", config=config())
    assert live.id == caught.id == demo.call_data_id
    # No call_data: the id comes from the recording's key ...
    keyed = missed(demo, key=demo.file + "#1795472139.4")
    assert admit(keyed, "live", pbx_id="lab", config=config()).id == admit(
        keyed, "backfill", pbx_id="lab", config=config()).id == call_data_id(
        "lab", demo.file + "#1795472139.4")
    # ... else from its file, the same id call_data would carry.
    assert admit(missed(demo, key=""), "live", pbx_id="lab", config=config()).id == (
        call_data_id("lab", demo.file)) == demo.call_data_id


@pytest.mark.parametrize(("end", "source"), [
    ("hangup", "live"), (None, "live"), ("stopped", "live"),
    ("gap", "gap"), ("pbx_restart", "restart"), ("shutdown", "restart"),
])
def test_a_live_call_finished_from_what_was_known_says_how(demo: Outcome, end: str | None,
                                                          source: str) -> None:
    assert admit(replace(demo, end_reason=end), "live", pbx_id="lab",
                 config=config()).source == source


def test_a_caught_up_call_keeps_its_source_whatever_its_end(demo: Outcome) -> None:
    for source in ("catchup", "backfill"):
        assert admit(replace(demo, end_reason="gap"), source, pbx_id="lab",
                     config=config()).source == source


def test_one_log_line_with_the_call_id(demo: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asterisk_miitel.calls")
    skipped = admit(demo, "live", pbx_id="lab", config=config(**NO_INCOMING))
    aside = admit(replace(demo, set_aside="no MiiTel user"), "catchup", pbx_id="lab",
                  config=config())
    sendable = admit(demo, "live", pbx_id="lab", config=config())
    for call in (skipped, aside, sendable):
        log_outcome(call)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", f"call {skipped.id}: skipped: {skipped.reason}"),
        ("WARNING", f"call {aside.id}: caught up, set aside: no MiiTel user"),
    ]


def test_metrics_count_send_rule_skips_and_set_asides_only(demo: Outcome) -> None:
    counter = Counter()
    skipped = admit(demo, "catchup", pbx_id="lab", config=config(**NO_INCOMING))
    for call in (
        skipped,
        admit(replace(demo, set_aside="no MiiTel user"), "live", pbx_id="lab", config=config()),
        admit(missed(demo), "live", pbx_id="lab", config=config()),  # not a [send] rule
        admit(demo, "live", pbx_id="lab", config=config()),  # the sender counts it
    ):
        count_queued(call, counter)
        count_queued(call, None)  # backfill: no /metrics
    assert counter.seen == [("skipped", skipped.reason), ("set_aside", "INCOMING_CALL")]
