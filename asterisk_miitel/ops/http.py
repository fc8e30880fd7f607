"""`/healthz` and `/metrics` over HTTP, for systemd/Docker health checks and Prometheus.

One factory, `make_app`, builds the aiohttp application; its cleanup context
starts and stops the one background task (a 1 Hz look at the AMI link, so
"disconnected for N seconds" is known even between probes). No globals:
every app holds its own state. `start_http` / `runner.cleanup()` bind and
unbind it.

/healthz answers 200 or 503 with a small JSON body (nothing secret: no URL,
no path). Unhealthy means a person or a restart should act:
- AMI disconnected for longer than http.unhealthy_after_seconds;
- a call not final for longer than http.max_wait_seconds (MiiTel unreachable,
  uploads stuck);
- the outbox cannot be written (disk full, read-only, permissions): new
  calls are not being taken;
- one of the service's tasks (intake, sender, journal, heartbeat, AMI,
  resync, catch-up) failed on an unexpected exception in the last five
  minutes: it was restarted, but a bug is at work (`tasks` says which).
A PBX with no calls is healthy: "seconds since the last event" is reported,
never judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Config, HttpConfig
from .metrics import ServiceMetrics
from .view import ServiceView, outbox_writable, snapshot_outbox

SAMPLE_INTERVAL = 1.0
# A supervised task that failed this recently makes the service unhealthy.
TASK_FAILED_LATELY = 300.0


@dataclass
class Health:
    """Judges the service's health; `sample()` follows the AMI link."""

    service: ServiceView
    config: HttpConfig
    clock: Callable[[], float]
    monotonic: Callable[[], float] = time.monotonic
    writable: Callable[[Any], bool] = outbox_writable

    def __post_init__(self) -> None:
        # Until the first connect the link counts as down since we started.
        self.down_since: float | None = self.clock()

    def sample(self) -> None:
        listener = self.service.listener
        if listener is None or listener.stats.connected:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = self.clock()

    async def report(self) -> tuple[bool, dict[str, Any]]:
        self.sample()
        now = self.clock()
        problems: list[str] = []
        ami: dict[str, Any] = {"connected": None}
        listener = self.service.listener
        if listener is not None:
            s = listener.stats
            down = round(now - self.down_since, 1) if self.down_since is not None else None
            ami = {
                "connected": s.connected,
                "disconnected_seconds": down,
                "seconds_since_last_event": (
                    round(self.monotonic() - s.last_event_at, 1)
                    if s.last_event_at is not None else None
                ),
                # Asterisk's own version (CoreSettings); the AMI protocol's beside it.
                "version": s.asterisk_version,
                "ami_version": s.version,
                "login_failures": s.login_failures,
            }
            if down is not None and down > self.config.unhealthy_after_seconds:
                why = " (login refused: check [ami] username/secret)" if s.login_failures else ""
                problems.append(f"AMI disconnected for {down:.0f} s{why}")
        snap = await snapshot_outbox(self.service.outbox)
        writable = (
            self.service.accepting
            and snap.error is None
            and self.writable(self.service.outbox.path)
        )
        oldest = (round(max(0.0, now - snap.oldest_waiting_at), 1)
                  if snap.oldest_waiting_at is not None else None)
        outbox = {
            "depth": snap.depth,
            "oldest_waiting_seconds": oldest,
            "set_aside": snap.counts.get("set_aside", 0),
            "writable": writable,
        }
        if not writable:
            problems.append("the outbox cannot be written (disk full, read-only or "
                            "permissions): new calls are not taken")
        if oldest is not None and oldest > self.config.max_wait_seconds:
            problems.append(f"a call has waited {oldest:.0f} s without reaching MiiTel "
                            "(`asterisk-miitel status` says why)")
        tasks = self._tasks(problems)
        body = {"status": "unhealthy" if problems else "ok", "problems": problems,
                "ami": ami, "outbox": outbox, "tasks": tasks}
        return not problems, body


    def _tasks(self, problems: list[str]) -> dict[str, Any]:
        """The service's supervised tasks; one that failed lately is a problem
        (a bug: the log has its traceback), until it has run clean a while."""
        supervisor = getattr(self.service, "supervisor", None)
        if supervisor is None:
            return {}
        tasks: dict[str, Any] = supervisor.report()
        for name, t in tasks.items():
            ago = t["seconds_since_failure"]
            if ago is None or ago > TASK_FAILED_LATELY:
                continue
            on_call = f" on call {t['last_call']}" if t["last_call"] else ""
            now = "waiting to restart" if not t["running"] else "restarted"
            problems.append(f"task {name} failed {ago:.0f} s ago ({t['last_error']}{on_call}; "
                            f"{t['failures']} failure(s) in all), {now}: see the log")
        return tasks


HEALTH = web.AppKey("health", Health)
METRICS = web.AppKey("metrics", ServiceMetrics)


def make_app(
    service: ServiceView,
    config: HttpConfig,
    metrics: ServiceMetrics | None = None,
    *,
    clock: Callable[[], float] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sample_interval: float = SAMPLE_INTERVAL,
    console: Config | None = None,
) -> web.Application:
    """The ops application for one service. `metrics` should be the one whose
    `observe` the service's Sender was given (else call counters stay at 0).
    `console`: the service's whole config, to serve the console (ops/console.py)
    at `/` too."""
    app = web.Application()
    app[HEALTH] = Health(service, config, clock or service.clock, monotonic)
    app[METRICS] = metrics or ServiceMetrics(service, monotonic=monotonic)
    if console is not None:
        from .console import Console, add_console

        add_console(app, Console(service, console, app[HEALTH], clock=clock or service.clock))

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        health = app[HEALTH]

        async def loop() -> None:
            while True:
                health.sample()
                await asyncio.sleep(sample_interval)

        task = asyncio.create_task(loop(), name="ops-health-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Bind and serve; `await runner.cleanup()` stops. Raises OSError (port in use)."""
    # No access log: probes every few seconds would bury the call log.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (config port 0 = any free port)."""
    return int(runner.addresses[0][1])


async def _healthz(request: web.Request) -> web.Response:
    healthy, body = await request.app[HEALTH].report()
    return web.json_response(body, status=200 if healthy else 503,
                             headers={"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                            "Cache-Control": "no-store"})
