"""Build and cache older Asterisk versions (16, 18, 20) from source for the lab.

Debian packages only Asterisk 22 (the sid root, rootfs.py). The PBXs in the
field also run 16, 18 and 20, whose differences matter to the service (no
MixMonitor ``D`` before 20.11, no MixMonitorStart before 16.17, app_macro and
chan_sip still there). Their sources are tarballs in ../shared/asterisk/;
this module builds one on the host (Debian 12's compiler and libraries) into
a prefix under the lab cache, once per version and build options:

    prefix = ensure_build("20.10.0")   # /var/cache/asterisk-miitel-lab/ast-20.10.0-<hash>
    prefix / "sbin/asterisk"

No download happens: the build runs in a network namespace of its own
(``unshare --net``), without pjproject (so the lab uses chan_sip), with
sounds and music on hold switched off in menuselect (the prompts voicemail
plays come from Debian's asterisk-core-sounds-en, installed with apt-get),
and with only the module families the lab and FreePBX dialplans use.
Same cache rules as the sid root: keyed by version, tarball and options,
built under a lock into a temporary name and renamed, older builds of the
same version pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .rootfs import LabBuildError, LabError, _locked, _mounted_under, cache_dir, log

REPO = Path(__file__).resolve().parents[2]
# The Debian 22 package is the sid root; these are built from ../shared/asterisk.
VERSIONS: dict[str, str] = {"16": "16.16.2", "18": "18.26.4", "20": "20.10.0"}
DEFAULT_SOURCES = REPO.parent / "shared" / "asterisk"

# What Debian 12 needs to configure and compile them, and the prompts voicemail plays.
BUILD_PACKAGES: tuple[str, ...] = (
    "build-essential", "pkg-config", "libjansson-dev", "libxml2-dev", "libsqlite3-dev",
    "uuid-dev", "libedit-dev", "libssl-dev", "libncurses-dev", "xz-utils",
    "asterisk-core-sounds-en-gsm", "asterisk-core-sounds-en")
SOUNDS_DIR = Path("/usr/share/asterisk/sounds")

# pjproject would be downloaded: without it chan_sip carries the lab's SIP.
# xmldoc only feeds the CLI's help texts and costs build time.
CONFIGURE: tuple[str, ...] = ("--without-pjproject-bundled", "--without-pjproject",
                              "--disable-xmldoc")
# Whole families switched off (sounds and MOH would be downloaded) ...
DISABLE_CATEGORIES: tuple[str, ...] = (
    "MENUSELECT_ADDONS", "MENUSELECT_CHANNELS", "MENUSELECT_RES", "MENUSELECT_CDR",
    "MENUSELECT_CEL", "MENUSELECT_PBX", "MENUSELECT_TESTS", "MENUSELECT_UTILS",
    "MENUSELECT_AGIS", "MENUSELECT_CORE_SOUNDS", "MENUSELECT_MOH", "MENUSELECT_EXTRA_SOUNDS")
# ... and back on, what the lab and the FreePBX dialplans use (apps, functions,
# bridges, codecs and formats keep their defaults). Names a version lacks are ignored.
ENABLE: tuple[str, ...] = (
    "chan_sip", "chan_bridge_media", "app_macro", "pbx_config", "cdr_csv", "cdr_custom",
    "res_rtp_asterisk", "res_musiconhold", "res_timing_timerfd", "res_agi", "res_parking",
    "res_monitor", "res_crypto", "res_sorcery_config", "res_sorcery_memory",
    "res_sorcery_astdb", "res_clioriginate", "res_convert", "res_limit", "res_mutestream")
# -march=native would tie the cached build to this CPU.
DISABLE: tuple[str, ...] = ("BUILD_NATIVE",)
# A build without these is no use to the lab: checked after the install.
REQUIRED_MODULES: tuple[str, ...] = (
    "chan_sip", "app_macro", "app_mixmonitor", "app_queue", "app_voicemail", "app_dial",
    "app_stack", "app_userevent", "pbx_config", "cdr_csv", "res_musiconhold",
    "res_rtp_asterisk", "func_cut", "func_strings", "func_logic", "func_version",
    "bridge_simple", "format_wav", "codec_alaw")


def sources_dir() -> Path:
    return Path(os.environ.get("ASTERISK_MIITEL_LAB_SOURCES", str(DEFAULT_SOURCES)))


def resolve(version: str) -> str:
    """'18' or '18.26.4' -> '18.26.4' (the versions the lab builds)."""
    full = VERSIONS.get(version, version)
    if full not in VERSIONS.values():
        raise ValueError(f"the lab builds Asterisk {sorted(VERSIONS)} "
                         f"({', '.join(VERSIONS.values())}), not {version!r}")
    return full


def tarball(version: str) -> Path:
    return sources_dir() / f"asterisk-{resolve(version)}.tar.xz"


@dataclass(frozen=True)
class BuildSpec:
    """One Asterisk build; its hash (with the tarball's) names the cached prefix."""

    version: str
    configure: tuple[str, ...] = CONFIGURE
    disable_categories: tuple[str, ...] = DISABLE_CATEGORIES
    enable: tuple[str, ...] = ENABLE
    disable: tuple[str, ...] = DISABLE
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return tarball(self.version)

    def key(self) -> str:
        digest = hashlib.sha256()
        with open(self.source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        text = json.dumps({"version": self.version, "configure": self.configure,
                           "disable_categories": self.disable_categories,
                           "enable": self.enable, "disable": self.disable,
                           "extra": self.extra, "tarball": digest.hexdigest()},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".json")


def is_built(prefix: Path) -> bool:
    return _stamp(prefix).is_file() and (prefix / "sbin/asterisk").exists()


def build_info(prefix: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(_stamp(prefix).read_text())
        return data
    except (OSError, ValueError):
        return {}


def prefix_path(spec: BuildSpec, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"ast-{spec.version}-{spec.key()}"


def cached_prefix(version: str, cache: Path | None = None) -> Path | None:
    """The finished build of `version` for the current options, if there is one."""
    spec = BuildSpec(resolve(version))
    if not spec.source.is_file():
        return None
    prefix = prefix_path(spec, cache)
    return prefix if is_built(prefix) else None


def missing_source(version: str) -> str | None:
    """Why `version` cannot be built here (its tarball is missing), or None."""
    path = tarball(version)
    if path.is_file():
        return None
    return (f"the Asterisk {resolve(version)} source {path} is missing "
            f"(../shared/asterisk/ beside the repo, or ASTERISK_MIITEL_LAB_SOURCES)")


def ensure_build_packages() -> None:
    """apt-get install the compiler, headers and prompts, when missing."""
    missing = [p for p in BUILD_PACKAGES if not _installed(p)]
    if not missing:
        return
    log(f"installing build packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    upd = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
    inst = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                          env=env, capture_output=True, text=True)
    if inst.returncode != 0:
        tail = "\n".join((upd.stdout + upd.stderr + inst.stdout + inst.stderr)
                         .splitlines()[-25:])
        raise LabBuildError(
            "the Asterisk lab could not build Asterisk because the package registry (apt) "
            f"failed to install {missing}:\n{tail}")


def _installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                         capture_output=True, text=True)
    return out.returncode == 0 and is_installed_status(out.stdout)


def is_installed_status(status: str) -> bool:
    """dpkg's `want ok state`: only the state `installed` counts. A package apt
    knows of but never installed reads `unknown ok not-installed`, which
    merely ends with the word."""
    return status.split()[-1:] == ["installed"]


def ensure_build(version: str, cache: Path | None = None, *, force: bool = False) -> Path:
    """The prefix of a built Asterisk `version` ('18' or '18.26.4'), building it if needed."""
    spec = BuildSpec(resolve(version))
    reason = missing_source(spec.version)
    if reason:
        raise LabError(reason)
    cache = cache or cache_dir()
    prefix = prefix_path(spec, cache)
    if not force and is_built(prefix):
        return prefix
    ensure_build_packages()
    with _locked(cache / f".build-ast-{spec.version}.lock"):
        if not force and is_built(prefix):
            return prefix
        _build(spec, prefix)
        _prune(cache, spec.version, keep=prefix)
    return prefix


def _run(cmd: list[str], cwd: Path, logfile: Path, what: str, spec: BuildSpec) -> None:
    """One build step, offline (its own network namespace), its output in `logfile`
    (kept as ast-<version>.failed.log beside the builds when a step fails)."""
    with open(logfile, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(["unshare", "--net", "--", *cmd], cwd=cwd, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-40:])
        raise LabBuildError(f"the Asterisk lab could not build Asterisk {spec.version}: "
                            f"{what} failed (exit {proc.returncode}); full log "
                            f"{_failed_log(spec, logfile)}. Last lines:\n{tail}")


def _failed_log(spec: BuildSpec, logfile: Path) -> Path:
    """Where a failed build's log stays: beside the builds (the work folder goes)."""
    return logfile.parent.parent / f"ast-{spec.version}.failed.log"


def _build(spec: BuildSpec, prefix: Path) -> None:
    work = prefix.with_name(prefix.name + f".building-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    logfile = work / "build.log"
    failed_log = _failed_log(spec, logfile)
    t0 = time.monotonic()
    log(f"building Asterisk {spec.version} from {spec.source} (about 2 minutes, once)")
    try:
        proc = subprocess.run(["tar", "-xJf", str(spec.source), "-C", str(work)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabBuildError(f"could not unpack {spec.source}: {proc.stderr.strip()}")
        src = work / f"asterisk-{spec.version}"
        if not (src / "configure").is_file():
            raise LabBuildError(f"{spec.source} holds no asterisk-{spec.version}/configure")
        jobs = str(max(2, os.cpu_count() or 2))
        _run(["./configure", f"--prefix={prefix}", *spec.configure], src, logfile,
             "configure", spec)
        t_conf = time.monotonic() - t0
        _run(["make", "menuselect.makeopts"], src, logfile, "menuselect", spec)
        menu = ["menuselect/menuselect"]
        for cat in spec.disable_categories:
            menu += ["--disable-category", cat]
        for name in spec.enable:
            menu += ["--enable", name]
        for name in spec.disable:
            menu += ["--disable", name]
        _run([*menu, "menuselect.makeopts"], src, logfile, "menuselect", spec)
        _run(["make", f"-j{jobs}"], src, logfile, "make", spec)
        t_make = time.monotonic() - t0 - t_conf
        stage = work / "stage"
        _run(["make", "install", f"DESTDIR={stage}"], src, logfile, "make install", spec)
        built = stage / str(prefix).lstrip("/")
        modules = built / "lib/asterisk/modules"
        missing = [m for m in REQUIRED_MODULES if not (modules / f"{m}.so").exists()]
        if missing:
            raise LabBuildError(f"Asterisk {spec.version} built without {missing} "
                                f"(menuselect); log {failed_log}")
        # The prompts (VoiceMail's greeting) are Debian's, not downloaded ones.
        sounds = built / "var/lib/asterisk/sounds"
        if sounds.is_symlink() or sounds.is_file():
            sounds.unlink()
        elif sounds.is_dir():
            shutil.rmtree(sounds)
        sounds.parent.mkdir(parents=True, exist_ok=True)
        sounds.symlink_to(SOUNDS_DIR)
        if prefix.exists():
            shutil.rmtree(prefix)
        built.rename(prefix)
        shutil.copy(logfile, prefix / "build.log")
        # (only from its final place: it finds libasteriskssl there)
        version = subprocess.run([str(prefix / "sbin/asterisk"), "-V"],
                                 capture_output=True, text=True).stdout.strip()
        if not version.startswith(f"Asterisk {spec.version}"):
            shutil.rmtree(prefix, ignore_errors=True)
            raise LabBuildError(f"the built Asterisk {spec.version} does not run: "
                                f"'asterisk -V' said {version!r}; log {failed_log}")
    except BaseException:
        if logfile.exists():
            shutil.copy(logfile, failed_log)
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    failed_log.unlink(missing_ok=True)
    seconds = round(time.monotonic() - t0, 1)
    _stamp(prefix).write_text(json.dumps(
        {"version": spec.version, "asterisk": version, "source": str(spec.source),
         "configure": list(spec.configure), "enable": list(spec.enable),
         "disable_categories": list(spec.disable_categories), "built": time.time(),
         "seconds": seconds, "configure_seconds": round(t_conf, 1),
         "make_seconds": round(t_make, 1), "jobs": int(jobs)}, indent=2) + "\n")
    log(f"built {prefix} ({version}) in {seconds:.0f} s "
        f"(configure {t_conf:.0f} s, make -j{jobs} {t_make:.0f} s)")


def _prune(cache: Path, version: str, keep: Path) -> None:
    """Remove older builds of the same version (other options or tarball)."""
    for old in cache.glob(f"ast-{version}-*"):
        if old == keep or old.suffix == ".json" or not old.is_dir():
            continue
        if _mounted_under(old):
            continue
        log(f"removing outdated build {old}")
        shutil.rmtree(old, ignore_errors=True)
        _stamp(old).unlink(missing_ok=True)
