"""The lab: a real Asterisk on ports 15038/15060, 22 (Debian sid) or a built 16/18/20.

    with Lab() as lab:                      # Asterisk 22, Debian sid's package, in a chroot
    with Lab(asterisk="18") as lab:         # 18.26.4 built from ../shared/asterisk (build.py)
        print(lab.asterisk_version)
        callee = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
        lab.sipp("uac_talk", ip=PHONES["1001"].ip, service="1002").check()
        callee.wait().check()

Asterisk runs in its own mount namespace (``unshare --mount``): /proc, /dev
and the run directory are bind-mounted into the chroot there, so every mount
disappears with the Asterisk process, whatever happens to the Python side.
The run directory (/tmp/asterisk-miitel-lab-XXXX) is mounted at the same
absolute path inside the chroot, so the file paths Asterisk reports over AMI
(MIXMONITOR_FILENAME, VM_MESSAGEFILE) are valid on the host. A built version
runs on the host itself (it was compiled against the host's libraries), in
the same kind of mount namespace, with chan_sip instead of chan_pjsip.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import build, rootfs
from .ami import AmiClient, AmiError, AmiMessage
from .rootfs import LabError, log
from .sipp import (
    SippProcess,
    SippResult,
    build_command,
    prepare_workdir,
    scenario_path,
    with_audio,
    write_inf,
)

HERE = Path(__file__).resolve().parent
MACHINE_LOCK = "/tmp/asterisk-miitel-lab.lock"


class LabBusy(LabError):
    """Another run kept the machine's one lab longer than we were willing to wait."""
REPO = HERE.parent.parent
CONF_DIR = HERE / "conf"
DIALPLAN_DIR = REPO / "dialplan"

AMI_HOST = "127.0.0.1"
AMI_PORT = 15038
SIP_HOST = "127.0.0.1"
SIP_PORT = 15060
FLAVOURS = ("plain", "freepbx", "freepbx-real")
# "22" is Debian sid's package; the others are built from source (build.VERSIONS).
ASTERISK_VERSIONS = ("22", *build.VERSIONS)


@dataclass(frozen=True)
class Device:
    """A SIP device played by sipp."""

    extension: str
    ip: str
    endpoint: str
    name: str


PHONES: dict[str, Device] = {
    "1001": Device("1001", "127.0.0.11", "desk-suzuki", "Suzuki Ichiro"),
    "1002": Device("1002", "127.0.0.12", "1002", "Ishikawa Jiro"),
    "1003": Device("1003", "127.0.0.13", "1003", "Ueda Saburo"),
}
TRUNK = Device("trunk", "127.0.0.20", "trunk", "carrier")
UAS_PORT = 5060  # Asterisk sends calls to every device on port 5060


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Ask the kernel to SIGTERM the child if the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def state_file(cache: Path | None = None) -> Path:
    return (cache or rootfs.cache_dir()) / f"lab-{AMI_PORT}.json"


def _port_busy(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:  # as Asterisk does: TIME_WAIT is no conflict
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Lab:
    """One running lab Asterisk. Use as a context manager, or start()/stop()."""

    ami_host = AMI_HOST
    ami_port = AMI_PORT
    sip_host = SIP_HOST
    sip_port = SIP_PORT
    admin_username = "admin"
    miitel_username = "miitel"

    def __init__(self, flavour: str = "plain", *, asterisk: str = "22", detach: bool = False,
                 keep_run_dir: bool | None = None, lock_wait: float | None = None) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        self.flavour = flavour
        # Which Asterisk: "22" (Debian sid), or "16"/"18"/"20" (or their full versions)
        # built from ../shared/asterisk; those have chan_sip, not chan_pjsip.
        if asterisk.split(".")[0] == "22":
            self.asterisk = "22"
        else:
            full = build.resolve(asterisk)
            self.asterisk = full.split(".")[0]
        self.prefix: Path | None = None  # a built Asterisk's install prefix
        # Seconds to wait for another run's lab (None: as long as it takes).
        self.lock_wait = lock_wait
        self.detach = detach
        self.keep_run_dir = (os.environ.get("ASTERISK_MIITEL_LAB_KEEP") == "1"
                             if keep_run_dir is None else keep_run_dir)
        self.root: Path | None = None
        self.run_dir: Path | None = None
        self.admin_secret = secrets.token_hex(12)
        self.miitel_secret = secrets.token_hex(12)
        self.asterisk_version = ""
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: AmiClient | None = None
        self._sipps: list[SippProcess] = []
        self._sipp_seq = 0
        self._lock = threading.Lock()
        self._stopped = True
        # freepbx-real: which generated dialplan, and its FastAGI stand-in
        self.freepbx_dialplan: str | None = None
        self._fastagi: object | None = None

    # -- paths -----------------------------------------------------------------
    def _run(self) -> Path:
        if self.run_dir is None:
            raise LabError("the lab is not started")
        return self.run_dir

    @property
    def built(self) -> bool:
        """True for the versions built from source (run on the host, chan_sip)."""
        return self.asterisk != "22"

    @property
    def tech(self) -> str:
        """The SIP channel technology of the phones and the trunk: PJSIP or SIP."""
        return "SIP" if self.built else "PJSIP"

    def device(self, ext_or_trunk: str) -> str:
        """The channel prefix Asterisk gives a device: PJSIP/desk-suzuki, SIP/trunk, ..."""
        dev = TRUNK if ext_or_trunk == "trunk" else PHONES[ext_or_trunk]
        return f"{self.tech}/{dev.endpoint}"

    @property
    def etc_dir(self) -> Path:
        return self._run() / "etc"

    @property
    def spool_dir(self) -> Path:
        return self._run() / "spool"

    @property
    def recordings_dir(self) -> Path:
        """Asterisk's monitor directory: where MixMonitor writes (same path in and out)."""
        return self.spool_dir / "monitor"

    @property
    def voicemail_dir(self) -> Path:
        return self.spool_dir / "voicemail"

    @property
    def log_dir(self) -> Path:
        return self._run() / "log"

    @property
    def dialplan_mount(self) -> Path:
        """Where the repo's dialplan/ is mounted read-only (the files users install)."""
        return self._run() / "dialplan"

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Lab:
        reason = rootfs.unavailable_reason()
        if reason:
            raise LabError(reason)
        t0 = time.monotonic()
        self._take_machine_lock()
        try:
            rootfs.ensure_host_tools()
            if self.built:
                self.prefix = build.ensure_build(self.asterisk)
            else:
                self.root = rootfs.ensure_root()
        except BaseException:
            self._release_machine_lock()
            raise
        self._reap_orphan()
        for port, kind, what in ((AMI_PORT, socket.SOCK_STREAM, "AMI"),
                                 (SIP_PORT, socket.SOCK_DGRAM, "SIP")):
            if _port_busy("127.0.0.1", port, kind):
                raise LabError(f"port {port} ({what}) is in use: another lab running? "
                               f"try: python -m tests.lab stop")
        self.run_dir = Path(tempfile.mkdtemp(prefix="asterisk-miitel-lab-"))
        self.run_dir.chmod(0o755)
        for sub in ("etc", "spool/monitor", "spool/voicemail", "log", "run", "lib", "cache",
                    "dialplan", "sipp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._stopped = False
        if not self.detach:
            atexit.register(self.stop)
        try:
            self._write_config()
            self._launch()
            self._wait_ready()
            self.use_flavour(self.flavour, force=True)
        except BaseException:
            self.stop()
            raise
        self._save_state()
        log(f"Asterisk up in {time.monotonic() - t0:.1f} s: {self.asterisk_version} "
            f"(AMI {AMI_HOST}:{AMI_PORT}, SIP {SIP_HOST}:{SIP_PORT}, run dir {self.run_dir})")
        return self

    def _modules_dir(self) -> str:
        if self.prefix is not None:
            return str(self.prefix / "lib/asterisk/modules")
        assert self.root is not None
        found = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not found:
            raise LabError(f"no Asterisk modules directory in {self.root}")
        return "/" + str(found[0].relative_to(self.root))

    def _dirs(self) -> dict[str, str]:
        """Asterisk's read-only directories: the chroot's, or the built prefix's."""
        if self.prefix is None:
            return {"@VARLIBDIR@": "/var/lib/asterisk", "@DATADIR@": "/usr/share/asterisk",
                    "@AGIDIR@": "/usr/share/asterisk/agi-bin", "@SBINDIR@": "/usr/sbin"}
        varlib = self.prefix / "var/lib/asterisk"
        return {"@VARLIBDIR@": str(varlib), "@DATADIR@": str(varlib),
                "@AGIDIR@": str(varlib / "agi-bin"), "@SBINDIR@": str(self.prefix / "sbin")}

    def _tokens(self) -> dict[str, str]:
        run = self._run()
        pjsip = not self.built
        return {"@RUN@": str(run), "@ETC@": str(run / "etc"), "@MODDIR@": self._modules_dir(),
                **self._dirs(),
                # how the dialplan reaches the devices: PJSIP/x or SIP/x, and the trunk
                # PJSIP/<number>@trunk or SIP/trunk/<number> (before and after the number)
                "@TECH@": self.tech, "@TRUNK_PRE@": "PJSIP/" if pjsip else "SIP/trunk/",
                "@TRUNK_POST@": "@trunk" if pjsip else "",
                "@DIALPLAN@": str(self.dialplan_mount), "@AMI_PORT@": str(AMI_PORT),
                "@SIP_PORT@": str(SIP_PORT), "@ADMIN_SECRET@": self.admin_secret,
                "@MIITEL_SECRET@": self.miitel_secret,
                # as a FreePBX admin would set them: the trunk's and the phones' context
                "@PHONE_CONTEXT@": ("miitel-from-internal" if self.flavour == "freepbx"
                                    else "from-internal"),
                "@TRUNK_CONTEXT@": ("miitel-from-pstn" if self.flavour == "freepbx"
                                    else "from-trunk")}

    def _render(self, src: Path, dst: Path) -> None:
        text = src.read_text(encoding="utf-8")
        for token, value in self._tokens().items():
            text = text.replace(token, value)
        dst.write_text(text, encoding="utf-8")

    def _write_config(self) -> None:
        etc = self.etc_dir
        for src in CONF_DIR.glob("*.conf"):
            # extensions.conf is a one-line #include of the current flavour's file
            name = "extensions-plain.conf" if src.name == "extensions.conf" else src.name
            self._render(src, etc / name)
        (etc / "freepbx-style").mkdir(exist_ok=True)
        # what FreePBX users get with "#include miitel-record.conf": a file in astetcdir
        (etc / "miitel-record.conf").symlink_to(self.dialplan_mount / "miitel-record.conf")
        for src in (CONF_DIR / "freepbx-style").iterdir():
            if src.is_file():
                self._render(src, etc / "freepbx-style" / src.name)
        self._write_extensions(self.flavour)

    def _write_extensions(self, flavour: str) -> None:
        target = (self.etc_dir / "freepbx-style" / "extensions.conf" if flavour == "freepbx"
                  else self.etc_dir / "freepbx-real-extensions.conf"
                  if flavour == "freepbx-real" else self.etc_dir / "extensions-plain.conf")
        (self.etc_dir / "extensions.conf").write_text(
            f"; the lab's {flavour} dialplan (switch with Lab.use_flavour)\n"
            f'#include "{target}"\n')

    def _launch(self) -> None:
        if self.prefix is not None:
            self._launch_built(self.prefix)
            return
        assert self.root is not None
        root, run = self.root, self._run()
        inside = f"{root}{run}"
        script = "\n".join([
            "set -e",
            f"mount --bind /proc {shlex.quote(str(root / 'proc'))}",
            f"mount --bind /dev {shlex.quote(str(root / 'dev'))}",
            # a private /tmp: Asterisk's temp files and our mount point vanish with it
            f"mount -t tmpfs -o mode=1777 lab-tmp {shlex.quote(str(root / 'tmp'))}",
            f"mkdir -p {shlex.quote(inside)}",
            f"mount --bind {shlex.quote(str(run))} {shlex.quote(inside)}",
            f"mount --bind {shlex.quote(str(DIALPLAN_DIR))} {shlex.quote(inside + '/dialplan')}",
            f"mount -o remount,bind,ro {shlex.quote(inside + '/dialplan')}",
            f"exec chroot {shlex.quote(str(root))} /usr/sbin/asterisk -f -C "
            f"{shlex.quote(str(run / 'etc' / 'asterisk.conf'))}",
        ])
        self._spawn(script)

    def _launch_built(self, prefix: Path) -> None:
        """A built Asterisk runs on the host: its paths are the host's already; only the
        read-only dialplan mount needs the private mount namespace."""
        mount = str(self.dialplan_mount)
        script = "\n".join([
            "set -e",
            f"mount --bind {shlex.quote(str(DIALPLAN_DIR))} {shlex.quote(mount)}",
            f"mount -o remount,bind,ro {shlex.quote(mount)}",
            f"exec {shlex.quote(str(prefix / 'sbin/asterisk'))} -f -C "
            f"{shlex.quote(str(self.etc_dir / 'asterisk.conf'))}",
        ])
        self._spawn(script)

    def _spawn(self, script: str) -> None:
        out = open(self.log_dir / "asterisk.stdout", "wb")
        self._proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if self.detach else _set_pdeathsig)
        out.close()
        self.pid = self._proc.pid

    @property
    def running(self) -> bool:
        """Started, not stopped, and its Asterisk process still there."""
        return not self._stopped and self._alive()

    def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        if self.pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"asterisk" in cmdline

    def _startup_failure(self, what: str) -> LabError:
        tail = ""
        for name in ("asterisk.stdout", "full", "messages"):
            path = self.log_dir / name
            if path.exists():
                tail += f"\n--- {name} ---\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-25:])
        return LabError(f"Asterisk {what}{tail}")

    def _wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self._alive():
                raise self._startup_failure("exited during startup")
            try:
                with socket.create_connection((AMI_HOST, AMI_PORT), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._startup_failure(f"did not open AMI on port {AMI_PORT} "
                                            f"within {timeout:.0f} s")
            time.sleep(0.1)
        admin = self.admin()
        try:
            admin.wait_for(lambda m: m.event == "FullyBooted", timeout=timeout)
        except AmiError as exc:
            raise self._startup_failure("never became FullyBooted") from exc
        settings = admin.action("CoreSettings")
        self.asterisk_version = settings.get("AsteriskVersion")
        if not self.asterisk_version:
            cmd = ([str(self.prefix / "sbin/asterisk"), "-V"] if self.prefix is not None
                   else ["chroot", str(self.root), "asterisk", "-V"])
            self.asterisk_version = subprocess.run(cmd, capture_output=True,
                                                   text=True).stdout.strip()

    def admin(self) -> AmiClient:
        """The lab's own AMI connection (user admin, events on, kept for waiting)."""
        with self._lock:
            if self._admin is None or not self._admin.connected:
                self._admin = AmiClient(AMI_HOST, AMI_PORT, self.admin_username,
                                        self.admin_secret).connect()
            return self._admin

    def connect(self, username: str = "admin", *, events: bool = True,
                sink: BinaryIO | None = None) -> AmiClient:
        """A new AMI connection as ``admin`` or ``miitel`` (the caller closes it)."""
        secret = {"admin": self.admin_secret, "miitel": self.miitel_secret}[username]
        return AmiClient(AMI_HOST, AMI_PORT, username, secret, events=events,
                         sink=sink).connect()

    def _take_machine_lock(self) -> None:
        """One lab per machine (fixed ports): a second test run waits for the first."""
        import fcntl

        self._lock_file = open(MACHINE_LOCK, "a+")  # held until stop()
        deadline = None if self.lock_wait is None else time.monotonic() + self.lock_wait
        said = False
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    self._release_machine_lock()
                    raise LabBusy(f"another run has held the lab ({MACHINE_LOCK}) for "
                                  f"{self.lock_wait:.0f} s") from None
                if not said:
                    log(f"another lab is running on this machine: waiting for it "
                        f"({MACHINE_LOCK})")
                    said = True
                time.sleep(0.5)

    def _release_machine_lock(self) -> None:
        lock = getattr(self, "_lock_file", None)
        if lock is not None:
            lock.close()  # closing releases the flock
            self._lock_file = None

    def stop(self) -> None:
        """Stop Asterisk (core stop now, then signals), sipp, and clean up. Idempotent."""
        if self._stopped:
            self._release_machine_lock()
            return
        self._stopped = True
        for proc in self._sipps:
            proc.kill()
        self._sipps.clear()
        if self._fastagi is not None:
            self._fastagi.stop()  # type: ignore[attr-defined]
            self._fastagi = None
        if self._alive():
            with suppress(Exception):
                self.admin().command("core stop now", timeout=5)
            self._wait_exit(10)
        if self._alive() and self.pid is not None:
            log("Asterisk did not stop on 'core stop now': SIGTERM")
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self._wait_exit(5)
        if self._alive() and self.pid is not None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait_exit(5)
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._cleanup_paths()
        with suppress(OSError):
            sf = state_file()
            if sf.exists() and json.loads(sf.read_text()).get("run_dir") == str(self.run_dir):
                sf.unlink()
        with suppress(Exception):
            atexit.unregister(self.stop)
        self._release_machine_lock()

    def _wait_exit(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._proc is not None and self._proc.poll() is not None:
            self._proc.wait()

    def _cleanup_paths(self) -> None:
        if self.run_dir is None:
            return
        if self.root is not None:
            # mount points made in the cached root when the run dir is not under /tmp
            inside = Path(f"{self.root}{self.run_dir}")
            with suppress(OSError):
                (inside / "dialplan").rmdir()
            with suppress(OSError):
                inside.rmdir()
        if not self.keep_run_dir and not [m for m in _host_mounts()
                                          if m.startswith(str(self.run_dir))]:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif self.keep_run_dir:
            log(f"kept the run directory {self.run_dir}")

    # -- detached use (python -m tests.lab start/stop/status) -------------------
    def _save_state(self) -> None:
        if not self.detach:
            return
        state_file().parent.mkdir(parents=True, exist_ok=True)
        state_file().write_text(json.dumps({
            "pid": self.pid, "run_dir": str(self.run_dir), "root": str(self.root),
            "admin_secret": self.admin_secret, "miitel_secret": self.miitel_secret,
            "asterisk_version": self.asterisk_version, "flavour": self.flavour,
            "asterisk": self.asterisk, "prefix": str(self.prefix) if self.prefix else None},
            indent=2))
        state_file().chmod(0o600)

    @classmethod
    def attach(cls) -> Lab:
        """The lab a detached ``start`` left running (raises LabError if none)."""
        sf = state_file()
        if not sf.exists():
            raise LabError("no lab is running (no state file)")
        data = json.loads(sf.read_text())
        lab = cls(flavour=data.get("flavour", "plain"), asterisk=data.get("asterisk", "22"),
                  detach=True)
        lab.pid = int(data["pid"])
        lab.run_dir = Path(data["run_dir"])
        lab.root = Path(data["root"]) if data.get("root") not in (None, "None") else None
        lab.prefix = Path(data["prefix"]) if data.get("prefix") else None
        lab.admin_secret = data["admin_secret"]
        lab.miitel_secret = data["miitel_secret"]
        lab.asterisk_version = data.get("asterisk_version", "")
        lab._stopped = False
        return lab

    def _reap_orphan(self) -> None:
        """Clean up after a detached lab whose Asterisk is gone (a running one stays)."""
        sf = state_file()
        if not sf.exists():
            return
        with suppress(Exception):
            old = Lab.attach()
            if old._alive():
                return
            old._stopped = True
            old._cleanup_paths()
        with suppress(OSError):
            sf.unlink()

    # -- dialplan flavours ------------------------------------------------------------
    def use_flavour(self, flavour: str, *, force: bool = False,
                    dialplan: str | None = None) -> None:
        """Switch extensions.conf between the plain lab, the FreePBX-style one and
        freepbx-real (`dialplan`: which generated FreePBX dialplan, see freepbx_real.py)."""
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        if flavour == self.flavour and not force and (
                flavour != "freepbx-real" or dialplan in (None, self.freepbx_dialplan)):
            return
        previous, self.flavour = self.flavour, flavour
        self._render(CONF_DIR / "pjsip.conf", self.etc_dir / "pjsip.conf")
        self._render(CONF_DIR / "sip.conf", self.etc_dir / "sip.conf")
        if "freepbx-real" in (flavour, previous):
            self._switch_freepbx_real(flavour, dialplan)
        self._write_extensions(flavour)
        if flavour != previous or flavour == "freepbx-real":
            self.admin().command("sip reload" if self.built else "module reload res_pjsip.so")
        out = self.admin().command("dialplan reload")
        if "error" in out.lower() and "0 errors" not in out.lower():
            raise LabError(f"dialplan reload failed: {out}")
        if flavour == "freepbx":
            self._load_freepbx_astdb()
        if "freepbx-real" in (flavour, previous):
            # after the dialplan: queue members watch hints it defines
            for module in ("app_queue.so", "app_voicemail.so", "features"):
                self.admin().command(f"module reload {module}")
        self.check_dialplan()

    def _switch_freepbx_real(self, flavour: str, dialplan: str | None) -> None:
        from . import freepbx_real
        from .fastagi import FastAgi

        if flavour == "freepbx-real":
            variant = freepbx_real.install(self, dialplan or self.freepbx_dialplan
                                           or "freepbx16-ast18-a")
            self.freepbx_dialplan = variant.name
            if self._fastagi is None:
                self._fastagi = FastAgi().start()
            for key, value in freepbx_real.astdb(variant, self.tech).items():
                family, _, k = key.partition("/")
                resp = self.admin().action("DBPut", Family=family, Key=k, Val=value)
                if resp.get("Response") != "Success":
                    raise LabError(f"DBPut {key} failed: {resp.get('Message')}")
        else:
            freepbx_real.uninstall(self)
            self.freepbx_dialplan = None
            if isinstance(self._fastagi, FastAgi):
                self._fastagi.stop()
            self._fastagi = None

    @property
    def fastagi(self) -> object | None:
        """The FastAGI stand-in (tests.lab.fastagi.FastAgi) while freepbx-real runs."""
        return self._fastagi

    def _load_freepbx_astdb(self) -> None:
        path = self.etc_dir / "freepbx-style" / "astdb.txt"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            family, _, k = key.strip().partition("/")
            resp = self.admin().action("DBPut", Family=family, Key=k, Val=value.strip())
            if resp.get("Response") != "Success":
                raise LabError(f"DBPut {key} failed: {resp.get('Message')}")

    def check_dialplan(self) -> None:
        """Fail loudly if a context the lab relies on did not load."""
        needed = ["miitel-record", "miitel-tag", "miitel-group", "from-internal", "from-trunk"]
        if self.flavour == "freepbx":
            needed += ["sub-record-check", "macro-dialout-trunk", "from-queue",
                       "miitel-freepbx-sync", "miitel-from-pstn", "miitel-from-internal"]
        if self.flavour == "freepbx-real":
            from . import freepbx_real
            freepbx_real.check(self)
            return
        for ctx in needed:
            out = self.admin().command(f"dialplan show {ctx}")
            if "There is no existence" in out or f"'{ctx}'" not in out:
                log_tail = self.log_tail()
                raise LabError(f"context [{ctx}] did not load ({self.flavour} flavour)\n"
                               f"{out}\n{log_tail}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / "full"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- calls -------------------------------------------------------------------------
    def originate(self, channel: str, *, exten: str | None = None, context: str | None = None,
                  priority: int = 1, application: str | None = None, data: str | None = None,
                  caller_id: str | None = None, variables: dict[str, str] | None = None,
                  timeout_ms: int = 30000, wait: bool = False) -> AmiMessage:
        """AMI Originate as admin. Async unless wait=True (then returns when answered)."""
        headers: dict[str, str] = {"Channel": channel, "Timeout": str(timeout_ms),
                                   "Async": "false" if wait else "true"}
        if application:
            headers["Application"] = application
            if data is not None:
                headers["Data"] = data
        else:
            headers.update({"Context": context or "from-internal", "Exten": exten or "s",
                            "Priority": str(priority)})
        if caller_id:
            headers["CallerID"] = caller_id
        resp = self.admin().action("Originate", variables=variables,
                                   timeout=timeout_ms / 1000 + 5, **headers)
        if resp.get("Response") != "Success":
            raise LabError(f"Originate {channel} failed: {resp.get('Message')}")
        return resp

    def mark(self) -> int:
        """A bookmark in the admin connection's events (see events_since / wait_event)."""
        return len(self.admin().events)

    def events_since(self, mark: int) -> list[AmiMessage]:
        return list(self.admin().events[mark:])

    def wait_event(self, predicate: Callable[[AmiMessage], bool], *, since: int = 0,
                   timeout: float = 10.0) -> AmiMessage:
        """Wait for an admin-visible event (all events are visible to admin)."""
        return self.admin().wait_for(predicate, timeout=timeout, start=since)

    def channels(self) -> list[AmiMessage]:
        """Live channels (CoreShowChannels)."""
        return self.admin().action_list("CoreShowChannels")

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until Asterisk has no channel left."""
        deadline = time.monotonic() + timeout
        while self.channels():
            if time.monotonic() > deadline:
                names = [c.get("Channel") for c in self.channels()]
                raise LabError(f"channels still up after {timeout:.0f} s: {names}")
            time.sleep(0.2)

    def _next_sipp(self) -> int:
        with self._lock:
            self._sipp_seq += 1
            return self._sipp_seq

    def sipp_start(self, scenario: str | Path, *, ip: str, port: int | None = None,
                   uas: bool | None = None, service: str | None = None,
                   inf: Sequence[Sequence[str]] | None = None, calls: int = 1,
                   rate: float | None = None, limit: int | None = None,
                   duration_ms: int | None = None, timeout: float = 60.0,
                   extra: Sequence[str] = (), audio: str | None = None) -> SippProcess:
        """Start sipp in the background (a UAS must be listening before the call).

        ``ip`` picks the device (see PHONES/TRUNK). A UAS (scenario name starting
        with ``uas``) listens on port 5060, where Asterisk sends calls; a UAC gets
        a port of its own so it can run beside a UAS on the same address.
        ``inf`` rows become ``[field0]``, ``[field1]``... for successive calls.
        ``audio`` ("talk", "silent" or "tone-<Hz>") overrides what the scenario's party plays.
        """
        path = scenario_path(scenario)
        seq = self._next_sipp()
        is_uas = path.stem.startswith("uas") if uas is None else uas
        sip_port = port or (UAS_PORT if is_uas else 5100 + seq)
        media_port = 7000 + 10 * seq
        workdir = self._run() / "sipp" / f"{seq:03d}-{path.stem}-{ip}"
        workdir.mkdir(parents=True)
        prepare_workdir(workdir)
        if audio is not None:
            path = with_audio(path, workdir, audio)
        inf_path = None
        if inf:
            inf_path = workdir / "fields.csv"
            write_inf(inf_path, inf)
        cmd = build_command(path, ip=ip, port=sip_port, media_port=media_port,
                            target=f"{SIP_HOST}:{SIP_PORT}", service=service, inf=inf_path,
                            calls=calls, rate=rate, limit=limit, duration_ms=duration_ms,
                            timeout=timeout, extra=extra)
        proc = SippProcess(path.stem, cmd, workdir, timeout + 10)
        self._sipps.append(proc)
        if is_uas:
            _wait_udp_bound(ip, sip_port, proc)
        return proc

    def sipp(self, scenario: str | Path, **kwargs: object) -> SippResult:
        """Run sipp and return when it is done (see sipp_start for the arguments)."""
        return self.sipp_start(scenario, **kwargs).wait()  # type: ignore[arg-type]


def _wait_udp_bound(ip: str, port: int, proc: SippProcess, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            return
        if _port_busy(ip, port, socket.SOCK_DGRAM):
            return
        time.sleep(0.02)


def _host_mounts() -> list[str]:
    with open("/proc/self/mounts") as fh:
        return [line.split()[1].replace("\\040", " ") for line in fh]
