"""MiiTel's table of which participant needs a miitel_user_id, row by row."""

import pytest

from asterisk_miitel.miitel.models import EventType as E
from asterisk_miitel.miitel.rules import PartyRef, missing_user_ids, user_id_required

# (event_type, answered, grouped) -> (FROM required, TO required)
TABLE = [
    (E.OUTGOING_CALL, True, False, True, False),
    (E.OUTGOING_CALL, False, False, True, False),
    (E.OUTGOING_TRANSFER, True, False, True, False),
    (E.INCOMING_CALL, True, False, False, True),
    (E.INCOMING_CALL, False, False, False, False),  # a missed call needs no user
    (E.AUTOMATIC_TRANSFER, True, False, False, False),
    (E.EXTENSION, True, False, True, True),
    (E.EXTENSION, False, False, True, True),  # no group: TO always
    (E.EXTENSION, False, True, True, False),  # a group nobody answered
    (E.EXTENSION, True, True, True, True),  # a group: TO once answered
    (E.EXTENSION_TRANSFER, False, False, True, True),
    (E.EXTENSION_TRANSFER, False, True, True, False),
    (E.EXTENSION_TRANSFER, True, True, True, True),
    (E.AUTOMATIC_RECORD, False, False, False, False),
]


@pytest.mark.parametrize(("event_type", "answered", "grouped", "from_req", "to_req"), TABLE)
def test_table(event_type: E, answered: bool, grouped: bool, from_req: bool, to_req: bool) -> None:
    assert user_id_required(event_type, "FROM", answered=answered, grouped=grouped) is from_req
    assert user_id_required(event_type, "TO", answered=answered, grouped=grouped) is to_req


def test_every_event_type_is_in_the_table() -> None:
    assert {row[0] for row in TABLE} == set(E)


def test_message_names_the_extension() -> None:
    parties = [
        PartyRef("FROM", False, "1005", "1005 (PJSIP/1005-00000001)"),
        PartyRef("TO", False, None, "0312345678 (PJSIP/trunk-00000002)"),
    ]
    problems = missing_user_ids(E.OUTGOING_CALL, parties, answered=True, grouped=False)
    assert len(problems) == 1
    assert "extension 1005" in problems[0] and "[users]" in problems[0]


def test_unknown_party_is_named_too() -> None:
    parties = [PartyRef("TO", False, None, "0312345678 (PJSIP/trunk-00000002)")]
    problems = missing_user_ids(E.INCOMING_CALL, parties, answered=True, grouped=False)
    assert "PJSIP/trunk-00000002" in problems[0]


def test_users_with_ids_pass() -> None:
    parties = [PartyRef("FROM", True, "1001", "1001"), PartyRef("TO", True, "1002", "1002")]
    assert missing_user_ids(E.EXTENSION, parties, answered=True, grouped=False) == []
