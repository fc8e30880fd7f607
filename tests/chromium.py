"""A real headless Chromium (Debian's `chromium` package) for the console tests.

    page = load(url, artifacts_dir / "console.png")   # the DOM after load, and a screenshot

`ensure_chromium()` installs the package with apt-get when it is missing (as
tests/lab/rootfs.py does for the lab's host tools): CI starts from a clean
machine. Artifacts go under $ASTERISK_MIITEL_ARTIFACTS, else tests/artifacts/
(gitignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = ("chromium", "chromium-browser")


class ChromiumUnavailable(Exception):
    pass


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("ASTERISK_MIITEL_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def find_chromium() -> str | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    """The chromium binary, installed from Debian's registry if missing."""
    found = find_chromium()
    if found:
        return found
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        raise ChromiumUnavailable("chromium is not installed and only root on Linux can "
                                  "install it (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    upd = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
    # fonts-liberation: chromium only recommends it, and a screenshot needs a font
    inst = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium",
                           "fonts-liberation"], env=env, capture_output=True, text=True)
    found = find_chromium()
    if inst.returncode != 0 or not found:
        tail = "\n".join((upd.stdout + upd.stderr + inst.stdout + inst.stderr).splitlines()[-25:])
        raise ChromiumUnavailable(f"apt-get could not install chromium:\n{tail}")
    return found


def load(url: str, screenshot: Path, *, size: str = "1280,900", timeout: float = 60.0) -> str:
    """Load `url` in headless Chromium with no network beyond it; return the DOM
    after load and write a PNG screenshot of the window. (--dump-dom needs
    JavaScript on in the browser; the pages carry no script, which their CSP
    forbids anyway.)"""
    binary = ensure_chromium()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={size}",
             f"--screenshot={screenshot}", "--dump-dom", url],
            capture_output=True, text=True, timeout=timeout,
        )
    if result.returncode != 0 or not screenshot.exists():
        raise AssertionError(f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


if __name__ == "__main__":  # `python -m tests.chromium`: install it ahead of a test run
    print(ensure_chromium())
