"""Who a channel is: a phone on this PBX (internal) or a trunk (external),
which extension and MiiTel user, which number and name MiiTel should show.

Internal or external is decided by named rules, first match wins, so
`replay --explain` can say why:

1. `users`             the extension is in [users]
2. `pbx.*_channels`    a configured channel-name glob
3. `pbx.*_contexts`    a configured dialplan context
4. `freepbx-context`   FreePBX's well-known contexts (from-internal, from-trunk, ...)
5. `technology`        an extension-like endpoint (PJSIP/1001) is a phone, anything else a trunk
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from uuid import UUID

from ..config import Config
from ..miitel.numbers import ANONYMOUS, InvalidNumber, normalize_number
from .asterisk import ContextKind, context_kind
from .state import Channel

Kind = ContextKind


@dataclass(frozen=True, slots=True)
class Party:
    kind: Kind
    rule: str  # which rule decided `kind`
    channel: str
    extension: str | None
    number: str  # normalised for MiiTel; may be ANONYMOUS
    name: str | None
    miitel_user_id: UUID | None
    number_problem: str | None = None  # set when the raw number could not be used

    def explain(self) -> str:
        who = f"extension {self.extension}" if self.extension else self.number
        user = f", MiiTel user {self.miitel_user_id}" if self.miitel_user_id else ""
        return f"{self.channel}: {self.kind} by rule {self.rule} ({who}{user})"


class PartyResolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules = config.numbers.rules()
        # endpoint (device) name -> extension, for devices named unlike their extension
        self._by_endpoint: dict[str, str] = {}
        for ext, user in config.users.items():
            for endpoint in user.endpoints:
                self._by_endpoint[endpoint] = ext

    # -- internal or external -------------------------------------------------------

    def extension_of(self, ch: Channel) -> str | None:
        """The [users] extension this channel belongs to, if any."""
        users = self.config.users
        # FreePBX's AMPUSER (the user logged in on a device, device/user mode)
        # names who places a call; dialled channels inherit the caller's.
        ampuser = ch.ampuser if _originating(ch) else None
        for candidate in (ampuser, self._by_endpoint.get(ch.endpoint), ch.endpoint):
            if candidate and candidate in users:
                return candidate
        if _originating(ch):
            for number in (ch.origin_num, ch.caller_num):
                if number in users:
                    return number
        return None

    def kind(self, ch: Channel) -> tuple[Kind, str, str | None]:
        """(kind, rule name, extension) for a real (non-Local) channel."""
        ext = self.extension_of(ch)
        if ext is not None:
            return "internal", "users", ext
        pbx = self.config.pbx
        if _glob(ch, pbx.internal_channels):
            return "internal", "pbx.internal_channels", self._guess_extension(ch)
        if _glob(ch, pbx.external_channels):
            return "external", "pbx.external_channels", None
        # ch.context is where the channel was created (Newchannel): FreePBX's
        # internal dialplan contexts count too.
        said = context_kind(ch.context, pbx.internal_contexts, pbx.external_contexts)
        if said is not None:
            kind, rule = said
            return kind, rule, self._guess_extension(ch) if kind == "internal" else None
        if _extension_like(ch.endpoint) and ch.tech in ("PJSIP", "SIP", "IAX2"):
            return "internal", "technology", ch.endpoint
        return "external", "technology", None

    def _guess_extension(self, ch: Channel) -> str | None:
        for candidate in (ch.ampuser if _originating(ch) else None, ch.endpoint):
            if candidate and _extension_like(candidate):
                return candidate
        if _originating(ch):
            for number in (ch.origin_num, ch.caller_num):
                if _extension_like(number):
                    return number
        return None

    # -- what MiiTel shows --------------------------------------------------------------

    def describe(self, ch: Channel) -> Party:
        kind, rule, ext = self.kind(ch)
        if kind == "internal":
            return self._internal(ch, rule, ext)
        return self._external(ch, rule)

    def internal_from_extension(self, ext: str, channel: str) -> Party:
        """A user known only by extension (a voicemail box's owner)."""
        user = self.config.users.get(ext)
        number, problem = self._number(user.number if user and user.number else ext)
        return Party(
            kind="internal",
            rule="users" if user else "voicemail-box",
            channel=channel,
            extension=ext,
            number=number,
            name=user.name if user else None,
            miitel_user_id=user.miitel_user_id if user else None,
            number_problem=problem,
        )

    def _internal(self, ch: Channel, rule: str, ext: str | None) -> Party:
        user = self.config.users.get(ext) if ext else None
        raw = (user.number if user and user.number else None) or ext or ch.caller_num
        number, problem = self._number(raw)
        name = user.name if user and user.name else None
        if name is None and _originating(ch) and ch.caller_name:
            name = ch.caller_name
        return Party(
            kind="internal",
            rule=rule,
            channel=ch.name,
            extension=ext,
            number=number,
            name=name,
            miitel_user_id=user.miitel_user_id if user else None,
            number_problem=problem,
        )

    def _external(self, ch: Channel, rule: str) -> Party:
        if _originating(ch) and not ch.originated:
            # A call that came in on this trunk: the caller ID the carrier sent.
            number, problem = self._number(ch.caller_num)
            name = ch.caller_name or None
        else:
            number, problem = self._dialled_number(ch)
            name = None
        if name is not None and (name == number or name.lower() == "anonymous"):
            name = None
        return Party(
            kind="external",
            rule=rule,
            channel=ch.name,
            extension=None,
            number=number,
            name=name,
            miitel_user_id=None,
            number_problem=problem,
        )

    def _dialled_number(self, ch: Channel) -> tuple[str, str | None]:
        """What was dialled to reach an external channel, best source first."""
        candidates: list[str] = []
        if ch.dial_string:
            candidates.append(_dial_string_number(ch.dial_string))
        dialler = ch.dialled_by
        while dialler is not None and dialler.is_local and dialler.local_peer is not None:
            dialler = dialler.local_peer.dialled_by or None
        if dialler is not None and dialler.exten:
            candidates.append(dialler.exten)
        candidates.append(ch.caller_num)
        problem = None
        for raw in candidates:
            if not raw:
                continue
            try:
                return normalize_number(raw, self.rules, dialled=True), None
            except InvalidNumber as exc:
                problem = problem or str(exc)
        return ANONYMOUS, problem or f"no number is known for {ch.name}"

    def _number(self, raw: str | None) -> tuple[str, str | None]:
        try:
            return normalize_number(raw, self.rules), None
        except InvalidNumber as exc:
            return ANONYMOUS, str(exc)

    def number_or_none(self, raw: str | None) -> str | None:
        """For circuit_number: a clean number, or nothing rather than a guess."""
        if not raw:
            return None
        try:
            number = normalize_number(raw, self.rules)
        except InvalidNumber:
            return None
        return None if number == ANONYMOUS else number


def _originating(ch: Channel) -> bool:
    """The channel placed the call (a phone or a trunk calling in), or Originate made it."""
    return ch.dialled_by is None


def _extension_like(value: str) -> bool:
    return value.isdigit() and 2 <= len(value) <= 6


def _glob(ch: Channel, patterns: list[str]) -> bool:
    return any(fnmatchcase(ch.name, p) or fnmatchcase(ch.endpoint, p) for p in patterns)


def _dial_string_number(dial_string: str) -> str:
    """`0312345678@trunk` / `trunk/sip:0312345678@carrier` / `PJSIP/x` -> the user part."""
    value = dial_string.rpartition("/")[2] if "/" in dial_string else dial_string
    if value.lower().startswith(("sip:", "sips:", "tel:")):
        value = value.split(":", 1)[1]
    return value.split("@", 1)[0].split(",", 1)[0]
