"""Catch-up and backfill: recorded calls the AMI listener never saw, rebuilt
from Asterisk's CDR (cdr_csv or a CDR database) and the recordings folder.
See docs/CATCHUP.md."""

from typing import Any

from .config import CatchupConfig

__all__ = ["CatchUp", "CatchUpReport", "CatchUpTask", "CatchupConfig", "status_lines"]


def __getattr__(name: str) -> Any:
    # The runner needs the whole configuration, and the configuration needs
    # CatchupConfig from here: load the runner only when it is asked for.
    if name in ("CatchUp", "CatchUpReport", "CatchUpTask", "status_lines"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
