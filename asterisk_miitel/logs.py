"""Logs for operators: readable text or JSON lines, never a secret.

Every module logs through the standard `logging` tree. Here, at the root
handler, a last line of defence replaces the configured secrets (webhook
URL, its path, the AMI secret, extra header values) wherever they appear,
and any URL in a message is shortened to host + redacted path.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from .miitel.redact import ELLIPSIS, remember, scrub, secret_values

SERVICE_LOGGERS = ("asterisk_miitel",)

# Warnings anyone who can send us input may cause (AMI junk, UserEvents) are
# said at most once a minute per kind: a flood must not fill the log.
WARN_EVERY = 60.0


class Throttle:
    """Per key: the first line at once, then at most one every `every` seconds."""

    def __init__(self, every: float = WARN_EVERY,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.monotonic = monotonic
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}  # not said since the last line

    def allow(self, key: str) -> int | None:
        """None: keep quiet. Else say it now, with how many went unsaid since."""
        now = self.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._quiet.pop(key, 0)


class SecretFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        parts: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            parts.add(secret)
            path = urlsplit(secret).path if secret.startswith("http") else ""
            if len(path) > 8:
                parts.add(path)
            # The bare token, password or credential, quoted on its own.
            parts |= secret_values(secret)
            remember(secret)
        # Longest first, so a URL is replaced before the path inside it.
        self._secrets = sorted((s for s in parts if len(s) >= 4), key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, ELLIPSIS)
        return scrub(text) if "http" in text else text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.clean(message)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned += "\n" + self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg = cleaned
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = (), stream: object = None
) -> SecretFilter:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    secret_filter = SecretFilter(secrets)
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries are chatty at INFO (aiohttp access logs of the stand-in stay).
    logging.getLogger("panoramisk").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    return secret_filter
