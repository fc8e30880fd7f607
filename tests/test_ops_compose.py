"""docker-compose.yml: no Docker engine here, so the demo is checked statically:
everything it references exists, Asterisk and the service agree (shared
recordings path, AMI user and secret, webhook URL), and the service's
config loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"

yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ASTERISK_MIITEL_") or key == "MIITEL_WEBHOOK_URL":
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc["services"]
    return doc


def build_of(service: dict[str, Any]) -> tuple[Path, Path] | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = REPO / build.get("context", ".")
    return context, context / build.get("dockerfile", "Dockerfile")


def binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out.append((source, target))
    return out


def test_every_file_and_folder_it_references_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        built = build_of(service)
        if built is not None:
            for path in built:
                if not path.exists():
                    missing.append(f"{name}: {path.relative_to(REPO)}")
            missing += [f"{name}: {p}" for p in copied_but_missing(*built)]
        elif "image" not in service:
            missing.append(f"{name}: neither build nor image")
        for source, _ in binds(service):
            if source.startswith((".", "/")) and not (REPO / source).exists():
                missing.append(f"{name}: {source}")
        for env_file in service.get("env_file", []):
            if not (REPO / env_file).exists():
                missing.append(f"{name}: {env_file}")
        for source, _ in binds(service):
            if not source.startswith((".", "/")):
                assert source in compose.get("volumes", {}), f"{name}: volume {source} undeclared"
    assert missing == []


def copied_but_missing(context: Path, dockerfile: Path) -> list[str]:
    """COPY sources in a Dockerfile that are not in its build context."""
    missing = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(?:COPY|ADD)\s+(?!--from)(.+)$", line.strip())
        if match:
            *sources, _dest = match.group(1).split()
            missing += [f"{dockerfile.name}: {s}" for s in sources
                        if not s.startswith("--") and not (context / s).exists()]
    return missing


def test_asterisk_and_the_service_share_recordings_at_the_same_path(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    asterisk = dict(binds(services["asterisk"]))
    service = dict(binds(services["asterisk-miitel"]))
    assert asterisk["recordings"] == service["recordings"] == "/var/spool/asterisk/monitor"
    config = service_config(compose)
    assert config.recordings.dirs == ["/var/spool/asterisk/monitor"]
    assert config.recordings.path_map == {}  # same path: nothing to map


def service_config(compose: dict[str, Any]) -> Config:
    """The service's config as its container sees it (compose's environment applied)."""
    env = {k: str(v) for k, v in compose["services"]["asterisk-miitel"]["environment"].items()}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return load_config(REPO / "docker" / "service" / "config.toml")


def manager_user(section: str) -> dict[str, str]:
    text = (REPO / "docker" / "asterisk" / "conf" / "manager.conf").read_text(encoding="utf-8")
    values: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
        elif current == section and line.startswith("#include"):
            values["#include"] = line.split(None, 1)[1].strip('"')
    return values


def test_the_service_logs_in_as_the_manager_user_asterisk_has(compose: dict[str, Any]) -> None:
    config = service_config(compose)
    user = manager_user(config.ami.username)
    assert user["secret"] == config.ami.secret.get_secret_value()
    assert user["read"] == "call,dialplan,agent,user" and user["write"] == "reporting"
    assert config.ami.host in compose["services"]
    # The event filter is the repo's file, mounted where manager.conf includes it.
    mounts = dict((t, s) for s, t in binds(compose["services"]["asterisk"]))
    folder = mounts["/etc/asterisk/miitel"]
    assert Path(user["#include"]).name == "manager_miitel.conf"
    assert (REPO / folder / "manager_miitel.conf").exists()
    assert Path(user["#include"]).parent == Path("/etc/asterisk/miitel")


def test_the_dialplan_records_with_the_repo_snippets(compose: dict[str, Any]) -> None:
    text = (REPO / "docker" / "asterisk" / "conf" / "extensions.conf").read_text()
    assert '#include "/etc/asterisk/miitel/miitel-record.conf"' in text
    assert "Gosub(miitel-record,s,1)" in text


def test_the_service_sends_to_the_stand_in(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = service_config(compose)
    assert config.miitel.webhook_url is not None
    url = config.miitel.webhook_url.get_secret_value()
    command = services["miitel"]["command"]
    assert command[0] == "mock-miitel"
    path = command[command.index("--webhook-path") + 1]
    port = command[command.index("--port") + 1]
    assert url == f"http://miitel:{port}{path}"


def test_the_phones_are_users_and_health_is_served(compose: dict[str, Any]) -> None:
    config = service_config(compose)
    assert {"1001", "1002"} <= set(config.users)
    assert config.http.enabled and config.http.port == 9797
    published = compose["services"]["asterisk-miitel"]["ports"]
    assert published == ["127.0.0.1:9797:9797"]  # loopback only on the host
    assert "9797/healthz" in " ".join(compose["services"]["asterisk-miitel"]["healthcheck"]["test"])
