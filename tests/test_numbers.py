"""Phone numbers as MiiTel's schema wants them (issue: number normalisation)."""

import pytest

from asterisk_miitel.miitel.numbers import (
    ANONYMOUS,
    NUMBER_PATTERN,
    InvalidNumber,
    NumberRules,
    normalize_number,
)

JP = NumberRules()
JP_PREFIX0 = NumberRules(outside_line_prefix="0")
E164 = NumberRules(format="e164")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("03-1234-5678", "0312345678"),
        ("03 1234 5678", "0312345678"),
        ("(03) 1234-5678", "0312345678"),
        ("090-1234-5678", "09012345678"),
        ("０３－１２３４－５６７８", "0312345678"),  # full-width digits and hyphen
        ("03ー1234ー5678", "0312345678"),  # katakana long mark typed as a hyphen
        ("+81-3-1234-5678", "0312345678"),  # domestic by default, like MiiTel's samples
        ("+81 90 1234 5678", "09012345678"),
        ("sip:0312345678@carrier.example.jp;user=phone", "0312345678"),
        ('"Yamada" <sip:0312345678@10.0.0.1>', "0312345678"),
        ("tel:+81-3-1234-5678", "0312345678"),
        ("0101212555 0100".replace(" ", ""), "+12125550100"),  # 010: international from Japan
        ("+12125550100", "+12125550100"),  # foreign numbers keep their +
        ("1001", "1001"),  # extensions stay as they are
        ("*67", "*67"),
        ("#9", "#9"),
    ],
)
def test_domestic(raw: str, expected: str) -> None:
    assert normalize_number(raw, JP) == expected
    assert NUMBER_PATTERN.match(expected)


@pytest.mark.parametrize(
    "raw",
    [None, "", "  ", "<unknown>", "anonymous", "Anonymous", "Restricted", "P", "O", "非通知",
     "sip:anonymous@anonymous.invalid", '"Anonymous" <sip:anonymous@anonymous.invalid>'],
)
def test_withheld_is_anonymous(raw: str | None) -> None:
    assert normalize_number(raw, JP) == ANONYMOUS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1840312345678", "0312345678"),  # 184: withhold caller ID for this call
        ("1860312345678", "0312345678"),  # 186: show it
        ("00312345678", "0312345678"),  # outside-line 0
        ("01840312345678", "0312345678"),  # outside line, then 184
        ("18400312345678", "0312345678"),  # 184, then outside line
        ("0312345678", "0312345678"),  # already without the prefix: left alone
        ("0-03-1234-5678", "0312345678"),
        ("0+81312345678", "0312345678"),
        ("1001", "1001"),  # an extension that starts like nothing special
        ("1840", "1840"),  # too short to be 184 + a number
    ],
)
def test_dialled_prefixes(raw: str, expected: str) -> None:
    assert normalize_number(raw, JP_PREFIX0, dialled=True) == expected


def test_prefixes_only_dropped_from_dialled_numbers() -> None:
    # A caller ID that happens to start with 184 is not a dialling instruction.
    assert normalize_number("1840312345678", JP_PREFIX0) == "1840312345678"
    assert normalize_number("00312345678", JP_PREFIX0) == "00312345678"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("03-1234-5678", "+81312345678"),
        ("090-1234-5678", "+819012345678"),
        ("+81312345678", "+81312345678"),
        ("1001", "1001"),
        ("0101212555 0100".replace(" ", ""), "+12125550100"),
    ],
)
def test_e164(raw: str, expected: str) -> None:
    assert normalize_number(raw, E164) == expected


@pytest.mark.parametrize("raw", ["sipp", "tanaka-desk", "03-1234-5678 ext. 12", "1001#", "++81"])
def test_unfit_numbers_are_errors_that_name_them(raw: str) -> None:
    with pytest.raises(InvalidNumber) as err:
        normalize_number(raw, JP)
    assert repr(raw) in str(err.value)


@pytest.mark.parametrize("digits", ["0312345678", "00012", "184", "0184312345678",
                                    "01081312345678", "8131234567890", "1001", "0"])
@pytest.mark.parametrize("rules", [NumberRules(), NumberRules(format="e164"),
                                   NumberRules(outside_line_prefix="0")])
@pytest.mark.parametrize("dialled", [False, True])
def test_plain_digits_read_like_the_same_digits_written_any_other_way(
    digits: str, rules: NumberRules, dialled: bool
) -> None:
    # Plain ASCII digits skip NFKC and the separator pass; full-width digits
    # and a hyphen take them. Both must give MiiTel the same number.
    wide = "".join(chr(ord(c) + 0xFEE0) for c in digits)
    spaced = "-".join(digits)
    want = normalize_number(digits, rules, dialled=dialled)
    assert normalize_number(wide, rules, dialled=dialled) == want
    assert normalize_number(spaced, rules, dialled=dialled) == want
