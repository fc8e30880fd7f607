"""Catch-up and backfill: recorded calls the AMI listener never saw, rebuilt
from Asterisk's CDR (cdr_csv or a CDR database) and the recordings folder.
See docs/CATCHUP.md."""

from .config import CatchupConfig
from .runner import CatchUp, CatchUpReport, CatchUpTask, status_lines

__all__ = ["CatchUp", "CatchUpReport", "CatchUpTask", "CatchupConfig", "status_lines"]
