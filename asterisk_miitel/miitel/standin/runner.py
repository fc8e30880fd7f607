"""Running the stand-in: `StandIn` for tests, `serve` and `main` for the CLI."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from ..redact import redact_url
from .app import DEFAULT_UPLOAD_TTL, STATE, StandInState, apply_control, make_app
from .faults import Fault
from .store import CallRecord

log = logging.getLogger(__name__)


class StandIn:
    """A running stand-in: `async with StandIn(tmp_path, port=0) as s: s.webhook_url`.

    Extra keyword arguments go to `make_app` (webhook_path, upload_ttl, clock, ...).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
        **app_options: Any,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.app = make_app(data_dir, **app_options)
        # access_log=None: aiohttp's access log would print the secret paths.
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=shutdown_timeout)
        self._requested_port = port
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def state(self) -> StandInState:
        return self.app[STATE]

    @property
    def base_url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + self.state.webhook_path

    def calls(self) -> list[CallRecord]:
        return self.state.store.calls()

    def call(self, call_data_id: str) -> CallRecord | None:
        return self.state.store.call(call_data_id)

    def add_fault(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """Queue a fault: `s.add_fault(method="POST", status=500, times=2)`."""
        fault = fault or Fault(**fields)
        self.state.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def advance_clock(self, seconds: float) -> None:
        apply_control(self.state, {"advance_clock": seconds})


async def serve(
    host: str,
    port: int,
    data_dir: str | os.PathLike[str],
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[StandIn], None] | None = None,
    **app_options: Any,
) -> None:
    """Serve until `stop` is set, or SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals on this platform
    async with StandIn(data_dir, host=host, port=port, **app_options) as standin:
        log.info("serving on %s", standin.base_url)
        if ready is not None:
            ready(standin)
        await stop.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asterisk-miitel mock-miitel",
        description="A local stand-in for MiiTel's Incoming Webhook, for staging and tests.\n"
        "It checks each call history against MiiTel's official schema, hands out upload\n"
        "URLs valid for 3 hours and judges each uploaded file as MiiTel would.\n"
        "Open its address in a browser to see what it received.",
        epilog="example:\n  asterisk-miitel mock-miitel --port 8765 --data-dir /tmp/miitel\n"
        "then set [miitel] webhook_url to the URL it prints",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0: every "
                        "interface)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port to listen on (default 8765; 0: any free port)")
    parser.add_argument("--data-dir", help="where call histories and uploads are kept, and "
                        "the webhook path, so a restart keeps its URL (default: a new "
                        "temporary directory)")
    parser.add_argument("--upload-ttl", type=float, default=DEFAULT_UPLOAD_TTL,
                        metavar="SECONDS",
                        help="seconds an upload URL stays valid (default and MiiTel's: 10800)")
    parser.add_argument("--webhook-path", metavar="PATH",
                        help="path of the webhook URL (default: /webhook/<random token>, kept "
                        "in the data dir)")
    parser.add_argument("--strict-datetime", action="store_true",
                        help="accept only RFC 3339 offsets (+09:00), not +0900")
    parser.add_argument("--no-user-id-check", action="store_true",
                        help="do not enforce which participant needs a miitel_user_id")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="log level (default INFO): one line per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="miitel-standin-")

    def announce(standin: StandIn) -> None:
        # stdout, not the log: the operator needs the full URL to configure the service.
        print(f"MiiTel stand-in on {standin.base_url}, data in {data_dir}", flush=True)
        print(f"webhook URL: {standin.webhook_url}", flush=True)
        log.info("webhook URL printed on stdout: %s", redact_url(standin.webhook_url))

    try:
        asyncio.run(serve(
            args.host, args.port, data_dir, ready=announce,
            upload_ttl=args.upload_ttl, webhook_path=args.webhook_path,
            strict_datetime=args.strict_datetime, check_user_ids=not args.no_user_id_check,
        ))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"mock-miitel: {exc}", file=sys.stderr)
        return 1
    return 0
