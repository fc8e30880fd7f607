"""A stand-in for MiiTel's Incoming Webhook (`asterisk-miitel mock-miitel`).

It behaves like the Incoming Webhook as far as MiiTel documents it: the
official schema on POST (../incoming_webhook.schema.json), signed upload URLs valid for 3 hours, the
errors a call history shows when its recording is missing or does not match
its call data. Users run it for staging; every test in the project talks to
it over real HTTP.

    async with StandIn(tmp_path, port=0, upload_ttl=1.0) as s:
        client = MiitelClient(s.webhook_url)
        ...
        assert s.call("id-1")["status"] == "uploaded"

See `app` for the routes, `validation` for what is checked (and how strictly
date-times are read), `faults` for the injectable failures, and `store` for
the files under the data directory.
"""

from .app import STATE, StandInState, make_app
from .faults import Fault
from .runner import StandIn, main, serve
from .store import ANALYSIS_FAILED, NOT_UPLOADED
from .validation import PayloadValidator, parse_datetime

__all__ = [
    "ANALYSIS_FAILED",
    "NOT_UPLOADED",
    "STATE",
    "Fault",
    "PayloadValidator",
    "StandIn",
    "StandInState",
    "main",
    "make_app",
    "parse_datetime",
    "serve",
]
