"""panoramisk's AMI protocol with our byte-safe parser and in-order delivery.

We keep panoramisk's action machinery (Action objects, ActionID matching,
futures for responses and event lists) and replace two things:

- `data_received`: our parser, which decodes whole messages, not TCP chunks;
- event dispatch: every event goes, synchronously and in arrival order, to
  one sink (the call tracker). panoramisk starts coroutine handlers with
  ensure_future, which can reorder per-call state changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from panoramisk import actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message as PanoramiskMessage

from .parser import AmiParser, Message, OnProblem

log = logging.getLogger(__name__)

EventSink = Callable[[Message, float], None]
MAX_HELD = 100_000  # a resync that takes too long stops holding events back


class MiitelAmiProtocol(AMIProtocol):  # type: ignore[misc]
    """One AMI connection. `sink(event, received_at)` gets every event."""

    def __init__(self, sink: EventSink, on_problem: OnProblem | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.parser = AmiParser(on_problem=on_problem, strict_crlf=True)
        self.banner: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.last_received = time.monotonic()
        self.bytes_received = 0
        # While resyncing (CoreShowChannels, Getvar), events that follow the
        # snapshot are held back, so the snapshot and the event stream line up.
        self._hold_after: str | None = None  # ActionID whose completion starts holding
        self.held: list[tuple[Message, float]] | None = None

    # -- panoramisk hooks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.encoding = "utf-8"
        self.log = log
        self.factory = _NoFactory()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.last_received = time.monotonic()
        self.bytes_received += len(data)
        messages = self.parser.feed(data)
        if self.parser.version is not None and not self.banner.done():
            self.version = self.parser.version
            self.banner.set_result(self.parser.version)
        responses = self.responses
        sink = self.sink
        for msg in messages:
            # (no action waiting, the usual case: an event, whatever ActionID it carries)
            action_id = msg.get("ActionID") if responses else None
            if action_id is not None and action_id in responses:
                self.handle_message(PanoramiskMessage(msg))
                if action_id == self._hold_after and action_id not in responses:
                    self._hold_after = None
                    self.held = []  # the snapshot is complete: hold what follows
            elif "Event" in msg:
                if self.held is not None:
                    if len(self.held) < MAX_HELD:
                        self.held.append((msg, now))
                        continue
                    # Never deliver past the held ones: a Hangup before its
                    # Newchannel would leave a call open. Stop holding instead.
                    log.warning("AMI resync still not done after %d events: delivering them",
                                MAX_HELD)
                    self.release()
                sink(msg, now)
            # A Response without a pending action (e.g. after a timeout) is dropped.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for action in list(self.responses.values()):
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))
        self.responses.clear()
        if not self.banner.done():
            self.banner.set_exception(ConnectionError("AMI connection closed before its banner"))
        if not self.lost.done():
            self.lost.set_result(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop a dead link at once (no FIN handshake to wait for)."""
        self.closed = True
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()

    # -- actions --------------------------------------------------------------

    def send_action(
        self, action: dict[str, Any], *, as_list: bool | None = None, hold: bool = False
    ) -> Any:
        """Send an AMI action; the future gets the response (or list).

        `hold`: once the answer is complete, hold events back until release().
        """
        act = actions.Action(action, as_list=as_list)
        if hold:
            self._hold_after = act.id
        # panoramisk's Action creates its future on the current event loop.
        return self.send(act, as_list=as_list)

    def release(self) -> None:
        """Deliver the held events, in order, and stop holding."""
        held, self.held = self.held, None
        self._hold_after = None
        for msg, at in held or ():
            self.sink(msg, at)


class _NoFactory:
    """panoramisk's protocol expects a Manager; we drive reconnects ourselves."""

    forgetable_actions = ("ping", "login")
    awaiting_actions: list[Any] = []  # noqa: RUF012 - never re-sent: we re-login

    def dispatch(self, message: Any) -> None:  # pragma: no cover - we never call it
        pass

    def connection_lost(self, exc: Any) -> None:  # pragma: no cover
        pass
