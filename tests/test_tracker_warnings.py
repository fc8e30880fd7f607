"""A flood of events the tracker cannot read costs a line a minute, not a line each.

Any AMI user may send UserEvents (UserEvent action): one our handler chokes
on, sent in a loop, used to write one WARNING per event."""

from __future__ import annotations

import logging

import pytest

from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.logs import Throttle


def choking_tracker(now: list[float]) -> CallTracker:
    tracker = CallTracker(lambda rec: None)
    tracker._malformed_log = Throttle(monotonic=lambda: now[0])

    def choke(event: dict[str, str], ts: float) -> None:
        raise ValueError(f"cannot read {event.get('Bad')!r}")

    # A handler that fails on this input, as one with a bug would.
    tracker._handlers["UserEvent"] = choke
    tracker._handlers["VarSet"] = choke
    return tracker


def test_malformed_event_warnings_are_rate_limited_per_event_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    tracker = choking_tracker(now)
    caplog.set_level(logging.WARNING, "asterisk_miitel.calls")
    for i in range(500):
        tracker.feed({"Event": "UserEvent", "UserEvent": "Flood", "Bad": str(i),
                      "Uniqueid": f"1.{i}"}, 1.0)
        now[0] += 0.01  # 5 s of flood
    tracker.feed({"Event": "VarSet", "Bad": "v", "Uniqueid": "2.1"}, 1.0)  # its own minute
    now[0] += 60
    tracker.feed({"Event": "UserEvent", "UserEvent": "Flood", "Bad": "late",
                  "Uniqueid": "1.late"}, 1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "ignored a malformed UserEvent event (ValueError: cannot read '0'); Uniqueid=1.0",
        "ignored a malformed VarSet event (ValueError: cannot read 'v'); Uniqueid=2.1",
        "ignored a malformed UserEvent event (ValueError: cannot read 'late'); "
        "Uniqueid=1.late (499 more malformed UserEvent events ignored since the last warning)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert tracker.stats.bad_events == 502  # every one still counted


def test_a_tracker_makes_its_own_throttle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "asterisk_miitel.calls")
    for _ in range(2):  # two trackers (a test each): neither silences the other
        tracker = CallTracker(lambda rec: None)
        tracker._handlers["UserEvent"] = lambda event, ts: int("x")
        for _ in range(50):
            tracker.feed({"Event": "UserEvent", "Uniqueid": "1.1"}, 1.0)
    assert len(caplog.records) == 2
