"""The service's long-lived tasks, kept alive through their own bugs.

A task that dies of an unexpected exception (a bug, a row nobody expected)
must not quietly stop calls from moving: a dead intake would hold every new
call in memory, a dead sender would send nothing, and nobody would know.
So each task runs under `Supervisor.start`:

- an unexpected exception is logged at ERROR with its traceback, and with
  the call id when the failing code said which call it was working on
  (`about_call`);
- the task starts again after a backoff (1 s, doubling up to 60 s, back to
  1 s once it has run a minute without failing), so a bug that fails at once
  every time costs one log line per backoff step, never a spin;
- `report()` says, per task, how often it failed and what the last failure
  was (type and call id only: an exception's text may quote a URL), for
  /healthz.

A task that returns normally is done (a catch-up run that finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("asterisk_miitel.service")

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
HEALTHY_RUN = 60.0  # seconds without a failure that reset the backoff


@contextlib.contextmanager
def about_call(call_id: str) -> Iterator[None]:
    """Work on one call: an exception escaping the block names the call."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "call_id", None) is None:
            exc.call_id = call_id  # type: ignore[attr-defined]
            exc.add_note(f"while working on call {call_id}")
        raise


@dataclass
class TaskState:
    name: str
    running: bool = True  # False while waiting to restart, or done
    done: bool = False  # returned normally
    failures: int = 0
    last_error: str | None = None  # the exception's type
    last_call: str | None = None  # the call it was working on, if it said
    last_failed_at: float | None = None  # wall clock
    retry_in: float | None = None  # seconds, while waiting to restart

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "running": self.running, "failures": self.failures,
            "last_error": self.last_error, "last_call": self.last_call,
            "seconds_since_failure": (round(now - self.last_failed_at, 1)
                                      if self.last_failed_at is not None else None),
        }


class Supervisor:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.tasks: dict[str, TaskState] = {}
        self._running: list[asyncio.Task[None]] = []

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `run()` as task `name`, restarting it after each unexpected exception."""
        state = self.tasks.get(name)
        if state is None:
            state = self.tasks[name] = TaskState(name)
        state.running, state.done = True, False
        task = asyncio.create_task(self._keep(state, run), name=name)
        self._running = [t for t in self._running if not t.done()]
        self._running.append(task)
        return task

    async def stop(self) -> None:
        """Cancel every task and wait for them."""
        tasks, self._running = self._running, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in self.tasks.values():
            state.running = False

    def report(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: s.as_dict(now) for name, s in sorted(self.tasks.items())}

    async def _keep(self, state: TaskState, run: Callable[[], Awaitable[None]]) -> None:
        delay = self.backoff_min
        while True:
            started = self.monotonic()
            state.running, state.retry_in = True, None
            try:
                await run()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                if self.monotonic() - started >= HEALTHY_RUN:
                    delay = self.backoff_min
                call = getattr(exc, "call_id", None)
                state.failures += 1
                state.last_error = type(exc).__name__
                state.last_call = call
                state.last_failed_at = self.clock()
                state.running, state.retry_in = False, delay
                log.error("task %s failed%s (%s: %s): restarting it in %.0f s (failure %d)",
                          state.name, f" on call {call}" if call else "",
                          type(exc).__name__, exc, delay, state.failures, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            state.running, state.done = False, True
            return
