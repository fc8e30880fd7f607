"""`asterisk-miitel setup`: every install step the docs list, done (or shown) at once.

    asterisk-miitel setup --pbx plain --dry-run      # the diff, nothing written
    asterisk-miitel setup --pbx plain                # do it; then the steps left

What it writes, and how it treats each file:

- copies (ours): miitel-record.conf, manager_miitel.conf, FreePBX's
  extensions_miitel.conf, the systemd unit. Updated when a new version of
  the package brings a change, unless someone edited the file since setup
  wrote it: then it is kept, the diff shown, and `--force` replaces it
  (the old one saved as FILE.bak).
- blocks in the PBX's own files, between `; asterisk-miitel setup: begin`
  and `end` lines: the `#include` of the dialplan (extensions.conf, or
  FreePBX's extensions_custom.conf) and the manager user with its event
  filter and `timestampevents = yes` (manager.conf, or FreePBX's
  manager_custom.conf: FreePBX rewrites manager.conf). The same rules as
  copies apply to a block's content; what is outside the block is never
  touched. `[general](+)` adds timestampevents to the [general] section
  wherever that is written (FreePBX generates it).
- created once, then the admin's: config.toml, users.toml, the env file
  (0600, the AMI secret and an empty webhook URL). Never rewritten.

What setup wrote is remembered as SHA-256 hashes in <config dir>/.setup-state.json:
that is how a local change is told from an old version of ours. `--root`
puts every path under another folder (tests run it on a temporary tree).
"""

from __future__ import annotations

import contextlib
import difflib
import grp
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from .envfile import parse_env

BEGIN = "; asterisk-miitel setup: begin (edit outside these lines; setup keeps your changes)"
END = "; asterisk-miitel setup: end"
STATE_FILE = ".setup-state.json"
REPO = Path(__file__).resolve().parents[2]
Kind = Literal["copy", "block", "once", "link"]
Pbx = Literal["plain", "freepbx"]


# -- where the templates are --------------------------------------------------------------


def template(relative: str) -> Path:
    """A file the package installs beside itself (pyproject's data-files), or the
    checkout's own copy when run from the source tree."""
    for base in (REPO, Path(sys.prefix) / "share" / "asterisk-miitel"):
        path = base / relative
        if path.is_file():
            return path
    raise FileNotFoundError(f"{relative} is not installed (reinstall asterisk-miitel)")


# -- the plan -----------------------------------------------------------------------------


@dataclass
class Options:
    pbx: Pbx = "plain"
    root: Path = Path("/")
    etc: Path = Path("/etc/asterisk")
    config_dir: Path = Path("/etc/asterisk-miitel")
    unit_dir: Path = Path("/etc/systemd/system")
    bin_link: Path = Path("/usr/local/bin/asterisk-miitel")
    user: str = "asterisk-miitel"
    ami_user: str = "miitel"
    command: Path | None = None  # the asterisk-miitel executable; default: this one
    dry_run: bool = False
    force: bool = False

    def at(self, path: Path) -> Path:
        """`path` as it is on this machine (under --root)."""
        return self.root / path.relative_to("/") if path.is_absolute() else self.root / path


@dataclass
class Step:
    kind: Kind
    path: Path  # the real path (under --root)
    shown: Path  # the path as the PBX knows it
    content: str  # for "block": the block's inside; for "link": the target
    mode: int = 0o644
    group: str | None = None  # chgrp to this group (if it exists)
    append_to: str = ""  # "block": what to create the file with when it is missing
    # A new file is owned like this folder (Asterisk's own, e.g. asterisk:asterisk
    # on FreePBX, so that an Asterisk not running as root can read it).
    owner_like: Path | None = None


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # local changes left alone
    todo: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)


def asterisk_settings(opts: Options) -> dict[str, str]:
    """What the PBX's own files say: AMI port and address, the spool folder."""
    found = {"port": "5038", "bindaddr": "127.0.0.1", "spool": "/var/spool/asterisk"}
    manager = _read(opts.at(opts.etc) / "manager.conf")
    general = _section(manager, "general")
    for key in ("port", "bindaddr"):
        match = re.search(rf"^\s*{key}\s*=>?\s*([^\s;]+)", general, re.M)
        if match:
            found[key] = match.group(1)
    if found["bindaddr"] in ("0.0.0.0", "::"):
        found["bindaddr"] = "127.0.0.1"
    directories = _section(_read(opts.at(opts.etc) / "asterisk.conf"), "directories")
    match = re.search(r"^\s*astspooldir\s*=>?\s*(\S+)", directories, re.M)
    if match:
        found["spool"] = match.group(1)
    return found


def plan(opts: Options, secret: str) -> list[Step]:
    etc, conf_dir = opts.at(opts.etc), opts.at(opts.config_dir)
    pbx = asterisk_settings(opts)
    steps = [
        Step("copy", etc / "miitel-record.conf", opts.etc / "miitel-record.conf",
             _text(template("dialplan/miitel-record.conf"))),
        Step("copy", etc / "manager_miitel.conf", opts.etc / "manager_miitel.conf",
             _text(template("dialplan/manager_miitel.conf"))),
    ]
    if opts.pbx == "freepbx":
        steps += [
            Step("copy", etc / "extensions_miitel.conf", opts.etc / "extensions_miitel.conf",
                 _text(template("dialplan/freepbx/extensions_miitel.conf"))),
            Step("block", etc / "extensions_custom.conf", opts.etc / "extensions_custom.conf",
                 "#include extensions_miitel.conf\n"),
            Step("block", etc / "manager_custom.conf", opts.etc / "manager_custom.conf",
                 manager_block(opts.ami_user, secret), mode=0o640),
        ]
    else:
        steps += [
            Step("block", etc / "extensions.conf", opts.etc / "extensions.conf",
                 "#include miitel-record.conf\n"),
            Step("block", etc / "manager.conf", opts.etc / "manager.conf",
                 manager_block(opts.ami_user, secret), mode=0o640,
                 append_to="[general]\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1\n"),
        ]
    for step in steps:
        step.owner_like = etc
    command = opts.command or default_command()
    group = opts.user
    steps += [
        Step("once", conf_dir / "config.toml", opts.config_dir / "config.toml",
             config_skeleton(opts, pbx), mode=0o640, group=group),
        Step("once", conf_dir / "users.toml", opts.config_dir / "users.toml",
             "# extension -> MiiTel user; `asterisk-miitel users import FILE.csv` fills it\n"
             "[users]\n", mode=0o640, group=group),
        Step("once", conf_dir / "env", opts.config_dir / "env", env_file(secret), mode=0o600),
        Step("copy", opts.at(opts.unit_dir) / "asterisk-miitel.service",
             opts.unit_dir / "asterisk-miitel.service", unit_file(opts, command)),
        Step("link", opts.at(opts.bin_link), opts.bin_link, str(command)),
    ]
    return steps


def manager_block(ami_user: str, secret: str) -> str:
    return f"""[general](+)
timestampevents = yes        ; call times from Asterisk's event times

[{ami_user}]
secret = {secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = call,dialplan,agent,user
write = reporting
#include manager_miitel.conf
"""


def config_skeleton(opts: Options, pbx: dict[str, str]) -> str:
    return f"""# asterisk-miitel: written once by `asterisk-miitel setup --pbx {opts.pbx}`: yours.
# Every key is explained in deploy/config.example.toml (docs/OPERATIONS.md).
# The secrets (webhook URL, AMI secret) are in {opts.config_dir / 'env'}.
users_file = "users.toml"

[ami]
host = "{pbx['bindaddr']}"
port = {pbx['port']}
username = "{opts.ami_user}"

[pbx]
# A short name unique to this PBX, part of every call_data_id: set it once,
# never change it ("" = Asterisk's SystemName).
id = ""
timezone = ""               # e.g. "Asia/Tokyo"; "" = this machine's

[recordings]
dirs = ["{pbx['spool'].rstrip('/')}/monitor"]
work_dir = "/var/cache/asterisk-miitel/work"

[outbox]
path = "/var/lib/asterisk-miitel/outbox.sqlite3"
"""


def env_file(secret: str) -> str:
    return f"""# asterisk-miitel secrets. systemd reads this file as root (EnvironmentFile=).
# One KEY=value per line. Never put a comment after a value: systemd keeps
# it as part of the value.
# The Incoming Webhook URL from MiiTel Admin:
MIITEL_WEBHOOK_URL=
# The manager user's secret (the same as in the manager user's section):
ASTERISK_MIITEL_AMI__SECRET={secret}
"""


def unit_file(opts: Options, command: Path) -> str:
    text = _text(template("deploy/asterisk-miitel.service"))
    text = text.replace("/opt/asterisk-miitel/bin/asterisk-miitel", str(command))
    with contextlib.suppress(FileNotFoundError):  # a Documentation= that exists
        text = re.sub(r"^Documentation=.*$", f"Documentation=file://{template('docs/OPERATIONS.md')}",
                      text, flags=re.M)
    text = text.replace("/etc/asterisk-miitel/", f"{opts.config_dir}/")
    text = re.sub(r"^User=.*$", f"User={opts.user}", text, flags=re.M)
    text = re.sub(r"^Group=.*$", f"Group={opts.user}", text, flags=re.M)
    return text


def default_command() -> Path:
    here = Path(sys.executable).parent / "asterisk-miitel"
    found = here if here.exists() else shutil.which("asterisk-miitel")
    return Path(found) if found else here


# -- doing it -----------------------------------------------------------------------------


def existing_secret(opts: Options) -> str | None:
    """The secret an earlier run chose (env file, else our manager block)."""
    env_path = opts.at(opts.config_dir) / "env"
    with contextlib.suppress(OSError, ValueError):
        value = parse_env(env_path.read_text(encoding="utf-8")).get(
            "ASTERISK_MIITEL_AMI__SECRET")
        if value:
            return value
    manager = opts.at(opts.etc) / ("manager_custom.conf" if opts.pbx == "freepbx"
                                   else "manager.conf")
    block = _block(_read(manager))
    match = re.search(r"^secret\s*=\s*(\S+)", block or "", re.M)
    return match.group(1) if match else None


def run_setup(opts: Options) -> Report:
    report = Report()
    if not opts.at(opts.etc).is_dir():
        raise SetupError(f"{opts.at(opts.etc)} does not exist: is Asterisk installed here? "
                         "(--etc names its configuration folder)")
    secret = existing_secret(opts) or secrets.token_urlsafe(24)
    conf_dir = opts.at(opts.config_dir)
    if not conf_dir.exists() and not opts.dry_run:
        # root and the service's group only: it holds the config and the secrets
        conf_dir.mkdir(parents=True, mode=0o750)
        with contextlib.suppress(KeyError, PermissionError):
            os.chown(conf_dir, os.geteuid(), grp.getgrnam(opts.user).gr_gid)
    state_path = opts.at(opts.config_dir) / STATE_FILE
    state: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text(encoding="utf-8"))
    for step in plan(opts, secret):
        _apply(step, opts, state, report)
    manager_file = "manager_custom.conf" if opts.pbx == "freepbx" else "manager.conf"
    _foreign_manager_user(opts, manager_file, report)
    if opts.pbx == "freepbx":
        _freepbx_includes(opts, report)
    if not opts.dry_run:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        _write(state_path, json.dumps(state, indent=1, sort_keys=True) + "\n", 0o600)
    report.todo = todo(opts, manager_file)
    return report


class SetupError(Exception):
    """setup cannot go on (the message says why and what to do)."""


def _apply(step: Step, opts: Options, state: dict[str, str], report: Report) -> None:
    key = str(step.shown)
    verb = "would " if opts.dry_run else ""
    if step.kind == "link":
        _apply_link(step, opts, report)
        return
    current_text = _read(step.path) if step.path.exists() else None
    if step.kind == "once":
        if current_text is not None:
            report.say(f"kept      {step.shown} (exists: yours)")
            return
        report.diffs.append(_diff(step.shown, "", step.content))
        report.say(f"{verb}create {step.shown}")
        if not opts.dry_run:
            _write(step.path, step.content, step.mode, step.group)
        return
    if step.kind == "copy":
        old_part, new_text = current_text, step.content
        new_part = step.content
    else:
        old_part = _block(current_text or "")
        new_part = step.content
        new_text = _with_block(current_text if current_text is not None else step.append_to,
                               new_part)
        if old_part is None and current_text is not None and _already_there(step, current_text):
            report.say(f"kept      {step.shown} (already has {step.content.strip()!r}, "
                       "not written by setup: left alone)")
            return
    if old_part == new_part:
        state[key] = _hash(new_part)
        report.say(f"unchanged {step.shown}")
        return
    ours = old_part is None or state.get(key) == _hash(old_part)
    if not ours and not opts.force:
        what = "the block setup wrote in " if step.kind == "block" else ""
        report.kept.append(f"{what}{step.shown} was changed here since setup wrote it: kept "
                           "as it is (the diff shows what setup would write; --force "
                           "replaces it and keeps a .bak)")
        report.say(f"KEPT      {step.shown} (local changes)")
        report.diffs.append(_diff(step.shown, current_text or "", new_text))
        return
    report.diffs.append(_diff(step.shown, current_text or "", new_text))
    action = "create" if current_text is None else "update"
    report.say(f"{verb}{action} {step.shown}" + ("" if ours else " (--force: old kept as .bak)"))
    if opts.dry_run:
        return
    if current_text is not None and not ours:
        shutil.copy2(step.path, step.path.with_name(step.path.name + ".bak"))
    _write(step.path, new_text, step.mode, like=step.owner_like)
    state[key] = _hash(new_part)


def _apply_link(step: Step, opts: Options, report: Report) -> None:
    target = step.content
    path = step.path
    if path.is_symlink() and os.readlink(path) == target:
        report.say(f"unchanged {step.shown} -> {target}")
        return
    if path.exists() or path.is_symlink():
        report.say(f"kept      {step.shown} (exists and is not our link to {target})")
        return
    report.say(f"{'would ' if opts.dry_run else ''}link {step.shown} -> {target} "
               "(the command on PATH)")
    if not opts.dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)


def _already_there(step: Step, text: str) -> bool:
    """The admin did this step by hand before (not inside our markers)."""
    if step.content.startswith("#include"):
        name = step.content.split()[1].strip('"')
        return re.search(rf'^\s*#include\s+"?\S*{re.escape(name)}"?\s*$', text, re.M) is not None
    return False


def _foreign_manager_user(opts: Options, manager_file: str, report: Report) -> None:
    """A [miitel] user written by hand outside our block: two would clash."""
    text = _read(opts.at(opts.etc) / manager_file)
    outside = _without_block(text)
    if re.search(rf"^\s*\[{re.escape(opts.ami_user)}\]", outside, re.M):
        report.kept.append(
            f"{opts.etc / manager_file} already has a [{opts.ami_user}] user outside setup's "
            f"block: remove one of the two (Asterisk would use the last), and keep the "
            f"secret equal to ASTERISK_MIITEL_AMI__SECRET in {opts.config_dir / 'env'}")


def _freepbx_includes(opts: Options, report: Report) -> None:
    """FreePBX's generated files include the *_custom.conf ones; say so if not."""
    etc = opts.at(opts.etc)
    for generated, custom in (("manager.conf", "manager_custom.conf"),
                              ("extensions.conf", "extensions_custom.conf")):
        text = _with_includes(etc, etc / generated)
        if text and not re.search(rf"^\s*#include\s+\"?\S*{re.escape(custom)}\"?", text, re.M):
            report.kept.append(
                f"{opts.etc / generated} does not #include {custom} (FreePBX's own does): "
                f"what setup wrote there is not read until it does; is this FreePBX?")


def _with_includes(etc: Path, path: Path, depth: int = 3) -> str:
    """A .conf file's text followed by the files it #includes (a few levels)."""
    text = _read(path)
    if depth == 0:
        return text
    parts = [text]
    for name in re.findall(r'^\s*#include\s+"?([^"\s]+)"?', text, re.M):
        included = Path(name) if name.startswith("/") else etc / name
        if included.is_file():
            parts.append(_with_includes(etc, included, depth - 1))
    return "\n".join(parts)


def todo(opts: Options, manager_file: str) -> list[str]:
    conf = opts.config_dir
    steps = []
    try:
        pwd.getpwnam(opts.user)
    except KeyError:
        steps.append(f"create the service's user: useradd --system --home-dir "
                     f"/var/lib/asterisk-miitel --shell /usr/sbin/nologin --groups asterisk "
                     f"{opts.user}; then chgrp {opts.user} {conf} {conf}/config.toml "
                     f"{conf}/users.toml")
    steps.append(f"put MiiTel's Incoming Webhook URL after MIITEL_WEBHOOK_URL= in {conf}/env "
                 "(MiiTel Admin > Incoming Webhook; nothing after it on the line)")
    steps.append("map extensions to MiiTel users: asterisk-miitel users import users.csv "
                 "(docs/OPERATIONS.md, Extensions and MiiTel users)")
    if opts.pbx == "plain":
        steps.append("call Gosub(miitel-record,s,1) before Dial()/Queue() in each context "
                     "whose calls MiiTel should get (dialplan/README.md shows where)")
        steps.append('asterisk -rx "dialplan reload" && asterisk -rx "manager reload"')
    else:
        steps.append("in FreePBX: record the calls MiiTel should get (Call Recording of the "
                     "routes, extensions, queues: Force or Yes; docs/FREEPBX.md); no trunk or "
                     "extension needs another context; Apply Config")
        steps.append('fwconsole reload (or asterisk -rx "dialplan reload" && '
                     'asterisk -rx "manager reload")')
    steps.append(f"asterisk-miitel check --config {conf}/config.toml --env-file {conf}/env")
    steps.append("systemctl daemon-reload && systemctl enable --now asterisk-miitel")
    return steps


# -- files --------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _section(text: str, name: str) -> str:
    """The lines of one [name] section of an Asterisk .conf (up to the next)."""
    match = re.search(rf"^\s*\[{re.escape(name)}\][^\n]*\n(.*?)(?=^\s*\[|\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def _block(text: str) -> str | None:
    start = text.find(BEGIN + "\n")
    end = text.find(END, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[start + len(BEGIN) + 1 : end]


def _without_block(text: str) -> str:
    inside = _block(text)
    return text if inside is None else text.replace(BEGIN + "\n" + inside + END, "")


def _with_block(text: str, inside: str) -> str:
    block = f"{BEGIN}\n{inside}{END}"
    current = _block(text)
    if current is not None:
        return text.replace(f"{BEGIN}\n{current}{END}", block, 1)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block + "\n"


def _diff(shown: Path, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{shown} (now)" if old else "/dev/null", tofile=f"{shown} (setup)"))


def _write(path: Path, text: str, mode: int, group: str | None = None,
           like: Path | None = None) -> None:
    """Atomically; an existing file keeps its owner, group and mode, a new one
    is owned like `like` (a folder) or gets `group`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner: tuple[int, int] | None = None
    if path.exists():
        st = path.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
    elif like is not None and like.exists():
        st = like.stat()
        owner = (st.st_uid, st.st_gid)
    elif group is not None:
        with contextlib.suppress(KeyError):
            owner = (os.geteuid(), grp.getgrnam(group).gr_gid)
    tmp = path.with_name(f".{path.name}.setup-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if owner is not None:
            with contextlib.suppress(PermissionError):
                os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- the command --------------------------------------------------------------------------


def setup_main(opts: Options, out: IO[str] | None = None,
               ensure_user: Callable[[Options], str | None] | None = None) -> int:
    out = out or sys.stdout
    if ensure_user is not None and not opts.dry_run:
        said = ensure_user(opts)
        if said:
            print(said, file=out)
    try:
        report = run_setup(opts)
    except (SetupError, FileNotFoundError) as exc:
        print(f"asterisk-miitel: {exc}", file=sys.stderr)
        return 2
    head = f"asterisk-miitel setup --pbx {opts.pbx}" + (" (dry run: nothing written)"
                                                        if opts.dry_run else "")
    print(head, file=out)
    for line in report.lines:
        print(f"  {line}", file=out)
    if opts.dry_run and report.diffs:
        print("", file=out)
        for diff in report.diffs:
            print(_redact_secret(diff), end="" if diff.endswith("\n") else "\n", file=out)
    for kept in report.kept:
        print(f"\nnote: {kept}", file=out)
    print("\nLeft to do by hand:", file=out)
    for n, step in enumerate(report.todo, 1):
        print(f"  {n}. {step}", file=out)
    return 0


def _redact_secret(diff: str) -> str:
    """The AMI secret is never printed, not even in a dry run's diff."""
    return re.sub(r"^([+\- ](?:secret\s*=\s*|ASTERISK_MIITEL_AMI__SECRET=))\S+",
                  r"\1<secret>", diff, flags=re.M)


def create_service_user(opts: Options) -> str | None:
    """useradd on this machine (only without --root, as root, when missing)."""
    if opts.root != Path("/") or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(opts.user)
        return None
    except KeyError:
        pass
    groups = ["--groups", "asterisk"] if _group_exists("asterisk") else []
    result = subprocess.run(
        ["useradd", "--system", "--home-dir", "/var/lib/asterisk-miitel", "--shell",
         "/usr/sbin/nologin", *groups, opts.user], capture_output=True, text=True)
    if result.returncode != 0:
        return f"  could not create the user {opts.user}: {result.stderr.strip()}"
    return f"  created the system user {opts.user}" + (" (group asterisk)" if groups else "")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False
