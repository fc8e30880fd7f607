"""What a MixMonitor / StopMixMonitor dialplan step says, read from its Newexten.

Before Asterisk 16.17, 18.3 and 19.0 there is no MixMonitorStart or
MixMonitorStop event: a recording shows on AMI only as `Newexten` with
`Application: MixMonitor` (AppData: the arguments after variable
substitution) and `VarSet MIXMONITOR_FILENAME` (the full path). These pure
functions read AppData the way Asterisk does (app.c's argument splitting,
app_mixmonitor.c's file names, app_exec.c's ExecIf), so the tracker can open
and stop recordings from them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


def split_args(data: str, delim: str = ",", *, remove: bool = True, limit: int = 0) -> list[str]:
    """Asterisk's application argument split (app.c): `delim` inside (), [] or
    "" does not split; with `remove` quotes are dropped and a backslash makes
    the next character literal. `limit` > 0: at most that many pieces, the
    last one the rest as it is. Nothing at all gives no piece.

    It jumps from one special character to the next (a handful per AppData)."""
    out: list[str] = []
    if not data or limit == 1:
        return [data] if data else out
    cur: list[str] = []
    start = 0
    paren = bracket = 0
    quote = False
    escaped_until = -1
    rest = False  # the loop stopped at the limit: the last piece is the rest
    piece = 0  # where the current piece starts in `data`
    for m in _specials(delim).finditer(data):
        i = m.start()
        if i < escaped_until:
            continue  # the character after a backslash: literal
        c = data[i]
        if c == "\\":
            if remove:
                cur.append(data[start:i])
                start = i + 1
            escaped_until = i + 2
        elif c == "(":
            paren += 1
        elif c == ")":
            paren = max(0, paren - 1)
        elif c == "[":
            bracket += 1
        elif c == "]":
            bracket = max(0, bracket - 1)
        elif c == '"' and delim != '"':
            quote = not quote
            if remove:
                cur.append(data[start:i])
                start = i + 1
        elif c == delim and not (paren or bracket or quote):
            cur.append(data[start:i])
            out.append("".join(cur))
            cur = []
            start = piece = i + 1
            if limit and len(out) == limit - 1:
                rest = True  # the last piece is the rest, untouched
                break
    cur.append(data[start:])
    out.append("".join(cur))
    if out[-1] == "" and len(out) > 1 and piece < len(data) and not rest:
        # app.c's end test: a last piece emptied by removed quotes/backslashes
        # right after a delimiter counts as a trailing delimiter too.
        out.append("")
    return out


@functools.lru_cache(maxsize=8)
def _specials(delim: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape('()[]"\\' + delim) + "]")


def option_letters(options: str) -> str:
    """`bD i(ID) r(/x)` -> `bDir`: option letters without their arguments."""
    if "(" not in options:
        return options  # no arguments: nothing to drop (the common `b`)
    out = []
    depth = 0
    for c in options:
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(c)
    return "".join(out)


def option_arg(options: str, letter: str) -> str | None:
    """The argument of option `letter` in `bDr(/x/in.wav)t(/x/out.wav)`, or None."""
    if letter not in options:
        return None
    if "(" not in options:
        return ""  # there, without an argument (no parentheses to skip)
    depth = 0
    i = 0
    while i < len(options):
        c = options[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and c == letter:
            if i + 1 < len(options) and options[i + 1] == "(":
                end = _closing(options, i + 1)
                return options[i + 2 : end]
            return ""
        i += 1
    return None


def _closing(text: str, start: int) -> int:
    depth = 0
    for j in range(start, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(text)


@dataclass(frozen=True, slots=True)
class MixMonitorArgs:
    """MixMonitor(file,options,command) as written (after substitution)."""

    file: str  # as given: absolute, relative to Asterisk's monitor dir, or ""
    options: str
    receive: str | None  # r(...) as given
    transmit: str | None  # t(...) as given
    id_var: str | None  # i(VAR): Asterisk sets VAR to the MixMonitor's ID

    @property
    def appends(self) -> bool:
        return "a" in option_letters(self.options)


def parse_mixmonitor(appdata: str) -> MixMonitorArgs:
    parts = split_args(appdata, limit=3)
    file = parts[0].strip() if parts else ""
    options = parts[1] if len(parts) > 1 else ""
    return MixMonitorArgs(
        file=file,
        options=options,
        receive=option_arg(options, "r") or None,
        transmit=option_arg(options, "t") or None,
        id_var=option_arg(options, "i") or None,
    )


def full_path(name: str, monitor_dir: str | None = None) -> str | None:
    """The path MixMonitor writes for `name`, as MIXMONITOR_FILENAME says it:
    relative names go under the monitor directory (None if unknown), and a
    `.wav49` extension becomes `.WAV` (app_mixmonitor.c's filename_parse)."""
    if not name:
        return None
    if not name.startswith("/"):
        if monitor_dir is None:
            return None
        name = f"{monitor_dir}/{name}"
    if name.endswith(".wav49"):
        name = name[: -len(".wav49")] + ".WAV"
    return name


def monitor_dir_of(given: str, full: str) -> str | None:
    """Asterisk's monitor directory, from a relative name and the full path it became."""
    if not given or given.startswith("/"):
        return None
    tail = "/" + (given[: -len(".wav49")] + ".WAV" if given.endswith(".wav49") else given)
    return full[: -len(tail)] if full.endswith(tail) and len(full) > len(tail) else None


def check_condition(text: str) -> bool:
    """pbx_checkcondition: empty is false, a number is its value, other text true."""
    text = text.strip()
    if not text:
        return False
    sign = text[1:] if text[:1] in "+-" else text
    digits = len(sign) - len(sign.lstrip("0123456789"))
    if digits:
        return int(text[: digits + (len(text) - len(sign))]) != 0
    return True


def execif_branch(appdata: str) -> tuple[str, str] | None:
    """ExecIf(expr?app(args)[:app(args)]) -> (app, args) of the branch it runs."""
    comma, question = appdata.find(","), appdata.find("?")
    if question < 0 or 0 <= comma < question:
        return None  # the deprecated comma syntax: not followed
    expr, _, rest = appdata.partition("?")
    branches = [*split_args(rest, ":", remove=False, limit=2), "", ""]
    branch = branches[0] if check_condition(expr) else branches[1]
    app, paren, args = branch.partition("(")
    if not app.strip():
        return None
    if paren:
        end = args.rfind(")")
        args = args[:end] if end >= 0 else args
    return app.strip(), args
