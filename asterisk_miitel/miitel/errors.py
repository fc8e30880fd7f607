"""What went wrong talking to MiiTel, as classes that say what to do next.

The outbox decides by class alone, never by parsing a message:

- `NotSent`: nothing reached MiiTel (connection refused, DNS, TLS, connect
  timeout). Safe to repeat, POST included.
- `OutcomeUnknown`: the request went out but no usable answer came back
  (timeout, connection lost, or a 2xx whose body holds no upload URL). MiiTel
  may have created the call history: a POST must not be repeated blindly. A
  PUT may be (it replaces the file).
  - `ServerError`: MiiTel, or a gateway in front of it, answered 500, 502,
    504 or another 5xx but 503. Like a timeout, it may come after the call
    history was created, so a POST is not repeated unless the site opted in
    (`[miitel] resend_on_server_error`). A PUT may be.
- `RetryableAnswer`: MiiTel answered 429, 503 or 408: it did not process the
  request; try again later, after `retry_after` seconds if it said so.
- `Permanent`: repeating the same request will not help, and MiiTel did not
  act on it (other 4xx, a file that is not what it claims).
  - `UploadExpired`: the signed upload URL is past its life (3 hours).
  - `UploadForbidden`: the upload URL was refused for another reason.

Messages never hold a webhook or upload URL in full (see `redact`), and
`body` keeps at most `BODY_LIMIT` characters of the answer.
"""

from __future__ import annotations

import json

BODY_LIMIT = 500


def cut(text: str | None, limit: int = BODY_LIMIT) -> str | None:
    """The first `limit` characters of `text`, marked when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


class MiitelError(Exception):
    """Base class. `status` is the HTTP status if MiiTel answered at all."""

    def __init__(
        self, message: str, *, status: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = cut(body)

    @property
    def details(self) -> object | None:
        """The answer's body parsed as JSON (e.g. the list of validation errors), if it is."""
        if not self.body:
            return None
        try:
            parsed: object = json.loads(self.body)
        except ValueError:
            return None
        return parsed

    def __str__(self) -> str:
        return self.message


class NotSent(MiitelError):
    """The request never reached MiiTel: repeating it is safe."""


class OutcomeUnknown(MiitelError):
    """The request was sent but no usable answer arrived: MiiTel may have acted on it."""


class _WithRetryAfter(MiitelError):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class ServerError(OutcomeUnknown, _WithRetryAfter):
    """A 5xx other than 503: the server failed, possibly after acting on the request."""


class RetryableAnswer(_WithRetryAfter):
    """MiiTel did not process the request (429, 503, 408): try again later."""


class Permanent(MiitelError):
    """Repeating this request unchanged will fail the same way."""


class UploadExpired(Permanent):
    """The signed upload URL has expired (MiiTel gives 3 hours after the POST)."""


class UploadForbidden(Permanent):
    """The upload URL was refused for a reason other than expiry (bad signature, wrong URL)."""
