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
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .miitel.numbers import InvalidNumber, NumberRules, normalize_number

ENV_PREFIX = "ASTERISK_MIITEL_"
CONFIG_ENV = "ASTERISK_MIITEL_CONFIG"


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
    connect_timeout: float = Field(10.0, gt=0)
    # A Ping not answered within ping_timeout means the link is dead
    # (panoramisk never checks the answer).
    ping_interval: float = Field(10.0, gt=0)
    ping_timeout: float = Field(5.0, gt=0)
    reconnect_min: float = Field(1.0, gt=0)
    reconnect_max: float = Field(30.0, gt=0)


class MiitelConfig(_Section):
    webhook_url: SecretStr | None = None
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

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL (the value is not shown: it is secret)")
        return value


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


def load_config(path: str | Path | None = None) -> Config:
    """Read, merge with the environment, validate. Raises ConfigError."""
    path = path or os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    url = os.environ.get("MIITEL_WEBHOOK_URL")
    if url:
        data.setdefault("miitel", {})["webhook_url"] = url
    try:
        config = Config(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    _expand_paths(config)
    return config


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
        lines.append(f"config key {key}{where} (or env {env_name}): {msg}")
    return "; ".join(lines)
