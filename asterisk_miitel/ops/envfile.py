"""Read an environment file the way systemd's EnvironmentFile= does.

`asterisk-miitel check --env-file /etc/asterisk-miitel/env` sees exactly the
values the service will get, without `env $(cat ... | xargs)` (which breaks
on comments and quotes and puts the secrets on the process list).

systemd's rules, as far as they matter here: blank lines and lines starting
with `#` or `;` are comments; `KEY=VALUE`, spaces around the key and before
the value ignored; a value in single or double quotes loses them (in double
quotes, backslash escapes `\\"`, `\\\\`, `\\$` and a line break); an unquoted
value runs to the end of the line with trailing spaces dropped, so an inline
`# comment` IS part of the value; a trailing backslash continues the line.
"""

from __future__ import annotations

import re
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(Exception):
    """The file cannot be read, or a line is not KEY=VALUE (names the line)."""


def parse_env(text: str, source: str = "env file") -> dict[str, str]:
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i].lstrip()
        i += 1
        if not line or line.startswith(("#", ";")):
            continue
        key, eq, rest = line.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise EnvFileError(f"{source} line {start + 1}: not KEY=VALUE")
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            quote, body = rest[0], rest[1:]
            value, closed = _quoted(quote, body)
            while not closed and i < len(lines):
                more, closed = _quoted(quote, lines[i])
                value += "\n" + more
                i += 1
            if not closed:
                raise EnvFileError(f"{source} line {start + 1}: {quote} is never closed")
        else:
            value = rest
            while value.endswith("\\") and i < len(lines):
                value = value[:-1] + lines[i].lstrip()
                i += 1
            value = value.rstrip()
        values[key] = value
    return values


def _quoted(quote: str, text: str) -> tuple[str, bool]:
    """The quoted part of `text` up to the closing quote, and whether it closed."""
    out = []
    j = 0
    while j < len(text):
        char = text[j]
        if quote == '"' and char == "\\" and j + 1 < len(text):
            nxt = text[j + 1]
            out.append(nxt if nxt in '"\\$`' else "\\" + nxt)
            j += 2
            continue
        if char == quote:
            return "".join(out), True
        out.append(char)
        j += 1
    return "".join(out), False


def read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EnvFileError(f"env file {path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"env file {path} is not UTF-8 text") from None
    return parse_env(text, f"env file {path}")
