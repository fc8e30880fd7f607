"""The extension -> MiiTel user map: CSV import into a users file, and reload.

`asterisk-miitel users import users.csv` reads a CSV as an admin exports it
from a spreadsheet (columns extension, miitel_user_id, name, number,
endpoints; a header
row; UTF-8 with or without the BOM Excel writes), checks every row, and
writes the `[users]` table of the users file the config points to
(`users_file`). Nothing is written unless every row is good: an error names
its line, as the spreadsheet numbers it.

`reload_users(config_path)` reads the map again for SIGHUP: it returns a new,
fully validated map (or raises ConfigError and the running one stays), and
`swap_users` replaces the map in one assignment, so no call is ever
classified with half a map.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import tomllib
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from ..config import (
    Config,
    ConfigError,
    UserConfig,
    load_config,
    read_users_file,
    users_file_path,
)
from ..miitel.numbers import InvalidNumber, normalize_number

COLUMNS = ("extension", "miitel_user_id", "name", "number", "endpoints")
REQUIRED = ("extension", "miitel_user_id")
_EXTENSION = re.compile(r"^[0-9A-Za-z*#+_.-]{1,64}$")
# A device (endpoint) name as in PJSIP/<name>; several in one cell are
# separated by spaces, ';' or '|' (a comma would split the CSV cell).
_ENDPOINT = re.compile(r"^[0-9A-Za-z_.@+-]{1,80}$")
_ENDPOINT_SPLIT = re.compile(r"[\s;|,]+")
# What TOML basic strings must escape beyond what json.dumps does: DEL.
_TOML_EXTRA_ESCAPES = {"\x7f": "\\u007F"}


class UsersImportError(Exception):
    """The CSV (or the target) cannot be used; `problems` name their lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s), nothing written:\n{listed}")


@dataclass(frozen=True, slots=True)
class CsvUser:
    line: int  # the row's line in the file (1 = the header)
    extension: str
    miitel_user_id: str  # canonical UUID text
    name: str | None
    number: str | None  # normalised; None: MiiTel shows the extension
    endpoints: tuple[str, ...] = ()  # empty: keep what the users file has


@dataclass
class ImportReport:
    target: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    written: bool = False

    def lines(self) -> list[str]:
        def few(exts: list[str]) -> str:
            return ", ".join(exts[:20]) + (f" (+{len(exts) - 20} more)" if len(exts) > 20 else "")

        out = [f"{'wrote' if self.written else 'would write (dry run)'} {self.target}: "
               f"{len(self.added)} added, {len(self.updated)} updated, "
               f"{len(self.unchanged)} unchanged, {len(self.removed)} removed"]
        for label, exts in (("added", self.added), ("updated", self.updated),
                            ("removed", self.removed)):
            if exts:
                out.append(f"  {label}: {few(exts)}")
        out += [f"  warning: {w}" for w in self.warnings]
        return out


# -- reading the CSV ---------------------------------------------------------------


def read_users_csv(path: str | os.PathLike[str]) -> tuple[list[CsvUser], list[str]]:
    """The rows of a users CSV, all checked, and warnings. Raises UsersImportError."""
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsersImportError(source, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsersImportError(source, [
            f"line {line}: not UTF-8 text (Excel: save as \"CSV UTF-8 (Comma delimited)\")"
        ]) from None
    return parse_users_csv(text, source)


def parse_users_csv(text: str, source: str = "CSV") -> tuple[list[CsvUser], list[str]]:
    first = text.split("\n", 1)[0]
    # Spreadsheets set to some locales write ';' (or tabs) between columns.
    delimiter = "," if "," in first or not ({";", "\t"} & set(first)) else (
        ";" if ";" in first else "\t")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[str] = []
    try:
        header = next(reader)
    except StopIteration:
        raise UsersImportError(source, ["the file is empty (expected a header row: "
                                        + ",".join(COLUMNS) + ")"]) from None
    columns = [_column(h) for h in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c and c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in columns]
    if unknown or missing:
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
        raise UsersImportError(source, [
            f"line 1 (header): {'; '.join(what)}; expected {','.join(COLUMNS)}"
        ])
    users: list[CsvUser] = []
    seen: dict[str, int] = {}
    by_user: dict[str, list[str]] = {}
    line_end = reader.line_num
    for cells in reader:
        line, line_end = line_end + 1, reader.line_num  # a quoted cell may span lines
        if not any(c.strip() for c in cells):
            continue
        row = {c: v.strip() for c, v in zip(columns, cells, strict=False) if c}
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
            problems.append(f"line {line}: more cells than header columns (a stray comma?)")
            continue
        user, errors = _row(row, line)
        problems += errors
        if user is None:
            continue
        if user.extension in seen:
            problems.append(f"line {line}: extension {user.extension} is already on line "
                            f"{seen[user.extension]}")
            continue
        seen[user.extension] = line
        by_user.setdefault(user.miitel_user_id, []).append(user.extension)
        users.append(user)
    if problems:
        raise UsersImportError(source, problems)
    warnings = [f"MiiTel user {uid} is mapped from several extensions: {', '.join(exts)}"
                for uid, exts in by_user.items() if len(exts) > 1]
    return users, warnings


def _column(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).strip().lower()
    return re.sub(r"[\s-]+", "_", text)


def _row(row: Mapping[str, str], line: int) -> tuple[CsvUser | None, list[str]]:
    errors = []
    ext = unicodedata.normalize("NFKC", row.get("extension", "")).strip()
    if not ext:
        errors.append(f"line {line}: extension is empty")
    elif not _EXTENSION.match(ext):
        errors.append(f"line {line}: extension {ext!r} may only hold letters, digits and "
                      "* # + _ . -")
    raw_id = unicodedata.normalize("NFKC", row.get("miitel_user_id", "")).strip()
    user_id = ""
    if not raw_id:
        errors.append(f"line {line}: miitel_user_id is empty")
    else:
        try:
            user_id = str(UUID(raw_id))
        except ValueError:
            errors.append(f"line {line}: miitel_user_id {raw_id!r} is not a UUID (expected "
                          "like 9b1d82f5-9845-4158-9c7b-75e7c235d8e7)")
    number: str | None = None
    raw_number = row.get("number", "")
    if raw_number:
        try:
            number = normalize_number(raw_number)
        except InvalidNumber as exc:
            errors.append(f"line {line}: number: {exc}")
    elif ext and _EXTENSION.match(ext):
        try:
            normalize_number(ext)
        except InvalidNumber:
            errors.append(f"line {line}: extension {ext!r} is not a phone number: fill in "
                          "the number column with what MiiTel should show")
    endpoints = []
    for raw_endpoint in _ENDPOINT_SPLIT.split(row.get("endpoints", "").strip()):
        # "PJSIP/desk-sato" and "desk-sato" mean the same device
        endpoint = unicodedata.normalize("NFKC", raw_endpoint).rpartition("/")[2]
        if not endpoint:
            continue
        if not _ENDPOINT.match(endpoint):
            errors.append(f"line {line}: endpoint {raw_endpoint!r} is not a device name (as in "
                          "PJSIP/desk-sato: letters, digits and _ . @ + -)")
        elif endpoint not in endpoints:
            endpoints.append(endpoint)
    if errors:
        return None, errors
    name = row.get("name") or None
    return CsvUser(line, ext, user_id, name, number, tuple(endpoints)), []


# -- merging and writing -----------------------------------------------------------


def merge_users(
    existing: Mapping[str, Mapping[str, Any]],
    rows: list[CsvUser],
    *,
    replace: bool = False,
) -> tuple[dict[str, dict[str, Any]], ImportReport]:
    """The new [users] table. A row replaces its extension's user id, name and
    number and keeps what the CSV has no column for (endpoints); `replace`
    also drops extensions the CSV does not list."""
    report = ImportReport(Path())
    merged: dict[str, dict[str, Any]] = {} if replace else {k: dict(v) for k, v in
                                                            existing.items()}
    for row in rows:
        old = existing.get(row.extension)
        entry: dict[str, Any] = {"miitel_user_id": row.miitel_user_id}
        if row.name:
            entry["name"] = row.name
        if row.number:
            entry["number"] = row.number
        if row.endpoints:
            entry["endpoints"] = list(row.endpoints)
        elif old is not None and old.get("endpoints"):
            entry["endpoints"] = list(old["endpoints"])
        merged[row.extension] = entry
        if old is None:
            report.added.append(row.extension)
        elif _same(old, entry):
            report.unchanged.append(row.extension)
        else:
            report.updated.append(row.extension)
    if replace:
        report.removed = sorted((set(existing) - set(merged)), key=_natural)
    return dict(sorted(merged.items(), key=lambda kv: _natural(kv[0]))), report


def render_users_toml(users: Mapping[str, Mapping[str, Any]]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# asterisk-miitel users: extension -> MiiTel user.",
        f"# Written by `asterisk-miitel users import` ({stamp}). The next import",
        "# keeps every entry (and its endpoints) but not comments.",
        "[users]",
    ]
    for ext, entry in users.items():
        fields = []
        for key in ("miitel_user_id", "name", "number", "endpoints"):
            value = entry.get(key)
            if value is None or value == []:
                continue
            fields.append(f"{key} = {_toml_value(value)}")
        lines.append(f"{_toml_str(ext)} = {{ {', '.join(fields)} }}")
    return "\n".join(lines) + "\n"


def write_users_file(path: Path, users: Mapping[str, Mapping[str, Any]],
                     *, like: Path | None = None) -> None:
    """Write atomically (a crash leaves the old file or the new, never half).

    An existing file keeps its owner, group and mode; a new one is owned
    like `like` (the config file), so that the service's user, which can
    read the config, can read this too (run as root, it would otherwise be
    root's alone and the service would fail to start)."""
    text = render_users_toml(users)
    # Never write what load_config would then refuse.
    if tomllib.loads(text).get("users", {}) != {k: dict(v) for k, v in users.items()}:
        raise AssertionError("users file rendering does not round-trip")  # a bug
    path.parent.mkdir(parents=True, exist_ok=True)
    model = path if path.exists() else like if like is not None and like.exists() else None
    if model is not None:
        st = model.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
    else:
        mode, owner = 0o640, None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if owner is not None and (os.stat(tmp).st_uid, os.stat(tmp).st_gid) != owner:
            try:
                os.chown(tmp, *owner)
            except PermissionError:  # not root: the file stays ours, as before
                pass
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def import_users(
    csv_path: str | os.PathLike[str],
    target: Path,
    *,
    replace: bool = False,
    dry_run: bool = False,
    inline: Collection[str] = (),
    like: Path | None = None,
) -> ImportReport:
    """Read, check, merge into `target`, write. `inline`: extensions the config's
    own [users] defines (a users file may not define them again)."""
    rows, warnings = read_users_csv(csv_path)
    clash = [f"line {r.line}: extension {r.extension} is already in the config's [users]: "
             "remove it there (it may be defined in one place only)"
             for r in rows if r.extension in inline]
    if clash:
        raise UsersImportError(os.fspath(csv_path), clash)
    existing: dict[str, Any] = {}
    if target.exists():
        try:
            existing = read_users_file(target)
        except ConfigError as exc:
            raise UsersImportError(os.fspath(target), [str(exc)]) from None
    users, report = merge_users(existing, rows, replace=replace)
    report.target = target
    report.warnings = warnings
    if not dry_run:
        write_users_file(target, users, like=like)
        report.written = True
    return report


def import_target(
    config_path: str | os.PathLike[str] | None,
) -> tuple[Path | None, set[str], Path | None]:
    """The users file the config names, and the extensions of its own [users].

    Reads the config file itself, not load_config: the users file may not
    exist yet (the first import creates it).
    """
    from ..config import config_path as which_config
    from ..config import read_toml

    path = which_config(config_path)
    data: dict[str, Any] = read_toml(path) if path else {}
    inline = data.get("users") or {}
    return (users_file_path(data, path), set(inline) if isinstance(inline, dict) else set(),
            path)


def users_import_main(
    csv_path: str,
    config_path: str | None,
    *,
    output: str | None = None,
    replace: bool = False,
    dry_run: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """`asterisk-miitel users import`: 0 written, 1 bad rows, 2 no target."""
    import sys

    out = out or sys.stdout
    err = err or sys.stderr
    target, inline, config_file = import_target(config_path)
    if output:
        target = Path(output)
    if target is None:
        print("asterisk-miitel: no users file to write: set `users_file = \"users.toml\"` in "
              "the config (or pass --output FILE)", file=err)
        return 2
    try:
        report = import_users(csv_path, target, replace=replace, dry_run=dry_run,
                              inline=inline, like=config_file)
    except UsersImportError as exc:
        print(f"asterisk-miitel: {exc}", file=err)
        return 1
    for line in report.lines():
        print(line, file=out)
    if report.written:
        print("the running service picks the change up on SIGHUP "
              "(systemctl reload asterisk-miitel) or on restart", file=out)
    return 0


# -- list and export ---------------------------------------------------------------


def users_list_main(config_path: str | None, out: IO[str] | None = None) -> int:
    """`asterisk-miitel users list`: the map the service uses, one line each."""
    import sys

    out = out or sys.stdout
    config = load_config(config_path)
    rows = [(ext, str(u.miitel_user_id or "-"), u.name or "", u.number or ext,
             " ".join(u.endpoints)) for ext, u in sorted(config.users.items(),
                                                         key=lambda kv: _natural(kv[0]))]
    header = ("extension", "miitel_user_id", "name", "number", "endpoints")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
    where = f" from {config.users_file}" if config.users_file else ""
    print(f"{len(rows)} user(s){where}", file=out)
    return 0


def export_users_csv(users: Mapping[str, UserConfig]) -> str:
    """The map as a CSV `users import` reads back (endpoints space-separated)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for ext, user in sorted(users.items(), key=lambda kv: _natural(kv[0])):
        writer.writerow([ext, str(user.miitel_user_id or ""), user.name or "",
                         user.number or "", " ".join(user.endpoints)])
    return buffer.getvalue()


def users_export_main(config_path: str | None, output: str | None = None,
                      out: IO[str] | None = None) -> int:
    """`asterisk-miitel users export [--output FILE]`: CSV (UTF-8, Excel-friendly)."""
    import sys

    text = export_users_csv(load_config(config_path).users)
    if output:
        # With the BOM Excel wants to read UTF-8; `users import` accepts it.
        Path(output).write_text(text, encoding="utf-8-sig", newline="")
        print(f"wrote {output}", file=out or sys.stdout)
    else:
        (out or sys.stdout).write(text)
    return 0


# -- reload ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsersChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def describe(self) -> str:
        return (f"users reloaded: {len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed")


def reload_users(config_path: str | os.PathLike[str] | None) -> dict[str, UserConfig]:
    """The users map as the config (and its users file) says now.

    Validates everything load_config does; raises ConfigError, in which case
    the caller keeps the map it has.
    """
    return load_config(Path(config_path) if config_path else None).users


def swap_users(config: Config, users: dict[str, UserConfig]) -> UsersChange:
    """Replace the running map in one assignment: calls classified before it
    used the old map, calls after it the new; none sees a mix."""
    old = config.users
    change = UsersChange(
        added=tuple(sorted(set(users) - set(old), key=_natural)),
        removed=tuple(sorted(set(old) - set(users), key=_natural)),
        changed=tuple(sorted((e for e in set(old) & set(users) if old[e] != users[e]),
                             key=_natural)),
    )
    config.users = users
    return change


# -- helpers -------------------------------------------------------------------------


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def canon(entry: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in entry.items() if v not in (None, "", [])}
        if "miitel_user_id" in out:
            try:
                out["miitel_user_id"] = str(UUID(str(out["miitel_user_id"])))
            except ValueError:
                pass
        return out

    return canon(old) == canon(new)


def _natural(ext: str) -> tuple[int, int, str]:
    return (0, int(ext), ext) if ext.isdigit() else (1, 0, ext)


def _toml_str(text: str) -> str:
    import json

    out = json.dumps(text, ensure_ascii=False)  # JSON's escapes are valid TOML
    for char, escape in _TOML_EXTRA_ESCAPES.items():
        out = out.replace(char, escape)
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_str(str(v)) for v in value) + "]"
    return _toml_str(str(value))
