"""The `freepbx-real` lab flavour: dialplans real FreePBX systems generated, on Asterisk 22.

../shared/freepbx/generated/ holds extensions_additional.conf files that FreePBX
15 and 16 wrote on real systems (Asterisk 16 and 18), and FreePBX 16's static
extensions.conf. They are loaded unchanged except for ONE mechanical step,
`macro_to_gosub`: the form FreePBX 17 emits on Asterisk 21 and later, where
app_macro no longer exists (FreePBX 17's own static extensions.conf calls
`Gosub(macro-hangupcall,s,1)` and its predial hooks end in `return()`; see
../shared/freepbx/source/core-17.0_etc_extensions.conf). Everything else a
FreePBX machine keeps outside those files is written here the way FreePBX
writes it: AstDB (`astdb`), the pjsip devices and trunk (`pjsip_conf`), the
queues of a16 that came without their queues_additional.conf (`queues_conf`),
voicemail boxes, and globals_custom.conf with the paths of this machine (what
amportal.conf holds on a real FreePBX). Our hooks are installed exactly as
dialplan/README.md tells a FreePBX admin: extensions_miitel.conf and
miitel-record.conf copied next to extensions.conf, `#include
extensions_miitel.conf` in extensions_custom.conf.

Ring groups ask FreePBX's FastAGI service for the phones to ring
(`AGI(agi://127.0.0.1/dialparties.agi)`): tests/lab/fastagi.py stands in for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "freepbx"
GENERATED = SHARED / "generated"
STATIC_17 = SHARED / "source" / "core-17.0_etc_extensions.conf"

#: The sipp addresses of the lab's three phones and the carrier (tests/lab/lab.py).
PHONE_IPS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
TRUNK_IP = "127.0.0.20"


@dataclass(frozen=True)
class Phone:
    extension: str
    name: str
    ip: str
    voicemail: bool = False


@dataclass(frozen=True)
class Variant:
    """One generated dialplan and what FreePBX kept beside it for it."""

    name: str  # the file prefix in ../shared/freepbx/generated/
    phones: tuple[Phone, ...]
    trunk_context: str  # the context FreePBX generated for the trunk
    queues: dict[str, tuple[str, ...]] = field(default_factory=dict)  # queue -> members
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ring group -> members
    queues_file: str | None = None  # the generated queues_additional.conf, if any

    @property
    def additional(self) -> Path:
        return GENERATED / f"{self.name}_extensions_additional.conf"

    @property
    def static(self) -> Path:
        """FreePBX's static extensions.conf. On Asterisk 22 it is FreePBX 17's (what a
        FreePBX that runs on Asterisk 21+ has): a16's own copy #includes a site file
        that was not published (/etc/asterisk/asterisk-tim/tim.conf, a speaking-clock
        add-on), and Asterisk drops the rest of a file after a missing #include."""
        return STATIC_17

    def files(self) -> list[Path]:
        out = [self.additional, self.static]
        if self.queues_file:
            out.append(GENERATED / self.queues_file)
        return out

    def phone(self, extension: str) -> Phone:
        [found] = [p for p in self.phones if p.extension == extension]
        return found


VARIANTS: dict[str, Variant] = {
    # FreePBX 16 on Asterisk 18: extensions 1101 and 1180 (with voicemail), the
    # only member of ring groups 1111/4411 is 1066 (a user without an ext-local
    # entry: its device is rung by dialparties), queues 1301 and 1380 (their
    # queues_additional.conf was not published: members as FreePBX writes them),
    # inbound routes: any unknown DID reaches the catch-all -> 1180.
    "freepbx16-ast18-a": Variant(
        "freepbx16-ast18-a",
        (Phone("1101", "Suzuki Ichiro", PHONE_IPS[0], voicemail=True),
         Phone("1180", "Ishikawa Jiro", PHONE_IPS[1], voicemail=True),
         Phone("1066", "Ueda Saburo", PHONE_IPS[2])),
        trunk_context="from-trunk-pjsip-yay.com",
        queues={"1301": ("1101", "1180"), "1380": ("1101", "1180")},
        groups={"1111": ("1066",), "4411": ("1066",)}),
    # FreePBX 15 on Asterisk 16: extensions 101-103 (chan_sip there: pjsip here,
    # Asterisk 21+ has no chan_sip), queue 201 (members 101-103, its generated
    # queues_additional.conf), ring group 8888 (102-103). No inbound routes and
    # no static extensions.conf were published.
    "freepbx15-ast16-b": Variant(
        "freepbx15-ast16-b",
        (Phone("101", "Suzuki Ichiro", PHONE_IPS[0]),
         Phone("102", "Ishikawa Jiro", PHONE_IPS[1]),
         Phone("103", "Ueda Saburo", PHONE_IPS[2])),
        trunk_context="from-pstn",
        groups={"8888": ("102", "103")},
        queues_file="freepbx15-ast16-b_queues_additional.conf"),
}


def missing_files() -> list[Path]:
    return [p for v in VARIANTS.values() for p in v.files() if not p.exists()]


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


# -- the one mechanical step: Macro -> Gosub (FreePBX 17 on Asterisk 21+) -----------------

_MACRO_CALL = re.compile(r"(?<![A-Za-z0-9_])Macro\(")
_MACRO_EXIT = re.compile(r"(?<![A-Za-z0-9_])MacroExit\(\)|(?<![A-Za-z0-9_])MacroExit\b(?!\()")
_DIAL_M = re.compile(r"(?<![A-Za-z0-9_])M\(")
_MACRO_VARS = {"MACRO_EXTEN": "e", "MACRO_CONTEXT": "c", "MACRO_PRIORITY": "p"}
_LINE = re.compile(r"^(?P<head>\s*(?:exten|same)\s*=>\s*)(?P<rest>.*)$")
_ENDS = ("Return", "Hangup", "Goto")


def _closing(text: str, start: int) -> int:
    """Index of the parenthesis closing the one opened just before `start`."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parentheses in: {text}")


def _split_first(args: str, sep: str) -> tuple[str, str | None]:
    """Split at the first `sep` outside parentheses and ${...}."""
    depth = 0
    for i, c in enumerate(args):
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        elif c == sep and depth == 0:
            return args[:i], args[i + 1:]
    return args, None


def _convert_calls(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _MACRO_CALL.finditer(text):
        if m.start() < pos:
            continue
        end = _closing(text, m.end())
        name, args = _split_first(text[m.end():end], ",")
        out.append(text[pos:m.start()])
        out.append(f"Gosub(macro-{name.strip()},s,1({_convert_calls(args or '')}))")
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _convert_dial_m(text: str) -> str:
    """Dial's M(macro^args) runs a macro on the answered channel: U(macro-x^args)."""
    return _DIAL_M.sub("U(macro-", text)


def _convert_line(rest: str, previous: str) -> str:
    rest = _convert_calls(rest)
    exit_to = "Return(${GOSUB_RETVAL})" if "Set(GOSUB_RETVAL=" in previous else "Return()"
    rest = _MACRO_EXIT.sub(exit_to, rest)
    rest = _convert_dial_m(rest)
    for var, which in _MACRO_VARS.items():
        rest = rest.replace(f"${{{var}}}", f"${{STACK_PEEK(1,{which},1)}}")
    # Gosub has no depth limit to guard: every MACRO_DEPTH guard reads 0
    return rest.replace("${MACRO_DEPTH}", "0")


def _app(rest: str) -> str:
    """The application a priority line runs ("1,Set(x)" -> "Set")."""
    parts = rest.split(",", 2)
    if len(parts) < 3:
        return ""
    return re.split(r"[(\s]", parts[2].strip(), maxsplit=1)[0]


def macro_to_gosub(text: str) -> str:
    """A FreePBX 15/16 dialplan (Macro) in the form FreePBX 17 emits on Asterisk 21+.

    - `Macro(name,args)` -> `Gosub(macro-name,s,1(args))`, also inside ExecIf;
    - `MacroExit()` -> `Return()`, `Return(${GOSUB_RETVAL})` right after the
      extension set GOSUB_RETVAL (a bare Return clears it);
    - Dial's `M(x^a)` -> `U(macro-x^a)`;
    - `Return()` after the last priority of every `macro-*` extension that does
      not end in Return/Hangup/Goto (a Macro returned when it ran out of
      priorities; a Gosub hangs up);
    - `${MACRO_EXTEN}`/`${MACRO_CONTEXT}`/`${MACRO_PRIORITY}` ->
      `${STACK_PEEK(1,e|c|p,1)}`; `${MACRO_DEPTH}` -> `0`.
    Comments, contexts, includes and everything else are left byte for byte.
    """
    lines = text.split("\n")
    out: list[str] = []
    context = ""
    last_of: dict[str, int] = {}  # exten -> index in `out` of its last priority
    previous = ""

    def close_context() -> None:
        if not context.startswith("macro-"):
            return
        # insert from the bottom so earlier indexes stay valid
        for exten, idx in sorted(last_of.items(), key=lambda kv: -kv[1]):
            m = _LINE.match(out[idx])
            assert m is not None
            if _app(m.group("rest")) not in _ENDS:
                out.insert(idx + 1, f"exten => {exten},n,Return()")

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            close_context()
            context = stripped[1:stripped.index("]")]
            last_of = {}
            previous = ""
            out.append(line)
            continue
        m = _LINE.match(line)
        if not m or stripped.startswith(";"):
            out.append(line)
            continue
        code, sep, comment = _split_comment(m.group("rest"))
        converted = _convert_line(code, previous)
        out.append(m.group("head") + converted + sep + comment)
        previous = converted
        exten = code.split(",", 1)[0].strip()
        priority = code.split(",", 2)[1].strip() if code.count(",") >= 2 else ""
        if priority != "hint" and not line.lstrip().startswith("same"):
            last_of[exten] = len(out) - 1
        elif line.lstrip().startswith("same") and last_of:
            last_of[list(last_of)[-1]] = len(out) - 1
    close_context()
    return "\n".join(out)


def _split_comment(rest: str) -> tuple[str, str, str]:
    """Code and a trailing `;comment` (an unescaped semicolon)."""
    i = 0
    while i < len(rest):
        if rest[i] == "\\":
            i += 2
            continue
        if rest[i] == ";":
            return rest[:i], ";", rest[i + 1:]
        i += 1
    return rest, "", ""


# -- what FreePBX keeps outside the dialplan ------------------------------------------------

def astdb(variant: Variant, tech: str = "PJSIP") -> dict[str, str]:
    """The AstDB keys FreePBX's Core, Queues and Ring Groups modules write for these
    extensions (a PJSIP, or on a chan_sip Asterisk a SIP, device per user, device =
    extension), queues and groups."""
    db: dict[str, str] = {}
    for p in variant.phones:
        ext = p.extension
        user = {
            "answermode": "disabled", "cfringtimer": "0", "cidname": p.name, "cidnum": ext,
            "concurrency_limit": "3", "device": ext,
            "hint": f"PJSIP/{ext}&Custom:DND{ext},CustomPresence:{ext}",
            "intercom": "enabled", "language": "", "noanswer": "", "outboundcid": "",
            "password": "", "queues/qnostate": "usestate", "recording": "",
            # what an admin picks in the GUI (Extension > Advanced > Recording
            # Options) for a call centre: record every call of this extension
            "recording/in/external": "force", "recording/in/internal": "force",
            "recording/ondemand": "enabled", "recording/out/external": "force",
            "recording/out/internal": "force", "recording/priority": "10",
            # a shorter ring than the default 15 s: the tests wait for voicemail
            "ringtimer": "3", "rvolume": "",
            "voicemail": "default" if p.voicemail else "novm",
        }
        for key, value in user.items():
            db[f"AMPUSER/{ext}/{key}"] = value
        device = {"default_user": ext, "dial": f"{tech}/{ext}", "type": "fixed",
                  "user": ext, "tech": tech.lower()}
        for key, value in device.items():
            db[f"DEVICE/{ext}/{key}"] = value
        db[f"CW/{ext}"] = "ENABLED"
    for queue, members in variant.queues.items():
        db[f"QPENALTY/{queue}/dynmemberonly"] = "no"
        for member in members:
            db[f"QPENALTY/{queue}/agents/{member}"] = "0"
    for group in variant.groups:
        db[f"RINGGROUP/{group}/changecid"] = "default"
        db[f"RINGGROUP/{group}/fixedcid"] = ""
    return db


def pjsip_conf(variant: Variant, sip_port: int) -> str:
    """The devices and the trunk as FreePBX's pjsip module names them (endpoint =
    device = extension number, context from-internal), on the lab's addresses."""
    out = [
        "; freepbx-real lab devices (written by tests/lab/freepbx_real.py)",
        "[global]", "type = global", "endpoint_identifier_order = ip,username,anonymous", "",
        "[transport-udp]", "type = transport", "protocol = udp",
        f"bind = 127.0.0.1:{sip_port}", "",
        "[lab-endpoint](!)", "type = endpoint", "transport = transport-udp",
        "disallow = all", "allow = alaw,ulaw", "direct_media = no", "rtp_symmetric = yes",
        "force_rport = yes", "rewrite_contact = no", "send_connected_line = no",
        "trust_connected_line = no", "send_pai = no", "send_rpid = no", "timers = no",
        "language = en", "",
    ]
    for i, p in enumerate(variant.phones):
        out += [f"[{p.extension}](lab-endpoint)", "context = from-internal",
                f'callerid = "{p.name}" <{p.extension}>', f"aors = {p.extension}",
                "allow_subscribe = no", "trust_id_inbound = yes",
                # the second phone transfers with *2 sent as SIP INFO (uas_atxfer)
                *(["dtmf_mode = info"] if i == 1 else []), "",
                f"[{p.extension}]", "type = aor",
                f"contact = sip:{p.extension}@{p.ip}:5060", "max_contacts = 1", "",
                f"[{p.extension}-identify]", "type = identify",
                f"endpoint = {p.extension}", f"match = {p.ip}", ""]
    out += ["[trunk](lab-endpoint)", f"context = {variant.trunk_context}", "aors = trunk", "",
            "[trunk]", "type = aor", f"contact = sip:{TRUNK_IP}:5060", "",
            "[trunk-identify]", "type = identify", "endpoint = trunk",
            f"match = {TRUNK_IP}", ""]
    return "\n".join(out)


def sip_conf(variant: Variant, sip_port: int) -> str:
    """The same devices for chan_sip (the Asterisk 16/18/20 the lab builds), as
    FreePBX's sip module names them: peer = extension, context from-internal."""
    out = ["; freepbx-real lab devices, chan_sip (written by tests/lab/freepbx_real.py)",
           "[general]", "context = from-pstn", f"udpbindaddr = 127.0.0.1:{sip_port}",
           "tcpenable = no", "transport = udp", "allowguest = no", "alwaysauthreject = yes",
           "disallow = all", "allow = alaw,ulaw", "directmedia = no",
           "nat = force_rport,comedia", "dtmfmode = info", "sendrpid = no", "trustrpid = no",
           "session-timers = refuse", "qualify = no", "language = en", "rtptimeout = 0",
           "allowsubscribe = no", "notifyhold = no", "allowtransfer = yes", ""]
    for p in variant.phones:
        out += [f"[{p.extension}]", "type = peer", f"host = {p.ip}", "port = 5060",
                "insecure = port,invite", "context = from-internal",
                f"defaultuser = {p.extension}", f'callerid = "{p.name}" <{p.extension}>', ""]
    out += ["[trunk]", "type = peer", f"host = {TRUNK_IP}", "port = 5060",
            "insecure = port,invite", f"context = {variant.trunk_context}", ""]
    return "\n".join(out)


def queues_conf(variant: Variant) -> str:
    """Queues FreePBX wrote for this dialplan: its generated queues_additional.conf,
    or (a16, not published) members as FreePBX writes them."""
    if variant.queues_file:
        return (GENERATED / variant.queues_file).read_text(encoding="utf-8")
    out = []
    for queue, members in variant.queues.items():
        out += [f"[{queue}]", "strategy=ringall", "timeout=15", "retry=5", "ringinuse=yes",
                "joinempty=yes", "leavewhenempty=no", "setinterfacevar=yes",
                "announce-frequency=0", "announce-holdtime=no", "context="]
        out += [f'member=Local/{m}@from-queue/n,0,"{variant.phone(m).name}",'
                f"hint:{m}@ext-local" for m in members]
        out.append("")
    return "\n".join(out)


# features.conf as FreePBX's Core writes it (features_general/featuremap/
# applicationmap_additional.conf): disconnect is ** (Asterisk's default * would
# let a phone's DTMF * hang the call up, Dial's h option), and the one-touch
# recording feature *1 (DYNAMIC_FEATURES=apprecord) runs macro-one-touch-record,
# in FreePBX 17's form a Gosub. featuredigittimeout: FreePBX leaves Asterisk's
# 1000 ms; 3000 here, as in conf/features.conf, so that a SIP INFO digit a
# loaded machine delays does not break the *2 apart.
FEATURES = """[general]
featuredigittimeout = 3000
transferdigittimeout = 3
atxfernoanswertimeout = 15
atxferdropcall = no

[featuremap]
blindxfer => ##
atxfer => *2
disconnect => **

[applicationmap]
apprecord => *1,caller,Gosub,macro-one-touch-record,s,1
"""


def voicemail_lines(variant: Variant) -> str:
    return "".join(f"{p.extension} => 1234,{p.name}\n" for p in variant.phones if p.voicemail)


def globals_custom(run_dir: Path) -> str:
    """What amportal.conf gives FreePBX's [globals] on this machine: the real paths
    (the generated files carry the original machine's /var/spool/asterisk), and
    AMPBIN, where FreePBX keeps the scripts its dialplan runs with System()."""
    return (f"ASTSPOOLDIR = {run_dir}/spool\n"
            f"AMPBIN = {run_dir}/{AMPBIN}\n"
            f"ASTETCDIR = {run_dir}/etc\n"
            f"ASTLOGDIR = {run_dir}/log\n"
            f"ASTRUNDIR = {run_dir}/run\n")


def contexts(text: str) -> Iterator[str]:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and "]" in s:
            yield s[1:s.index("]")]


# FreePBX's scripts that the dialplan runs with System() (PHP on a real FreePBX;
# System() of a missing program hangs the call up). Stand-ins that do what the
# dialplan needs of them, with Asterisk's CLI:
#   stoprecording.php CHANNEL   (recording policy "never"): stop the channel's MixMonitor
AMPBIN = "freepbx-bin"
SCRIPTS = {
    "stoprecording.php": '#!/bin/sh\n'
                         'exec asterisk -C "$ASTMIITEL_ETC/asterisk.conf" '
                         '-rx "mixmonitor stop $1" >/dev/null 2>&1\n',
}


# -- installing it in a running lab -----------------------------------------------------------

EXTENSIONS = "freepbx-real-extensions.conf"  # FreePBX's static extensions.conf, converted


def install(lab: object, name: str) -> Variant:
    """Write the flavour's files into the lab's etc/ and reload what reads them.

    Called by Lab.use_flavour("freepbx-real", dialplan=name); `lab` is a tests.lab.Lab.
    """
    from .lab import CONF_DIR, Lab

    assert isinstance(lab, Lab)
    variant = VARIANTS[name]
    missing = [p for p in variant.files() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"FreePBX's generated dialplan is missing: {missing}")
    etc = lab.etc_dir
    run = lab.run_dir
    assert run is not None
    # the generated files, with the one mechanical step on Asterisk 21+; the
    # Asterisk the lab builds (16/18/20) has app_macro: unchanged there
    step = (lambda text: text) if lab.built else macro_to_gosub
    (etc / EXTENSIONS).write_text(step(variant.static.read_text(encoding="utf-8")))
    (etc / "extensions_additional.conf").write_text(
        step(variant.additional.read_text(encoding="utf-8")))
    # what a FreePBX admin has next to them (dialplan/README.md): our two files,
    # copied to /etc/asterisk (here: links to the repo's read-only mount), and the
    # one #include line in extensions_custom.conf
    for link, target in (("extensions_miitel.conf", "freepbx/extensions_miitel.conf"),
                         ("miitel-record.conf", "miitel-record.conf")):
        path = etc / link
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(lab.dialplan_mount / target)
    (etc / "extensions_custom.conf").write_text("#include extensions_miitel.conf\n")
    (etc / "extensions_override_freepbx.conf").write_text("")
    (etc / "globals_custom.conf").write_text(globals_custom(run))
    bin_dir = run / AMPBIN
    bin_dir.mkdir(exist_ok=True)
    for script, text in SCRIPTS.items():
        path = bin_dir / script
        path.write_text(text.replace("$ASTMIITEL_ETC", str(etc)))
        path.chmod(0o755)
    (etc / "pjsip.conf").write_text(pjsip_conf(variant, lab.sip_port))
    if lab.built:
        (etc / "sip.conf").write_text(sip_conf(variant, lab.sip_port))
    (etc / "features.conf").write_text(FEATURES)
    lab._render(CONF_DIR / "queues.conf", etc / "queues.conf")
    with open(etc / "queues.conf", "a", encoding="utf-8") as fh:
        fh.write("\n; freepbx-real: FreePBX's queues\n" + queues_conf(variant))
    lab._render(CONF_DIR / "voicemail.conf", etc / "voicemail.conf")
    with open(etc / "voicemail.conf", "a", encoding="utf-8") as fh:
        fh.write(voicemail_lines(variant))
    return variant


def uninstall(lab: object) -> None:
    """Back to the lab's own queues and voicemail boxes (pjsip is re-rendered by use_flavour)."""
    from .lab import CONF_DIR, Lab

    assert isinstance(lab, Lab)
    lab._render(CONF_DIR / "queues.conf", lab.etc_dir / "queues.conf")
    lab._render(CONF_DIR / "voicemail.conf", lab.etc_dir / "voicemail.conf")
    lab._render(CONF_DIR / "features.conf", lab.etc_dir / "features.conf")


NEEDED = ("miitel-record", "miitel-freepbx-sync", "sub-record-check", "macro-dial-one",
          "macro-dial", "macro-exten-vm", "ext-local", "ext-queues", "ext-group",
          "ext-did-catchall", "from-queue")


def check(lab: object) -> None:
    """Fail loudly if a context these calls need did not load."""
    from .lab import Lab
    from .rootfs import LabError

    assert isinstance(lab, Lab)
    for ctx in NEEDED:
        resp = lab.admin().action("Command", Command=f"dialplan show {ctx}")
        out = "\n".join(resp.getall("Output"))
        if f"'{ctx}'" not in out or "There is no existence" in out:
            raise LabError(f"context [{ctx}] did not load (freepbx-real "
                           f"{lab.freepbx_dialplan})\n{out}\n{lab.log_tail()}")


class TransferMonitor:
    """What FreePBX 17's core-calltransfer-monitor daemon does, over the lab's admin AMI
    (../shared/freepbx/source/core-17.0_calltransfer-eventlistener.php): on
    AttendedTransfer it reads MIXMONITOR_FILENAME of OrigTransfererChannel
    (`core show channel`) and, if there is one, starts a MixMonitor on the
    TransfereeChannel appending to that file, options `ai(LOCAL_MIXMON_ID)`."""

    def __init__(self, lab: object) -> None:
        import threading

        self.lab = lab
        self.actions: list[dict[str, str]] = []  # what it did (or found nothing to do)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="transfer-monitor", daemon=True)

    def __enter__(self) -> TransferMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from .ami import AmiError
        from .lab import Lab

        assert isinstance(self.lab, Lab)
        admin = self.lab.admin()
        seen = len(admin.events)
        while not self._stop.is_set():
            try:
                event = admin.wait_for(lambda m: m.event == "AttendedTransfer", timeout=0.3,
                                       start=seen)
            except AmiError:
                continue
            seen = admin.events.index(event) + 1
            orig, transferee = event.get("OrigTransfererChannel"), event.get("TransfereeChannel")
            out = admin.action("Command", Command=f"core show channel {orig}")
            lines = [x for x in out.getall("Output") if "MIXMONITOR_FILENAME=" in x]
            filename = lines[0].split("MIXMONITOR_FILENAME=", 1)[1].strip() if lines else ""
            done = {"orig": orig, "transferee": transferee, "file": filename}
            if filename:
                resp = admin.action("MixMonitor", Channel=transferee, File=filename,
                                    Options="ai(LOCAL_MIXMON_ID)")
                done["response"] = resp.get("Response", "")
            self.actions.append(done)
