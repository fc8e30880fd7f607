"""The stand-in's aiohttp application.

Routes:

- `POST <webhook path>`: create call histories (see `validation` for what is
  checked); 400 with `[{"path", "message"}, ...]` when invalid, 415 unless the
  body is `application/json`, else 200 `{"audio_upload_urls": [{id: {"url"}}]}`.
  Any other path is 404, as a wrong company URL would be.
- `PUT /upload/<token>?X-Amz-...`: S3-style presigned upload. 411 without
  Content-Length (or chunked), 403 `SignatureDoesNotMatch` for an unknown URL
  or an altered query, 403 `AccessDenied` / `Request has expired` after
  `upload_ttl`; else the body is streamed to disk and judged as MiiTel would.
- `GET /calls`: every call history, with what was uploaded.
- `GET /`: the same as an HTML page for a person (every value escaped: call
  data carries caller names from the PBX). The webhook path is not shown.
- `GET|POST /_control`: the fault queue and the clock offset (see `faults`).

A call_data_id POSTed again stays one history whose `post_count` grows, and
gets a new upload URL (earlier ones stay valid until they expire, as signed
URLs do). What the real MiiTel does then is not documented.

Run it with aiohttp's access log off (`StandIn` and `serve` do): that log
would print the secret paths. The `_log_requests` middleware logs one
redacted line per request instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import aiofiles
from aiohttp import web

from ...recordings.probe import probe
from ..redact import redact_url
from .faults import Fault, Faults
from .store import Grant, Store, iso
from .validation import PayloadValidator

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_TTL = 3 * 3600.0  # MiiTel: 3 hours from the POST
CHUNK_SIZE = 256 * 1024
MAX_POST_BYTES = 10 * 1024 * 1024
RESERVED_PATHS = ("/calls", "/_control", "/upload/")
# An expired URL answers "Request has expired" for this long, then is forgotten.
KEEP_EXPIRED_GRANTS = 7 * 86400.0


class _Dropped(web.Response):
    """Returned after the connection was closed on purpose; never reaches the client."""


@dataclass(slots=True)
class StandInState:
    """Everything one stand-in application knows; stored in the app, never global."""

    store: Store
    validator: PayloadValidator
    upload_ttl: float
    clock: Callable[[], float]
    webhook_path_option: str | None
    faults: Faults = field(default_factory=Faults)
    webhook_path: str = ""  # known once started
    clock_offset: float = 0.0  # moved by /_control's advance_clock

    def now(self) -> float:
        return self.clock() + self.clock_offset


STATE = web.AppKey("miitel_standin_state", StandInState)


def make_app(
    data_dir: str | os.PathLike[str],
    *,
    webhook_path: str | None = None,
    upload_ttl: float = DEFAULT_UPLOAD_TTL,
    clock: Callable[[], float] = time.time,
    strict_datetime: bool = False,
    check_user_ids: bool = True,
) -> web.Application:
    """The stand-in as an aiohttp application.

    `webhook_path` None: `/webhook/<random token>`, made up on first start and
    kept in `data_dir`, so a restarted stand-in answers at the same URL.
    """
    if webhook_path is not None:
        _check_webhook_path(webhook_path)
    state = StandInState(
        store=Store(data_dir),
        validator=PayloadValidator(
            strict_datetime=strict_datetime, check_user_ids=check_user_ids
        ),
        upload_ttl=upload_ttl,
        clock=clock,
        webhook_path_option=webhook_path,
    )
    app = web.Application(middlewares=[_log_requests], client_max_size=MAX_POST_BYTES)
    app[STATE] = state
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/calls", _calls)
    app.router.add_get("/", _index)
    app.router.add_get("/_control", _control_get)
    app.router.add_post("/_control", _control_post)
    app.router.add_put("/upload/{token}", _upload)
    app.router.add_route("*", "/{tail:.*}", _webhook_or_not_found)
    return app


def _check_webhook_path(path: str) -> None:
    if not path.startswith("/") or "?" in path or path.startswith(RESERVED_PATHS):
        raise ValueError(f"webhook path must start with / and avoid {RESERVED_PATHS}")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Startup: load what earlier runs stored. Cleanup: nothing is held in memory only."""
    state = app[STATE]
    await asyncio.to_thread(state.store.open)
    state.store.prune_grants(state.now() - KEEP_EXPIRED_GRANTS)
    state.webhook_path = state.webhook_path_option or state.store.webhook_path()
    log.info(
        "MiiTel stand-in ready: %d call histories in %s, webhook path %s",
        len(state.store.calls()), state.store.data_dir, redact_url(state.webhook_path),
    )
    yield
    log.info("MiiTel stand-in stopped")


@web.middleware
async def _log_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    outcome: object = "error"
    try:
        response = await handler(request)
        outcome = "dropped" if isinstance(response, _Dropped) else response.status
        return response
    except web.HTTPException as exc:
        outcome = exc.status
        raise
    finally:
        log.info(
            "%s %s -> %s in %.3fs", request.method,
            redact_url(f"{request.scheme}://{request.host}{request.raw_path}"),
            outcome, time.monotonic() - started,
        )


# -- webhook ---------------------------------------------------------------------


async def _webhook_or_not_found(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path != state.webhook_path:
        return web.json_response({"detail": "Not found."}, status=404)
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    return await _with_fault(request, state.faults.take("POST"), _create_histories)


async def _create_histories(request: web.Request, fault: Fault | None) -> web.StreamResponse:
    state = request.app[STATE]
    raw = await _read_all(request, fault)
    if request.content_type != "application/json":
        return _problems(415, "$", "Content-Type must be application/json")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return _problems(400, "$", f"body is not valid JSON: {exc}")
    problems = state.validator.problems(doc)
    if problems:
        log.info("rejected: %d problem(s) in the call data", len(problems))
        return web.json_response(problems, status=400)
    now = state.now()
    answer = []
    for call in doc["call_data"]:
        key = state.store.record_post(call, now)
        answer.append({call["call_data_id"]: {"url": _issue_upload_url(request, state, key, now)}})
    return web.json_response({"audio_upload_urls": answer})


def _issue_upload_url(request: web.Request, state: StandInState, key: str, now: float) -> str:
    token = secrets.token_urlsafe(32)
    signed_at = datetime.fromtimestamp(now, UTC)
    params = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        # "/" in the credential becomes %2F: a client that re-encodes the URL breaks it.
        ("X-Amz-Credential", f"STANDIN/{signed_at:%Y%m%d}/ap-northeast-1/s3/aws4_request"),
        ("X-Amz-Date", f"{signed_at:%Y%m%dT%H%M%SZ}"),
        ("X-Amz-Expires", str(max(1, round(state.upload_ttl)))),
        ("X-Amz-SignedHeaders", "host"),
    ]
    unsigned = urlencode(params)
    signature = hashlib.sha256(f"{token}?{unsigned}".encode()).hexdigest()
    query = f"{unsigned}&X-Amz-Signature={signature}"
    state.store.add_grant(token, Grant(key, now, now + state.upload_ttl, query))
    return f"{request.scheme}://{request.host}/upload/{token}?{query}"


async def _read_all(request: web.Request, fault: Fault | None) -> bytes:
    if fault is None or not fault.slow_body_bps:
        return await request.read()
    parts = []
    received = 0
    async for chunk in _body_chunks(request, fault):
        received += len(chunk)
        if received > MAX_POST_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_POST_BYTES, received)
        parts.append(chunk)
    return b"".join(parts)


async def _body_chunks(request: web.Request, fault: Fault | None) -> AsyncIterator[bytes]:
    rate = fault.slow_body_bps if fault else None
    async for chunk in request.content.iter_chunked(min(CHUNK_SIZE, rate or CHUNK_SIZE)):
        yield chunk
        if rate:
            await asyncio.sleep(len(chunk) / rate)


# -- uploads ---------------------------------------------------------------------


async def _upload(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return await _with_fault(request, state.faults.take("PUT"), _receive_upload)


async def _receive_upload(request: web.Request, fault: Fault | None) -> web.StreamResponse:
    state = request.app[STATE]
    grant = state.store.grant(request.match_info["token"])
    refusal = _refuse_upload(request, grant, state.now())
    if refusal is not None:
        return refusal
    assert grant is not None
    temp = state.store.temp_upload()
    try:
        size = await _stream_to(temp, request, fault)
        if size != request.content_length:
            raise ConnectionResetError(f"body ended after {size} bytes")
        info = await asyncio.to_thread(probe, temp)
        record = state.store.record_upload(grant.call_key, temp, info, size, state.now())
    except (OSError, asyncio.IncompleteReadError) as exc:
        # The client went away mid-body: nothing is stored, as with S3.
        log.info("upload cut short: %s", type(exc).__name__)
        return _Dropped(status=400)
    finally:
        temp.unlink(missing_ok=True)
    log.info("stored %d bytes: %s%s", size, record["status"],
             f" ({record['error_detail']})" if record["error_detail"] else "")
    return web.Response(status=200, headers={"ETag": f'"{secrets.token_hex(16)}"'})


def _refuse_upload(request: web.Request, grant: Grant | None,
                   now: float) -> web.Response | None:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if request.content_length is None or chunked:
        # Signed storage URLs need the length up front.
        return _s3_error(411, "MissingContentLength",
                         "You must provide the Content-Length HTTP header.")
    # The raw query: a client that re-encodes the presigned URL must fail here, as on S3.
    if grant is None or request.rel_url.raw_query_string != grant.query:
        return _s3_error(
            403, "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    if now >= grant.expires_at:
        return _s3_error(403, "AccessDenied", "Request has expired",
                         Expires=iso(grant.expires_at), ServerTime=iso(now))
    return None


async def _stream_to(path: Path, request: web.Request, fault: Fault | None) -> int:
    """Write the body to `path` chunk by chunk (never whole in memory); return its size."""
    size = 0
    async with aiofiles.open(path, "wb") as out:
        async for chunk in _body_chunks(request, fault):
            await out.write(chunk)
            size += len(chunk)
    return size


def _s3_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


# -- faults ------------------------------------------------------------------------

Handler = Callable[[web.Request, Fault | None], Awaitable[web.StreamResponse]]


async def _with_fault(request: web.Request, fault: Fault | None,
                      handle: Handler) -> web.StreamResponse:
    """Run `handle` with the fault's delays, drops and replaced answers around it."""
    if fault is None:
        return await handle(request, None)
    if fault.delay and fault.delay_phase == "before_body":
        await asyncio.sleep(fault.delay)
    if fault.drop == "before_body":
        return _drop(request)
    response: web.StreamResponse
    if fault.status is not None and not fault.process:
        response = await _fault_answer(request, fault)
    else:
        response = await handle(request, fault)
        if fault.status is not None:
            response = await _fault_answer(request, fault)
    if fault.delay and fault.delay_phase == "after_body":
        await asyncio.sleep(fault.delay)
    if fault.drop == "after_body":
        return _drop(request)
    return response


async def _fault_answer(request: web.Request, fault: Fault) -> web.StreamResponse:
    assert fault.status is not None
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    body = fault.body if fault.body is not None else json.dumps({"detail": "injected fault"})
    if fault.echo:
        auth = request.headers.get("Authorization", "")
        body = json.dumps({
            "detail": fault.body or "injected fault", "request": request.path_qs,
            "token": request.path.rstrip("/").rsplit("/", 1)[-1],
            "authorization": auth, "credential": auth.partition(" ")[2],
        })
    if fault.body_size is None:
        return web.Response(status=fault.status, text=body, headers=headers,
                            content_type="application/json")
    return await _stream_answer(request, fault, body.encode(), headers)


async def _stream_answer(request: web.Request, fault: Fault, unit: bytes,
                         headers: dict[str, str] | None) -> web.StreamResponse:
    """`body_size` bytes of `unit` repeated, written chunk by chunk, never whole."""
    assert fault.status is not None and fault.body_size is not None
    response = web.StreamResponse(status=fault.status, headers=headers)
    response.content_type = "application/json"
    response.content_length = fault.body_size
    await response.prepare(request)
    chunk = unit * max(1, CHUNK_SIZE // len(unit))
    remaining = fault.body_size
    try:
        while remaining > 0:
            piece = chunk[:remaining]
            await response.write(piece)
            fault.body_sent += len(piece)
            remaining -= len(piece)
        await response.write_eof()
    except (ConnectionError, RuntimeError):  # the client hung up; RuntimeError: transport closed
        return _drop(request)
    return response


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer."""
    if request.transport is not None:
        request.transport.close()
    return _Dropped(status=499)


# -- inspection and control ------------------------------------------------------------


async def _calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].store.calls())


async def _index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(text=index_page(state.store.calls(), str(state.store.data_dir)),
                        content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


_PAGE_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.uploaded{color:#176b2c}
.failed{color:#a00}.waiting_upload{color:#8a5a00}code{font-size:12px}
"""


def index_page(calls: list[dict[str, Any]], data_dir: str) -> str:
    """What the stand-in received, newest first, for a person with a browser."""
    esc = html.escape
    rows = []
    for call in reversed(calls):
        data = call.get("call_data") or {}
        parties = "<br>".join(
            esc(f"{p.get('type')} {p.get('stereo_lr')}: {p.get('number')}"
                + (f" {p['name']}" if p.get("name") else "")
                + (" (MiiTel user)" if p.get("miitel_user_id") else ""))
            for p in data.get("participants") or [] if isinstance(p, dict))
        audio = "-"
        if call.get("format"):
            audio = esc(f"{call['format']}, {call['channels']} ch, {call['sample_rate']} Hz, "
                        f"{call['duration'] or 0:.1f} s, {call['bytes']} bytes")
        problem = esc(call.get("error") or "")
        if call.get("error_detail"):
            problem += f"<br><small>{esc(call['error_detail'])}</small>"
        status = str(call.get("status"))
        rows.append(
            f"<tr><td>{esc(str(call.get('received_at')))}</td>"
            f"<td><code>{esc(str(call.get('call_data_id')))}</code></td>"
            f"<td>{esc(str(data.get('event_type')))}</td><td>{parties}</td>"
            f"<td class=\"{esc(status)}\">{esc(status)}</td><td>{audio}</td>"
            f"<td>{call.get('post_count')} / {call.get('put_count')}</td><td>{problem}</td></tr>")
    body = ("<table><tr><th>received</th><th>call_data_id</th><th>event_type</th>"
            "<th>participants</th><th>status</th><th>audio</th><th>POSTs / PUTs</th>"
            "<th>MiiTel would show</th></tr>" + "".join(rows) + "</table>"
            if rows else "<p>Nothing received yet: point the service's webhook_url here.</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>MiiTel stand-in</title>"
            f"<style>{_PAGE_CSS}</style></head><body><h1>MiiTel stand-in</h1>"
            f"<p>{len(calls)} call histor{'y' if len(calls) == 1 else 'ies'} received, kept in "
            f"<code>{esc(data_dir)}</code>. JSON: <a href=\"/calls\">/calls</a>.</p>"
            f"{body}</body></html>")


def control_state(state: StandInState) -> dict[str, Any]:
    return {"faults": state.faults.pending(), "clock": state.now(),
            "clock_offset": state.clock_offset}


async def _control_get(request: web.Request) -> web.Response:
    return web.json_response(control_state(request.app[STATE]))


async def _control_post(request: web.Request) -> web.Response:
    """`{"faults": [{...}], "clear_faults": true, "advance_clock": 3600}`, any subset."""
    state = request.app[STATE]
    try:
        doc = await request.json()
        apply_control(state, doc)
    except (ValueError, TypeError) as exc:
        return _problems(400, "$", str(exc))
    return web.json_response(control_state(state))


def apply_control(state: StandInState, doc: object) -> None:
    if not isinstance(doc, dict):
        raise ValueError("control body must be a JSON object")
    unknown = set(doc) - {"faults", "clear_faults", "advance_clock"}
    if unknown:
        raise ValueError(f"unknown control keys: {sorted(unknown)}")
    new = [Fault.from_json(f) for f in doc.get("faults", [])]  # all valid, or none added
    if doc.get("clear_faults"):
        state.faults.clear()
    for fault in new:
        state.faults.add(fault)
    state.clock_offset += float(doc.get("advance_clock", 0.0))


def _problems(status: int, path: str, message: str) -> web.Response:
    return web.json_response([{"path": path, "message": message}], status=status)
