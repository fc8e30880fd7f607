"""A tiny AMI server that plays a recorded transcript to whoever logs in.

The demo uses it to push a real captured call through the very path `run`
uses (TCP, login, our protocol, tracker, outbox, MiiTel client); tests use it
to cut the link, refuse a login or stop answering pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .parser import AmiParser


def transcript_events(data: bytes) -> list[bytes]:
    """The raw event blocks of a transcript (banner and responses dropped), CRLF form."""
    text = data.replace(b"\r\n", b"\n")
    blocks = [b for b in text.split(b"\n\n") if b.strip()]
    out = []
    for block in blocks:
        lines = block.strip(b"\n").split(b"\n")
        if lines and lines[0].startswith(b"Asterisk Call Manager/"):
            lines = lines[1:]
        if lines and lines[0].startswith(b"Event: "):
            out.append(b"\r\n".join(lines) + b"\r\n\r\n")
    return out


@dataclass
class FakeAmi:
    """Serve `events` (raw blocks) after a successful Login.

    `pace` seconds between events (0: as fast as possible); `on_event` lets a
    test act between events (e.g. cut the link after the Nth).
    """

    events: list[bytes]
    username: str = "miitel"
    secret: str = "secret"
    pace: float = 0.0
    answer_pings: bool = True
    system_name: str = "demo-pbx"
    ami_version: str = "11.0.0"  # the banner's; 5.0.2 on Asterisk 16.16, 9.0.0 on 20
    asterisk_version: str = "22.10.1"  # CoreSettings' AsteriskVersion
    startup: str = "2026-11-23 09:00:00"
    live_channels: list[dict[str, str]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    ssl: Any = None  # an ssl.SSLContext: AMI over TLS (manager.conf tlsenable)
    logins: int = 0
    sessions_done: int = 0
    sent_events: int = 0
    _server: asyncio.AbstractServer | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _next: int = 0  # the next event to send: a reconnect resumes here
    on_event: Callable[[int], None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Follow the events sent to answer CoreShowChannels and Getvar the way
    # Asterisk would: the channels up now, and their variables.
    follow: bool = True
    _live: dict[str, dict[str, str]] = field(default_factory=dict)
    _vars: dict[str, dict[str, str]] = field(default_factory=dict)

    async def start(self) -> FakeAmi:
        self._server = await asyncio.start_server(
            self._session, self.host, self.port, ssl=self.ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeAmi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def skip(self, upto: int) -> None:
        """Events up to `upto` happen while nobody listens: Asterisk's state
        moves on (CoreShowChannels reflects them), the client never sees them."""
        while self._next < min(upto, len(self.events)):
            if self.follow:
                self._observe(self.events[self._next])
            self._next += 1

    def cut(self) -> None:
        """Drop every connection now, as a network failure would."""
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        parser = AmiParser(keys=("Action",))
        streamer: asyncio.Task[None] | None = None
        try:
            writer.write(f"Asterisk Call Manager/{self.ami_version}\r\n".encode())
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for msg in parser.feed(data):
                    reply = self._answer(msg)
                    if reply is None:
                        continue
                    writer.write(reply)
                    if msg.get("Action", "").lower() == "login" and b"Success" in reply:
                        streamer = asyncio.create_task(self._stream(writer))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await streamer
            self._writers.remove(writer)
            self.sessions_done += 1
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, msg: dict[str, str]) -> bytes | None:
        action = msg.get("Action", "").lower()
        aid = msg.get("ActionID", "")
        head = f"ActionID: {aid}\r\n" if aid else ""
        if action == "login":
            if msg.get("Username") == self.username and msg.get("Secret") == self.secret:
                self.logins += 1
                return (f"Response: Success\r\n{head}Message: Authentication accepted\r\n\r\n"
                        ).encode()
            return f"Response: Error\r\n{head}Message: Authentication failed\r\n\r\n".encode()
        if action == "ping":
            if not self.answer_pings:
                return None
            return f"Response: Success\r\n{head}Ping: Pong\r\n\r\n".encode()
        if action == "coresettings":
            return (f"Response: Success\r\n{head}AMIversion: {self.ami_version}\r\n"
                    f"AsteriskVersion: {self.asterisk_version}\r\n"
                    f"SystemName: {self.system_name}\r\n\r\n").encode()
        if action == "corestatus":
            date, _, clock = self.startup.partition(" ")
            return (f"Response: Success\r\n{head}CoreStartupDate: {date}\r\n"
                    f"CoreStartupTime: {clock}\r\nCoreCurrentCalls: 0\r\n\r\n").encode()
        if action == "getvar":
            name = msg.get("Channel", "")
            var = msg.get("Variable", "")
            value = next((v.get(var, "") for c, v in self._vars.items() if c == name), "")
            return (f"Response: Success\r\n{head}Variable: {var}\r\nValue: {value}\r\n\r\n"
                    ).encode()
        if action == "coreshowchannels":
            out = [f"Response: Success\r\n{head}EventList: start\r\n"
                   "Message: Channels will follow\r\n\r\n"]
            channels = list(self.live_channels) + (list(self._live.values()) if self.follow else [])
            for ch in channels:
                body = "".join(f"{k}: {v}\r\n" for k, v in ch.items())
                out.append(f"Event: CoreShowChannel\r\n{head}{body}\r\n")
            out.append(f"Event: CoreShowChannelsComplete\r\n{head}EventList: Complete\r\n"
                       f"ListItems: {len(channels)}\r\n\r\n")
            return "".join(out).encode()
        if action == "logoff":
            return f"Response: Goodbye\r\n{head}\r\n".encode()
        if action:
            return f"Response: Error\r\n{head}Message: Invalid/unknown command\r\n\r\n".encode()
        return None

    def _observe(self, block: bytes) -> None:
        if not block.startswith(_FOLLOWED):
            return
        h = _headers(block)
        uid, name, event = h.get("Uniqueid", ""), h.get("Channel", ""), h.get("Event")
        if event == "Hangup":
            self._live.pop(uid, None)
            self._vars.pop(name, None)
            return
        if event == "VarSet":
            self._vars.setdefault(name, {})[h.get("Variable", "")] = h.get("Value", "")
            return
        ch = self._live.setdefault(uid, {})
        for key in ("Channel", "Uniqueid", "Linkedid", "ChannelState", "ChannelStateDesc",
                    "CallerIDNum", "CallerIDName", "ConnectedLineNum", "ConnectedLineName",
                    "Context", "Exten"):
            if key in h and (key not in ch or event != "Newchannel"):
                ch[key] = h[key]
        if event == "BridgeEnter":
            ch["BridgeId"] = h.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            ch["BridgeId"] = ""

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        while self._next < len(self.events):
            if writer.is_closing():
                return  # the listener is gone: resume where it left off
            index = self._next
            self._next += 1
            writer.write(self.events[index])
            self.sent_events += 1
            if self.follow:
                self._observe(self.events[index])
            if self.on_event is not None:
                self.on_event(index)
            if self.pace:
                await asyncio.sleep(self.pace)
            elif index % 64 == 0:
                await writer.drain()
        await writer.drain()
        self.finished.set()


_FOLLOWED = (b"Event: Newchannel\r", b"Event: Hangup\r", b"Event: BridgeEnter\r",
             b"Event: BridgeLeave\r", b"Event: VarSet\r", b"Event: Newstate\r")


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key not in out:
            out[key] = value
    return out


def shift_times(events: list[bytes], start: float) -> list[bytes]:
    """Move the captured `Timestamp:`s so the first is `start`, keeping the gaps
    (a 5-second call stays 5 seconds long however fast it is replayed)."""
    stamps = [float(m.group(1)) for e in events if (m := _STAMP.search(e))]
    if not stamps:
        return retime(events, start)
    offset = start - stamps[0]
    return [
        _STAMP.sub(lambda m: b"Timestamp: %.6f\r\n" % (float(m.group(1)) + offset), e)
        for e in events
    ]


_STAMP = re.compile(rb"Timestamp: ([0-9.]+)\r\n")


def retime(events: list[bytes], start: float, step: float = 0.01) -> list[bytes]:
    """Give every event a `Timestamp:` (replacing any), `step` seconds apart."""
    out = []
    for i, block in enumerate(events):
        block = re.sub(rb"Timestamp: [0-9.]+\r\n", b"", block)
        head, _, rest = block.partition(b"\r\n")
        out.append(head + f"\r\nTimestamp: {start + i * step:.6f}".encode() + b"\r\n" + rest)
    return out
