"""deploy/: the sample config documents every key and loads; the systemd unit
keeps the properties the service relies on."""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from asterisk_miitel.config import Config, UserConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "deploy" / "config.example.toml"
UNIT = REPO / "deploy" / "asterisk-miitel.service"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ASTERISK_MIITEL_") or key == "MIITEL_WEBHOOK_URL":
            monkeypatch.delenv(key)


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of the config, as `section.key`, walking nested sections."""
    paths = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths += field_paths(ann, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def has(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_the_sample_loads() -> None:
    config = load_config(SAMPLE)
    assert config.miitel.webhook_url is None  # the secret goes in the env file
    assert config.ami.secret.get_secret_value() == ""
    assert config.outbox.path == Path("/var/lib/asterisk-miitel/outbox.sqlite3")
    assert config.recordings.work_dir == Path("/var/cache/asterisk-miitel/work")
    assert config.http.enabled is False and config.http.host == "127.0.0.1"
    assert config.users == {} and config.users_file is None


def test_the_sample_sets_every_key_of_the_config() -> None:
    doc = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    missing = [p for p in field_paths(Config) if not has(doc, p)]
    assert missing == []


def test_the_sample_users_examples_cover_every_user_key() -> None:
    # [users] entries are examples (a copied sample must not map real
    # extensions to made-up people): commented out, but valid once uncommented.
    text = SAMPLE.read_text(encoding="utf-8")
    examples = [line[1:] for line in text.splitlines() if re.match(r'^#"\d+" = \{', line)]
    users = tomllib.loads("\n".join(examples))
    assert len(users) >= 2
    config = Config(users=users)
    covered = {key for entry in users.values() for key in entry}
    assert covered == set(UserConfig.model_fields)
    assert config.user_number("1002") == "0312345679"


def test_every_key_in_the_sample_is_explained() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    unexplained = []
    for i, line in enumerate(lines):
        if not re.match(r"^[a-z_]+\s*=", line):
            continue
        previous = lines[i - 1].strip() if i else ""
        if " # " not in line and not previous.startswith("#"):
            unexplained.append(line)
    assert unexplained == []


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_unit_runs_as_a_dedicated_user_who_can_read_recordings() -> None:
    service = unit()["Service"]
    assert service["User"] == "asterisk-miitel"
    assert service["SupplementaryGroups"] == "asterisk"
    # These would hide or unmap /var/spool/asterisk or the asterisk group.
    for key in ("PrivateUsers", "DynamicUser", "InaccessiblePaths", "TemporaryFileSystem"):
        assert key not in service
    assert service["ProtectSystem"] == "strict"  # read-only, still readable


def test_unit_keeps_the_outbox_and_restarts() -> None:
    service = unit()["Service"]
    assert service["StateDirectory"] == "asterisk-miitel"
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"].lstrip("-") == "/etc/asterisk-miitel/env"
    # The unit's paths are the sample config's.
    assert "--config /etc/asterisk-miitel/config.toml" in service["ExecStart"]
    sample = load_config(SAMPLE)
    assert sample.outbox.path.parent == Path("/var/lib") / service["StateDirectory"]
    assert sample.recordings.work_dir.parent == Path("/var/cache") / service["CacheDirectory"]


def test_unit_gives_the_service_time_to_finish_on_stop() -> None:
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    match = re.search(r"--stop-deadline (\d+)", service["ExecStart"])
    deadline = float(match.group(1)) if match else 10.0  # cli.py's default
    assert float(service["TimeoutStopSec"]) > deadline + 5
