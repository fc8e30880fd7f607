"""Free-space checks, so that converting a large recording never fills the disk.

Asterisk, its recordings and our work folder often share one disk: a full
disk there stops Asterisk from recording any call, which is far worse than
one recording not uploaded.
"""

from __future__ import annotations

import os
import shutil

# Keep this much free beyond what a conversion needs.
DEFAULT_RESERVE_BYTES = 256 * 1024 * 1024


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes available to this (unprivileged) user on the disk holding `path`.

    Walks up to the nearest existing folder, so it works for a work folder
    not created yet.
    """
    current = os.path.abspath(os.fspath(path))
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return shutil.disk_usage(current).free


def disk_space_problem(
    work_dir: str | os.PathLike[str],
    needed_bytes: int = 0,
    *,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
) -> str | None:
    """A message when `work_dir`'s disk cannot take `needed_bytes` and keep `reserve_bytes` free.

    None when there is room. `needed_bytes` is the size of the file about to
    be written (see convert.estimate_output_bytes); 0 checks the reserve only.
    """
    free = free_bytes(work_dir)
    if free >= needed_bytes + reserve_bytes:
        return None
    what = f"a {_mb(needed_bytes)} conversion and " if needed_bytes else ""
    return (
        f"only {_mb(free)} free on the disk holding {os.fspath(work_dir)}: not enough for "
        f"{what}the {_mb(reserve_bytes)} kept free for Asterisk's own recordings. "
        "Free some space, or set the service's work folder on a larger disk"
    )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"
