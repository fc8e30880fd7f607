"""Build and cache the Debian sid root that holds the lab's Asterisk.

Debian 12 has no Asterisk package; sid has Asterisk 22. debootstrap builds a
minimal sid root with asterisk in about 45 s; the root is cached under
``ASTERISK_MIITEL_LAB_CACHE`` (default /var/cache/asterisk-miitel-lab) and
rebuilt only when the package list (or the suite/mirror) changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/asterisk-miitel-lab")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
# Everything the lab needs inside the root. asterisk pulls asterisk-modules,
# asterisk-config and the English core sounds (voicemail prompts) as Depends.
PACKAGES: tuple[str, ...] = ("asterisk",)
# Host tools the lab drives from outside the root.
HOST_PACKAGES: tuple[str, ...] = ("debootstrap", "sip-tester", "sox")
HOST_TOOLS: dict[str, str] = {"debootstrap": "debootstrap", "sipp": "sip-tester", "sox": "sox"}

# Words in debootstrap's log that point at the package registry / network.
_REGISTRY_SIGNS = (
    "Failed getting release file",
    "Failed getting release signature",
    "Couldn't download",
    "Couldn't find these debs",
    "Temporary failure resolving",
    "Could not resolve",
    "Connection refused",
    "Connection timed out",
    "Unable to connect",
    "Invalid Release",
    "Release signed by unknown key",
    "Hash Sum mismatch",
    "404",
)


class LabError(RuntimeError):
    """The lab cannot run; the message says why and what to do."""


class LabBuildError(LabError):
    """The Debian root with Asterisk could not be built."""


@dataclass(frozen=True)
class RootSpec:
    """What goes into the root; its hash names the cached root."""

    packages: tuple[str, ...] = PACKAGES
    suite: str = SUITE
    mirror: str = DEFAULT_MIRROR
    variant: str = "minbase"

    @property
    def key(self) -> str:
        text = json.dumps(
            {"packages": sorted(self.packages), "suite": self.suite,
             "mirror": self.mirror, "variant": self.variant},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("ASTERISK_MIITEL_LAB_CACHE", str(DEFAULT_CACHE)))


def default_spec() -> RootSpec:
    return RootSpec(mirror=os.environ.get("ASTERISK_MIITEL_LAB_MIRROR", DEFAULT_MIRROR))


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"the Asterisk lab needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the Asterisk lab needs root (debootstrap, chroot, bind mounts)"
    return None


def ensure_host_tools() -> None:
    """apt-get install what the lab drives from the host, when missing."""
    missing = [pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None
               and not Path("/usr/sbin", tool).exists()]
    for extra in ("unshare", "mount", "chroot"):
        if shutil.which(extra) is None and not Path("/usr/sbin", extra).exists():
            raise LabError(f"'{extra}' is missing on this host (util-linux / coreutils)")
    if not missing:
        return
    if unavailable_reason() is not None:
        raise LabError(f"missing host tools {missing} and cannot install them: "
                       f"{unavailable_reason()}")
    log(f"installing host packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    upd = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
    inst = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                          env=env, capture_output=True, text=True)
    if inst.returncode != 0:
        tail = "\n".join((upd.stdout + upd.stderr + inst.stdout + inst.stderr).splitlines()[-25:])
        raise LabBuildError(
            "the Asterisk lab could not be set up because the package registry (apt) "
            f"failed to install {missing}:\n{tail}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stamp(root: Path) -> Path:
    return root.with_name(root.name + ".json")


def root_path(spec: RootSpec | None = None, cache: Path | None = None) -> Path:
    spec = spec or default_spec()
    return (cache or cache_dir()) / f"root-{spec.key}"


def is_built(root: Path) -> bool:
    return _stamp(root).is_file() and (root / "usr/sbin/asterisk").exists()


def ensure_root(spec: RootSpec | None = None, cache: Path | None = None,
                *, force: bool = False) -> Path:
    """Return the cached root for ``spec``, building it with debootstrap if needed."""
    spec = spec or default_spec()
    cache = cache or cache_dir()
    root = root_path(spec, cache)
    if not force and is_built(root):
        return root
    reason = unavailable_reason()
    if reason:
        raise LabError(reason)
    ensure_host_tools()
    with _locked(cache / ".build.lock"):
        if not force and is_built(root):
            return root
        _build(spec, root)
        _prune_old_roots(cache, keep=root)
    return root


def _build(spec: RootSpec, root: Path) -> None:
    tmp = root.with_name(root.name + f".building-{os.getpid()}")
    if tmp.exists():
        _remove_tree(tmp)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    cmd = [debootstrap, "--variant=" + spec.variant,
           "--include=" + ",".join(spec.packages), spec.suite, str(tmp), spec.mirror]
    log(f"building the Asterisk root (about a minute): {' '.join(cmd)}")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0 or not (tmp / "usr/sbin/asterisk").exists():
        tail = _debootstrap_tail(tmp, proc.stdout + proc.stderr)
        _remove_tree(tmp)
        text = tail.lower()
        if any(sign.lower() in text for sign in _REGISTRY_SIGNS):
            raise LabBuildError(
                f"the Asterisk lab could not be built because of the package registry "
                f"({spec.mirror}, suite {spec.suite}): debootstrap could not download "
                f"packages. Last lines of debootstrap's log:\n{tail}")
        raise LabBuildError(
            f"the Asterisk lab could not be built: debootstrap {spec.suite} from "
            f"{spec.mirror} failed (exit {proc.returncode}); if this is a network or "
            f"package registry problem, retry later. Last lines of its log:\n{tail}")
    version = subprocess.run(["chroot", str(tmp), "asterisk", "-V"],
                             capture_output=True, text=True).stdout.strip()
    # Drop what the lab never uses: the distro's sample configs stay, apt lists go.
    shutil.rmtree(tmp / "var/lib/apt/lists", ignore_errors=True)
    shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
    if root.exists():
        _remove_tree(root)
    tmp.rename(root)
    _stamp(root).write_text(json.dumps(
        {"packages": list(spec.packages), "suite": spec.suite, "mirror": spec.mirror,
         "variant": spec.variant, "asterisk": version, "built": time.time(),
         "seconds": round(time.monotonic() - t0, 1)}, indent=2) + "\n")
    log(f"built {root} ({version}) in {time.monotonic() - t0:.0f} s")


def _debootstrap_tail(tmp: Path, output: str, lines: int = 30) -> str:
    text = output
    logfile = tmp / "debootstrap/debootstrap.log"
    if logfile.is_file():
        text = text + "\n" + logfile.read_text(errors="replace")
    return "\n".join(line for line in text.splitlines()[-lines:])


def _mounted_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix[:-1]:
                out.append(target)
    return out


def _remove_tree(path: Path) -> None:
    mounted = _mounted_under(path)
    if mounted:
        raise LabError(f"refusing to delete {path}: still mounted: {mounted}")
    shutil.rmtree(path, ignore_errors=True)


def _prune_old_roots(cache: Path, keep: Path) -> None:
    for old in cache.glob("root-*"):
        if old == keep or old == _stamp(keep) or old.suffix == ".json":
            continue
        if old.is_dir() and not _mounted_under(old):
            log(f"removing outdated root {old}")
            shutil.rmtree(old, ignore_errors=True)
            _stamp(old).unlink(missing_ok=True)


def root_info(root: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(_stamp(root).read_text())
        return data
    except (OSError, ValueError):
        return {}
