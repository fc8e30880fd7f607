"""How much audio a recording file holds, from its size or its header.

Used after a restart, when the journal cannot tell whether a call was
answered: audio in the file means someone was bridged (calls/restore.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import RecordingError
from .probe import probe

if TYPE_CHECKING:
    from .allowed import AllowedDirs

RAW_SUFFIXES = (".raw", ".sln", ".slin")  # headerless 16-bit signed linear


def recording_seconds(path: str, mode: str, rate: int,
                      allowed: AllowedDirs | None = None) -> float | None:
    """How much audio a finished recording holds, from its size or header.
    With `allowed`, a name outside the path rule is never looked at (None)."""
    if allowed is not None and not allowed.permits(path):
        return None
    try:
        size = os.stat(path).st_size
        if path.lower().endswith(RAW_SUFFIXES):
            channels = 2 if mode == "interleaved" else 1
            return size / (2 * channels * rate)
        return probe(path, allowed.open_file if allowed is not None else None).duration
    except (OSError, RecordingError):
        return None
