"""Keep the secrets in MiiTel URLs out of logs and error messages.

The Incoming Webhook URL is the company's credential, and upload URLs are
signed: both are secrets. Every log line and error that mentions one goes
through `redact_url`; text that may quote one (an exception from aiohttp, a
response body) goes through `scrub`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

ELLIPSIS = "…"

# Shorter tails would give away too much of a short secret.
_MIN_REST_FOR_TAIL = 12
# Path segments and query values at least this long are treated as secret.
_MIN_SECRET_LEN = 8

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
    if not rest:
        # A one-segment path may itself be the secret (`https://hooks.example/<token>`).
        if len(first) >= _MIN_REST_FOR_TAIL:
            return f"/{ELLIPSIS}{first[-4:]}"
        return f"/{first}" if first else ""
    tail = rest[-4:] if len(rest) >= _MIN_REST_FOR_TAIL else ""
    return f"/{first}/{ELLIPSIS}{tail}"


def scrub(text: str, *urls: object) -> str:
    """Remove from `text` every URL it contains and every secret part of `urls`.

    aiohttp puts the full request URL into some exception messages, and S3-style
    error bodies quote the signature and the canonical request: so the secret
    parts (long path segments, query string, long query values) are replaced
    wherever they appear, not only inside a full URL.
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0).replace("\\/", "/")), text)
    for url in urls:
        for secret in _secret_parts(str(url)):
            text = text.replace(secret, ELLIPSIS)
    return text


def _secret_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: set[str] = set()
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
    hidden = segments if len(segments) == 1 else segments[1:]
    found.update(hidden)
    if len(segments) > 1:
        found.add("/".join(segments[1:]))
    candidates = {s for s in found if len(s) >= _MIN_SECRET_LEN}
    candidates |= {unquote(s) for s in candidates}
    # Longest first, so that a whole query is replaced before its pieces.
    return sorted((s for s in candidates if len(s) >= _MIN_SECRET_LEN), key=len, reverse=True)
