"""[send] rules: what is sent to MiiTel is the admin's choice; default, every call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.config import ConfigError, SendConfig, load_config
from asterisk_miitel.miitel.numbers import NumberRules
from asterisk_miitel.ops.policy import decide, rule_of
from asterisk_miitel.replay import replay_file

from .support import DEMO_DIR, TARO, lab_config


def call(event_type: str, *numbers: str, queue: str | None = None,
         circuit: str | None = None) -> dict[str, Any]:
    sides = ("FROM", "TO")
    return {
        "event_type": event_type,
        "queue_name": queue,
        "circuit_number": circuit,
        "participants": [{"type": sides[i], "number": n} for i, n in enumerate(numbers)],
    }


def send(**rules: Any) -> SendConfig:
    return SendConfig(**rules)


@pytest.fixture
def demo_call() -> tuple[dict[str, Any], list[str | None]]:
    """The bundled real inbound call: customer 0312349999 -> extension 1001 on DID 0312345678."""
    config = lab_config(users={"1001": {"miitel_user_id": TARO, "endpoints": ["desk-suzuki"]}})
    [outcome] = replay_file(str(DEMO_DIR / "ami.log"), config)
    assert outcome.call_data is not None
    return outcome.call_data.payload(), list(outcome.extensions)


def test_every_recorded_call_is_sent_by_default(demo_call: Any) -> None:
    data, exts = demo_call
    assert decide(data, exts, SendConfig()) is None
    for event_type in ("EXTENSION", "OUTGOING_CALL", "AUTOMATIC_RECORD"):
        assert decide(call(event_type, "1001", "1002"), ["1001", "1002"], SendConfig()) is None


def test_internal_calls_can_be_left_out() -> None:
    rules = send(exclude_directions=["internal"])
    reason = decide(call("EXTENSION", "1001", "1002"), ["1001", "1002"], rules)
    assert reason is not None and "internal" in reason and rule_of(reason) == (
        "send.exclude_directions")
    assert decide(call("EXTENSION_TRANSFER", "1001", "1002"), ["1001", "1002"], rules)
    assert decide(call("INCOMING_CALL", "0312349999", "1001"), [None, "1001"], rules) is None


def test_colleague_calls_only_keeps_transferred_customer_calls() -> None:
    # EXTENSION_TRANSFER is also a customer call a user passed to a colleague.
    rules = send(exclude_event_types=["EXTENSION"])
    assert decide(call("EXTENSION", "1001", "1002"), ["1001", "1002"], rules)
    assert decide(call("EXTENSION_TRANSFER", "1001", "1002"), ["1001", "1002"], rules) is None


def test_excluded_extension_is_not_sent_whichever_side(demo_call: Any) -> None:
    data, exts = demo_call
    reason = decide(data, exts, send(exclude_extensions=["1001"]))
    assert reason == "send.exclude_extensions: extension 1001 is excluded"
    assert decide(data, exts, send(exclude_extensions=["1002"])) is None


def test_include_extensions_sends_only_those(demo_call: Any) -> None:
    data, exts = demo_call
    assert decide(data, exts, send(include_extensions=["1001", "1003"])) is None
    reason = decide(data, exts, send(include_extensions=["1002"]))
    assert reason is not None and "1001" in reason
    # A forward between two outside numbers has no extension at all.
    forwarded = call("AUTOMATIC_TRANSFER", "0312349999", "0901234567")
    assert "no extension" in (decide(forwarded, [None, None],
                                     send(include_extensions=["1001"])) or "")


def test_excluded_queue_any_case() -> None:
    rules = send(exclude_queues=["Support"])
    assert decide(call("INCOMING_CALL", "0312349999", "1002", queue="support"),
                  [None, "1002"], rules)
    assert decide(call("INCOMING_CALL", "0312349999", "1002", queue="sales"),
                  [None, "1002"], rules) is None


def test_never_send_numbers_match_in_any_spelling(demo_call: Any) -> None:
    data, exts = demo_call
    # The admin writes the customer's number as people do; the call has 0312349999.
    reason = decide(data, exts, send(exclude_numbers=["03-1234-9999"]))
    assert reason is not None and rule_of(reason) == "send.exclude_numbers"
    assert "9999" not in reason  # the reason (logged, in status) does not repeat it
    # The DID that was called counts too (a private line).
    assert decide(data, exts, send(exclude_numbers=["０３１２３４５６７８"]))
    assert decide(data, exts, send(exclude_numbers=["0312340000"])) is None


def test_never_send_numbers_with_e164_format() -> None:
    rules = NumberRules(format="e164")
    data = call("INCOMING_CALL", "+81312349999", "1001")
    assert decide(data, [None, "1001"], send(exclude_numbers=["03-1234-9999"]), rules=rules)


def test_withheld_callers_can_be_excluded() -> None:
    data = call("INCOMING_CALL", "Anonymous", "1001")
    assert decide(data, [None, "1001"], send(exclude_numbers=["anonymous"]))


def test_rules_are_checked_when_the_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[send]\nexclude_directions = ["intern"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"send\.exclude_directions"):
        load_config(path)
    path.write_text('[send]\nexclude_numbers = ["03-1234-abcd"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"send\.exclude_numbers"):
        load_config(path)
    path.write_text('[send]\nexclude_directions = ["internal", "voicemail"]\n'
                    'exclude_numbers = ["090-1234-5678"]\n', encoding="utf-8")
    assert load_config(path).send.exclude_directions == ["internal", "voicemail"]
