"""`asterisk-miitel check`: is this machine ready to run the service?

One line per check, each with what to do when it fails. Nothing is sent to
MiiTel (the webhook check resolves the host and completes a TLS handshake,
then hangs up before any request) and nothing is changed on this machine:
the outbox is read without creating any file (run as root, SQLite would
otherwise leave root-owned side files the service could not open).

`ok` is True (fine), False (must be fixed: exit code 1) or None (could not
tell, e.g. no AMI traffic while listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sqlite3
import ssl
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from ..ami.listener import ssl_context, untrusted_hint
from ..ami.protocol import MiitelAmiProtocol
from ..config import AmiConfig, Config, MiitelConfig
from ..miitel.redact import redact_url
from ..recordings import check_access, free_bytes, recording_dirs

# The installed unit: its User=, Group=, SupplementaryGroups= say who the service runs as.
UNIT_FILE = Path("/etc/systemd/system/asterisk-miitel.service")
# How long to listen for events (filter, timestamps) after logging in.
LISTEN_SECONDS = 5.0
# Enough evidence: stop listening early after this many events.
ENOUGH_EVENTS = 500

# dialplan/manager_miitel.conf's eventfilter lines, as Python patterns (a test
# keeps them equal to the file). Asterisk uses POSIX extended regexes on the
# whole event text, where `.` also matches line breaks: re.DOTALL.
MANAGER_FILTERS = (
    r"^Event: (Newchannel|Newstate|NewCallerid|NewConnectedLine|Hangup|DialBegin|DialEnd|BridgeEnter|BridgeLeave|LocalBridge|LocalOptimizationBegin|LocalOptimizationEnd|MixMonitorStart|MixMonitorStop|BlindTransfer|AttendedTransfer|QueueCallerJoin|QueueCallerLeave|QueueCallerAbandon|AgentCalled|AgentConnect|AgentComplete|AgentRingNoAnswer|Rename)[[:cntrl:]]",  # noqa: E501
    r"^Event: UserEvent[[:cntrl:]].*[[:cntrl:]]UserEvent: MiiTel",
    r"^Event: Newexten[[:cntrl:]].*[[:cntrl:]]Application: ([Mm][Ii][Xx][Mm][Oo][Nn][Ii][Tt][Oo][Rr]|[Ss][Tt][Oo][Pp][Mm][Ii][Xx][Mm][Oo][Nn][Ii][Tt][Oo][Rr]|[Vv][Oo][Ii][Cc][Ee][Mm][Aa][Ii][Ll]|[Qq][Uu][Ee][Uu][Ee])[[:cntrl:]]",  # noqa: E501
    r"^Event: Newexten[[:cntrl:]].*[[:cntrl:]]Application: [Ee][Xx][Ee][Cc][Ii][Ff][[:cntrl:]]+AppData: [^[:cntrl:]]*[Mm][Ii][Xx][Mm][Oo][Nn][Ii][Tt][Oo][Rr][(]",  # noqa: E501
    r"^Event: VarSet[[:cntrl:]].*[[:cntrl:]]Variable: _{0,2}(MIXMONITOR_FILENAME|VM_MESSAGEFILE|FROM_DID|AMPUSER|BLINDTRANSFER|ATTENDEDTRANSFER|MIITEL_[A-Za-z0-9_]*)[[:cntrl:]]",  # noqa: E501
    # `!`: an exclude filter, applied after the others: an empty line inside
    # an event (raw dialplan text forging events of its own) drops it whole.
    r"![[:cntrl:]][[:cntrl:]][[:cntrl:]][[:cntrl:]][^[:cntrl:]]",
)


def _posix(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("[^[:cntrl:]]", r"[^\x00-\x1f\x7f]")
                      .replace("[[:cntrl:]]", r"[\x00-\x1f\x7f]"), re.DOTALL)


_FILTERS = [_posix(f) for f in MANAGER_FILTERS if not f.startswith("!")]
_EXCLUDES = [_posix(f[1:]) for f in MANAGER_FILTERS if f.startswith("!")]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool | None  # None: could not tell
    detail: str  # one line

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "??  "}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.ok is False for r in results) else 0


async def run_checks(
    config: Config, *, listen_seconds: float = LISTEN_SECONDS
) -> list[CheckResult]:
    """Every check, AMI and network ones concurrently; results in a fixed order."""
    ami, webhook, local = await asyncio.gather(
        _ami_checks(config.ami, listen_seconds),
        check_webhook(config.miitel),
        asyncio.to_thread(_local_checks, config),
    )
    return [*ami, webhook, *local]


def check_main(config: Config, out: IO[str] | None = None,
               listen_seconds: float = LISTEN_SECONDS, *, config_path: Path | None = None,
               env_file: Path | None = None, unit: Path = UNIT_FILE) -> int:
    """`asterisk-miitel check`: print one line per check; 1 if any failed."""
    out = out or sys.stdout
    results = asyncio.run(run_checks(config, listen_seconds=listen_seconds))
    results += service_user_results(config, config_path=config_path, env_file=env_file,
                                    unit=unit)
    for result in results:
        print(result.line(), file=out)
    return exit_code(results)


# -- AMI -------------------------------------------------------------------------------


@dataclass
class AmiProbe:
    error: str | None = None  # connect or login failed
    banner: str | None = None
    settings: Mapping[str, str] | None = None
    settings_error: str | None = None
    channels: int | None = None
    channels_error: str | None = None
    status_error: str | None = None  # CoreStatus: how the service notices a PBX restart
    events: list[dict[str, str]] = field(default_factory=list)
    listened: float = 0.0


async def probe_ami(cfg: AmiConfig, listen_seconds: float) -> AmiProbe:
    """Log in as the service does, run the two reporting actions, listen."""
    probe = AmiProbe()
    where = f"{cfg.host}:{cfg.port}"
    loop = asyncio.get_running_loop()
    enough = asyncio.Event()

    def sink(event: Mapping[str, str], _at: float) -> None:
        probe.events.append(dict(event))
        if len(probe.events) >= ENOUGH_EVENTS:
            enough.set()

    try:
        tls = ssl_context(cfg)  # the service's own: [ami] tls, tls_verify, tls_ca_file
    except OSError as exc:  # it names the setting and the file
        probe.error = str(exc)
        return probe
    try:
        _transport, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: MiitelAmiProtocol(sink), cfg.host, cfg.port,
                ssl=tls, server_hostname=cfg.host if cfg.tls else None,
            ),
            cfg.connect_timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        probe.error = (f"AMI at {where}: TLS certificate not trusted ({_short(exc)}): "
                       + untrusted_hint(cfg))
        return probe
    except (OSError, TimeoutError) as exc:
        probe.error = (f"cannot connect to AMI at {where} ({_short(exc)}): is Asterisk running, "
                       "manager.conf enabled = yes, bindaddr/port as in [ami]?")
        return probe
    try:
        probe.banner = await asyncio.wait_for(protocol.banner, cfg.connect_timeout)
        reply = await asyncio.wait_for(protocol.send_action({
            "Action": "Login", "Username": cfg.username,
            "Secret": cfg.secret.get_secret_value(), "Events": "on",
        }), cfg.connect_timeout)
        if reply.get("Response") != "Success":
            probe.error = (
                f"login refused for user {cfg.username!r} at {where} "
                f"({reply.get('Message', 'no reason')}): check [ami] username and secret, and "
                "the user's permit/deny in manager.conf"
            )
            return probe
        started = time.monotonic()
        probe.settings, probe.settings_error = await _action(protocol, "CoreSettings", cfg)
        channels, probe.channels_error = await _action(protocol, "CoreShowChannels", cfg)
        if isinstance(channels, list):
            probe.channels = sum(1 for m in channels if m.get("Event") == "CoreShowChannel")
        _status, probe.status_error = await _action(protocol, "CoreStatus", cfg)
        remaining = listen_seconds - (time.monotonic() - started)
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), remaining)
        probe.listened = time.monotonic() - started
        with contextlib.suppress(Exception):
            await asyncio.wait_for(protocol.send_action({"Action": "Logoff"}), 1.0)
    except (OSError, TimeoutError, ConnectionError) as exc:
        probe.error = f"AMI session with {where} failed before login ({_short(exc)})"
    finally:
        protocol.close()
    return probe


async def _action(
    protocol: MiitelAmiProtocol, name: str, cfg: AmiConfig
) -> tuple[Any, str | None]:
    try:
        # as_list=None: panoramisk tells a list (EventList: start) from a
        # single answer; as_list=True would never resolve on an Error.
        reply = await asyncio.wait_for(protocol.send_action({"Action": name}),
                                       cfg.ping_timeout * 4)
    except (TimeoutError, ConnectionError) as exc:
        return None, f"{name}: no answer ({_short(exc)})"
    first = reply[0] if isinstance(reply, list) and reply else reply
    if hasattr(first, "get") and first.get("Response") not in ("Success", None):
        return None, f"{name} refused ({first.get('Message', 'no reason')})"
    return reply, None


async def _ami_checks(cfg: AmiConfig, listen_seconds: float) -> list[CheckResult]:
    probe = await probe_ami(cfg, listen_seconds)
    if probe.error is not None:
        skipped = "not checked: no AMI session"
        return [CheckResult("AMI login", False, probe.error),
                CheckResult("AMI actions", None, skipped),
                CheckResult("AMI event filter", None, skipped),
                CheckResult("AMI timestamps", None, skipped),
                CheckResult("Asterisk version", None, skipped),
                CheckResult("MixMonitor events", None, skipped)]
    over = ""
    if cfg.tls:
        over = (" over TLS (certificate verified)" if cfg.tls_verify
                else " over TLS (certificate NOT verified: [ami] tls_verify = false)")
    return [
        CheckResult("AMI login", True,
                    f"logged in as {cfg.username!r} at {cfg.host}:{cfg.port}{over} "
                    f"(Asterisk Call Manager {probe.banner})"),
        _actions_result(probe),
        filter_result(probe.events, probe.listened),
        timestamps_result(probe.events),
        version_result(probe),
        mixmonitor_result(probe),
    ]


def _actions_result(probe: AmiProbe) -> CheckResult:
    errors = [e for e in (probe.settings_error, probe.channels_error, probe.status_error) if e]
    if errors:
        return CheckResult("AMI actions", False,
                           f"{'; '.join(errors)}: give the manager user write = reporting "
                           "(the service reads the PBX's name, notices restarts and lists live "
                           "channels after an AMI gap)")
    return CheckResult("AMI actions", True,
                       f"CoreSettings, CoreStatus and CoreShowChannels work "
                       f"({probe.channels} live channel(s))")


def filter_would_pass(event: Mapping[str, str]) -> bool:
    """Would manager_miitel.conf's eventfilter let this event through?"""
    text = "".join(f"{k}: {v}\r\n" for k, v in event.items())
    return (any(f.search(text) for f in _FILTERS)
            and not any(f.search(text) for f in _EXCLUDES))


def filter_result(events: Sequence[Mapping[str, str]], listened: float) -> CheckResult:
    name = "AMI event filter"
    if not events:
        return CheckResult(name, None, f"no events in {listened:.0f} s, so unknown: run the "
                           "check while a call is up")
    dropped: Counter[str] = Counter()
    for event in events:
        if not filter_would_pass(event):
            what = event.get("Event", "?")
            if what == "VarSet":
                what = f"VarSet {event.get('Variable', '?')}"
            dropped[what] += 1
    if not dropped:
        return CheckResult(name, True, f"active: {len(events)} event(s), all of the kinds it "
                           "lets through")
    seen = ", ".join(f"{what} x{n}" for what, n in dropped.most_common(4))
    return CheckResult(name, False, f"missing: {sum(dropped.values())} of {len(events)} events "
                       f"are ones it drops ({seen}): #include manager_miitel.conf in the "
                       "manager user's section, then `asterisk -rx 'manager reload'`")


def timestamps_result(events: Sequence[Mapping[str, str]]) -> CheckResult:
    name = "AMI timestamps"
    if not events:
        return CheckResult(name, None, "no events to look at, so unknown")
    without = sum(1 for e in events if "Timestamp" not in e)
    if without:
        return CheckResult(name, False, f"{without} of {len(events)} events carry no "
                           "Timestamp: set timestampevents = yes in manager.conf [general] "
                           "(call times are otherwise when events arrived)")
    return CheckResult(name, True, "events carry Timestamp (timestampevents = yes)")


def parse_version(text: str | None) -> tuple[int, int] | None:
    """(major, minor) from `22.10.1`, `22.10.1+dfsg+~cs6-1`, `certified-20.7-cert5`."""
    if not text:
        return None
    match = re.search(r"(?<![0-9.])(\d{1,3})\.(\d{1,3})", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def has_d_option(version: tuple[int, int]) -> bool:
    """MixMonitor's D (interleaved stereo) exists from 20.11, 21.6 and 22.1."""
    major, minor = version
    return (major > 22 or (major == 22 and minor >= 1) or (major == 21 and minor >= 6)
            or (major == 20 and minor >= 11))


def has_mixmonitor_events(version: tuple[int, int]) -> bool:
    """MixMonitorStart/Stop/Mute AMI events exist from 16.17, 18.3 and 19.0."""
    major, minor = version
    return major >= 19 or (major == 18 and minor >= 3) or (major == 16 and minor >= 17)


# AMI protocol version (banner) -> Asterisk major version, when CoreSettings is refused
# (main/manager.h AMI_VERSION: 2.x on 13, 5.0.x on 16, 7.0.x on 18, 9.0.x on 20).
_BANNER_MAJOR = {"2": 13, "3": 14, "4": 15, "5": 16, "6": 17, "7": 18, "8": 19, "9": 20,
                 "10": 21, "11": 22}


def _probed_version(probe: AmiProbe) -> tuple[str | None, tuple[int, int] | None]:
    """CoreSettings' AsteriskVersion as said, and parsed (None: not known)."""
    raw = (probe.settings or {}).get("AsteriskVersion")
    return raw, parse_version(raw)


def _banner_guess(probe: AmiProbe) -> str:
    """What the AMI banner suggests when the version is not known: ` (AMI 9.0.0: Asterisk 20?)`."""
    major = _BANNER_MAJOR.get((probe.banner or "").split(".")[0])
    return f" (AMI {probe.banner}: Asterisk {major}?)" if major else ""


def version_result(probe: AmiProbe) -> CheckResult:
    name = "Asterisk version"
    raw, version = _probed_version(probe)
    if version is None:
        hint = _banner_guess(probe)
        return CheckResult(name, None, f"unknown{hint}: needs CoreSettings (write = "
                           "reporting); the dialplan falls back to r()/t() legs when unsure")
    if version[0] < 16:
        return CheckResult(name, False, f"Asterisk {raw} is older than 16, which the dialplan "
                           "snippets and event filter need")
    if has_d_option(version):
        return CheckResult(name, True, f"Asterisk {raw}: MixMonitor D option available "
                           "(one interleaved stereo file per recording)")
    return CheckResult(name, True, f"Asterisk {raw}: no MixMonitor D option (20.11+, 21.6+, "
                       "22.1+); the dialplan records r()/t() legs, merged into stereo here")


def mixmonitor_result(probe: AmiProbe) -> CheckResult:
    """Which of the events a recording shows as this Asterisk sends, and what
    the service opens recordings from there."""
    name = "MixMonitor events"
    seen: Counter[str] = Counter()
    for event in probe.events:
        kind = event.get("Event")
        if kind in ("MixMonitorStart", "MixMonitorStop"):
            seen[kind] += 1
        elif kind == "Newexten" and event.get("Application", "").lower() == "mixmonitor":
            seen["Newexten MixMonitor"] += 1
        elif kind == "VarSet" and event.get("Variable") == "MIXMONITOR_FILENAME":
            seen["VarSet MIXMONITOR_FILENAME"] += 1
    heard = (f"; seen while listening: {', '.join(f'{k} x{n}' for k, n in sorted(seen.items()))}"
             if seen else "")
    if seen["Newexten MixMonitor"] and not seen["VarSet MIXMONITOR_FILENAME"]:
        return CheckResult(name, False, "MixMonitor ran but no VarSet MIXMONITOR_FILENAME "
                           "arrived: the manager user's eventfilter drops it, and recordings "
                           "named relative to the monitor folder cannot be found. Use "
                           "dialplan/manager_miitel.conf's eventfilter lines" + heard)
    raw, version = _probed_version(probe)
    if version is None:
        guess = _banner_guess(probe)
        return CheckResult(name, None, f"unknown whether this Asterisk sends MixMonitorStart"
                           f"{guess}: it does from 16.17, 18.3 and 19; the service opens each "
                           "recording from whichever of MixMonitorStart, Newexten(MixMonitor) "
                           "and VarSet MIXMONITOR_FILENAME comes first" + heard)
    if has_mixmonitor_events(version):
        return CheckResult(name, True, f"Asterisk {raw} sends MixMonitorStart and "
                           "MixMonitorStop; recordings open at the first of MixMonitorStart, "
                           "Newexten(MixMonitor), VarSet MIXMONITOR_FILENAME or MiiTelRecording"
                           + heard)
    return CheckResult(name, True, f"Asterisk {raw} sends no MixMonitorStart/MixMonitorStop "
                       "(16.17+, 18.3+ and 19+ do): the service uses Newexten(MixMonitor) and "
                       "VarSet MIXMONITOR_FILENAME instead, and sees StopMixMonitor only as its "
                       "dialplan step (Newexten, also inside ExecIf); a StopMixMonitor sent over "
                       "AMI (FreePBX's on-demand stop) is not visible, so that recording ends "
                       "at hangup" + heard)


# -- MiiTel webhook host -------------------------------------------------------------


async def check_webhook(cfg: MiitelConfig) -> CheckResult:
    """DNS and a TLS handshake with the webhook's host. Nothing is sent; only
    scheme and host are ever shown (the URL's path is the credential)."""
    name = "MiiTel webhook host"
    if cfg.webhook_url is None:
        return CheckResult(name, False, "no webhook URL: set MIITEL_WEBHOOK_URL (or "
                           "miitel.webhook_url); calls wait in the outbox until then")
    parts = urlsplit(cfg.webhook_url.get_secret_value())
    host = parts.hostname or ""
    https = parts.scheme == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        return CheckResult(name, False, "the webhook URL has an invalid port")
    shown = redact_url(f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else ""))
    timeout = min(10.0, cfg.timeout)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (socket.gaierror, TimeoutError) as exc:
        return CheckResult(name, False, f"{shown}: DNS lookup failed ({_short(exc)}): check "
                           "this machine's DNS and the URL's host")
    addresses = sorted({str(info[4][0]) for info in infos})
    ctx: ssl.SSLContext | None = None
    if https:
        ctx = ssl.create_default_context()
        if not cfg.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        return CheckResult(name, False, f"{shown}: TLS certificate not trusted "
                           f"({exc.verify_message}): a proxy intercepting TLS, or an old CA "
                           "bundle on this machine")
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return CheckResult(name, False, f"{shown} ({', '.join(addresses[:3])}): "
                           f"{'TLS handshake' if https else 'connection'} failed "
                           f"({_short(exc)}): a firewall or proxy in the way?")
    detail = f"{shown} resolves ({', '.join(addresses[:3])})"
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        detail += f", TLS handshake ok ({ssl_object.version()}"
        cert = ssl_object.getpeercert()
        if cert and cert.get("notAfter"):
            until = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
            detail += f", certificate valid until {until:%Y-%m-%d}"
        detail += ")" if cfg.verify_tls else ", certificate NOT verified: miitel.verify_tls)"
    else:
        detail += ", TCP connect ok (plain HTTP: a stand-in; MiiTel itself uses https)"
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return CheckResult(name, True, detail)


# -- this machine ------------------------------------------------------------------


def _local_checks(config: Config) -> list[CheckResult]:
    return [
        recordings_result(config),
        outbox_result(config.outbox.path),
        work_dir_result(config.recordings.work_dir),
        disk_result(config),
        users_result(config),
    ]


def recordings_result(config: Config) -> CheckResult:
    name = "recordings folder"
    if not config.recordings.dirs:
        return CheckResult(name, False, "recordings.dirs is empty: the service reads "
                           "recordings only under these folders, so none can be sent; list the "
                           "folder(s) Asterisk records into")
    problems = []
    for _, host in recording_dirs(config):
        problem = check_access(host)
        if problem:
            problems.append(problem)
    if problems:
        return CheckResult(name, False, "; ".join(problems))
    shown = ", ".join(host for _, host in recording_dirs(config))
    return CheckResult(name, True, f"{shown} readable")


def _writable_dir(path: Path) -> tuple[bool, Path]:
    """Can this user create `path` (or write in it)? Looks at the nearest
    existing folder; creates nothing."""
    current = path
    while not current.exists() and current.parent != current:
        current = current.parent
    return os.access(current, os.W_OK | os.X_OK), current


def outbox_result(path: Path) -> CheckResult:
    name = "outbox"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return CheckResult(name, False, f"{path} is not readable and writable by this "
                               "user: the service runs as its owner")
        ok, folder = _writable_dir(path.parent)
        if not ok:
            return CheckResult(name, False, f"{folder} is not writable: SQLite writes its "
                               "journal beside the database")
        return CheckResult(name, True, f"{path} writable")
    ok, folder = _writable_dir(path.parent)
    if not ok:
        return CheckResult(name, False, f"{path} does not exist and {folder} is not writable: "
                           "create the folder for the service's user (systemd: StateDirectory)")
    return CheckResult(name, True, f"{path} will be created on first start ({folder} writable)")


def work_dir_result(path: Path) -> CheckResult:
    ok, folder = _writable_dir(path)
    if not ok:
        return CheckResult("work folder", False, f"{folder} is not writable: converted "
                           "recordings are written to recordings.work_dir before upload")
    return CheckResult("work folder", True, f"{path} writable")


def disk_result(config: Config) -> CheckResult:
    need = config.recordings.min_free_mb * 1024 * 1024
    places = {"work folder": config.recordings.work_dir, "outbox": config.outbox.path.parent}
    for _, host in list(recording_dirs(config))[:1]:
        places["recordings"] = Path(host)
    free: dict[str, int] = {}
    for label, path in places.items():
        with contextlib.suppress(OSError):
            free[label] = free_bytes(path)
    if not free:
        return CheckResult("free disk", None, "could not read free space")
    low = [label for label, n in free.items() if n < need]
    shown = ", ".join(f"{label} {_size(n)}" for label, n in free.items())
    if low:
        return CheckResult("free disk", False, f"below recordings.min_free_mb "
                           f"({config.recordings.min_free_mb} MB) on {', '.join(low)}: {shown}")
    return CheckResult("free disk", True, f"{shown} free")


def outbox_extensions(path: Path) -> Counter[str] | None:
    """Extensions in the outbox's history (parties column) and how many calls
    each is in. None: no outbox. Opens read-only and creates no file."""
    if not path.exists():
        return None
    wal_open = (path.with_name(path.name + "-wal").exists()
                and path.with_name(path.name + "-shm").exists())
    # A live outbox (WAL files present) is read through them; a closed one as
    # immutable, which needs and creates no side file.
    mode = "mode=ro" if wal_open else "immutable=1"
    conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT parties FROM calls WHERE parties IS NOT NULL").fetchall()
    finally:
        conn.close()
    seen: Counter[str] = Counter()
    for (parties,) in rows:
        with contextlib.suppress(ValueError, TypeError):
            exts = {p.get("extension") for p in json.loads(parties) if isinstance(p, dict)}
            seen.update(e for e in exts if e)
    return seen


def users_result(config: Config) -> CheckResult:
    name = "MiiTel users"
    try:
        seen = outbox_extensions(config.outbox.path)
    except sqlite3.Error as exc:
        return CheckResult(name, None, f"could not read the outbox's history ({exc})")
    if seen is None:
        return CheckResult(name, None, f"{len(config.users)} user(s) configured; no outbox "
                           "history yet to compare with")
    missing = Counter({ext: n for ext, n in seen.items()
                       if (u := config.users.get(ext)) is None or u.miitel_user_id is None})
    if missing:
        listed = ", ".join(f"{ext} ({n} call{'s' if n > 1 else ''})"
                           for ext, n in missing.most_common(10))
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        return CheckResult(name, False, f"extensions in calls without a MiiTel user: "
                           f"{listed}{more}: add them to [users] (asterisk-miitel users "
                           "import FILE.csv), then `asterisk-miitel retry --all-set-aside`")
    return CheckResult(name, True, f"all {len(seen)} extension(s) seen in calls have a MiiTel "
                       f"user ({len(config.users)} configured)")


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


# -- what the service's user may read and write ------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceUser:
    name: str
    uid: int
    gids: frozenset[int]
    source: str  # where we learnt it: the unit's User=, or the config file's owner
    # Folders systemd creates for the service at start (StateDirectory=, ...).
    managed: tuple[Path, ...] = ()


def unit_settings(text: str) -> dict[str, list[str]]:
    """The [Service] settings of a systemd unit (each key: every value given)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, eq, value = line.partition("=")
        if eq and section == "Service":
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def service_user(config_path: Path | None, unit: Path = UNIT_FILE) -> ServiceUser | None:
    """Who the service runs as: the unit's User= (with its groups), else the
    owner of the config file. None: cannot tell."""
    import grp
    import pwd

    settings: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        settings = unit_settings(unit.read_text(encoding="utf-8"))
    name = (settings.get("User") or [""])[-1]
    source = f"User= in {unit}"
    try:
        if name:
            entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
        elif config_path is not None and config_path.exists():
            entry = pwd.getpwuid(config_path.stat().st_uid)
            source = f"the owner of {config_path}"
        else:
            return None
    except KeyError:
        return ServiceUser(name, -1, frozenset(), f"{source}: no such user")
    gids = {entry.pw_gid}
    gids |= {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    for key in ("Group", "SupplementaryGroups"):
        for value in settings.get(key, []):
            for group in value.split():
                with contextlib.suppress(KeyError, ValueError):
                    gids.add(grp.getgrnam(group).gr_gid if not group.isdigit() else int(group))
    managed = []
    for key, base in (("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache"),
                      ("LogsDirectory", "/var/log"), ("RuntimeDirectory", "/run")):
        for value in settings.get(key, []):
            managed += [Path(base) / d for d in value.split()]
    return ServiceUser(entry.pw_name, entry.pw_uid, frozenset(gids), source, tuple(managed))


def may(user: ServiceUser, path: Path, want: str) -> str | None:
    """Can `user` do `want` ("r", "w", "x" or combinations) on `path`, going by
    the mode bits of it and of every folder above it? None: yes; else why not."""
    if user.uid == 0:
        return None
    bits = {"r": 4, "w": 2, "x": 1}

    def allowed(st: os.stat_result, need: int) -> bool:
        if st.st_uid == user.uid:
            have = (st.st_mode >> 6) & 7
        elif st.st_gid in user.gids:
            have = (st.st_mode >> 3) & 7
        else:
            have = st.st_mode & 7
        return have & need == need

    path = Path(os.path.abspath(path))
    for folder in reversed(path.parents):
        try:
            st = folder.stat()
        except OSError as exc:
            return f"{folder}: {exc.strerror}"
        if not allowed(st, 1):
            return f"{folder} is not searchable (x) for {user.name}"
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    need = sum(bits[c] for c in want)
    if not allowed(st, need):
        words = {"r": "readable", "w": "writable", "x": "searchable"}
        return (f"{path} ({_owner_text(st)}, {st.st_mode & 0o777:04o}) is not "
                f"{'/'.join(words[c] for c in want)} by {user.name}")
    return None


def _owner_text(st: os.stat_result) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def service_user_results(config: Config, *, config_path: Path | None,
                         env_file: Path | None = None, unit: Path = UNIT_FILE
                         ) -> list[CheckResult]:
    """Can the service's user read every file it needs and write where it writes?
    Checked from the mode bits, so it also tells the truth when run as root."""
    name = "service user's files"
    user = service_user(config_path, unit)
    if user is None:
        return [CheckResult(name, None, "unknown user (no unit file, no config file): not "
                            "checked")]
    if user.uid < 0:
        return [CheckResult(name, False, f"{user.source}: create it (useradd --system ...)")]
    problems: list[str] = []
    checked: list[str] = []

    def need(path: Path | None, want: str, what: str) -> None:
        if path is None:
            return
        if not path.exists() and want == "rwx":
            if any(path == m or m in path.parents for m in user.managed):
                checked.append(f"{what} (systemd creates it)")
                return
            existing = path
            while not existing.exists() and existing.parent != existing:
                existing = existing.parent
            path = existing
        problem = may(user, path, want)
        if problem:
            problems.append(f"{what}: {problem}")
        else:
            checked.append(what)

    need(config_path, "r", "config")
    need(config.users_file, "r", "users file")
    need(config.outbox.path.parent, "rwx", "outbox folder")
    need(config.recordings.work_dir, "rwx", "work folder")
    for directory, host in recording_dirs(config):
        need(Path(host), "rx", f"recordings {directory}")
    results = []
    if problems:
        results.append(CheckResult(name, False, f"{user.name} ({user.source}): "
                                   + "; ".join(problems)
                                   + ": fix the owner/group/mode (chgrp/chmod) so it can"))
    else:
        results.append(CheckResult(name, True, f"{user.name} ({user.source}) can use: "
                                   + ", ".join(checked)))
    if env_file is not None:
        results.append(env_file_result(env_file))
    return results


def env_file_result(env_file: Path) -> CheckResult:
    """systemd reads the env file as root, so it may (and should) be root's only."""
    name = "env file"
    try:
        st = env_file.stat()
    except OSError as exc:
        return CheckResult(name, False, f"{env_file}: {exc.strerror}")
    if st.st_mode & 0o077:
        return CheckResult(name, False, f"{env_file} is {st.st_mode & 0o777:04o}: it holds "
                           f"the secrets; chmod 0600 {env_file} (systemd reads it as root)")
    return CheckResult(name, True, f"{env_file} is {st.st_mode & 0o777:04o} "
                       f"({_owner_text(st)}): only its owner reads the secrets")
