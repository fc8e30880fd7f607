"""Phone numbers, as MiiTel's schema wants them: `(^[+*#0-9][0-9]*$)|(^Anonymous$)`.

Asterisk hands us numbers in many shapes: `sip:` and `tel:` URIs, numbers
typed with hyphens or full-width digits, the Japanese per-call caller-ID
prefixes 184/186, the PBX's outside-line prefix, `<unknown>` for a withheld
caller. One function turns them into the one shape MiiTel accepts, or says
which number it could not fit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

ANONYMOUS = "Anonymous"
NUMBER_PATTERN = re.compile(r"(^[+*#0-9][0-9]*$)|(^Anonymous$)")

NumberFormat = Literal["domestic", "e164"]

# What Asterisk and carriers put where a number is withheld or unknown. The
# one-letter codes are the Japanese "reason for no caller ID" sent by NTT:
# P = withheld by the caller, O = unavailable (e.g. from abroad),
# C = public phone, S = service conflict.
_WITHHELD = {
    "", "<unknown>", "unknown", "anonymous", "restricted", "private", "withheld",
    "unavailable", "p", "o", "c", "s", "非通知", "通知不可能", "公衆電話",
}
# Separators people and carriers write inside numbers.
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−ー().\[\]/]")
_URI = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


class InvalidNumber(ValueError):
    """A number that does not fit MiiTel's pattern even after normalising."""

    def __init__(self, raw: str, why: str) -> None:
        super().__init__(f"phone number {raw!r} cannot be sent to MiiTel: {why}")
        self.raw = raw


@dataclass(frozen=True, slots=True)
class NumberRules:
    """How this site writes numbers (from the [numbers] config section)."""

    format: NumberFormat = "domestic"
    country_code: str = "81"
    # The digits users dial to get an outside line (a leading 0 on many
    # Japanese PBXs); dropped from numbers users dialled, never from caller IDs.
    outside_line_prefix: str = ""
    # Japan's international call prefix: 010 + country code + number.
    international_prefix: str = "010"


DEFAULT_RULES = NumberRules()


def is_withheld(raw: str | None) -> bool:
    return raw is None or unicodedata.normalize("NFKC", raw).strip().lower() in _WITHHELD


def normalize_number(
    raw: str | None, rules: NumberRules = DEFAULT_RULES, *, dialled: bool = False
) -> str:
    """The number as MiiTel wants it, or `Anonymous`; raises InvalidNumber.

    `dialled` is True for digits a user typed on this PBX (a channel's Exten),
    where the outside-line prefix and 184/186 are dialling instructions, not
    part of the number.
    """
    if raw and raw.isascii() and raw.isdigit():
        number = raw  # most numbers: nothing to normalise, withhold or strip (no NFKC)
    else:
        if is_withheld(raw):
            return ANONYMOUS
        assert raw is not None
        text = unicodedata.normalize("NFKC", raw).strip()
        text = _strip_uri(text)
        if is_withheld(text):
            return ANONYMOUS
        number = _SEPARATORS.sub("", text)
    if dialled:
        number = _strip_dialling_prefixes(number, rules)
    number = _reformat(number, rules)
    if not NUMBER_PATTERN.match(number):
        raise InvalidNumber(raw, "only digits, with one leading +, * or #, are allowed")
    return number


def _strip_uri(text: str) -> str:
    # `"Name" <sip:0312345678@host;user=phone>` -> `0312345678`
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.rindex(">")]
    if _URI.match(text):
        text = text.split(":", 1)[1]
        text = text.split("@", 1)[0].split(";", 1)[0]
    return text


def _strip_dialling_prefixes(number: str, rules: NumberRules) -> str:
    # Users dial e.g. 0 (outside line) 184 (withhold caller ID) 0312345678.
    # Strip each prefix at most once, in either order, and only when what
    # remains still looks like a full number.
    for _ in range(2):
        prefix = rules.outside_line_prefix
        if prefix and number.startswith(prefix) and _looks_external(number[len(prefix):]):
            number = number[len(prefix):]
            continue
        if number[:3] in ("184", "186") and _looks_external(number[3:]):
            number = number[3:]
            continue
        break
    return number


def _looks_external(number: str) -> bool:
    if number[:3] in ("184", "186"):
        number = number[3:]
    return number.startswith("+") or (number.startswith("0") and len(number) >= 10)


def _reformat(number: str, rules: NumberRules) -> str:
    cc = rules.country_code
    intl = rules.international_prefix
    if intl and number.startswith(intl) and len(number) > len(intl) + 6:
        number = "+" + number[len(intl):]
    if rules.format == "domestic":
        if cc and number.startswith("+" + cc) and len(number) > len(cc) + 5:
            return "0" + number[len(cc) + 1 :]
        return number
    # e164: national numbers start with one 0 (the trunk prefix) and are long
    if (
        cc
        and number.startswith("0")
        and not number.startswith("00")
        and len(number) >= 10
    ):
        return "+" + cc + number[1:]
    return number
