"""HTTP client for MiiTel's Incoming Webhook: create call histories, upload recordings.

Two requests per call, as MiiTel's Incoming Webhook works (README, "What
each answer from MiiTel does"): `POST <webhook_url>` with `{"call_data": [...]}`
answers one signed upload URL per `call_data_id` (valid 3 hours), then
`PUT <upload url>` sends the audio file. Every failure is raised as one of the
classes in `errors`, which tell the caller whether repeating is safe.

Choices that matter:

- Each request uses a new connection (`force_close`): a POST written into a
  keep-alive connection that the server has just closed would fail in a way
  indistinguishable from "sent, outcome unknown".
- Whether the request's headers left this process is traced, so a timeout
  before sending is `NotSent` and one after it is `OutcomeUnknown`.
- Redirects are not followed: aiohttp would turn a redirected POST into a GET.
- `extra_headers` go only to the webhook: an Authorization header on a
  presigned storage URL makes the storage refuse it.
- Answers are read up to `ANSWER_LIMIT` (1 MiB), never whole: MiiTel's are a
  few KB, and a broken proxy streaming hundreds of MB must not take the
  service's memory with it. A 2xx cut there is `OutcomeUnknown` (the upload
  URL cannot be read, but the history may exist); an error keeps its start.
- The upload streams the file in 256 KiB chunks with an explicit
  Content-Length (signed storage URLs refuse chunked bodies), and has no total
  timeout, only an idle one: it fails when no chunk moved for `upload_idle`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import aiofiles
import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ..recordings.probe import probe
from ..recordings.spec import FileType
from .errors import (
    MiitelError,
    NotSent,
    OutcomeUnknown,
    Permanent,
    RetryableAnswer,
    ServerError,
    UploadExpired,
    UploadForbidden,
)
from .redact import redact_url, remember, scrub

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
ANSWER_LIMIT = 1024 * 1024  # bytes of an answer's body read at most
_ANSWER_CHUNK = 64 * 1024
_LIMIT_TEXT = f"{ANSWER_LIMIT / (1024 * 1024):g} MiB"
CONTENT_TYPES: dict[FileType, str] = {"wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4"}
# Answers that mean "not processed, not now": HTTP defines 429 (too many
# requests), 503 (unavailable) and 408 (gave up waiting for the request) so.
# Any other 5xx may come after the server acted (see errors.ServerError).
RETRYABLE_STATUSES = frozenset({408, 429, 503})
# How storage services word an expired signature (S3, GCS, Azure).
_EXPIRED_MARKERS = ("request has expired", "expiredtoken", "token has expired",
                    "signature expired", "not valid in the specified time frame")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. The POST has a total limit; the upload only connect and idle limits."""

    connect: float = 10.0
    post_total: float = 60.0
    upload_idle: float = 120.0


@dataclass(slots=True)
class _Progress:
    """Filled in by aiohttp's tracing while one request runs."""

    traced: bool = False  # our TraceConfig saw the request start
    sent: bool = False  # request headers were written to the socket
    body_error: BaseException | None = None  # the file failed while streaming


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    text: str
    headers: CIMultiDictProxy[str]
    cut: bool = False  # the body was longer than ANSWER_LIMIT: `text` is its start


class MiitelClient:
    """One company's Incoming Webhook. Use as `async with MiitelClient(url) as client:`.

    A caller's `session` is used as is and not closed; give it a connector with
    `force_close=True` for the reason in the module docstring. Without this
    client's tracing, a timeout on it is always `OutcomeUnknown`.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        verify_tls: bool = True,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhook_url = webhook_url
        self._extra_headers = dict(extra_headers or {})
        # MiiTel's answers may quote the token or a header's credential on
        # its own: every scrub in the process hides them from now on.
        remember(webhook_url, *self._extra_headers.values())
        self._timeouts = timeouts or Timeouts()
        self._verify_tls = verify_tls
        self._session = session
        self._owns_session = session is None
        self._clock = clock

    def __repr__(self) -> str:
        return f"MiitelClient({redact_url(self._webhook_url)!r})"

    async def __aenter__(self) -> Self:
        self._get_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- create call histories -------------------------------------------------

    async def create_call_histories(
        self, call_data: Sequence[Mapping[str, Any]]
    ) -> dict[str, str]:
        """POST the call data; return call_data_id -> upload URL for every entry."""
        if not call_data:
            raise ValueError("call_data is empty")
        ids = [str(entry["call_data_id"]) for entry in call_data]
        body = json.dumps({"call_data": list(call_data)}, ensure_ascii=False).encode("utf-8")
        headers = {
            **self._extra_headers,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        limits = aiohttp.ClientTimeout(
            total=self._timeouts.post_total, sock_connect=self._timeouts.connect
        )
        started = time.monotonic()
        answer = await self._send(
            "POST", self._webhook_url, data=body, headers=headers, limits=limits
        )
        log.info(
            "POST %s (%d call(s)) -> %d in %.2fs",
            redact_url(self._webhook_url), len(ids), answer.status, time.monotonic() - started,
        )
        if not 200 <= answer.status < 300:
            raise self._answer_error("POST", self._webhook_url, answer)
        if answer.cut:
            raise _unknown_answer(
                answer, self._webhook_url,
                f"its answer is over {_LIMIT_TEXT} (not read further)",
            )
        return _parse_upload_urls(answer, ids, self._webhook_url)

    async def create_call_history(self, call_data: Mapping[str, Any]) -> str:
        """POST one call's data; return its upload URL."""
        urls = await self.create_call_histories([call_data])
        return urls[str(call_data["call_data_id"])]

    # -- upload ----------------------------------------------------------------

    async def upload_recording(
        self,
        url: str,
        path: str | os.PathLike[str],
        file_type: FileType,
        *,
        expires_at: float | None = None,
    ) -> int:
        """PUT the file at `path` to the signed `url`; return the bytes sent.

        `expires_at` (epoch seconds) is when the URL stops working, if the caller
        knows; otherwise it is read from the URL's X-Amz-/X-Goog- parameters when
        present. OSError from reading the file propagates unchanged.
        """
        content_type = CONTENT_TYPES.get(file_type)
        if content_type is None:
            raise ValueError(f"unknown file_type {file_type!r}")
        size = await self._check_file(Path(path), file_type)
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        limits = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeouts.connect, sock_read=self._timeouts.upload_idle
        )
        started = time.monotonic()
        answer = await self._put_streaming(url, Path(path), size, headers, limits)
        elapsed = time.monotonic() - started
        log.info(
            "PUT %s (%d bytes, %s) -> %d in %.2fs",
            redact_url(url), size, file_type, answer.status, elapsed,
        )
        if 200 <= answer.status < 300:
            return size
        if expires_at is None:
            expires_at = expiry_from_url(url)
        raise self._upload_error(url, answer, expires_at)

    async def _check_file(self, path: Path, file_type: FileType) -> int:
        """The file's size, after making sure its bytes are what `file_type` claims."""
        info = await asyncio.to_thread(probe, path)
        if info.file_type != file_type:
            actual = info.file_type or f"unknown ({info.problem})"
            raise Permanent(
                f"{path.name} is {actual}, not {file_type}: MiiTel would fail the call"
            )
        size = (await asyncio.to_thread(path.stat)).st_size
        if size == 0:
            raise Permanent(f"{path.name} is empty")
        return size

    async def _put_streaming(
        self,
        url: str,
        path: Path,
        size: int,
        headers: dict[str, str],
        limits: aiohttp.ClientTimeout,
    ) -> _Answer:
        # aiohttp has no write timeout, and its sock_read timer starts only once
        # the body is written: an idle watchdog, pushed back by every chunk,
        # catches an upload that stopped moving.
        idle = self._timeouts.upload_idle
        loop = asyncio.get_running_loop()
        progress = _Progress()
        try:
            async with asyncio.timeout(idle) as watchdog:

                def moved() -> None:
                    watchdog.reschedule(loop.time() + idle)

                body = _file_chunks(path, size, moved, progress)
                try:
                    return await self._send(
                        "PUT", url, data=body, headers=headers, limits=limits,
                        progress=progress,
                    )
                finally:
                    await _close_quietly(body)
        except TimeoutError:
            raise _transport_error(
                TimeoutError(f"no progress for {idle:g}s"), "PUT", url, progress
            ) from None

    # -- plumbing ----------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                trace_configs=[_progress_tracer()],
            )
        return self._session

    async def _send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | AsyncIterator[bytes],
        headers: Mapping[str, str],
        limits: aiohttp.ClientTimeout,
        progress: _Progress | None = None,
    ) -> _Answer:
        progress = progress or _Progress()
        try:
            async with self._get_session().request(
                method,
                # encoded=True: a presigned URL must go out byte for byte as given.
                URL(url, encoded=True),
                data=data,
                headers=headers,
                timeout=limits,
                allow_redirects=False,
                ssl=self._verify_tls,  # True: aiohttp's default certificate checks
                trace_request_ctx=progress,
            ) as resp:
                raw, cut = await _read_capped(resp, ANSWER_LIMIT)
                if cut:
                    resp.close()  # drop the connection: the rest is never read
                return _Answer(resp.status, raw.decode("utf-8", "replace"), resp.headers, cut)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # `from None`: aiohttp's own message and traceback may hold the full URL.
            raise _transport_error(exc, method, url, progress) from None

    def _answer_error(self, method: str, url: str, answer: _Answer) -> MiitelError:
        body = scrub(answer.text, url)
        message = f"{method} {redact_url(url)} answered {answer.status}"
        if body:
            message += f": {body[:300]}"
        if answer.cut:
            message += f" (an answer over {_LIMIT_TEXT}: only its start was read)"
        status = answer.status
        if status in RETRYABLE_STATUSES or status >= 500:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), self._clock())
            kind = RetryableAnswer if status in RETRYABLE_STATUSES else ServerError
            return kind(message, status=status, body=body, retry_after=retry_after)
        return Permanent(message, status=status, body=body)

    def _upload_error(self, url: str, answer: _Answer, expires_at: float | None) -> MiitelError:
        error = self._answer_error("PUT", url, answer)
        if answer.status not in (400, 403):
            return error
        text = answer.text.lower()
        if any(marker in text for marker in _EXPIRED_MARKERS) or (
            expires_at is not None and self._clock() >= expires_at
        ):
            return UploadExpired(error.message, status=error.status, body=error.body)
        if answer.status == 403:
            return UploadForbidden(error.message, status=error.status, body=error.body)
        return error


def _progress_tracer() -> aiohttp.TraceConfig:
    async def on_start(_s: object, ctx: Any, _p: object) -> None:
        if isinstance(ctx.trace_request_ctx, _Progress):
            ctx.trace_request_ctx.traced = True

    async def on_headers_sent(_s: object, ctx: Any, _p: object) -> None:
        if isinstance(ctx.trace_request_ctx, _Progress):
            ctx.trace_request_ctx.sent = True

    tracer = aiohttp.TraceConfig()
    tracer.on_request_start.append(on_start)
    tracer.on_request_headers_sent.append(on_headers_sent)
    return tracer


async def _file_chunks(
    path: Path, size: int, moved: Callable[[], None], progress: _Progress
) -> AsyncIterator[bytes]:
    """Exactly `size` bytes of `path`, CHUNK_SIZE at a time; `moved()` after each."""
    remaining = size
    async with aiofiles.open(path, "rb") as fh:
        while remaining > 0:
            chunk = await fh.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                # Sending fewer bytes than Content-Length would hang the server.
                progress.body_error = EOFError(f"{path.name} shrank while uploading")
                raise progress.body_error
            remaining -= len(chunk)
            # aiohttp asks for the next chunk once the previous one was written.
            moved()
            yield chunk
    moved()  # the body is out: the idle limit now covers waiting for the answer


async def _close_quietly(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except RuntimeError:
        # Still running in aiohttp's (cancelled) writer task; it closes itself.
        pass


def _transport_error(
    exc: BaseException, method: str, url: str, progress: _Progress
) -> MiitelError:
    what = f"{method} {redact_url(url)}"
    detail = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, url)
    if progress.body_error is not None:
        return Permanent(f"{what} failed: {progress.body_error}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        # Nothing was sent. Not permanent: a CA bundle gets fixed, and calls
        # must wait in the outbox meanwhile, not be set aside one by one.
        return NotSent(f"{what} not sent: the server's TLS certificate is not trusted ({detail})")
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return Permanent(f"{what}: invalid URL or request ({detail})")
    if _never_sent(exc, progress):
        return NotSent(f"{what} not sent: {detail}")
    return OutcomeUnknown(f"{what} sent, but no answer: {detail}")


def _never_sent(exc: BaseException, progress: _Progress) -> bool:
    # Connector errors happen before a connection exists, whatever the tracing says.
    connect_errors: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,)
    connection_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)  # aiohttp >= 3.10
    if connection_timeout is not None:
        connect_errors += (connection_timeout,)
    if isinstance(exc, connect_errors):
        return True
    # Only our own session is traced; with a caller's session, assume the worst.
    return progress.traced and not progress.sent


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await resp.content.read(min(_ANSWER_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit], True


def _unknown_answer(answer: _Answer, webhook_url: str, what: str) -> OutcomeUnknown:
    """A 2xx we cannot use. Never `Permanent`: MiiTel said yes, so the call
    history may exist, and a plain retry would create a second one."""
    return OutcomeUnknown(
        f"POST {redact_url(webhook_url)} answered {answer.status} but {what}, so the "
        "call history may exist without its upload URL",
        status=answer.status, body=scrub(answer.text, webhook_url),
    )


def _parse_upload_urls(answer: _Answer, ids: list[str], webhook_url: str) -> dict[str, str]:
    """Map each id to its URL from `{"audio_upload_urls": [{"<id>": {"url": ...}}, ...]}`.

    Also accepted: one mapping instead of the list, and a bare URL string per id.
    Anything else is `OutcomeUnknown` (see `_unknown_answer`).
    """
    def unknown(what: str) -> OutcomeUnknown:
        return _unknown_answer(answer, webhook_url, what)

    try:
        doc = json.loads(answer.text)
    except ValueError:
        raise unknown("the answer is not JSON") from None
    entries = doc.get("audio_upload_urls") if isinstance(doc, dict) else None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise unknown("the answer has no audio_upload_urls")
    urls: dict[str, str] = {}
    for entry in entries:
        for call_data_id, value in entry.items() if isinstance(entry, dict) else ():
            url = value.get("url") if isinstance(value, dict) else value
            if isinstance(url, str) and url:
                urls[str(call_data_id)] = url
    missing = [i for i in ids if i not in urls]
    if missing:
        raise unknown(f"has no upload URL for call_data_id {missing}")
    return {i: urls[i] for i in ids}


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def expiry_from_url(url: str) -> float | None:
    """When a presigned S3/GCS URL expires (X-Amz-Date + X-Amz-Expires), if it says."""
    try:
        params = dict(parse_qsl(urlsplit(url).query))
    except ValueError:
        return None
    for vendor in ("Amz", "Goog"):
        signed_at = params.get(f"X-{vendor}-Date")
        lifetime = params.get(f"X-{vendor}-Expires")
        if signed_at and lifetime:
            try:
                start = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                return start.timestamp() + float(lifetime)
            except ValueError:
                return None
    return None
