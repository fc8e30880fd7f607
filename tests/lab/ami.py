"""A small, thread-based AMI client (stdlib only) for the lab and its captures.

It keeps every byte it receives (``raw``, optionally streamed to a file, CRLF
intact, from the banner on), parses messages only once they are complete (so
multi-byte UTF-8 split across TCP reads is never damaged), and answers actions
by ActionID.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

_ids = itertools.count(1)


class AmiError(RuntimeError):
    pass


@dataclass
class AmiMessage:
    """One AMI message: headers in order (names may repeat, e.g. Output)."""

    headers: list[tuple[str, str]]
    raw: bytes = b""
    received: float = field(default_factory=time.time)

    def get(self, name: str, default: str = "") -> str:
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return default

    def getall(self, name: str) -> list[str]:
        low = name.lower()
        return [value for key, value in self.headers if key.lower() == low]

    def __getitem__(self, name: str) -> str:
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self.headers)

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def timestamp(self) -> float | None:
        value = self.get("Timestamp")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.headers:
            out.setdefault(key, value)
        return out


def parse_message(raw: bytes) -> AmiMessage:
    text = raw.decode("utf-8", errors="replace")
    headers: list[tuple[str, str]] = []
    for line in text.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            headers.append(("", line))
            continue
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(headers, raw)


def split_stream(data: bytes) -> tuple[str, list[bytes]]:
    """Split a raw AMI transcript into its banner and its messages."""
    banner, _, rest = data.partition(b"\r\n")
    chunks = [c for c in rest.split(b"\r\n\r\n") if c.strip()]
    return banner.decode("utf-8", errors="replace"), chunks


def read_transcript(data: bytes) -> list[AmiMessage]:
    """All complete messages of a raw AMI transcript (banner dropped)."""
    _, chunks = split_stream(data)
    return [parse_message(c) for c in chunks]


class AmiClient:
    """Connects, logs in, and collects events; actions are matched by ActionID."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 events: bool = True, sink: BinaryIO | None = None,
                 keep_events: bool = True, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.events_on = events
        self.sink = sink
        self.keep_events = keep_events
        self.timeout = timeout
        self.banner = ""
        self.raw = bytearray()
        self.events: list[AmiMessage] = []
        self._responses: dict[str, list[AmiMessage]] = {}
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._listeners: list[Callable[[AmiMessage], None]] = []

    # -- connection --------------------------------------------------------
    def connect(self) -> AmiClient:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.settimeout(None)
        self._sock = sock
        self._thread = threading.Thread(target=self._reader, name=f"ami-{self.username}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not self.banner and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AmiError(f"no AMI banner from {self.host}:{self.port}")
                self._cond.wait(left)
        resp = self.action("Login", Username=self.username, Secret=self.secret,
                           Events="on" if self.events_on else "off")
        if resp.get("Response") != "Success":
            self.close()
            raise AmiError(f"AMI login as {self.username!r} failed: {resp.get('Message')}")
        return self

    def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> AmiClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None and not self._closed

    def add_listener(self, fn: Callable[[AmiMessage], None]) -> None:
        self._listeners.append(fn)

    def _reader(self) -> None:
        buf = b""
        sock = self._sock
        assert sock is not None
        try:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.raw += chunk
                if self.sink is not None:
                    self.sink.write(chunk)
                    self.sink.flush()
                buf += chunk
                if not self.banner:
                    if b"\r\n" not in buf:
                        continue
                    line, _, buf = buf.partition(b"\r\n")
                    with self._cond:
                        self.banner = line.decode("utf-8", errors="replace")
                        self._cond.notify_all()
                while b"\r\n\r\n" in buf:
                    one, _, buf = buf.partition(b"\r\n\r\n")
                    if one.strip():
                        self._dispatch(parse_message(one))
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, msg: AmiMessage) -> None:
        action_id = msg.get("ActionID")
        with self._cond:
            if "Response" in msg and action_id:
                self._responses.setdefault(action_id, []).append(msg)
            elif action_id and action_id in self._responses:
                # events belonging to an action's list (CoreShowChannels ...)
                self._responses[action_id].append(msg)
            elif self.keep_events:
                self.events.append(msg)
            self._cond.notify_all()
        if "Event" in msg:
            for fn in self._listeners:
                fn(msg)

    # -- actions -------------------------------------------------------------
    def send(self, action: str, headers: Iterable[tuple[str, str]]) -> str:
        if self._sock is None:
            raise AmiError("not connected")
        action_id = f"lab-{next(_ids)}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{k}: {v}" for k, v in headers]
        with self._cond:
            self._responses.setdefault(action_id, [])
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def action(self, action: str, *, timeout: float | None = None,
               variables: dict[str, str] | None = None, **headers: str) -> AmiMessage:
        """Send an action and return its response (first message with Response:)."""
        pairs = [(k, str(v)) for k, v in headers.items()]
        pairs += [("Variable", f"{k}={v}") for k, v in (variables or {}).items()]
        action_id = self.send(action, pairs)
        return self._wait_response(action_id, timeout)[0]

    def action_list(self, action: str, *, timeout: float | None = None,
                    **headers: str) -> list[AmiMessage]:
        """An action answered by an event list: return the list's events."""
        action_id = self.send(action, [(k, str(v)) for k, v in headers.items()])
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while True:
                msgs = self._responses.get(action_id, [])
                if msgs and msgs[0].get("Response") == "Error":
                    raise AmiError(f"{action} failed: {msgs[0].get('Message')}")
                if any(m.get("EventList") == "Complete" for m in msgs[1:]):
                    del self._responses[action_id]
                    return [m for m in msgs[1:] if m.get("EventList") != "Complete"]
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AmiError(f"no complete answer to {action}")
                self._cond.wait(left)

    def _wait_response(self, action_id: str, timeout: float | None) -> list[AmiMessage]:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while not self._responses.get(action_id):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AmiError(f"no answer to action {action_id}")
                self._cond.wait(left)
            return self._responses.pop(action_id)

    def command(self, cli: str, timeout: float | None = None) -> str:
        """Run a CLI command (needs write=command/system) and return its output."""
        resp = self.action("Command", Command=cli, timeout=timeout)
        if resp.get("Response") not in ("Success", "Follows"):
            raise AmiError(f"command {cli!r} failed: {resp.get('Message')}")
        return "\n".join(resp.getall("Output"))

    # -- events ------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[AmiMessage], bool], timeout: float = 10.0,
                 start: int = 0) -> AmiMessage:
        """Wait for an event (among all kept since index ``start``) that matches."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for msg in self.events[seen:]:
                    if predicate(msg):
                        return msg
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AmiError("timed out waiting for an AMI event")
                if self._closed:
                    raise AmiError("AMI connection closed while waiting for an event")
                self._cond.wait(left)
