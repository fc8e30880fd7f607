"""The one validated configuration: a TOML file, every value overridable by env.

Path: `--config FILE` or `ASTERISK_MIITEL_CONFIG`; no file means the embedded
defaults. Environment variables override the file: `ASTERISK_MIITEL_<SECTION>__<KEY>`
(e.g. `ASTERISK_MIITEL_AMI__SECRET`), plus `MIITEL_WEBHOOK_URL` for the one
value every deployment sets. Errors name the bad key.
"""

from __future__ import annotations

import os
import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .catchup.config import CatchupConfig
from .miitel.numbers import InvalidNumber, NumberRules, normalize_number

ENV_PREFIX = "ASTERISK_MIITEL_"
CONFIG_ENV = "ASTERISK_MIITEL_CONFIG"
# Where `setup` and the install guide put the config: used when neither
# --config nor $ASTERISK_MIITEL_CONFIG names one (commands run as root would
# otherwise use the embedded defaults and look in ~/.local/state).
DEFAULT_CONFIG = Path("/etc/asterisk-miitel/config.toml")
WEBHOOK_ENV = "MIITEL_WEBHOOK_URL"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "miitel"
    secret: SecretStr = SecretStr("")
    tls: bool = False
    tls_verify: bool = True
    # A CA bundle for Asterisk's certificate when it is not signed by a public
    # CA (a self-signed tlscertfile in manager.conf).
    tls_ca_file: Path | None = None

    @field_validator("tls_ca_file", mode="before")
    @classmethod
    def _no_empty_path(cls, value: object) -> object:
        return None if value == "" else value
    connect_timeout: float = Field(10.0, gt=0)
    # A Ping not answered within ping_timeout means the link is dead
    # (panoramisk never checks the answer).
    ping_interval: float = Field(10.0, gt=0)
    ping_timeout: float = Field(5.0, gt=0)
    reconnect_min: float = Field(1.0, gt=0)
    reconnect_max: float = Field(30.0, gt=0)


class MiitelConfig(_Section):
    webhook_url: SecretStr | None = None
    # http:// is only for a stand-in on this machine; elsewhere the URL (the
    # credential) and the recordings would cross the network in clear.
    allow_insecure_http: bool = False
    # Extra headers for the POST (a tenant may need Authorization); secret too.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0)
    upload_idle_timeout: float = Field(60.0, gt=0)
    verify_tls: bool = True
    upload_concurrency: int = Field(4, ge=1, le=64)
    # Retries back off exponentially from retry_base to retry_max seconds
    # (with jitter); a Retry-After from MiiTel is honoured.
    retry_base: float = Field(2.0, gt=0)
    retry_max: float = Field(300.0, gt=0)
    # A 500/502/504 may come after MiiTel created the call history, so by
    # default the call is set aside as outcome_unknown. True (only once MiiTel
    # is known to ignore a repeated call_data_id): such POSTs are retried.
    resend_on_server_error: bool = False

    @model_validator(mode="after")
    def _one_authorization(self) -> MiitelConfig:
        # user:password in the URL is sent as an Authorization header of its
        # own: with another one in `headers`, no POST could ever be made.
        from urllib.parse import urlsplit

        url = self.webhook_url.get_secret_value() if self.webhook_url else ""
        if "@" in urlsplit(url).netloc and any(
            name.strip().lower() == "authorization" for name in self.headers
        ):
            raise ValueError(
                "miitel.webhook_url holds a user:password (sent as an Authorization header) "
                "and miitel.headers sets Authorization too: keep one of the two (the values "
                "are not shown: they are secret)")
        return self

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL (the value is not shown: it is secret)")
        bad = "whitespace" if any(c.isspace() for c in url) else "'#'" if "#" in url else ""
        if bad:
            # systemd's EnvironmentFile= keeps an inline "# comment" in the value.
            raise ValueError(
                f"contains {bad} (the value is not shown: it is secret): an inline comment "
                "or a stray space in the env file? systemd keeps everything after `=` as the "
                "value; put comments on their own line")
        return value

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> MiitelConfig:
        url = self.webhook_url.get_secret_value() if self.webhook_url else ""
        if url.startswith("http://") and not self.allow_insecure_http:
            host = urlsplit(url).hostname or ""
            if not _loopback(host):
                raise ValueError(
                    f"webhook_url is plain http:// to {host!r}, not this machine: MiiTel uses "
                    "https://; for a stand-in elsewhere set [miitel] allow_insecure_http = true")
        return self


class NumbersConfig(_Section):
    format: Literal["domestic", "e164"] = "domestic"
    country_code: str = Field("81", pattern=r"^[0-9]{1,3}$")
    outside_line_prefix: str = Field("", pattern=r"^[0-9*#]*$")

    def rules(self) -> NumberRules:
        return NumberRules(
            format=self.format,
            country_code=self.country_code,
            outside_line_prefix=self.outside_line_prefix,
        )


class PbxConfig(_Section):
    # Used in call_data_id; default: Asterisk's SystemName or EntityID.
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$")

    @field_validator("id", mode="before")
    @classmethod
    def _empty_id(cls, value: object) -> object:
        return None if value == "" else value
    # IANA zone for call times; default: this machine's.
    timezone: str | None = None
    # Channel-name globs (e.g. "PJSIP/ntt-*") and dialplan contexts that mark
    # a party as internal (a phone) or external (a trunk), checked in order
    # after [users]; FreePBX's contexts and channel technology come after.
    internal_channels: list[str] = Field(default_factory=list)
    external_channels: list[str] = Field(default_factory=list)
    internal_contexts: list[str] = Field(default_factory=list)
    external_contexts: list[str] = Field(default_factory=list)
    # Unanswered calls without audio are skipped; MiiTel shows a call
    # without audio as an error. True sends them as missed calls.
    send_unanswered: bool = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value or None

    def tz(self) -> tzinfo | None:
        """The configured zone, or None for the machine's own."""
        return ZoneInfo(self.timezone) if self.timezone else None


class RecordingsConfig(_Section):
    # Where converted files (stereo WAVs we make) are written before upload.
    work_dir: Path = Path("~/.cache/asterisk-miitel/work")
    delete_after_upload: bool = False
    wait_timeout: float = Field(30.0, gt=0)
    sample_rate: int = Field(8000, ge=8000, le=48000)
    min_free_mb: int = Field(500, ge=0)
    # When this service sees Asterisk's files under another path (an NFS or
    # container mount): {"/var/spool/asterisk/monitor" = "/mnt/pbx/monitor"}.
    path_map: dict[str, str] = Field(default_factory=dict)
    # Asterisk's recordings folder(s), as Asterisk names them (path_map
    # applies); `check` verifies this service may read them.
    dirs: list[str] = Field(default_factory=lambda: ["/var/spool/asterisk/monitor"])


class OutboxConfig(_Section):
    path: Path = Path("~/.local/state/asterisk-miitel/outbox.sqlite3")


class UserConfig(_Section):
    miitel_user_id: UUID | None = None
    name: str | None = None
    # The number MiiTel shows; default: the extension itself.
    number: str | None = None
    # Device (endpoint) names of this user's phones when they differ from the
    # extension, e.g. ["tanaka-desk"] for PJSIP/tanaka-desk.
    endpoints: list[str] = Field(default_factory=list)


class LogConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"



# Calls by direction, for [send] exclude_directions; each is a set of MiiTel
# event_types (see calls/classify.py). "internal" includes EXTENSION_TRANSFER,
# which is also an outside call a user transferred to a colleague:
# exclude_event_types = ["EXTENSION"] drops colleague calls only.
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "internal": ("EXTENSION", "EXTENSION_TRANSFER"),
    "incoming": ("INCOMING_CALL",),
    "outgoing": ("OUTGOING_CALL", "OUTGOING_TRANSFER"),
    "forwarded": ("AUTOMATIC_TRANSFER",),
    "voicemail": ("AUTOMATIC_RECORD",),
}
Direction = Literal["internal", "incoming", "outgoing", "forwarded", "voicemail"]
EventTypeName = Literal[
    "EXTENSION", "EXTENSION_TRANSFER", "INCOMING_CALL", "OUTGOING_CALL", "OUTGOING_TRANSFER",
    "AUTOMATIC_TRANSFER", "AUTOMATIC_RECORD",
]


class HttpConfig(_Section):
    """/healthz and /metrics for monitoring; off unless enabled."""

    enabled: bool = False
    # Loopback by default: the endpoints need no login, so keep them local
    # (or behind a proxy) unless the network is trusted.
    host: str = "127.0.0.1"
    port: int = Field(9797, ge=0, le=65535)  # 0: any free port (tests)
    # /healthz answers 503 when AMI has been disconnected this long...
    unhealthy_after_seconds: float = Field(60.0, gt=0)
    # ...or when a call has waited this long without reaching MiiTel.
    max_wait_seconds: float = Field(1800.0, gt=0)
    # The console at / is read-only unless this is true: then set-aside calls
    # get retry buttons (POST forms with a CSRF token). Anyone who can reach
    # the port can press them: keep the port local when this is on.
    console_actions: bool = False


class SendConfig(_Section):
    """Which recorded calls are sent: the admin's choice. Default: all."""

    exclude_directions: list[Direction] = Field(default_factory=list)
    exclude_event_types: list[EventTypeName] = Field(default_factory=list)
    # A call with any of these extensions as a party is not sent.
    exclude_extensions: list[str] = Field(default_factory=list)
    # Non-empty: only calls with at least one of these extensions are sent.
    include_extensions: list[str] = Field(default_factory=list)
    # Queue names (the queue's id, or its MiiTelQueue display name).
    exclude_queues: list[str] = Field(default_factory=list)
    # Numbers never to upload (any party, or the line called/shown), in any
    # spelling: compared after normalising as [numbers] says.
    exclude_numbers: list[str] = Field(default_factory=list)

    @field_validator("exclude_numbers")
    @classmethod
    def _numbers(cls, numbers: list[str]) -> list[str]:
        for raw in numbers:
            try:
                normalize_number(raw)
            except InvalidNumber as exc:
                raise ValueError(str(exc)) from exc
        return numbers


class TransfersConfig(_Section):
    """How a conversation a transfer made is reported (README: Transfers)."""

    # "literal": MiiTel's own terms: EXTENSION_TRANSFER / OUTGOING_TRANSFER,
    # FROM the user who transferred (on the transferred party's stereo side).
    # "speakers": the transferred party's call with whoever is now on the line
    # (INCOMING_CALL / OUTGOING_CALL / AUTOMATIC_TRANSFER), each side
    # labelled with who speaks there, tagged "transferred by <extension>".
    report: Literal["literal", "speakers"] = "literal"


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    ami: AmiConfig = Field(default_factory=AmiConfig)
    miitel: MiitelConfig = Field(default_factory=MiitelConfig)
    numbers: NumbersConfig = Field(default_factory=NumbersConfig)
    pbx: PbxConfig = Field(default_factory=PbxConfig)
    recordings: RecordingsConfig = Field(default_factory=RecordingsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    users: dict[str, UserConfig] = Field(default_factory=dict)
    http: HttpConfig = Field(default_factory=HttpConfig)
    send: SendConfig = Field(default_factory=SendConfig)
    catchup: CatchupConfig = Field(default_factory=CatchupConfig)
    transfers: TransfersConfig = Field(default_factory=TransfersConfig)
    # A separate TOML file with a [users] table (what `users import` writes),
    # merged into `users` by load_config; relative to the config file.
    users_file: Path | None = None

    @field_validator("users")
    @classmethod
    def _user_numbers(cls, users: dict[str, UserConfig]) -> dict[str, UserConfig]:
        for ext, user in users.items():
            try:
                normalize_number(user.number or ext)
            except InvalidNumber as exc:
                raise ValueError(
                    f"extension {ext!r}: {exc}; set its `number` key to the digits MiiTel "
                    "should show"
                ) from exc
        return users

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment wins over them.
        return (env_settings, init_settings)

    def user_number(self, extension: str) -> str:
        user = self.users.get(extension)
        return normalize_number((user.number if user else None) or extension)


def config_path(given: str | Path | None = None) -> Path | None:
    """The config file to use: `given` (--config), else $ASTERISK_MIITEL_CONFIG,
    else /etc/asterisk-miitel/config.toml when it exists. None: embedded defaults."""
    raw = given or os.environ.get(CONFIG_ENV) or None
    if raw:
        return Path(raw)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def read_toml(path: Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file; a UTF-8 BOM (Windows editors save one) is accepted."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from exc


def load_config(path: str | Path | None = None) -> Config:
    """Read, merge with the environment, validate. Raises ConfigError."""
    path = config_path(path)
    data: dict[str, Any] = {}
    if path:
        data = read_toml(path)
        _top_level_keys_in_tables(data, path)
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        data.setdefault("miitel", {})["webhook_url"] = url
    users_file = _merge_users_file(data, path)
    try:
        config = Config(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    config.users_file = users_file
    _expand_paths(config)
    return config


# Keys that belong at the top of the file, before any [table].
TOP_LEVEL_KEYS = ("users_file",)


def _top_level_keys_in_tables(data: dict[str, Any], path: Path) -> None:
    """`users_file = ...` written after a [table] header belongs to that table in
    TOML; say where the key must go instead of "unknown key"."""
    for table, content in data.items():
        if table == "users" or not isinstance(content, dict):
            continue
        for key in TOP_LEVEL_KEYS:
            if key in content:
                raise ConfigError(
                    f"config file {path}: `{key}` is inside [{table}], where TOML puts every "
                    f"key written after that header: move the `{key} = ...` line to the top "
                    "of the file, above the first [section]")


def users_file_path(data: dict[str, Any], config_path: str | Path | None) -> Path | None:
    """Where the users file is: env ASTERISK_MIITEL_USERS_FILE, else the config's
    `users_file` (relative to the config file's folder). None: no users file."""
    raw = os.environ.get(ENV_PREFIX + "USERS_FILE")
    base = Path.cwd()
    if not raw:
        raw = data.get("users_file")
        if config_path:
            base = Path(config_path).parent
    if not raw or not isinstance(raw, str):
        return None
    users_path = Path(raw).expanduser()
    return users_path if users_path.is_absolute() else base / users_path


def read_users_file(users_path: Path) -> dict[str, Any]:
    """The [users] table of a users file, each entry checked. Raises ConfigError."""
    if not users_path.exists():
        raise ConfigError(
            f"users file {users_path} does not exist (config key users_file): create it with "
            "`asterisk-miitel users import FILE.csv`, or remove the key"
        )
    doc = read_toml(users_path, "users file")
    unknown = sorted(set(doc) - {"users"})
    if unknown:
        raise ConfigError(
            f"users file {users_path}: unknown key(s) {', '.join(unknown)}: it holds one "
            "[users] table"
        )
    users = doc.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f"users file {users_path}: `users` must be a table")
    for ext, entry in users.items():
        try:
            user = UserConfig.model_validate(entry)
            normalize_number(user.number or ext)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ConfigError(
                f"users file {users_path}: extension {ext!r}"
                + (f" key {key}" if key else "") + f": {err['msg']}"
            ) from None
        except InvalidNumber as exc:
            raise ConfigError(
                f"users file {users_path}: extension {ext!r}: {exc}; set its `number`"
            ) from None
    return users


def _merge_users_file(data: dict[str, Any], config_path: str | Path | None) -> Path | None:
    # Done before validation so that one [users] map, checked once, comes out.
    users_path = users_file_path(data, config_path)
    data.pop("users_file", None)
    if users_path is None:
        return None
    from_file = read_users_file(users_path)
    inline = data.get("users") or {}
    both = sorted(set(inline) & set(from_file))
    if both:
        raise ConfigError(
            f"extension(s) {', '.join(both)} are both in the config's [users] and in "
            f"{users_path}: keep each in one place"
        )
    data["users"] = {**inline, **from_file}
    return users_path


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _expand_paths(config: Config) -> None:
    config.recordings.work_dir = config.recordings.work_dir.expanduser()
    config.outbox.path = config.outbox.path.expanduser()


def _describe(exc: ValidationError, path: str | Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo?)"
        if key.startswith("miitel.webhook_url") or (key == "miitel" and "webhook_url" in msg):
            env_name = f"{WEBHOOK_ENV} or {ENV_PREFIX}MIITEL__WEBHOOK_URL"
            key = "miitel.webhook_url"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"config key {key}{where} (or env {env_name}): {msg}")
    return "; ".join(lines)
