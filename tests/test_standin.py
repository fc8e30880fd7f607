"""The MiiTel stand-in, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft6Validator

from asterisk_miitel.miitel.standin import (
    ANALYSIS_FAILED,
    NOT_UPLOADED,
    Fault,
    StandIn,
    make_app,
    parse_datetime,
)
from asterisk_miitel.miitel.standin.validation import load_schema

from .miitel_helpers import (
    USER_ID,
    FakeClock,
    call_data,
    file_size,
    get_json,
    post_json,
    sample,
    standin_process,
    truncate,
    write_mp3,
    write_wav,
)


@pytest.fixture
async def standin(tmp_path: Path):
    async with StandIn(tmp_path / "standin", port=0) as s:
        yield s


async def put_file(url: str, path: Path, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        data = await asyncio.to_thread(path.read_bytes)
        async with session.put(aiohttp.client.URL(url, encoded=True), data=data, **kw) as resp:
            return resp.status, await resp.text()


async def create(standin: StandIn, *calls: dict[str, Any]) -> list[str]:
    status, answer = await post_json(standin.webhook_url, {"call_data": list(calls)})
    assert status == 200, answer
    return [next(iter(entry.values()))["url"] for entry in answer["audio_upload_urls"]]


# -- the bundled schema ---------------------------------------------------------------


def test_bundled_schema_is_the_official_one() -> None:
    official = json.loads(Path("/work/shared/miitel/incoming_webhook.schema.json").read_text())
    assert load_schema() == official


# -- accepted payloads -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
async def test_official_samples_are_accepted(standin: StandIn, n: int) -> None:
    body = sample(n)
    status, answer = await post_json(standin.webhook_url, body)
    assert status == 200, answer
    (entry,) = answer["audio_upload_urls"]
    call_id = body["call_data"][0]["call_data_id"]
    assert list(entry) == [call_id]
    record = standin.call(call_id)
    assert record is not None and record["call_data"] == body["call_data"][0]
    assert (record["status"], record["error"]) == ("waiting_upload", NOT_UPLOADED)


async def test_sample2_offset_without_colon_is_rejected_when_strict(tmp_path: Path) -> None:
    async with StandIn(tmp_path, strict_datetime=True) as strict:
        status, problems = await post_json(strict.webhook_url, sample(2))
        assert status == 400
        assert {p["path"] for p in problems} == {
            "$.call_data[0].call_starts_at", "$.call_data[0].call_answered_at",
            "$.call_data[0].call_ends_at",
        }
        status, _ = await post_json(strict.webhook_url, sample(1))
        assert status == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"call_answered_at": None, "event_type": "INCOMING_CALL",
         "participants": [
             {"type": "FROM", "stereo_lr": "left", "miitel_user_id": None,
              "number": "Anonymous", "name": None},
             {"type": "TO", "stereo_lr": "right", "miitel_user_id": None,
              "number": "201", "name": None}]},
        {"call_starts_at": "2026-11-23T01:00:00Z", "call_answered_at": "2026-11-23T01:00:01.25Z",
         "call_ends_at": "2026-11-23T01:09:00.999999+00:00"},
        {"group_name": "sales", "groupname": "sales", "x_custom": {"any": "thing"}},
        {"tags": [{"value": "x" * 512}]},
        {"audio_channel_type": "MONAURAL", "audio_file_type": "m4a"},
        {"event_type": "AUTOMATIC_RECORD", "participants": []},
    ],
)
async def test_valid_variants_are_accepted(standin: StandIn, changes: dict[str, Any]) -> None:
    status, answer = await post_json(standin.webhook_url, {"call_data": [call_data(**changes)]})
    assert status == 200, answer


# -- rejected payloads ---------------------------------------------------------------------


def _mutate(path: str, value: Any) -> dict[str, Any]:
    """call_data with one change; `path` like 'participants.1.number', value ... deletes."""
    entry = call_data("bad")
    *parents, last = path.split(".")
    node: Any = entry
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return {"call_data": [entry]}


BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("missing call_data", {}, "$"),
    ("extra top-level key", {"call_data": [call_data()], "x": 1}, "$"),
    ("call_data not a list", {"call_data": call_data()}, "$.call_data"),
    ("empty call_data", {"call_data": []}, "$.call_data"),
    ("missing audio_file_type", _mutate("audio_file_type", ...), "$.call_data[0]"),
    ("uppercase file type", _mutate("audio_file_type", "WAV"), "$.call_data[0].audio_file_type"),
    ("unknown event_type", _mutate("event_type", "CALL"), "$.call_data[0].event_type"),
    ("bad channel type", _mutate("audio_channel_type", "stereo"),
     "$.call_data[0].audio_channel_type"),
    ("hyphenated number", _mutate("participants.1.number", "03-1234-5678"),
     "$.call_data[0].participants[1].number"),
    ("sip uri number", _mutate("participants.1.number", "sip:201@pbx"),
     "$.call_data[0].participants[1].number"),
    ("number with trailing newline", _mutate("participants.1.number", "0312345678\n"),
     "$.call_data[0].participants[1].number"),
    ("empty number", _mutate("participants.1.number", ""),
     "$.call_data[0].participants[1].number"),
    ("extra participant key", _mutate("participants.0.email", "a@b.c"),
     "$.call_data[0].participants[0]"),
    ("missing participant name", _mutate("participants.1.name", ...),
     "$.call_data[0].participants[1]"),
    ("bad stereo_lr", _mutate("participants.0.stereo_lr", "L"),
     "$.call_data[0].participants[0].stereo_lr"),
    ("user id not a uuid", _mutate("participants.0.miitel_user_id", "user-1"),
     "$.call_data[0].participants[0].miitel_user_id"),
    ("naive datetime", _mutate("call_starts_at", "2026-11-23T10:00:00"),
     "$.call_data[0].call_starts_at"),
    ("space instead of T", _mutate("call_ends_at", "2026-11-23 10:03:00+09:00"),
     "$.call_data[0].call_ends_at"),
    ("impossible date", _mutate("call_ends_at", "2026-11-31T10:03:00+09:00"),
     "$.call_data[0].call_ends_at"),
    ("epoch number", _mutate("call_ends_at", 1795400000), "$.call_data[0].call_ends_at"),
    ("ends before start", _mutate("call_ends_at", "2026-11-23T09:00:00+09:00"),
     "$.call_data[0].call_ends_at"),
    ("answered after end", _mutate("call_answered_at", "2026-11-23T11:00:00+09:00"),
     "$.call_data[0].call_answered_at"),
    ("empty tag", _mutate("tags.0.value", ""), "$.call_data[0].tags[0].value"),
    ("tag of 513", _mutate("tags.0.value", "あ" * 513), "$.call_data[0].tags[0].value"),
    ("extra tag key", _mutate("tags.0.color", "red"), "$.call_data[0].tags[0]"),
    ("empty call_data_id", _mutate("call_data_id", " "), "$.call_data[0].call_data_id"),
    ("duplicate call_data_id", {"call_data": [call_data("a"), call_data("a")]},
     "$.call_data[1].call_data_id"),
    ("outgoing without FROM user", _mutate("participants.0.miitel_user_id", None),
     "$.call_data[0].participants"),
    ("answered incoming without TO user",
     {"call_data": [call_data(event_type="INCOMING_CALL")]}, "$.call_data[0].participants"),
    ("extension without group needs TO user",
     {"call_data": [call_data(event_type="EXTENSION", call_answered_at=None)]},
     "$.call_data[0].participants"),
]


@pytest.mark.parametrize(("what", "body", "path"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
async def test_bad_payloads_are_rejected_with_a_path(
    standin: StandIn, what: str, body: Any, path: str
) -> None:
    status, problems = await post_json(standin.webhook_url, body)
    assert status == 400, problems
    assert isinstance(problems, list) and problems
    assert all(set(p) == {"path", "message"} and p["message"] for p in problems)
    assert path in {p["path"] for p in problems}, problems
    assert standin.calls() == []


async def test_user_id_rules_can_be_switched_off(tmp_path: Path) -> None:
    async with StandIn(tmp_path, check_user_ids=False) as s:
        status, _ = await post_json(s.webhook_url, _mutate("participants.0.miitel_user_id", None))
        assert status == 200


async def test_extension_in_a_group_needs_to_user_only_when_answered(standin: StandIn) -> None:
    unanswered = call_data("g1", event_type="EXTENSION", groupname="sales",
                           call_answered_at=None)
    status, _ = await post_json(standin.webhook_url, {"call_data": [unanswered]})
    assert status == 200
    answered = call_data("g2", event_type="EXTENSION", groupname="sales")
    status, _ = await post_json(standin.webhook_url, {"call_data": [answered]})
    assert status == 400
    answered["participants"][1]["miitel_user_id"] = USER_ID
    status, _ = await post_json(standin.webhook_url, {"call_data": [answered]})
    assert status == 200


async def test_not_json_and_wrong_content_type(standin: StandIn) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(standin.webhook_url, data=b"{nope",
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
            assert (await resp.json())[0]["path"] == "$"
        async with session.post(standin.webhook_url, data=json.dumps(sample(1)),
                                headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415


SCHEMA_LEVEL = {
    "missing call_data", "extra top-level key", "call_data not a list", "missing audio_file_type",
    "uppercase file type", "unknown event_type", "bad channel type", "hyphenated number",
    "sip uri number", "empty number", "extra participant key", "missing participant name",
    "bad stereo_lr", "epoch number", "empty tag", "tag of 513", "extra tag key",
}


def test_schema_level_rejections_agree_with_plain_jsonschema() -> None:
    validator = Draft6Validator(load_schema())
    for what, body, _path in BAD_PAYLOADS:
        assert bool(list(validator.iter_errors(body))) == (what in SCHEMA_LEVEL), what


def test_stock_draft6_format_checker_ignores_uuid() -> None:
    """Why the stand-in brings its own uuid (and date-time) checks.

    jsonschema's Draft 6 checker has no `uuid`, and checks `date-time` only when
    the optional rfc3339-validator happens to be installed (which then rejects
    official sample 2): the stand-in's verdict must not depend on that.
    """
    stock = Draft6Validator(load_schema(), format_checker=Draft6Validator.FORMAT_CHECKER)
    body = next(b for w, b, _ in BAD_PAYLOADS if w == "user id not a uuid")
    assert list(stock.iter_errors(body)) == []


# -- date-time strictness --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lenient", "strict"),
    [
        ("2023-11-27T15:22:33+09:00", True, True),
        ("2023-11-27T15:22:33+0900", True, False),
        ("2023-11-27T15:22:33Z", True, True),
        ("2023-11-27t15:22:33z", True, True),
        ("2023-11-27T15:22:33.123456789-03:30", True, True),
        ("2023-11-27T15:22:33", False, False),
        ("2023-11-27T15:22+09:00", False, False),
        ("2023-11-27T15:22:33+09", False, False),
        ("2023-11-27T15:22:33+24:00", False, False),
        ("2023-02-29T15:22:33+09:00", False, False),
        ("2023-11-27T25:00:00+09:00", False, False),
        ("２０２３-11-27T15:22:33+09:00", False, False),
    ],
)
def test_datetime_strictness(text: str, lenient: bool, strict: bool) -> None:
    assert (parse_datetime(text) is not None) == lenient
    assert (parse_datetime(text, strict=True) is not None) == strict


@given(st.datetimes(timezones=st.timezones()).filter(lambda d: d.utcoffset() is not None))
def test_any_aware_isoformat_is_accepted(value: datetime) -> None:
    offset = value.utcoffset()
    assert offset is not None
    if offset % timedelta(minutes=1):
        return  # sub-minute offsets (historic zones) are not ISO 8601 offsets
    parsed = parse_datetime(value.isoformat())
    assert parsed is not None and parsed.utcoffset() == offset
    assert parsed.replace(tzinfo=None) == value.replace(tzinfo=None)


@given(st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_offsets_with_and_without_colon_agree(minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    value = datetime(2026, 1, 2, 3, 4, 5, tzinfo=zone)
    colon = value.isoformat()
    assert parse_datetime(colon) == parse_datetime(colon[:-3] + colon[-2:]) == value


# -- webhook path and upload URLs ---------------------------------------------------------------


async def test_wrong_path_is_404_and_get_is_405(standin: StandIn) -> None:
    base = standin.base_url
    status, _ = await post_json(f"{base}/webhook/wrong-token", sample(1))
    assert status == 404
    status, _ = await post_json(standin.webhook_url + "x", sample(1))
    assert status == 404
    async with aiohttp.ClientSession() as session, session.get(standin.webhook_url) as resp:
        assert resp.status == 405
    assert standin.calls() == []


async def test_upload_urls_are_unique_unguessable_and_local(standin: StandIn) -> None:
    urls = await create(standin, call_data("a"), call_data("b"))
    tokens = {urlsplit(u).path.rsplit("/", 1)[1] for u in urls}
    assert len(tokens) == 2 and all(len(t) >= 40 for t in tokens)
    assert {urlsplit(u).netloc for u in urls} == {urlsplit(standin.webhook_url).netloc}
    assert all("X-Amz-Expires=10800" in u for u in urls)


async def test_explicit_webhook_path(tmp_path: Path) -> None:
    async with StandIn(tmp_path, webhook_path="/hook/abc") as s:
        assert s.webhook_url.endswith("/hook/abc")
    with pytest.raises(ValueError):
        make_app(tmp_path, webhook_path="/calls")


# -- uploads ----------------------------------------------------------------------------------


async def test_upload_of_matching_wav(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c", audio_channel_type="MONAURAL"))
    wav = write_wav(tmp_path / "m.wav", channels=1, rate=16000, seconds=1.5)
    status, _ = await put_file(url, wav)
    assert status == 200
    record = standin.call("c")
    assert record is not None
    assert (record["status"], record["format"], record["channels"]) == ("uploaded", "wav", 1)
    assert (record["sample_rate"], record["bytes"]) == (16000, wav.stat().st_size)
    assert record["duration"] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("declared", "channel_type", "make", "detail"),
    [
        ("mp3", "STEREO", lambda p: write_wav(p), "file is wav but audio_file_type is mp3"),
        ("wav", "STEREO", lambda p: write_mp3(p), "file is mp3 but audio_file_type is wav"),
        ("wav", "STEREO", lambda p: write_wav(p, channels=1), "1 channel(s)"),
        ("wav", "MONAURAL", lambda p: write_wav(p, channels=2), "2 channel(s)"),
        ("wav", "STEREO", lambda p: p.write_bytes(b"hello world" * 100) and p,
         "text, not audio"),
    ],
)
async def test_mismatched_upload_fails_the_call_like_miitel(
    standin: StandIn, tmp_path: Path, declared: str, channel_type: str, make: Any, detail: str
) -> None:
    (url,) = await create(standin, call_data("c", audio_file_type=declared,
                                             audio_channel_type=channel_type))
    path = tmp_path / "f.bin"
    make(path)
    status, _ = await put_file(url, path)
    assert status == 200  # storage takes anything; the analysis fails later
    record = standin.call("c")
    assert record is not None
    assert (record["status"], record["error"]) == ("failed", ANALYSIS_FAILED)
    assert detail in record["error_detail"]


async def test_truncated_wav_header_fails(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c"))
    wav = write_wav(tmp_path / "c.wav", seconds=1)
    truncate(wav, file_size(wav) // 2)  # the header claims more data than the file holds
    assert (await put_file(url, wav))[0] == 200
    assert standin.call("c")["status"] == "failed"  # type: ignore[index]


async def test_repeated_put_replaces_the_file(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c"))
    first = write_wav(tmp_path / "a.wav", seconds=1)
    second = write_wav(tmp_path / "b.wav", seconds=2)
    assert (await put_file(url, first))[0] == 200
    assert (await put_file(url, second))[0] == 200
    record = standin.call("c")
    assert record is not None
    assert record["put_count"] == 2 and record["duration"] == pytest.approx(2.0)
    assert file_size(Path(record["file"])) == file_size(second)
    assert len(list((standin.state.store.data_dir / "audio").iterdir())) == 1


async def test_put_without_content_length_is_411(standin: StandIn) -> None:
    (url,) = await create(standin, call_data("c"))

    async def chunks():
        yield b"RIFF"

    async with aiohttp.ClientSession() as session:
        async with session.put(aiohttp.client.URL(url, encoded=True), data=chunks()) as resp:
            assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert resp.status == 411
            assert "<Code>MissingContentLength</Code>" in await resp.text()
    # No body framing at all: a bare PUT written by hand.
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 "Connection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 411")
    assert standin.call("c")["put_count"] == 0  # type: ignore[index]


async def test_unknown_altered_and_expired_upload_urls_are_403(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = write_wav(tmp_path / "c.wav")
    async with StandIn(tmp_path / "s", clock=clock, upload_ttl=60) as s:
        (url,) = await create(s, call_data("c"))
        for bad in (url.replace("/upload/", "/upload/A"), url.replace("%2F", "/"),
                    url.split("?")[0]):
            status, text = await put_file(bad, wav)
            assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in text
        clock.advance(59)
        assert (await put_file(url, wav))[0] == 200
        clock.advance(1)
        status, text = await put_file(url, wav)
        assert status == 403
        assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in text
        assert s.call("c")["put_count"] == 1  # type: ignore[index]


async def test_upload_cut_short_stores_nothing(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c"))
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 "Content-Length: 100000\r\n\r\n".encode() + b"RIFF" + bytes(1000))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.sleep(0.2)
    record = standin.call("c")
    assert record is not None and record["put_count"] == 0
    assert record["status"] == "waiting_upload"
    assert list((standin.state.store.data_dir / "tmp").iterdir()) == []


# -- /calls and persistence ---------------------------------------------------------------------


async def test_calls_endpoint_counts_posts_and_puts(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c"))
    await create(standin, call_data("c"))  # sent twice: must be visible
    await put_file(url, write_wav(tmp_path / "c.wav", seconds=2))
    await create(standin, call_data("never"))
    calls = {c["call_data_id"]: c for c in await get_json(f"{standin.base_url}/calls")}
    assert calls["c"]["post_count"] == 2 and calls["c"]["put_count"] == 1
    assert calls["c"]["status"] == "uploaded" and calls["c"]["duration"] == pytest.approx(2.0)
    assert calls["never"]["status"] == "waiting_upload"
    assert calls["never"]["error"] == NOT_UPLOADED
    assert calls["never"]["call_data"] == call_data("never")


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    wav = write_wav(tmp_path / "c.wav", seconds=1)
    async with StandIn(data) as first:
        webhook_path = urlsplit(first.webhook_url).path
        port = first.port
        urls = await create(first, call_data("done"), call_data("later"))
        assert (await put_file(urls[0], wav))[0] == 200
        before = first.calls()
    async with StandIn(data, port=port) as second:
        assert urlsplit(second.webhook_url).path == webhook_path
        assert second.calls() == before
        # An upload URL issued before the restart still works after it.
        assert (await put_file(urls[1], wav))[0] == 200
        await create(second, call_data("done"))
        assert second.call("done")["post_count"] == 2  # type: ignore[index]
        assert second.call("later")["status"] == "uploaded"  # type: ignore[index]
    # Upload URLs expired for more than a week are forgotten at start.
    clock = FakeClock(time.time() + 3 * 3600 + 8 * 86400)
    async with StandIn(data, clock=clock) as third:
        assert third.state.store.grant(urlsplit(urls[1]).path.rsplit("/", 1)[1]) is None
        assert len(third.calls()) == 2
    assert list((data / "grants").iterdir()) == []


# -- logs -----------------------------------------------------------------------------------


async def test_logs_never_hold_the_secrets(
    standin: StandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (url,) = await create(standin, call_data("c"))
    await put_file(url, write_wav(tmp_path / "c.wav"))
    await put_file(url.replace("/upload/", "/upload/Z"), write_wav(tmp_path / "c.wav"))
    await post_json(standin.webhook_url[:-2] + "zz", sample(1))  # a wrong company URL
    standin.add_fault(method="POST", drop="after_body")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_json(standin.webhook_url, {"call_data": [call_data("d")]})
    text = "\n".join(r.getMessage() for r in caplog.records)
    webhook_token = urlsplit(standin.webhook_url).path.rsplit("/", 1)[1]
    upload_token = urlsplit(url).path.rsplit("/", 1)[1]
    signature = url.rsplit("=", 1)[1]
    for secret in (webhook_token, webhook_token[:-2], upload_token, signature):
        assert secret not in text
    lines = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert len(lines) == 5, lines  # one line per request
    assert any("-> dropped" in line for line in lines)


# -- fault knobs ------------------------------------------------------------------------------


async def test_faults_over_http_control(standin: StandIn) -> None:
    control = f"{standin.base_url}/_control"
    status, state = await post_json(control, {"faults": [
        {"method": "POST", "times": 2, "status": 503, "retry_after": "5"},
    ]})
    assert status == 200 and state["faults"][0]["times"] == 2
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(standin.webhook_url, json=sample(1)) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        async with session.post(standin.webhook_url, json=sample(1)) as resp:
            assert resp.status == 200
    assert standin.call("test_id")["post_count"] == 1  # type: ignore[index]
    assert (await get_json(control))["faults"] == []


async def test_fault_method_filter_and_clear(standin: StandIn, tmp_path: Path) -> None:
    standin.add_fault(method="PUT", status=500, times=3)
    (url,) = await create(standin, call_data("c"))  # the POST is not affected
    assert (await put_file(url, write_wav(tmp_path / "c.wav")))[0] == 500
    status, _ = await post_json(f"{standin.base_url}/_control", {"clear_faults": True})
    assert status == 200
    assert (await put_file(url, write_wav(tmp_path / "c.wav")))[0] == 200


async def test_fault_processed_then_failed(standin: StandIn) -> None:
    standin.add_fault(Fault(method="POST", status=502, process=True))
    status, _ = await post_json(standin.webhook_url, {"call_data": [call_data("c")]})
    assert status == 502
    assert standin.call("c")["post_count"] == 1  # type: ignore[index]


async def test_fault_delays(standin: StandIn) -> None:
    standin.add_fault(method="POST", delay=0.5, delay_phase="before_body")
    standin.add_fault(method="POST", delay=0.5, delay_phase="after_body")
    for _ in range(2):
        started = time.monotonic()
        status, _ = await post_json(standin.webhook_url, {"call_data": [call_data("c")]})
        assert status == 200 and time.monotonic() - started >= 0.5


async def test_fault_drop_after_body_keeps_the_call(standin: StandIn) -> None:
    standin.add_fault(method="POST", drop="after_body")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_json(standin.webhook_url, {"call_data": [call_data("c")]})
    assert standin.call("c")["post_count"] == 1  # type: ignore[index]


async def test_fault_slow_body(standin: StandIn, tmp_path: Path) -> None:
    (url,) = await create(standin, call_data("c"))
    wav = write_wav(tmp_path / "c.wav", data_bytes=512 * 1024)
    standin.add_fault(method="PUT", slow_body_bps=1024 * 1024)
    started = time.monotonic()
    assert (await put_file(url, wav))[0] == 200
    assert time.monotonic() - started >= 0.45


async def test_clock_can_be_advanced_over_http(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "c.wav")
    async with StandIn(tmp_path / "s", upload_ttl=100) as s:
        (url,) = await create(s, call_data("c"))
        status, _ = await post_json(f"{s.base_url}/_control", {"advance_clock": 101})
        assert status == 200
        assert (await put_file(url, wav))[0] == 403


@pytest.mark.parametrize(
    "doc", [{"faults": [{"method": "GET"}]}, {"faults": [{"nope": 1}]}, {"bogus": 1}, [1],
            {"faults": [{"drop": "later"}]}, {"faults": [{"times": 0}]}],
)
async def test_bad_control_requests_are_400(standin: StandIn, doc: Any) -> None:
    status, _ = await post_json(f"{standin.base_url}/_control", doc)
    assert status == 400
    assert standin.state.faults.pending() == []


# -- as a subprocess (the CLI) -------------------------------------------------------------------


async def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with standin_process(tmp_path / "data", "--upload-ttl", "60") as proc:
        status, answer = await post_json(proc.webhook_url, sample(1))
        assert status == 200
        assert "X-Amz-Expires=60" in answer["audio_upload_urls"][0]["test_id"]["url"]
        assert [c["call_data_id"] for c in await proc.calls()] == ["test_id"]
        await proc.control({"faults": [{"status": 500}]})
        status, _ = await post_json(proc.webhook_url, sample(1))
        assert status == 500
    assert proc.proc.returncode == 0
    stored = list((tmp_path / "data" / "calls").glob("*.json"))
    assert len(stored) == 1
    assert json.loads(stored[0].read_text())["call_data"] == copy.deepcopy(
        sample(1)["call_data"][0])


async def test_index_page_lists_what_was_received_escaped(
    standin: StandIn, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session, session.get(standin.base_url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "Nothing received yet" in await resp.text()
    hostile = '<script>alert(1)</script>"&'
    (url,) = await create(standin, call_data("c1", participants=[
        {"type": "FROM", "stereo_lr": "left", "miitel_user_id": USER_ID, "number": "201",
         "name": "山田太郎"},
        {"type": "TO", "stereo_lr": "right", "miitel_user_id": None, "number": "0312345678",
         "name": hostile}]))
    await put_file(url, write_wav(tmp_path / "c.wav", seconds=2))
    await create(standin, call_data("c2"))
    async with aiohttp.ClientSession() as session, session.get(standin.base_url + "/") as resp:
        page = await resp.text()
    assert "2 call histories received" in page
    assert page.index("c2") < page.index("c1")  # newest first
    assert "山田太郎" in page and "uploaded" in page and NOT_UPLOADED in page
    assert "wav, 2 ch, 8000 Hz, 2.0 s" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;" in page
    assert standin.state.webhook_path not in page  # the webhook path is the secret


def test_mock_miitel_help_lists_every_option() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "asterisk_miitel", "mock-miitel", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--upload-ttl", "--webhook-path",
                   "--strict-datetime", "--no-user-id-check", "--log-level"):
        assert option in result.stdout, option
    assert "example" in result.stdout
