"""The AMI byte stream -> messages, whatever the TCP reads look like."""

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asterisk_miitel.ami.parser import AmiParser

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
NEWCHANNEL = (
    "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000004\r\n"
    "ChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: 0312345678\r\n"
    "CallerIDName: 山田太郎\r\nConnectedLineNum: <unknown>\r\nAccountCode: \r\n"
    "Context: from-trunk\r\nExten: 0312345678\r\nUniqueid: 1795468345.4\r\n"
    "Linkedid: 1795468345.4\r\n\r\n"
).encode()
LOGIN_OK = b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
STREAM = BANNER + LOGIN_OK + NEWCHANNEL + NEWCHANNEL.replace("山田太郎".encode(), "ｻﾄｳ🎧".encode())


def parse_all(chunks: list[bytes]) -> tuple[AmiParser, list[dict[str, str]]]:
    parser = AmiParser()
    out: list[dict[str, str]] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return parser, out


def test_whole_stream() -> None:
    parser, msgs = parse_all([STREAM])
    assert parser.version == "11.0.0"
    kinds = [m.get("Event", m.get("Response")) for m in msgs]
    assert kinds == ["Success", "Newchannel", "Newchannel"]
    assert msgs[1]["CallerIDName"] == "山田太郎"
    assert msgs[2]["CallerIDName"] == "ｻﾄｳ🎧"
    assert msgs[1]["AccountCode"] == ""  # `Key: ` with an empty value


def test_utf8_name_survives_a_cut_at_every_byte() -> None:
    _, reference = parse_all([STREAM])
    for cut in range(1, len(STREAM)):
        parser, msgs = parse_all([STREAM[:cut], STREAM[cut:]])
        assert msgs == reference, f"cut at byte {cut}"
        assert parser.version == "11.0.0"
        assert parser.stats.bad_utf8 == 0


def test_one_byte_at_a_time() -> None:
    _, reference = parse_all([STREAM])
    _, msgs = parse_all([bytes([b]) for b in STREAM])
    assert msgs == reference


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_any_split(cuts: list[int]) -> None:
    _, reference = parse_all([STREAM])
    points = [0, *sorted(set(cuts)), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert parse_all(chunks)[1] == reference


def test_lf_only_transcripts() -> None:
    _, msgs = parse_all([STREAM.replace(b"\r\n", b"\n")])
    assert msgs[1]["CallerIDName"] == "山田太郎" and len(msgs) == 3


def test_garbage_is_counted_and_skipped() -> None:
    junk = b"\x00\xff\xfegarbage without colon\r\nmore junk\r\n\r\n"
    bad_hangup = b"Event: Hangup\r\nCause: \xff\xfe\r\n\r\n"
    parser, msgs = parse_all([BANNER, junk, NEWCHANNEL, bad_hangup])
    assert [m["Event"] for m in msgs] == ["Newchannel", "Hangup"]
    assert parser.stats.malformed == 1 and parser.stats.bad_lines >= 2
    assert parser.stats.bad_utf8 == 2  # replaced, not dropped: the Hangup still counts
    assert parser.stats.problems


def test_huge_header_line_is_dropped_once_and_the_stream_recovers() -> None:
    huge = b"Event: VarSet\r\nValue: " + b"x" * (1024 * 1024) + b"\r\n\r\n"
    chunks = [BANNER] + [huge[i : i + 4096] for i in range(0, len(huge), 4096)] + [NEWCHANNEL]
    parser, msgs = parse_all(chunks)
    assert [m["Event"] for m in msgs] == ["Newchannel"]
    assert parser.stats.oversized == 1
    assert len(parser._buf) < 70_000  # never buffers the whole megabyte


def test_huge_message_in_one_read_is_dropped_too() -> None:
    huge = b"Event: VarSet\r\nValue: " + b"x" * (1024 * 1024) + b"\r\n\r\n"
    parser, msgs = parse_all([BANNER, huge + NEWCHANNEL])
    assert [m["Event"] for m in msgs] == ["Newchannel"] and parser.stats.oversized == 1


def test_stream_without_banner() -> None:
    parser, msgs = parse_all([NEWCHANNEL])
    assert parser.version is None and msgs[0]["Event"] == "Newchannel"


def test_repeated_chanvariable_headers_are_kept_by_name() -> None:
    event = (
        b"Event: Newchannel\r\nUniqueid: 1.1\r\nChanVariable: FROM_DID=0312345678\r\n"
        b"ChanVariable: AMPUSER=1001\r\n\r\n"
    )
    _, msgs = parse_all([event])
    assert msgs[0]["ChanVariable:FROM_DID"] == "0312345678"
    assert msgs[0]["ChanVariable:AMPUSER"] == "1001"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_never_crashes_on_random_bytes(data: bytes) -> None:
    parser = AmiParser()
    for i in range(0, len(data), 37):
        for msg in parser.feed(data[i : i + 37]):
            assert "Event" in msg or "Response" in msg


# A recording's path: losing this event loses the call.
MIXMON = (
    b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/trunk-00000004\r\n"
    b"Uniqueid: 1795468345.4\r\nVariable: MIXMONITOR_FILENAME\r\n"
    b"Value: /var/spool/asterisk/monitor/miitel-1795468345.4-1.raw\r\n\r\n"
)
SMALL_MAX = 1000  # so an oversized message is small enough to cut at every byte


def oversized(size: int) -> bytes:
    return b"Event: VarSet\r\nVariable: X\r\nValue: " + b"x" * size + b"\r\n\r\n"


def bad_stream() -> bytes:
    """Each kind of dropped or damaged input, each followed by a good message."""
    return (
        BANNER + NEWCHANNEL
        + oversized(3 * SMALL_MAX) + MIXMON
        + b"\x00\xffgarbage without colon\r\nmore\r\n\r\n" + MIXMON.replace(b"-1.raw", b"-2.raw")
        + b"Event: Hangup\r\nCause-txt: \xff\xfe\xc3\r\nUniqueid: 9.9\r\n\r\n"
        + MIXMON.replace(b"-1.raw", b"-3.raw")
        + oversized(SMALL_MAX - 30) + MIXMON.replace(b"-1.raw", b"-4.raw")  # just over the cap
    )


def parse_small(chunks: list[bytes], strict: bool = False) -> tuple[AmiParser, list[dict[str, str]]]:
    parser = AmiParser(max_message=SMALL_MAX, strict_crlf=strict)
    out: list[dict[str, str]] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return parser, out


def check_bad_stream(parser: AmiParser, msgs: list[dict[str, str]], where: str) -> None:
    files = [m["Value"].rsplit("-", 1)[1] for m in msgs if m.get("Variable") == "MIXMONITOR_FILENAME"]
    assert files == ["1.raw", "2.raw", "3.raw", "4.raw"], where
    assert [m["Event"] for m in msgs] == ["Newchannel", "VarSet", "VarSet", "Hangup", "VarSet",
                                          "VarSet"], where
    assert msgs[3]["Uniqueid"] == "9.9", where  # bad bytes replaced, the event kept
    s = parser.stats
    assert (s.oversized, s.malformed, s.bad_utf8) == (2, 1, 2), where  # the garbage holds \xff too


@pytest.mark.parametrize("strict", [False, True], ids=["transcript", "live"])
def test_bad_input_then_good_cut_at_every_byte(strict: bool) -> None:
    stream = bad_stream()
    check_bad_stream(*parse_small([stream], strict), "whole")
    for cut in range(1, len(stream)):
        check_bad_stream(*parse_small([stream[:cut], stream[cut:]], strict), f"cut at {cut}")


def test_bad_input_then_good_byte_by_byte() -> None:
    stream = bad_stream()
    check_bad_stream(*parse_small([bytes([b]) for b in stream]), "byte by byte")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(bad_stream()) - 1), max_size=12))
def test_bad_input_then_good_any_split(cuts: list[int]) -> None:
    stream = bad_stream()
    points = [0, *sorted(set(cuts)), len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    check_bad_stream(*parse_small(chunks), f"cuts {points}")


def test_200kb_message_cut_just_before_its_end_keeps_the_next_message() -> None:
    """Found in the field: a 200 KB message whose last 1 or 2 bytes came in
    the next read took the MIXMONITOR_FILENAME after it down with it."""
    big = oversized(200 * 1024)
    for back in range(1, 9):
        for tail_with_next in (True, False):
            parser = AmiParser()
            chunks = [BANNER + big[:-back], big[-back:] + MIXMON] if tail_with_next else \
                [BANNER + big[:-back], big[-back:], MIXMON]
            msgs = [m for c in chunks for m in parser.feed(c)]
            assert [m.get("Value", "")[-6:] for m in msgs] == ["-1.raw"], f"{back} {tail_with_next}"
            assert parser.stats.oversized == 1


# -- a caller name with line breaks, as Asterisk 22 really sent it ------------------
# (tests/lab/README.md "Caller names with line breaks"; recorded by
# tests/test_event_stream.py::test_lab_caller_name_with_line_breaks as the
# `miitel` user, through dialplan/manager_miitel.conf)
LINEBREAK = Path(__file__).parent / "fixtures" / "linebreak_name"


def live_parse(data: bytes) -> list[dict[str, str]]:
    parser = AmiParser(strict_crlf=True)
    return [m for m in parser.feed(data) if "Event" in m]


@pytest.mark.parametrize("case", ["crlf", "lf", "header", "quotes"])
def test_a_caller_name_with_line_breaks_never_adds_or_overrides_a_header(case: str) -> None:
    events = live_parse((LINEBREAK / f"{case}_miitel.ami").read_bytes())
    ours = [e for e in events if e.get("Channel", "").endswith(";2")]
    assert ours and {e["Uniqueid"] for e in ours} == {ours[0]["Uniqueid"]} != {"1.1"}
    # Every event is one Asterisk sent: nothing forged from the name's text.
    assert all("Privilege" in e and "Timestamp" in e for e in events)
    assert {e.get("UserEvent", "MiiTelTag") for e in events} == {"MiiTelTag"}
    # Asterisk escapes the name in every channel snapshot: one header, C escapes.
    [name] = {e["CallerIDName"] for e in ours if e["Event"] != "Newchannel"}
    assert "\\" in name and "\r" not in name and "\n" not in name
    # The tag our dialplan sends (miitel-tag) lost its line breaks there.
    tag = [e["Tag"] for e in ours if e.get("Context") == "miitel-userevent"]
    assert tag and "\r" not in tag[0] and "\n" not in tag[0]


def test_a_bare_lf_in_raw_dialplan_text_never_ends_a_live_message() -> None:
    """A UserEvent the dialplan built from the name itself: Asterisk sends its
    text raw, bare LFs included. Live, they are data; read as a transcript
    (LF-only lines allowed) they would forge a MiiTelRecording."""
    data = (LINEBREAK / "lf_miitel.ami").read_bytes()
    [raw_tag] = [e for e in live_parse(data)
                 if e.get("UserEvent") == "MiiTelTag" and e["Context"] == "lab-tests"]
    assert raw_tag["Tag"].startswith("Evil\n\nEvent: UserEvent\n")
    lenient = [m for m in AmiParser().feed(data) if m.get("UserEvent") == "MiiTelRecording"]
    assert lenient  # what strict CRLF framing prevents


def test_without_the_blank_line_filter_raw_appdata_forges_events() -> None:
    """What a user without dialplan/manager_miitel.conf's exclude filter gets:
    Asterisk writes a Newexten's AppData raw, and a blank line in it ends the
    event. No parser can tell these from real ones: the filter keeps them out."""
    events = live_parse((LINEBREAK / "crlf_admin.ami").read_bytes())
    forged = [e for e in events if e.get("UserEvent") == "MiiTelRecording"]
    assert forged and all("Timestamp" not in e and e["Uniqueid"] == "1.1" for e in forged)
    filtered = live_parse((LINEBREAK / "crlf_miitel.ami").read_bytes())
    assert not [e for e in filtered if e.get("UserEvent") == "MiiTelRecording"]
