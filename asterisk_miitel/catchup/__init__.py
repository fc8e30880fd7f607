"""Catch-up and backfill: recorded calls the AMI listener never saw, rebuilt
from Asterisk's CDR (cdr_csv or a CDR database) and the recordings folder.
See docs/CATCHUP.md.

The runner (CatchUp, CatchUpTask, status_lines) is imported from
`catchup.runner`, not from here: loading the configuration initialises this
package (for CatchupConfig), and the runner needs the whole configuration.
"""

from .config import CatchupConfig

__all__ = ["CatchupConfig"]
