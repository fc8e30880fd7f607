"""The classifier on every scenario captured from the real Asterisk 22 lab
(tests/fixtures/captures: the filtered stream the service's manager user
gets). Expected values come from each scenario's ground truth (scenario.json:
who called whom, who answered, which side talked), written out by hand."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from asterisk_miitel.calls.classify import Outcome
from asterisk_miitel.config import Config
from asterisk_miitel.replay import replay_bytes

from .support import FIXTURES, HANAKO, JIRO, TARO, lab_config

CAPTURES = FIXTURES / "captures"
T, H, J = TARO, HANAKO, JIRO
CUSTOMER = ("0312349999", "Tanaka Hanako")
USERS = {
    "1001": {"miitel_user_id": TARO, "name": "Taro Yamada", "endpoints": ["desk-suzuki"]},
    "1002": {"miitel_user_id": HANAKO, "name": "Hanako Sato"},
    "1003": {"miitel_user_id": JIRO, "name": "Jiro Suzuki"},
}


def user(side: str, lr: str, ext: str, uid: str, name: str) -> tuple:
    return (side, lr, ext, name, uid)


def outside(side: str, lr: str, number: str, name: str | None = None) -> tuple:
    return (side, lr, number, name, None)


TARO_L = user("FROM", "left", "1001", T, "Taro Yamada")
CUSTOMER_FROM = outside("FROM", "left", *CUSTOMER)

# scenario -> one entry per recording, in order of call end:
# (event_type, [participants], queue_name, groupname, tags, circuit_number, channel type)
# or ("skip", reason fragment)
EXPECTED: dict[str, list[tuple]] = {
    "outbound": [("OUTGOING_CALL", [TARO_L, outside("TO", "right", "0312345678")],
                  None, None, [], "1001", "STEREO")],
    "click_to_call": [("OUTGOING_CALL", [TARO_L, outside("TO", "right", "0312345678")],
                       None, None, [], "1001", "STEREO")],
    "inbound_answered": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1001", T, "Taro Yamada")],
                          None, None, [], "0312345678", "STEREO")],
    "inbound_voicemail": [
        ("skip", "voicemail message is sent instead"),
        ("AUTOMATIC_RECORD", [CUSTOMER_FROM, user("TO", "right", "1003", J, "Jiro Suzuki")],
         None, None, [], "0312345682", "MONAURAL"),
    ],
    "ext2ext": [("EXTENSION", [TARO_L, user("TO", "right", "1002", H, "Hanako Sato")],
                 None, None, [], None, "STEREO")],
    "queue": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1002", H, "Hanako Sato")],
               "Support", None, ["support-queue"], "0312345679", "STEREO")],
    "ringgroup": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1003", J, "Jiro Suzuki")],
                   None, "600", [], "0312345680", "STEREO")],
    "blind_transfer": [
        ("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1001", T, "Taro Yamada")],
         None, None, [], "0312345678", "STEREO"),
        # The customer's new recording after the REFER: filed under the user
        # who transferred (FROM, on the customer's side), TO the target.
        ("EXTENSION_TRANSFER", [TARO_L, user("TO", "right", "1002", H, "Hanako Sato")],
         None, None, [], None, "STEREO"),
    ],
    "attended_transfer": [
        # The customer's recording holds two conversations, cut where 1003
        # joined (issue 13): first the customer with 1002 (the hold while
        # 1002 consults stays in it) ...
        ("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1002", H, "Hanako Sato")],
         None, None, [], "0312345683", "STEREO"),
        # ... then the customer with 1003, filed under 1002 who transferred
        # (literal mapping: FROM on the customer's side).
        ("EXTENSION_TRANSFER", [user("FROM", "left", "1002", H, "Hanako Sato"),
                                user("TO", "right", "1003", J, "Jiro Suzuki")],
         None, None, [], None, "STEREO"),
        # The consultation (recorded on the Local ;2 half): 1002 asks 1003.
        ("EXTENSION_TRANSFER", [user("FROM", "left", "1002", H, "Hanako Sato"),
                                user("TO", "right", "1003", J, "Jiro Suzuki")],
         None, None, [], None, "STEREO"),
        # The Local half records the customer with 1003 too once the transfer
        # moves it: sent once, from the customer's own recording.
        ("skip", "is also in recording"),
    ],
    "auto_forward": [("AUTOMATIC_TRANSFER", [CUSTOMER_FROM, outside("TO", "right", "0901234567")],
                      None, None, [], "0312345681", "STEREO")],
    "outgoing_transfer": [
        ("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1001", T, "Taro Yamada")],
         None, None, [], "0312345678", "STEREO"),
        ("OUTGOING_TRANSFER", [TARO_L, outside("TO", "right", "0901234567")],
         None, None, [], "0312349999", "STEREO"),
    ],
    "busy": [("skip", "b option recorded nothing")],
    "noanswer": [("skip", "b option recorded nothing")],
    "anonymous": [("INCOMING_CALL", [outside("FROM", "left", "Anonymous"),
                                     user("TO", "right", "1001", T, "Taro Yamada")],
                   None, None, [], "0312345678", "STEREO")],
    "japanese_name": [("INCOMING_CALL", [outside("FROM", "left", "0312349999", "山田太郎"),
                                         user("TO", "right", "1001", T, "Taro Yamada")],
                       None, None, [], "0312345678", "STEREO")],
    "short_call": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1001", T, "Taro Yamada")],
                    None, None, [], "0312345678", "STEREO")],
    "ten_at_once": [
        ("INCOMING_CALL", [outside("FROM", "left", f"031234000{n}", f"Caller 0{n}"),
                           user("TO", "right", "1001", T, "Taro Yamada")],
         None, None, [], "0312345678", "STEREO")
        for n in range(10)
    ],
    "freepbx_outbound": [("OUTGOING_CALL", [TARO_L, outside("TO", "right", "0312345678")],
                          None, None, [], "0312340000", "STEREO")],
    "freepbx_queue": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1002", H, "Hanako Sato")],
                       "400", None, [], "0312345679", "STEREO")],
    "freepbx_ringgroup": [("INCOMING_CALL", [CUSTOMER_FROM, user("TO", "right", "1003", J, "Jiro Suzuki")],
                           None, "600", [], "0312345680", "STEREO")],
}


def config() -> Config:
    return lab_config(users=USERS)


def run(name: str) -> list[Outcome]:
    data = (CAPTURES / name / "ami_miitel.log").read_bytes()
    outcomes, tracker, parser = replay_bytes(data, config())
    assert parser.stats.malformed == 0 and tracker.stats.bad_events == 0
    assert not tracker.recordings, "a recording was left open"
    return outcomes


def test_every_capture_has_expectations() -> None:
    assert {p.name for p in CAPTURES.iterdir() if p.is_dir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture(name: str) -> None:
    outcomes = run(name)
    expected = EXPECTED[name]
    assert len(outcomes) == len(expected)
    truth = json.loads((CAPTURES / name / "scenario.json").read_text())
    for outcome, want in zip(outcomes, expected, strict=True):
        if want[0] == "skip":
            assert outcome.skip is not None and want[1] in outcome.skip
            assert outcome.call_data is None
            continue
        assert outcome.set_aside is None and outcome.skip is None, outcome.explain
        event_type, participants, queue, group, tags, circuit, channels = want
        payload = outcome.call_data.payload()
        got = [(p["type"], p["stereo_lr"], p["number"], p["name"], p["miitel_user_id"])
               for p in payload["participants"]]
        assert (payload["event_type"], got) == (event_type, participants), outcome.explain
        assert payload["queue_name"] == queue and payload["groupname"] == group
        assert [t["value"] for t in payload["tags"]] == tags
        assert payload["circuit_number"] == circuit
        assert payload["audio_channel_type"] == channels and payload["audio_file_type"] == "wav"
        starts = datetime.fromisoformat(payload["call_starts_at"])
        ends = datetime.fromisoformat(payload["call_ends_at"])
        answered = payload["call_answered_at"]
        assert starts <= ends
        if answered is not None:
            assert starts <= datetime.fromisoformat(answered) <= ends
        # Times are Asterisk's own (timestampevents) in the configured zone.
        assert payload["call_starts_at"].endswith("+09:00")
        times = truth.get("times", {})
        if "end" in times and len(outcomes) == 1 and event_type != "AUTOMATIC_RECORD":
            end = datetime.fromisoformat(times["end"])
            assert abs((ends - end).total_seconds()) < 1.5


def test_same_capture_same_ids() -> None:
    first = [o.call_data_id for o in run("ten_at_once")]
    assert first == [o.call_data_id for o in run("ten_at_once")]
    assert len(set(first)) == 10
