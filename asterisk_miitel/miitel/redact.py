"""Keep the secrets in MiiTel URLs out of logs and error messages.

The Incoming Webhook URL is the company's credential, and upload URLs are
signed: both are secrets. Every log line and error that mentions one goes
through `redact_url`; text that may quote one (an exception from aiohttp, a
response body) goes through `scrub`.

A secret is also hidden when it appears on its own, outside any URL: the
webhook's token quoted in an error page, the value of an `Authorization`
header echoed back. The configuration's secrets are given once to `remember`
(the client and the log setup do) and every `scrub` in the process removes
them, so reasons stored in the outbox, `status` and the logs never hold one.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

ELLIPSIS = "…"

# Shorter tails would give away too much of a short secret.
_MIN_REST_FOR_TAIL = 12
# Path segments and query values at least this long are treated as secret.
_MIN_SECRET_LEN = 8
# A value given as secret (a password, a header's credential) this long or more
# is hidden wherever it appears (the log filter's rule too).
_MIN_VALUE_LEN = 4

# The process's configured secrets and their parts, longest first (`remember`).
_remembered: list[str] = []

# http(s) URLs inside free text, also when JSON escaped the slashes ("https:\/\/").
_URL_IN_TEXT = re.compile(r"""https?:(?:\\?/){2}[^\s"'<>\\]+(?:\\/[^\s"'<>\\]*)*""")


def redact_url(url: object) -> str:
    """`https://acme.miitel.jp/webhook/…3f9a`: scheme, host, first path segment, last 4 chars.

    User info, query string and fragment are dropped. Never raises: it is used
    on error paths.
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<unparseable URL>"
    prefix = f"{parts.scheme}://{host}" if parts.scheme else host
    return prefix + _redact_path(parts.path)


def _redact_path(path: str) -> str:
    segments = path.lstrip("/").split("/", 1)
    first = segments[0]
    rest = segments[1] if len(segments) > 1 else ""
    if rest and _looks_random(first):  # `https://hooks.example/<token>/incoming`
        return f"/{ELLIPSIS}"
    if not rest:
        # A one-segment path may itself be the secret (`https://hooks.example/<token>`).
        if len(first) >= _MIN_REST_FOR_TAIL:
            return f"/{ELLIPSIS}{first[-4:]}"
        return f"/{first}" if first else ""
    tail = rest[-4:] if len(rest) >= _MIN_REST_FOR_TAIL else ""
    return f"/{first}/{ELLIPSIS}{tail}"


def _looks_random(segment: str) -> bool:
    """A path segment that reads like a token rather than a word (`webhook`)."""
    return len(segment) >= 16 and any(c.isdigit() for c in segment)


def scrub(text: str, *urls: object) -> str:
    """Remove from `text` every URL it contains, every secret part of `urls`,
    and every secret given to `remember`.

    aiohttp puts the full request URL into some exception messages, and S3-style
    error bodies quote the signature and the canonical request: so the secret
    parts (long path segments, query string, long query values) are replaced
    wherever they appear, not only inside a full URL.
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0).replace("\\/", "/")), text)
    for url in urls:
        for secret in _secret_parts(str(url)):
            text = text.replace(secret, ELLIPSIS)
    for secret in _remembered:
        if secret in text:
            text = text.replace(secret, ELLIPSIS)
    return text


def remember(*secrets: str | None) -> None:
    """Hide these secrets (and their parts: see `secret_values`) in every later `scrub`."""
    known = set(_remembered)
    for secret in secrets:
        if secret:
            known |= secret_values(secret)
    _remembered[:] = sorted(known, key=len, reverse=True)


def secret_values(secret: str) -> set[str]:
    """What must never be shown of one configured secret: the secret itself; of a
    URL, also its token, query values and password; of a header value such as
    `Bearer <token>`, also the bare credential."""
    values = {secret}
    if secret.startswith(("http://", "https://")):
        values.update(_secret_parts(secret))
    else:
        scheme, _, credential = secret.strip().partition(" ")
        if credential and scheme.isalpha():
            values.add(credential.strip())
    return {v for v in values if len(v) >= _MIN_VALUE_LEN}


def _secret_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: set[str] = set()
    try:
        password = parts.password
    except ValueError:
        password = None
    if password and len(password) >= _MIN_VALUE_LEN:
        found.add(password)
    if parts.query:
        found.add(parts.query)
        for _key, value in parse_qsl(parts.query, keep_blank_values=True):
            # An S3 credential is `<key id>/<date>/<region>/s3/aws4_request`;
            # error bodies quote the key id alone.
            found.add(value)
            found.update(value.split("/"))
        for raw in parts.query.split("&"):
            found.add(raw.partition("=")[2])
    segments = parts.path.strip("/").split("/")
    hidden = segments if len(segments) == 1 or _looks_random(segments[0]) else segments[1:]
    found.update(hidden)
    if len(segments) > 1:
        found.add("/".join(segments[1:]))
    candidates = {s for s in found if len(s) >= _MIN_SECRET_LEN or s == password}
    candidates |= {unquote(s) for s in candidates}
    # Longest first, so that a whole query is replaced before its pieces.
    return sorted((s for s in candidates if len(s) >= _MIN_SECRET_LEN or s == password),
                  key=len, reverse=True)
