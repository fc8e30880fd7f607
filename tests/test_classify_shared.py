"""The classifier on the three transcripts captured from a real Asterisk 22
(../shared/captures: no timestampevents, so times come from the replay clock)."""

from __future__ import annotations

from asterisk_miitel.config import Config
from asterisk_miitel.replay import replay_bytes

from .support import FIXTURES, HANAKO, TARO, lab_config

START = 1795468000.0  # 2026-11-23T21:46:40+00:00


def run(name: str, config: Config | None = None):
    data = (FIXTURES / "shared" / name).read_bytes()
    outcomes, tracker, _ = replay_bytes(data, config or lab_config(), start_time=START)
    assert not tracker.channels and not tracker.recordings and not tracker.bridges
    return outcomes


def test_outbound_call() -> None:
    [out] = run("outbound.log")
    assert out.set_aside is None and out.skip is None
    payload = out.call_data.payload()
    assert payload["call_data_id"].startswith("lab:1795468358.6.raw:")
    assert payload["event_type"] == "OUTGOING_CALL"
    assert payload["audio_file_type"] == "wav" and payload["audio_channel_type"] == "STEREO"
    assert payload["participants"] == [
        # MixMonitor ran on the phone's channel: the phone is left.
        {"type": "FROM", "stereo_lr": "left", "miitel_user_id": TARO,
         "number": "1001", "name": "Taro Yamada"},
        # 1001 dialled 0 + 0312345678: the outside-line 0 is not part of the number.
        {"type": "TO", "stereo_lr": "right", "miitel_user_id": None,
         "number": "0312345678", "name": None},
    ]
    assert payload["call_starts_at"].endswith("+09:00")
    assert payload["call_answered_at"] is not None
    assert payload["call_starts_at"] <= payload["call_answered_at"] <= payload["call_ends_at"]
    assert out.audio.mode == "interleaved" and out.audio.file.endswith("1795468358.6.raw")


def test_inbound_call_with_a_caller_id_that_is_not_a_number_is_set_aside() -> None:
    # sipp presented "sipp" as its caller ID: not a phone number, and not guessed.
    [out] = run("inbound.log")
    assert out.set_aside is not None and "'sipp'" in out.set_aside
    payload = out.call_data.payload()
    assert payload["event_type"] == "INCOMING_CALL"
    assert payload["circuit_number"] == "0312345678"  # the DID that was called
    from_, to = payload["participants"]
    # MixMonitor ran on the trunk's channel: the caller is left, the user right.
    assert (from_["type"], from_["stereo_lr"], from_["name"]) == ("FROM", "left", "sipp")
    assert (to["type"], to["stereo_lr"], to["miitel_user_id"], to["number"]) == (
        "TO", "right", TARO, "1001")


def test_extension_to_extension_twice() -> None:
    first, second = run("ext2ext.log")
    for out in (first, second):
        payload = out.call_data.payload()
        assert payload["event_type"] == "EXTENSION"
        assert [(p["type"], p["stereo_lr"], p["miitel_user_id"]) for p in payload["participants"]] \
            == [("FROM", "left", TARO), ("TO", "right", HANAKO)]
    # The first call was recorded to a .wav with D (interleaved data under a WAV name).
    assert first.audio.file.endswith(".wav") and first.audio.mode == "interleaved"
    assert second.audio.file.endswith(".raw")
    assert first.call_data_id != second.call_data_id


def test_unknown_extension_sets_the_call_aside_naming_it() -> None:
    [out] = run("outbound.log", lab_config(users={}))
    assert out.set_aside is not None
    assert "extension 1001" in out.set_aside and "[users]" in out.set_aside


def test_same_call_same_id() -> None:
    # Replaying a transcript twice gives the same call_data_id: never sent twice.
    assert run("outbound.log")[0].call_data_id == run("outbound.log")[0].call_data_id
