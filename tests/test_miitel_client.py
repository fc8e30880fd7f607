"""MiitelClient against the stand-in, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from asterisk_miitel.logs import setup_logging
from asterisk_miitel.miitel.client import (
    ANSWER_LIMIT,
    MiitelClient,
    Timeouts,
    expiry_from_url,
    parse_retry_after,
)
from asterisk_miitel.miitel.errors import (
    MiitelError,
    NotSent,
    OutcomeUnknown,
    Permanent,
    RetryableAnswer,
    ServerError,
    UploadExpired,
    UploadForbidden,
)
from asterisk_miitel.miitel.redact import redact_url, remember, scrub, secret_values
from asterisk_miitel.miitel.standin import StandIn

from .miitel_helpers import (
    FakeClock,
    call_data,
    rss_bytes,
    same_bytes,
    standin_process,
    wire_recorder,
    write_m4a,
    write_mp3,
    write_wav,
)

FAST = Timeouts(connect=2.0, post_total=5.0, upload_idle=5.0)


@pytest.fixture
async def standin(tmp_path: Path):
    async with StandIn(tmp_path / "standin", port=0) as s:
        yield s


@pytest.fixture
async def client(standin: StandIn):
    async with MiitelClient(standin.webhook_url, timeouts=FAST) as c:
        yield c


def secret_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


def assert_no_secret(text: str, *urls: str) -> None:
    for url in urls:
        assert secret_of(url) not in text
        query = urlsplit(url).query
        if query:
            assert query not in text
            assert query.rsplit("=", 1)[1] not in text


# -- redact ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acme.miitel.jp/webhook/abcdefghijklmnop3f9a",
         "https://acme.miitel.jp/webhook/…3f9a"),
        ("https://user:pw@acme.miitel.jp:8443/webhook/abcdefghijklmnop3f9a?x=1#f",
         "https://acme.miitel.jp:8443/webhook/…3f9a"),
        ("https://bucket.s3.amazonaws.com/a/b/c/file0123456789.wav?X-Amz-Signature=s3cr3t",
         "https://bucket.s3.amazonaws.com/a/….wav"),
        ("https://hooks.example.com/AbCdEfGhIjKlMnOp", "https://hooks.example.com/…MnOp"),
        ("https://acme.miitel.jp/webhook/short", "https://acme.miitel.jp/webhook/…"),
        ("https://acme.miitel.jp/webhook", "https://acme.miitel.jp/webhook"),
        ("http://[::1]:8765/upload/tokentokentoken", "http://[::1]:8765/upload/…oken"),
        ("http://[bad", "<unparseable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_removes_urls_and_their_secret_parts() -> None:
    url = ("https://s3.example/upload/TOKEN0123456789"
           "?X-Amz-Credential=AK%2F2026&X-Amz-Signature=feedface99")
    text = (f"Cannot write request body for {url}; <SignatureProvided>feedface99"
            "</SignatureProvided> path /upload/TOKEN0123456789 "
            "json https:\\/\\/x.example\\/a\\/b123456789012")
    out = scrub(text, url)
    for secret in ("TOKEN0123456789", "feedface99", "AK%2F2026", "b123456789012"):
        assert secret not in out
    assert "https://s3.example/upload/…6789" in out


def test_a_token_first_in_the_path_is_hidden_too() -> None:
    url = "https://hooks.example.com/Ab12cd34ef56gh78ij90/incoming"
    assert redact_url(url) == "https://hooks.example.com/…"
    assert "Ab12cd34ef56gh78ij90" not in scrub("token Ab12cd34ef56gh78ij90 refused", url)


def test_remembered_secrets_are_scrubbed_on_their_own() -> None:
    remember("https://acme.example/webhook/Rem3mber-t0ken-Xyz?k=Qu3ry-valu3",
             "Bearer Cr3dential-abc-123", "https://u:Pa55w0rd@acme.example/h")
    text = scrub("echo: Rem3mber-t0ken-Xyz, Cr3dential-abc-123, Qu3ry-valu3, Pa55w0rd; webhook")
    for secret in ("Rem3mber-t0ken-Xyz", "Cr3dential-abc-123", "Qu3ry-valu3", "Pa55w0rd"):
        assert secret not in text
    assert text.endswith("; webhook")  # words of the URL that are not secret stay
    assert secret_values("Bearer Cr3dential-abc-123") == {
        "Bearer Cr3dential-abc-123", "Cr3dential-abc-123"}


def test_the_log_filter_hides_a_bare_token() -> None:
    out = io.StringIO()
    url = "https://acme.example/webhook/B4re-token-in-a-log-line"
    setup_logging("text", "INFO", [url, "Bearer L0g-credential-42"], stream=out)
    try:
        logging.getLogger("asterisk_miitel.x").warning(
            "MiiTel said: B4re-token-in-a-log-line is not valid, nor L0g-credential-42")
    finally:
        logging.getLogger().handlers.clear()
    assert "B4re-token-in-a-log-line" not in out.getvalue()
    assert "L0g-credential-42" not in out.getvalue() and "MiiTel said" in out.getvalue()


# -- success -------------------------------------------------------------------------


async def test_post_then_put_shows_file_on_standin(
    standin: StandIn, client: MiitelClient, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "call.wav", channels=2, rate=8000, seconds=2.5)
    url = await client.create_call_history(call_data("call-1"))
    assert urlsplit(url).netloc == urlsplit(standin.webhook_url).netloc
    sent = await client.upload_recording(url, wav, "wav")
    assert sent == wav.stat().st_size
    record = standin.call("call-1")
    assert record is not None
    assert record["status"] == "uploaded" and record["error"] is None
    assert (record["format"], record["channels"], record["bytes"]) == ("wav", 2, sent)
    assert record["duration"] == pytest.approx(2.5)
    assert same_bytes(Path(record["file"]), wav)
    assert (record["post_count"], record["put_count"]) == (1, 1)


async def test_batch_returns_one_url_per_call(standin: StandIn, client: MiitelClient) -> None:
    urls = await client.create_call_histories([call_data("a"), call_data("b")])
    assert list(urls) == ["a", "b"] and urls["a"] != urls["b"]
    assert [c["call_data_id"] for c in standin.calls()] == ["a", "b"]


@pytest.mark.parametrize(
    ("file_type", "writer", "content_type"),
    [("wav", write_wav, "audio/wav"), ("mp3", write_mp3, "audio/mpeg"),
     ("m4a", write_m4a, "audio/mp4")],
)
async def test_put_on_the_wire_has_content_length_and_no_chunking(
    tmp_path: Path, file_type: str, writer, content_type: str
) -> None:
    path = writer(tmp_path / f"f.{file_type}")
    async with wire_recorder() as wire, MiitelClient("http://unused.invalid/x") as client:
        await client.upload_recording(wire.url, path, file_type)  # type: ignore[arg-type]
    (request,) = wire.requests
    assert request.headers["content-length"] == str(path.stat().st_size)
    assert request.body_bytes == path.stat().st_size
    assert "transfer-encoding" not in request.headers
    assert request.headers["content-type"] == content_type
    assert "authorization" not in request.headers
    # The presigned query went out byte for byte (%2F not decoded).
    assert request.head.startswith(
        "PUT /upload/secret-token-1234?X-Amz-Signature=abc%2Fdef HTTP/1.1")


async def test_extra_headers_go_to_the_webhook_only(tmp_path: Path) -> None:
    async with wire_recorder() as wire:
        async with MiitelClient(wire.url, extra_headers={"Authorization": "Bearer t"}) as client:
            with pytest.raises(OutcomeUnknown):  # the recorder answers 200 without URLs
                await client.create_call_history(call_data("x"))
    assert wire.requests[0].headers["authorization"] == "Bearer t"
    assert wire.requests[0].headers["content-type"] == "application/json"


# -- answers that are errors ---------------------------------------------------------


async def test_400_surfaces_the_error_list(standin: StandIn, client: MiitelClient) -> None:
    bad = call_data("bad")
    bad["participants"][1]["number"] = "03-1234-5678"
    bad["participants"][0]["email"] = "a@example.com"
    with pytest.raises(Permanent) as caught:
        await client.create_call_history(bad)
    err = caught.value
    assert err.status == 400 and type(err) is Permanent
    paths = {p["path"] for p in err.details}  # type: ignore[union-attr]
    assert "$.call_data[0].participants[1].number" in paths
    assert "$.call_data[0].participants[0]" in paths
    assert "email" in str(err) or "email" in (err.body or "")
    assert_no_secret(str(err), standin.webhook_url)
    assert standin.calls() == []


async def test_503_then_retry_succeeds(standin: StandIn, client: MiitelClient) -> None:
    standin.add_fault(method="POST", status=503)
    with pytest.raises(RetryableAnswer) as caught:
        await client.create_call_history(call_data("c"))
    assert caught.value.status == 503 and caught.value.retry_after is None
    url = await client.create_call_history(call_data("c"))
    assert url and standin.call("c")["post_count"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, Permanent), (401, Permanent), (403, Permanent), (404, Permanent),
     (409, Permanent), (413, Permanent), (422, Permanent), (418, Permanent),
     (408, RetryableAnswer), (429, RetryableAnswer), (503, RetryableAnswer),
     (500, ServerError), (501, ServerError), (502, ServerError), (504, ServerError),
     (520, ServerError), (599, ServerError)],
)
async def test_each_error_status_has_its_class(
    standin: StandIn, client: MiitelClient, status: int, kind: type
) -> None:
    """README "What each answer from MiiTel does": not processed (retry), may
    have been processed (outcome unknown), or refused (rejected)."""
    standin.add_fault(method="POST", status=status, retry_after="4")
    with pytest.raises(MiitelError) as caught:
        await client.create_call_history(call_data("c"))
    assert type(caught.value) is kind and caught.value.status == status
    if kind is not Permanent:
        assert caught.value.retry_after == 4.0  # type: ignore[attr-defined]
    # A 5xx other than 503 is an unknown outcome: the outbox never repeats it blindly.
    assert isinstance(caught.value, OutcomeUnknown) == (kind is ServerError)


async def test_429_retry_after_seconds(standin: StandIn, client: MiitelClient) -> None:
    standin.add_fault(method="POST", status=429, retry_after="7")
    with pytest.raises(RetryableAnswer) as caught:
        await client.create_call_history(call_data("c"))
    assert caught.value.status == 429 and caught.value.retry_after == 7.0


async def test_503_retry_after_http_date(standin: StandIn) -> None:
    clock = FakeClock(1_800_000_000.0)
    when = format_datetime(datetime.fromtimestamp(clock() + 30, UTC), usegmt=True)
    standin.add_fault(method="POST", status=503, retry_after=when)
    async with MiitelClient(standin.webhook_url, timeouts=FAST, clock=clock) as client:
        with pytest.raises(RetryableAnswer) as caught:
            await client.create_call_history(call_data("c"))
    assert caught.value.retry_after == pytest.approx(30.0)


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after(None, now) is None


async def test_redirect_is_not_followed(standin: StandIn, client: MiitelClient) -> None:
    standin.add_fault(method="POST", status=301, body="moved")
    with pytest.raises(Permanent) as caught:
        await client.create_call_history(call_data("c"))
    assert caught.value.status == 301


@pytest.mark.parametrize(
    "body", ['{"audio_upload_urls": []}', "<html>oops</html>", '{"other": 1}'],
)
async def test_200_without_the_url_is_outcome_unknown(
    standin: StandIn, client: MiitelClient, body: str
) -> None:
    # MiiTel answered 200: the history may exist, so this is never "rejected".
    standin.add_fault(method="POST", status=200, body=body)
    with pytest.raises(OutcomeUnknown) as caught:
        await client.create_call_history(call_data("c"))
    assert caught.value.status == 200 and "answered 200" in str(caught.value)
    assert_no_secret(str(caught.value), standin.webhook_url)


async def test_tolerant_answer_shapes(standin: StandIn, client: MiitelClient) -> None:
    standin.add_fault(method="POST", status=200,
                      body='{"audio_upload_urls": {"a": {"url": "http://x/1"}, "b": "http://x/2"}}')
    urls = await client.create_call_histories([call_data("a"), call_data("b")])
    assert urls == {"a": "http://x/1", "b": "http://x/2"}


# -- upload refusals -------------------------------------------------------------------


async def test_expired_upload_url(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = write_wav(tmp_path / "c.wav")
    async with StandIn(tmp_path / "s", upload_ttl=1.0, clock=clock) as standin:
        async with MiitelClient(standin.webhook_url, timeouts=FAST) as client:
            url = await client.create_call_history(call_data("c"))
            clock.advance(2)
            with pytest.raises(UploadExpired) as caught:
                await client.upload_recording(url, wav, "wav")
        assert caught.value.status == 403
        assert "Request has expired" in (caught.value.body or "")
        assert_no_secret(str(caught.value), url)
        assert standin.call("c")["status"] == "waiting_upload"  # type: ignore[index]


async def test_403_after_known_expiry_is_expired(
    standin: StandIn, client: MiitelClient, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "c.wav")
    url = await client.create_call_history(call_data("c"))
    standin.add_fault(method="PUT", status=403, body="<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(UploadExpired):
        await client.upload_recording(url, wav, "wav", expires_at=time.time() - 1)
    standin.add_fault(method="PUT", status=403, body="<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(UploadForbidden):
        await client.upload_recording(url, wav, "wav", expires_at=time.time() + 3600)


def test_expiry_from_presigned_url() -> None:
    url = ("https://b.s3.amazonaws.com/k?X-Amz-Date=20260101T000000Z&X-Amz-Expires=10800"
           "&X-Amz-Signature=x")
    assert expiry_from_url(url) == datetime(2026, 1, 1, 3, tzinfo=UTC).timestamp()
    assert expiry_from_url("https://x/y") is None


@pytest.mark.parametrize("tamper", ["token", "signature"])
async def test_unknown_upload_url_is_forbidden(
    standin: StandIn, client: MiitelClient, tmp_path: Path, tamper: str
) -> None:
    wav = write_wav(tmp_path / "c.wav")
    url = await client.create_call_history(call_data("c"))
    if tamper == "token":
        bad = url.replace("/upload/", "/upload/x")
    else:
        bad = url[:-4] + "0000"
    with pytest.raises(UploadForbidden) as caught:
        await client.upload_recording(bad, wav, "wav")
    assert caught.value.status == 403 and "SignatureDoesNotMatch" in (caught.value.body or "")
    assert_no_secret(str(caught.value), bad)


async def test_wrong_file_type_is_refused_before_any_put(
    standin: StandIn, client: MiitelClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mp3 = write_mp3(tmp_path / "call.wav")  # MP3 bytes under a .wav name
    url = await client.create_call_history(call_data("c"))
    caplog.set_level(logging.INFO)
    caplog.clear()
    with pytest.raises(Permanent, match="is mp3, not wav"):
        await client.upload_recording(url, mp3, "wav")
    assert not [r for r in caplog.records if r.getMessage().startswith("PUT")]
    assert standin.call("c")["put_count"] == 0  # type: ignore[index]


# -- transport failures ----------------------------------------------------------------


async def test_timeout_after_post_was_sent(standin: StandIn) -> None:
    standin.add_fault(method="POST", delay=3.0, delay_phase="after_body")
    timeouts = Timeouts(connect=2.0, post_total=0.5, upload_idle=5.0)
    async with MiitelClient(standin.webhook_url, timeouts=timeouts) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            await client.create_call_history(call_data("c"))
    assert caught.value.status is None
    assert_no_secret(str(caught.value), standin.webhook_url)
    assert standin.call("c")["post_count"] == 1  # type: ignore[index]  # it did arrive


async def test_connection_dropped_after_request(standin: StandIn, client: MiitelClient) -> None:
    standin.add_fault(method="POST", drop="after_body")
    with pytest.raises(OutcomeUnknown):
        await client.create_call_history(call_data("c"))
    assert standin.call("c")["post_count"] == 1  # type: ignore[index]


async def test_connection_dropped_before_body_is_still_unknown(
    standin: StandIn, client: MiitelClient
) -> None:
    # The client cannot tell how far the server got: it must not claim NotSent.
    standin.add_fault(method="POST", drop="before_body")
    with pytest.raises(OutcomeUnknown):
        await client.create_call_history(call_data("c"))
    assert standin.calls() == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_not_sent() -> None:
    url = f"http://127.0.0.1:{_free_port()}/webhook/secrettokensecrettoken"
    async with MiitelClient(url, timeouts=FAST) as client:
        with pytest.raises(NotSent) as caught:
            await client.create_call_history(call_data("c"))
    assert_no_secret(str(caught.value), url)


async def test_dns_failure_is_not_sent() -> None:
    async with MiitelClient("http://no-such-host.invalid/webhook/abc", timeouts=FAST) as client:
        with pytest.raises(NotSent):
            await client.create_call_history(call_data("c"))


async def test_total_timeout_while_connecting_is_not_sent() -> None:
    # A listening socket whose backlog is full: connect() hangs, nothing is sent.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        try:
            timeouts = Timeouts(connect=10.0, post_total=0.5, upload_idle=5.0)
            url = f"http://127.0.0.1:{port}/webhook/abc"
            async with MiitelClient(url, timeouts=timeouts) as client:
                with pytest.raises(NotSent):
                    await client.create_call_history(call_data("c"))
        finally:
            for s in fillers:
                s.close()


async def test_with_callers_session_unknown_is_assumed(standin: StandIn) -> None:
    standin.add_fault(method="POST", delay=3.0)
    async with aiohttp.ClientSession() as session:
        timeouts = Timeouts(connect=2.0, post_total=0.5, upload_idle=5.0)
        client = MiitelClient(standin.webhook_url, timeouts=timeouts, session=session)
        with pytest.raises(OutcomeUnknown):
            await client.create_call_history(call_data("c"))
        url = await client.create_call_history(call_data("d"))
        await client.close()
        assert not session.closed and url


async def test_stalled_upload_hits_the_idle_timeout(standin: StandIn, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "big.wav", data_bytes=32 * 1024 * 1024, sparse=True)
    timeouts = Timeouts(connect=2.0, post_total=5.0, upload_idle=0.5)
    async with MiitelClient(standin.webhook_url, timeouts=timeouts) as client:
        url = await client.create_call_history(call_data("c"))
        standin.add_fault(method="PUT", delay=4.0, delay_phase="before_body")
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match=r"no progress|Timeout"):
            await client.upload_recording(url, wav, "wav")
        assert time.monotonic() - started < 3.0


async def test_slow_but_moving_upload_is_not_idle(standin: StandIn, tmp_path: Path) -> None:
    # 24 MB read at 8 MB/s: 3 s in all, longer than the idle limit. (The last few MB
    # sit in socket buffers, ~0.7 s to drain at this rate: that counts as silence.)
    wav = write_wav(tmp_path / "c.wav", data_bytes=24 * 1024 * 1024, sparse=True)
    timeouts = Timeouts(connect=2.0, post_total=5.0, upload_idle=2.0)
    async with MiitelClient(standin.webhook_url, timeouts=timeouts) as client:
        url = await client.create_call_history(call_data("c"))
        standin.add_fault(method="PUT", slow_body_bps=8 * 1024 * 1024)
        started = time.monotonic()
        await client.upload_recording(url, wav, "wav")
    assert time.monotonic() - started > 2.5
    assert standin.call("c")["status"] == "uploaded"  # type: ignore[index]


async def test_put_can_be_repeated_after_a_dropped_upload(
    standin: StandIn, client: MiitelClient, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "c.wav", seconds=3)
    url = await client.create_call_history(call_data("c"))
    standin.add_fault(method="PUT", drop="after_body")
    with pytest.raises(OutcomeUnknown):
        await client.upload_recording(url, wav, "wav")
    await client.upload_recording(url, wav, "wav")
    assert standin.call("c")["status"] == "uploaded"  # type: ignore[index]


async def test_client_logs_no_secret(
    standin: StandIn, client: MiitelClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wav = write_wav(tmp_path / "c.wav")
    url = await client.create_call_history(call_data("c"))
    await client.upload_recording(url, wav, "wav")
    standin.add_fault(status=500)
    with pytest.raises(ServerError):
        await client.upload_recording(url, wav, "wav")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "PUT http://127.0.0.1" in text
    assert_no_secret(text, standin.webhook_url, url)
    assert secret_of(url) not in repr(client) and secret_of(standin.webhook_url) not in repr(client)


# -- answers are read up to a cap ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [(200, OutcomeUnknown, "answered 200 but its answer is over 1 MiB"),
     (400, Permanent, 'answered 400: {"detail": "proxy error"}'),
     (502, ServerError, 'answered 502: {"detail": "proxy error"}')],
)
async def test_a_200mb_answer_is_read_only_up_to_the_cap(
    standin: StandIn, client: MiitelClient, status: int, kind: type, says: str
) -> None:
    size = 200 * 1024 * 1024
    fault = standin.add_fault(method="POST", status=status, body='{"detail": "proxy error"} ',
                              body_size=size)
    tracemalloc.start()
    try:
        with pytest.raises(MiitelError) as caught:
            await client.create_call_history(call_data("c"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await asyncio.sleep(0.3)  # let the stand-in notice that the client hung up
    assert type(caught.value) is kind and says in str(caught.value)
    assert "only its start was read" in str(caught.value) or status == 200
    # The client read about ANSWER_LIMIT and closed the connection: the stand-in
    # got no further than that plus what the sockets buffer (a few MB on loopback).
    assert fault.body_sent < 24 * 1024 * 1024, fault.body_sent
    assert peak < ANSWER_LIMIT * 8, peak  # the answer, its text, its scrubbed copy


async def test_a_big_answer_to_a_put_still_means_uploaded(
    standin: StandIn, client: MiitelClient, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "c.wav")
    url = await client.create_call_history(call_data("c"))
    standin.add_fault(method="PUT", status=200, body="ok ", body_size=50 * 1024 * 1024,
                      process=True)
    assert await client.upload_recording(url, wav, "wav") == wav.stat().st_size
    assert standin.call("c")["status"] == "uploaded"  # type: ignore[index]


# -- 200 MB upload with bounded memory -----------------------------------------------------


async def test_200mb_upload_keeps_memory_bounded(tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    wav = write_wav(tmp_path / "big.wav", channels=2, rate=8000, data_bytes=size, sparse=True)
    async with standin_process(tmp_path / "standin") as standin:
        async with MiitelClient(standin.webhook_url, timeouts=FAST) as client:
            url = await client.create_call_history(call_data("big"))
            baseline = rss_bytes()
            peak = baseline
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_bytes())
                    time.sleep(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            tracemalloc.start()
            started = time.monotonic()
            try:
                sent = await client.upload_recording(url, wav, "wav")
            finally:
                elapsed = time.monotonic() - started
                _, traced_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                done.set()
                sampler.join()
        (record,) = await standin.calls()
    growth = peak - baseline
    print(f"\n200 MB upload: {elapsed:.2f}s, {sent / elapsed / 1e6:.0f} MB/s, "
          f"RSS growth {growth / 1e6:.1f} MB, tracemalloc peak {traced_peak / 1e6:.1f} MB")
    assert sent == wav.stat().st_size
    assert record["bytes"] == sent and record["status"] == "uploaded"
    assert record["duration"] == pytest.approx(size / 4 / 8000)
    assert growth < 60 * 1024 * 1024
    assert traced_peak < 60 * 1024 * 1024


async def test_cancelled_upload_leaves_no_task_behind(standin: StandIn, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "big.wav", data_bytes=32 * 1024 * 1024, sparse=True)
    async with MiitelClient(standin.webhook_url, timeouts=FAST) as client:
        url = await client.create_call_history(call_data("c"))
        standin.add_fault(method="PUT", delay=4.0, delay_phase="before_body")
        task = asyncio.create_task(client.upload_recording(url, wav, "wav"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
