"""The console: what the service is doing, in a browser, from its own HTTP server.

    GET  /                      health (AMI, MiiTel, outbox), calls per state, the calls
                                set aside with what to do, recent calls (?state=... filters)
    GET  /calls/<id>            one call: steps with their times, reason, next action,
                                call_data
    POST /calls/<id>/retry      put a set-aside call back in line ([http] console_actions)

Server-rendered HTML with inline CSS: no script, no asset from anywhere, so it
works with JavaScript off and on a PBX with no Internet. Every value is
escaped: caller names and numbers come from AMI, which any AMI user can
write to. Nothing secret is shown (the webhook URL, upload URLs, the AMI
secret); reasons and errors go through `scrub` (ops/calls.py) first.

Read-only unless `[http] console_actions = true`. Then each set-aside call
gets a retry button: a POST form carrying a CSRF token (an HMAC of the call
id under a secret made at start, so it cannot be guessed from outside and
dies with the process), refused when the browser says the request came from
another site (Origin / Sec-Fetch-Site). Nothing that changes state is a GET.
Requests whose Host is not this machine's (an IP address, localhost, the
configured host or this machine's name) are refused: a web page cannot
reach the console through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from .. import __version__
from ..miitel.redact import scrub
from ..outbox.manage import retry
from ..outbox.states import IN_PROGRESS, MIITEL_CODES, STATES
from ..outbox.store import Row
from . import calls as ops_calls

if TYPE_CHECKING:
    from ..config import Config
    from ..outbox.store import Outbox
    from .http import Health

log = logging.getLogger("asterisk_miitel.console")

RECENT = 50
STATE_LABELS = {
    "waiting_recording": "waiting for the recording", "ready": "ready to send",
    "posting": "being sent", "created": "uploading", "uploaded": "uploaded",
    "sent": "sent (no audio)", "set_aside": "set aside", "skipped": "skipped",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """One service's console: where to read, whether actions are allowed."""

    service: Any  # asterisk_miitel.service.Service (outbox, sender, listener, client)
    config: Config
    health: Health
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    clock: Callable[[], float] = time.time
    _hosts: set[str] = field(init=False, default_factory=set)

    @property
    def outbox(self) -> Outbox:
        return self.service.outbox  # type: ignore[no-any-return]

    @property
    def actions(self) -> bool:
        return self.config.http.console_actions

    def token(self, call_id: str) -> str:
        return hmac.new(self.secret, f"retry\0{call_id}".encode(), hashlib.sha256).hexdigest()

    def __post_init__(self) -> None:
        # Names only, no DNS lookup: a slow resolver must not stall a page.
        host = socket.gethostname().lower()
        self._hosts = {"localhost", self.config.http.host.lower(), host, host.split(".")[0]}

    def allowed_hosts(self) -> set[str]:
        return self._hosts


CONSOLE = web.AppKey("console", Console)


def add_console(app: web.Application, console: Console) -> None:
    app[CONSOLE] = console
    app.middlewares.append(_guard)
    app.router.add_get("/", _index)
    app.router.add_get("/calls/{id}", _call)
    app.router.add_post("/calls/{id}/retry", _retry)


# -- request checks --------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check (DNS rebinding) on the console's pages; security headers on them."""
    console = request.app.get(CONSOLE)
    if console is None or not _is_console(request.path):
        return await handler(request)
    if not _host_allowed(request.host, console.allowed_hosts()):
        return _page(421, "Wrong host", "<p>This console answers only under this machine's "
                     "address or name. Open it as http://127.0.0.1:PORT/ (or through an SSH "
                     "tunnel).</p>")
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


def _is_console(path: str) -> bool:
    return path == "/" or path.startswith("/calls/")


def _host_allowed(host_header: str, names: Iterable[str]) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:9797
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in set(names)


def _same_origin(request: web.Request) -> bool:
    """What the browser says about where the form was: it must be this page."""
    origin = request.headers.get("Origin")
    if origin is not None:
        # Host and port, not the scheme: behind a TLS proxy the browser says https
        # while this server hears http.
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == request.host
    site = request.headers.get("Sec-Fetch-Site")
    return site in (None, "same-origin", "none")


# -- pages ---------------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tz = console.config.pbx.tz()
    try:
        states = ops_calls.parse_states(request.query.getall("state", []))
    except ops_calls.BadFilter as exc:
        return _page(400, "Bad filter", f"<p>{_e(str(exc))}</p><p><a href=\"/\">All calls</a></p>")
    outbox = console.outbox
    healthy, body = await console.health.report()
    counts = await outbox.counts()
    aside = [r for r in await outbox.recent(states=["set_aside"], limit=RECENT)]
    recent = await outbox.recent(states=states, limit=RECENT)
    retrying = [r for r in await outbox.recent(states=IN_PROGRESS, limit=200)
                if r.last_error]
    last_upload = await outbox.last_uploaded_at()
    parts = [
        _health_section(console, healthy, body, retrying, aside, last_upload),
        _counts_section(counts, states),
        _aside_section(console, aside, counts.get("set_aside", 0), tz),
        _recent_section(recent, states, tz),
    ]
    return _page(200, "asterisk-miitel", "".join(parts), console=console)


async def _call(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    row = await console.outbox.get(request.match_info["id"])
    if row is None:
        return _page(404, "No such call", "<p>No call with this id in the outbox.</p>"
                     "<p><a href=\"/\">Back to the console</a></p>", console=console)
    return await _call_page(console, row, None)


async def _call_page(console: Console, row: Row, flash: tuple[bool, str] | None,
                     status: int = 200) -> web.Response:
    tz = console.config.pbx.tz()
    d = ops_calls.detail(row, await console.outbox.steps(row.id), tz)
    ln = d.line
    out = ["<p><a href=\"/\">&larr; all calls</a></p>"]
    if flash is not None:
        ok, text = flash
        out.append(f"<p class=\"flash {'ok' if ok else 'bad'}\">{_e(text)}</p>")
    facts = [
        ("call", f"<code>{_e(ln.id)}</code>"), ("time", _e(ln.time)),
        ("state", _state(ln.state) + (f" <code>{_e(ln.reason_code)}</code>"
                                      if ln.reason_code else "")),
        ("reason", _e(ln.reason or "-")), ("event_type", _e(ln.event_type or "-")),
        ("parties", _e(ln.parties)), ("file", f"<code>{_e(d.file)}</code>"),
    ]
    if d.prepared:
        p = d.prepared
        facts.append(("uploaded file", _e(f"{p.get('file_type')}, {p.get('channel_type')}, "
                                          f"{p.get('duration') or 0:.1f} s")))
    if d.last_error and ln.state in IN_PROGRESS:
        facts.append(("last error", _e(f"{d.last_error} (attempt {d.attempts}, next "
                                       f"{d.next_attempt_at or 'now'})")))
    if ln.source != "live":
        facts.append(("learnt", _e(ln.source)))
    facts += [("POSTs to MiiTel", str(d.posts)), ("next", _e(ln.action))]
    facts += [("note", _e(note)) for note in d.notes]
    out.append("<table class=\"facts\">" + "".join(
        f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>")
    if row.state in ("set_aside", "skipped"):
        out.append(_retry_form(console, row) or _READ_ONLY * (not console.actions))
    out.append("<h2>Steps</h2>")
    if d.steps:
        out.append("<table><tr><th>time</th><th>state</th><th>detail</th></tr>" + "".join(
            f"<tr><td class=\"nowrap\">{_e(s.time)}</td><td>{_state(s.state)}</td>"
            f"<td>{_e(s.detail or '')}</td></tr>" for s in d.steps) + "</table>")
    else:
        out.append(f"<p>Queued {_e(d.queued_at)}; last change {_e(d.updated_at)} (this call "
                   "is older than step times in the outbox).</p>")
    out.append("<h2>call_data</h2><pre>" + _e(
        json.dumps(d.call_data, ensure_ascii=False, indent=2) if d.call_data is not None
        else "(none: see the reason)") + "</pre>")
    return _page(status, f"call {ln.id}", "<section>" + "".join(out) + "</section>",
                 console=console)


async def _retry(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    call_id = request.match_info["id"]
    if not console.actions:
        return _page(403, "Read-only console", "<p>Actions are off: set <code>[http] "
                     "console_actions = true</code> to retry calls from here, or run "
                     f"<code>{_e(ops_calls.COMMAND)} retry {_e(call_id)}</code>.</p>",
                     console=console)
    if not _same_origin(request):
        log.warning("console: refused a retry of %s from another site", call_id)
        return _page(403, "Refused", "<p>This request did not come from the console's own "
                     "page.</p>", console=console)
    form = await request.post()
    token = str(form.get("token", ""))
    if not hmac.compare_digest(token, console.token(call_id)):
        log.warning("console: refused a retry of %s without a valid token", call_id)
        return _page(403, "Refused", "<p>The form is out of date or did not come from this "
                     "console (the service may have restarted): reload the call's page and "
                     "try again.</p>", console=console)
    row = await console.outbox.get(call_id)
    if row is None:
        return _page(404, "No such call", "<p>No call with this id in the outbox.</p>",
                     console=console)
    force = form.get("force") == "1"
    result = await retry(console.outbox, call_id, console.config, force=force)
    if result.ok:
        log.info("call %s: put back in line from the console%s", call_id,
                 " (forced)" if force else "")
        sender = getattr(console.service, "sender", None)
        if sender is not None:
            sender.wake()
    row = await console.outbox.get(call_id)
    assert row is not None
    return await _call_page(console, row, (result.ok, result.message),
                            status=200 if result.ok else 409)


# -- sections ------------------------------------------------------------------------


def _health_section(console: Console, healthy: bool, body: dict[str, Any],
                    retrying: list[Row], aside: list[Row], last_upload: float | None) -> str:
    now = console.clock()
    ami = body.get("ami") or {}
    if ami.get("connected") is None:
        ami_text = "not followed (no AMI listener)"
    elif ami.get("connected"):
        quiet = ami.get("seconds_since_last_event")
        ami_text = "connected" + (f", last event {ops_calls.ago(quiet)}" if quiet is not None
                                  else ", no event yet")
    else:
        down = ami.get("disconnected_seconds")
        ami_text = "NOT connected" + (f" for {down:.0f} s" if down is not None else "")
        if ami.get("login_failures"):
            ami_text += " (login refused: check [ami] username/secret)"
    uploads_on = getattr(console.service, "client", None) is not None
    if not uploads_on:
        miitel = "uploads OFF: no webhook URL is configured; calls wait in the outbox"
    elif retrying:
        latest = max(retrying, key=lambda r: r.updated_at)
        miitel = (f"{len(retrying)} call(s) being retried; latest error: "
                  f"{scrub(latest.last_error or '')}")
    else:
        miitel = "no errors"
    refused = sum(1 for r in aside if (r.reason_code or "") in MIITEL_CODES)
    if refused:
        miitel += f"; {refused} call(s) set aside after MiiTel's answer (below)"
    if uploads_on and last_upload is not None:
        miitel += f"; last upload {ops_calls.ago(now - last_upload)}"
    outbox = body.get("outbox") or {}
    box = f"{outbox.get('depth', 0)} call(s) on their way"
    if outbox.get("oldest_waiting_seconds") is not None:
        box += f", the oldest for {outbox['oldest_waiting_seconds']:.0f} s"
    if outbox.get("writable") is False:
        box += "; CANNOT BE WRITTEN (disk full or permissions)"
    problems = "".join(f"<li>{_e(p)}</li>" for p in body.get("problems") or [])
    verdict = ("<p class=\"verdict ok\">Healthy</p>" if healthy else
               f"<p class=\"verdict bad\">Needs attention</p><ul>{problems}</ul>")
    rows = [("Asterisk (AMI)", ami_text), ("MiiTel", miitel), ("outbox", box)]
    return ("<section><h2>Health</h2>" + verdict + "<table class=\"facts\">" + "".join(
        f"<tr><th>{k}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table></section>")


def _counts_section(counts: dict[str, int], selected: list[str]) -> str:
    cells = []
    for state in STATES:
        n = counts.get(state, 0)
        cls = " class=\"sel\"" if state in selected else ""
        warn = " warn" if state == "set_aside" and n else ""
        cells.append(f"<a{cls} href=\"/?state={state}#recent\"><span class=\"n{warn}\">{n}"
                     f"</span><span>{_e(STATE_LABELS[state])}</span></a>")
    return ("<section><h2>Calls per state</h2><nav class=\"counts\">" + "".join(cells)
            + "<a href=\"/#recent\"><span class=\"n\">" + str(sum(counts.values()))
            + "</span><span>all</span></a></nav></section>")


def _aside_section(console: Console, rows: list[Row], total: int, tz: Any) -> str:
    if not rows:
        return ("<section><h2>Set aside</h2><p>None: every finished call is uploaded or on "
                "its way.</p></section>")
    items = []
    for row in rows:
        ln = ops_calls.line(row, tz)
        items.append(
            f"<li><div><a href=\"{_href(row.id)}\"><code>{_e(row.id)}</code></a> "
            f"<span class=\"muted\">{_e(ln.time)} {_e(ln.event_type or '')} "
            f"{_e(ln.parties)}</span></div>"
            f"<div><code>{_e(row.reason_code or '')}</code> {_e(ln.reason or '')}</div>"
            f"<div class=\"action\">What to do: {_e(ln.action)}</div>"
            f"{_retry_form(console, row)}</li>")
    more = (f"<p>The latest {len(rows)} of {total}: <a href=\"/?state=set_aside#recent\">all "
            "set aside</a>.</p>" if total > len(rows) else "")
    note = "" if console.actions else _READ_ONLY
    return (f"<section><h2>Set aside ({total})</h2><ul class=\"aside\">{''.join(items)}</ul>"
            f"{more}{note}</section>")


def _recent_section(rows: list[Row], states: list[str], tz: Any) -> str:
    title = "Recent calls" + (f" ({_e(', '.join(dict.fromkeys(states)))})" if states else "")
    if not rows:
        return f"<section id=\"recent\"><h2>{title}</h2><p>No calls yet.</p></section>"
    body = []
    for row in rows:
        ln = ops_calls.line(row, tz)
        body.append(
            f"<tr><td class=\"nowrap\">{_e(ln.time)}</td><td>{_e(ln.event_type or '-')}</td>"
            f"<td>{_e(ln.parties)}</td><td>{_state(ln.state)}</td>"
            f"<td>{_e(ln.reason or '')}</td>"
            f"<td class=\"id\"><a href=\"{_href(row.id)}\"><code>{_e(row.id)}</code></a></td>"
            "</tr>")
    return (f"<section id=\"recent\"><h2>{title}</h2><table><tr><th>time</th>"
            "<th>event_type</th><th>parties</th><th>state</th><th>reason</th>"
            "<th>call (details)</th></tr>"
            + "".join(body) + "</table></section>")


_READ_ONLY = ("<p class=\"muted\">Read-only: set <code>[http] console_actions = true</code> "
              "for retry buttons here, or run the command shown.</p>")


def _retry_form(console: Console, row: Row) -> str:
    if not console.actions or row.state not in ("set_aside", "skipped"):
        return ""
    force = ops_calls.needs_force(row)
    if row.reason_code == "incomplete":
        return ""  # nothing to send: no button
    label = "Send again (force)" if force else "Retry"
    warn = ("" if not force else "<span class=\"muted\">only after checking MiiTel: this may "
            "create a second call history</span>")
    return (f"<form method=\"post\" action=\"{_href(row.id)}/retry\" class=\"retry\">"
            f"<input type=\"hidden\" name=\"token\" value=\"{console.token(row.id)}\">"
            f"<input type=\"hidden\" name=\"force\" value=\"{'1' if force else '0'}\">"
            f"<button type=\"submit\">{label}</button> {warn}</form>")


# -- HTML ------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",
"Noto Sans CJK JP",sans-serif;margin:0;color:#1d2329;background:#f5f6f8}
header{background:#1f3b57;color:#fff;padding:10px 24px;display:flex;gap:16px;
align-items:baseline}header h1{font-size:18px;margin:0}header span{opacity:.8}
main{padding:8px 24px 32px;max-width:1400px}section{background:#fff;border:1px solid #dde1e6;
border-radius:6px;padding:8px 16px 12px;margin:14px 0}h2{font-size:15px;margin:6px 0 10px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;
padding:4px 8px;border-bottom:1px solid #eceff2}th{font-weight:600;color:#4a5561}
table.facts th{width:170px}td.id{max-width:260px}.nowrap{white-space:nowrap}
code{font:12px ui-monospace,
monospace;word-break:break-all}pre{background:#f3f4f6;padding:10px;overflow:auto;
font-size:12px}.verdict{font-weight:600;margin:4px 0}.ok{color:#17692e}.bad{color:#b3261e}
.counts{display:flex;flex-wrap:wrap;gap:8px}.counts a{display:flex;flex-direction:column;
min-width:110px;padding:6px 10px;border:1px solid #dde1e6;border-radius:6px;
text-decoration:none;color:inherit}.counts a.sel{border-color:#1f3b57;background:#eef3f8}
.counts .n{font-size:20px;font-weight:600}.counts .warn{color:#b3261e}
.st{display:inline-block;padding:0 6px;border-radius:4px;background:#eceff2;
white-space:nowrap}.st-uploaded,.st-sent{background:#dff3e4;color:#17692e}
.st-set_aside{background:#fde2e1;color:#8c1d18}.st-skipped{background:#eee;color:#555}
ul.aside{list-style:none;padding:0;margin:0}ul.aside li{padding:8px 0;
border-bottom:1px solid #eceff2}.action{color:#1f3b57}.muted{color:#6b7580}
form.retry{margin:4px 0}button{font:inherit;padding:2px 12px;cursor:pointer}
.flash{padding:8px 12px;border-radius:6px}.flash.ok{background:#dff3e4}
.flash.bad{background:#fde2e1}a{color:#1f5f99}
"""


def _page(status: int, title: str, body: str, *, console: Console | None = None
          ) -> web.Response:
    pbx = ""
    mode = ""
    if console is not None:
        pbx_id = getattr(console.service, "pbx_id", None) or console.config.pbx.id or ""
        pbx = f"<span>PBX {_e(pbx_id)}</span>" if pbx_id else ""
        mode = "<span>actions on</span>" if console.actions else "<span>read-only</span>"
        when = ops_calls.when(console.clock(), console.config.pbx.tz())
        mode += f"<span>as of {_e(when)}</span>"
    text = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>asterisk-miitel</h1><span>{_e(__version__)}</span>{pbx}{mode}</header>"
        f"<main>{body}<p class=\"muted\">Also: <a href=\"/healthz\">/healthz</a> (JSON), "
        "<a href=\"/metrics\">/metrics</a> (Prometheus). This page does not refresh by "
        "itself: reload it.</p></main></body></html>")
    resp = web.Response(status=status, text=text, content_type="text/html", charset="utf-8")
    resp.headers.update(HEADERS)
    return resp


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(call_id: str) -> str:
    return "/calls/" + quote(call_id, safe="")


def _state(state: str) -> str:
    return (f"<span class=\"st st-{_e(state)}\">"
            f"{_e(STATE_LABELS.get(state, state))}</span>")
