"""call_data models: what is built always fits MiiTel's official schema."""

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from asterisk_miitel.miitel.models import (
    TAG_MAX,
    CallData,
    EventType,
    Participant,
    cut_tag,
    make_tags,
    rfc3339,
)

OFFICIAL_SCHEMA = Path(__file__).resolve().parents[2] / "shared/miitel/incoming_webhook.schema.json"
BUNDLED_SCHEMA = (Path(__file__).resolve().parents[1] / "asterisk_miitel" / "miitel"
                  / "incoming_webhook.schema.json")
JST = timezone(timedelta(hours=9))


def sample_call(**over: object) -> CallData:
    base: dict[str, object] = dict(
        call_data_id="pbx1:1795468345.4.raw:e4e7265ddfab0f6b",
        audio_file_type="wav",
        event_type=EventType.INCOMING_CALL,
        groupname=None,
        queue_name="support",
        call_starts_at=datetime(2026, 11, 23, 21, 12, 23, tzinfo=JST),
        call_answered_at=datetime(2026, 11, 23, 21, 12, 30, tzinfo=JST),
        call_ends_at=datetime(2026, 11, 23, 21, 15, 0, tzinfo=JST),
        circuit_number="0312345678",
        audio_channel_type="STEREO",
        participants=[
            Participant(type="FROM", stereo_lr="left", miitel_user_id=None,
                        number="09012345678", name="山田太郎"),
            Participant(type="TO", stereo_lr="right",
                        miitel_user_id="9b1d82f5-9845-4158-9c7b-75e7c235d8e7",
                        number="1001", name="Taro Yamada"),
        ],
        tags=make_tags(["VIP", "キャンペーン"]),
    )
    base.update(over)
    return CallData(**base)  # type: ignore[arg-type]


def test_payload_shape() -> None:
    payload = sample_call().payload()
    assert payload["call_starts_at"] == "2026-11-23T21:12:23+09:00"  # colon in the offset
    assert payload["groupname"] is None and payload["group_name"] is None
    assert payload["participants"][1]["miitel_user_id"] == "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"
    keys = {"type", "stereo_lr", "miitel_user_id", "number", "name"}
    assert set(payload["participants"][0]) == keys
    assert payload["tags"] == [{"value": "VIP"}, {"value": "キャンペーン"}]
    json.dumps(payload)


def test_group_name_mirrors_groupname() -> None:
    payload = sample_call(groupname="営業部").payload()
    assert payload["groupname"] == payload["group_name"] == "営業部"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="offset"):
        sample_call(call_starts_at=datetime(2026, 1, 1, 0, 0))


def test_rfc3339_utc() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)) == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize("number", ["03-1234-5678", "sip:1001@pbx", "", "12a", "+81 3"])
def test_participant_number_must_fit_the_pattern(number: str) -> None:
    with pytest.raises(ValidationError):
        Participant(type="FROM", stereo_lr="left", miitel_user_id=None, number=number, name=None)


def test_participant_forbids_extra_keys() -> None:
    with pytest.raises(ValidationError):
        Participant(type="FROM", stereo_lr="left", miitel_user_id=None, number="1001",
                    name=None, extension="1001")  # type: ignore[call-arg]


def test_participant_user_id_must_be_a_uuid() -> None:
    with pytest.raises(ValidationError):
        Participant(type="TO", stereo_lr="left", miitel_user_id="taro", number="1001", name=None)


def test_tags_are_cut_and_empty_ones_dropped() -> None:
    tags = make_tags(["", "   ", "a" * 600, "ok", "ok"])
    assert [len(t.value) for t in tags] == [TAG_MAX, 2]


def test_tag_cut_never_splits_a_combined_character() -> None:
    # 511 letters, then e + combining acute: cutting at 512 would orphan the accent.
    text = "a" * 511 + "e\u0301" + "zzz"
    cut = cut_tag(text)
    assert len(cut) <= TAG_MAX
    assert cut == "a" * 511
    emoji = "a" * 511 + "👍🏽" + "z"
    assert cut_tag(emoji) == "a" * 511
    japanese = "あ" * 600
    assert cut_tag(japanese) == "あ" * TAG_MAX


@pytest.fixture(scope="module")
def official_schema() -> dict:
    """The official schema; where ../shared is not there, the package's verbatim
    copy of it (test_bundled_schema_is_the_official_one keeps them equal)."""
    if OFFICIAL_SCHEMA.exists():
        return json.loads(OFFICIAL_SCHEMA.read_text())
    return json.loads(BUNDLED_SCHEMA.read_text())


def test_bundled_schema_is_the_official_one() -> None:
    if not OFFICIAL_SCHEMA.exists():
        pytest.skip(f"the official schema is not on this machine ({OFFICIAL_SCHEMA})")
    assert json.loads(BUNDLED_SCHEMA.read_text()) == json.loads(OFFICIAL_SCHEMA.read_text())


def _validate(schema: dict, payload: dict) -> None:
    import jsonschema

    jsonschema.validate(
        payload, schema, format_checker=jsonschema.Draft6Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("event_type", list(EventType))
def test_contract_official_schema(official_schema: dict, event_type: EventType) -> None:
    call = sample_call(event_type=event_type, call_answered_at=None, groupname="g", tags=[])
    _validate(official_schema, {"call_data": [call.payload(), sample_call().payload()]})


def test_contract_rejects_what_the_model_rejects(official_schema: dict) -> None:
    import jsonschema

    bad = sample_call().payload()
    bad["participants"][0]["number"] = "03-1234-5678"
    with pytest.raises(jsonschema.ValidationError):
        _validate(official_schema, {"call_data": [bad]})


def test_contract_checks_datetimes_strictly(official_schema: dict) -> None:
    # Without a date-time checker the contract test could not fail on times:
    # the `+0900` offset in one official sample is not RFC 3339.
    import jsonschema

    bad = sample_call().payload()
    bad["call_starts_at"] = "2023-11-27T15:22:33+0900"
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        _validate(official_schema, {"call_data": [bad]})
