"""A FastAGI stand-in for FreePBX's AGI service on 127.0.0.1:4573 (stdlib asyncio).

FreePBX's generated dialplan asks its FastAGI service for several things; the
one that carries calls is `AGI(agi://127.0.0.1/dialparties.agi)` in
`macro-dial` (ring groups, follow-me): it reads the macro's arguments (ring
time, Dial options, the extensions) and the channel's RingGroupMethod, looks
every extension's devices up in AstDB (`AMPUSER/<ext>/device`,
`DEVICE/<dev>/dial`) and answers in channel variables: `ds` (the Dial string,
`<devices>,<time>,<options>`), `FILTERED_DIAL` (the extensions it will ring)
and `MACRODIALGOTO_PRI` (`normdial` for ring-all, `huntdial` with
`HuntMember<n>`/`HuntMembers` for the hunt methods), as FreePBX's own
dialparties does (its dialplan port is in the generated files, [dialparties]).
Without it the group rings nobody. Every other script (sangomacrm.agi, ...)
is answered with nothing, as a FreePBX without those modules would.

    with FastAgi() as agi:       # a thread with its own event loop
        ...
        agi.requests             # [("dialparties.agi", {agi_* headers}), ...]
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

HOST = "127.0.0.1"
PORT = 4573
HUNT = ("hunt", "random", "memoryhunt", "firstavailable", "firstnotonphone")


class AgiSession:
    """One FastAGI connection: send commands, read `200 result=...` answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def env(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        while True:
            line = (await self.reader.readline()).decode("utf-8", "replace").strip()
            if not line:
                return headers
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()

    async def command(self, text: str) -> str | None:
        """Run one AGI command; the value in parentheses, or None (result=0)."""
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()
        line = (await self.reader.readline()).decode("utf-8", "replace").strip()
        if line.startswith("HANGUP"):  # channel hung up: one more line follows
            line = (await self.reader.readline()).decode("utf-8", "replace").strip()
        if not line.startswith("200"):
            raise ConnectionError(f"AGI: {text!r} -> {line!r}")
        if "result=1" not in line:
            return None
        start, end = line.find("("), line.rfind(")")
        return line[start + 1:end] if 0 <= start < end else ""

    async def get(self, name: str) -> str:
        return await self.command(f"GET VARIABLE {name}") or ""

    async def db(self, family: str, key: str) -> str:
        return await self.command(f"DATABASE GET {family} {key}") or ""

    async def set(self, name: str, value: str) -> None:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        await self.command(f'SET VARIABLE {name} "{escaped}"')


async def dialparties(agi: AgiSession) -> None:
    """What FreePBX's dialparties.agi answers for ring-all and hunt groups."""
    timer = await agi.get("ARG1")
    options = await agi.get("ARG2")
    extensions: list[str] = []
    n = 3
    while True:
        arg = await agi.get(f"ARG{n}")
        if not arg:
            break
        extensions += [e for e in arg.split("-") if e]
        n += 1
    method = (await agi.get("RingGroupMethod")) or "none"
    if await agi.get("DIRECTION") == "INBOUND":
        options = options.replace("T", "")  # callers from outside may not transfer
    dials: list[tuple[str, str]] = []  # (extension, its devices' dial string)
    for ext in extensions:
        if ext.endswith("#"):  # an outside number in a group
            dials.append((ext, f"Local/{ext[:-1]}@from-internal/n"))
            continue
        if await agi.db("DND", ext):
            continue
        devices = [d for d in (await agi.db("AMPUSER", f"{ext}/device")).split("&") if d]
        found = [await agi.db("DEVICE", f"{d}/dial") for d in devices]
        found = [f for f in found if f]
        if found:
            dials.append((ext, "&".join(found)))
    if not dials:
        await agi.set("DIALSTATUS", "NOANSWER")
        return
    await agi.set("FILTERED_DIAL", "-".join(e for e, _ in dials))
    await agi.set("FMGL_DIAL", "")
    if method in HUNT:
        for i, (_ext, dial) in enumerate(dials):
            await agi.set(f"HuntMember{i}", dial)
        await agi.set("HuntMembers", str(len(dials)))
        await agi.set("ds", f",{timer},{options}")
        await agi.set("MACRODIALGOTO_PRI", "huntdial")
    else:
        await agi.set("ds", "&".join(d for _, d in dials) + f",{timer},{options}")
        await agi.set("MACRODIALGOTO_PRI", "normdial")


SCRIPTS = {"dialparties.agi": dialparties}


class FastAgi:
    """The stand-in on its own thread (the lab is synchronous)."""

    def __init__(self, host: str = HOST, port: int = PORT) -> None:
        self.host = host
        self.port = port
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fastagi",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> FastAgi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FastAgi:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        agi = AgiSession(reader, writer)
        try:
            env = await agi.env()
            script = env.get("agi_network_script", "").split("?", 1)[0]
            self.requests.append((script, env))
            handler = SCRIPTS.get(script)
            if handler is not None:
                await handler(agi)
        except (ConnectionError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        with suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def scripts(self) -> list[str]:
        return [s for s, _ in self.requests]
