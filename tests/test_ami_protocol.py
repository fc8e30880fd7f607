"""Our AMI protocol on top of panoramisk's: events in order to one sink,
actions answered, and events held back behind a resync snapshot."""

from __future__ import annotations

import asyncio

from asterisk_miitel.ami.protocol import MiitelAmiProtocol


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def connected(sink: list) -> tuple[MiitelAmiProtocol, FakeTransport]:
    proto = MiitelAmiProtocol(lambda ev, at: sink.append(ev["Event"]))
    transport = FakeTransport()
    proto.connection_made(transport)
    proto.data_received(b"Asterisk Call Manager/11.0.0\r\n")
    return proto, transport


def action_id(transport: FakeTransport) -> str:
    line = [ln for ln in transport.written.decode().split("\r\n") if ln.startswith("ActionID: ")][-1]
    return line.split(": ", 1)[1]


NEWCHANNEL = b"Event: Newchannel\r\nChannel: PJSIP/1001-00000009\r\nUniqueid: 9.9\r\n\r\n"


async def test_events_after_a_snapshot_wait_until_release() -> None:
    seen: list[str] = []
    proto, transport = connected(seen)
    future = proto.send_action({"Action": "CoreShowChannels"}, as_list=True, hold=True)
    aid = action_id(transport).encode()
    # Asterisk answers the list, and in the same TCP read a new channel appears.
    proto.data_received(
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"  # before the answer: delivered now
        b"Response: Success\r\nActionID: " + aid + b"\r\nEventList: start\r\n"
        b"Message: Channels will follow\r\n\r\n"
        b"Event: CoreShowChannel\r\nActionID: " + aid + b"\r\nChannel: PJSIP/1002-00000002\r\n\r\n"
        b"Event: CoreShowChannelsComplete\r\nActionID: " + aid + b"\r\nEventList: Complete\r\n"
        b"ListItems: 1\r\n\r\n" + NEWCHANNEL
    )
    reply = await asyncio.wait_for(future, 1)
    assert [m.get("Event") or m.get("Response") for m in reply][-1] == "CoreShowChannelsComplete"
    assert seen == ["Hangup"]  # the Newchannel is born after the snapshot: held
    proto.release()
    assert seen == ["Hangup", "Newchannel"]
    proto.data_received(NEWCHANNEL)
    assert seen == ["Hangup", "Newchannel", "Newchannel"]  # not holding any more


async def test_a_chunk_split_utf8_name_reaches_the_sink_whole() -> None:
    names: list[str] = []
    proto = MiitelAmiProtocol(lambda ev, at: names.append(ev.get("CallerIDName", "")))
    proto.connection_made(FakeTransport())
    event = "Event: Newchannel\r\nCallerIDName: 山田太郎\r\nUniqueid: 1.1\r\n\r\n".encode()
    cut = event.index("山".encode()) + 1  # inside the first character
    proto.data_received(event[:cut])
    proto.data_received(event[cut:])
    assert names == ["山田太郎"]


async def test_events_beyond_the_hold_limit_never_overtake_the_held_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from asterisk_miitel.ami import protocol

    monkeypatch.setattr(protocol, "MAX_HELD", 3)
    seen: list[str] = []
    proto = MiitelAmiProtocol(lambda ev, at: seen.append(ev["Uniqueid"]))
    transport = FakeTransport()
    proto.connection_made(transport)
    proto.data_received(b"Asterisk Call Manager/11.0.0\r\n")
    proto.held = []  # a resync snapshot is complete: events are held
    proto.data_received(b"".join(
        b"Event: Newexten\r\nUniqueid: %d\r\n\r\n" % i for i in range(6)))
    assert seen == ["0", "1", "2", "3", "4", "5"]  # in order, not 3, 4, 5 first
    proto.release()
    assert seen == ["0", "1", "2", "3", "4", "5"]
