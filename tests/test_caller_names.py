"""Caller names reach MiiTel as the caller set them, not in Asterisk's escaped form."""

from __future__ import annotations

import pytest

from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.calls.asterisk import plain_name
from asterisk_miitel.calls.tracker import CallTracker

from .support import FIXTURES


def test_a_real_escaped_name_is_tracked_as_the_caller_set_it() -> None:
    # Bytes Asterisk 22.10.1 sent for CALLERID(name) = Sato "Q" \ back<TAB>tab
    raw = (FIXTURES / "linebreak_name" / "quotes_miitel.ami").read_bytes()
    tracker = CallTracker(lambda rec: None)
    for event in AmiParser().feed(raw):
        if event.get("Event") == "Hangup":  # a hung-up channel is forgotten
            break
        tracker.feed(event, 1795468000.0)
    names = {ch.caller_name for ch in tracker.channels.values()} | {
        ch.connected_name for ch in tracker.channels.values()}
    assert 'Sato "Q" \\ back tab' in names
    assert not [n for n in names if '\\"' in n]


@pytest.mark.parametrize(("sent", "name"), [
    ("山田太郎", "山田太郎"),
    ('Sato \\"Q\\" \\\\ back\\ttab', 'Sato "Q" \\ back tab'),
    ("Evil\\r\\n\\r\\nEvent: UserEvent", "Evil Event: UserEvent"),  # one line
    ("C:\\\\dir", "C:\\dir"),
    ("odd \\x end\\", "odd \\x end\\"),  # not an escape Asterisk writes: kept
])
def test_plain_name(sent: str, name: str) -> None:
    assert plain_name(sent) == name
