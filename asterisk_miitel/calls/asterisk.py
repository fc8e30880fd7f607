"""Asterisk's own spellings of values, turned into plain text.

Since the AMI header-injection fixes, Asterisk writes caller and connected
names in channel snapshots C-escaped (``ast_escape_c``): a quote arrives as
``\\"``, a backslash as ``\\\\``, a line break as ``\\n`` (verified on 22.10.1,
tests/lab/README.md). MiiTel shows the name to people, so it gets the name
as the caller set it, with control characters (line breaks from a lookup)
folded to spaces: a name is one line.
"""

from __future__ import annotations

import re

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def plain_name(name: str) -> str:
    """A caller/connected name from a channel snapshot as the caller set it."""
    if "\\" in name:
        name = _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), name)
    if _CONTROL.search(name):
        name = _CONTROL.sub(" ", name).strip()
    return name
