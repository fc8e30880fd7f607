"""Configuration: TOML + environment, errors that name the key, secrets hidden."""

from pathlib import Path

import pytest

from asterisk_miitel.config import ConfigError, load_config

GOOD = """
[ami]
host = "10.0.0.5"
port = 5038
username = "miitel"
secret = "s3cret-ami"

[miitel]
webhook_url = "https://acme.miitel.jp/webhook/abcdef123456"

[users]
"1001" = { miitel_user_id = "9b1d82f5-9845-4158-9c7b-75e7c235d8e7", name = "Taro Yamada" }
"1002" = { name = "Hanako", number = "0312345678", endpoints = ["hanako-desk"] }
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ASTERISK_MIITEL_") or key == "MIITEL_WEBHOOK_URL":
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg.ami.host == "127.0.0.1" and cfg.ami.port == 5038
    assert cfg.miitel.webhook_url is None
    assert cfg.numbers.format == "domestic"
    assert not cfg.outbox.path.as_posix().startswith("~")


def test_file_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.ami.host == "10.0.0.5"
    assert str(cfg.users["1001"].miitel_user_id) == "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"
    assert cfg.user_number("1001") == "1001"
    assert cfg.user_number("1002") == "0312345678"


def test_environment_overrides_every_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTERISK_MIITEL_AMI__PORT", "15038")
    monkeypatch.setenv("ASTERISK_MIITEL_AMI__SECRET", "from-env")
    monkeypatch.setenv("MIITEL_WEBHOOK_URL", "https://other.miitel.jp/hook/zzz")
    monkeypatch.setenv("ASTERISK_MIITEL_NUMBERS__OUTSIDE_LINE_PREFIX", "0")
    monkeypatch.setenv("ASTERISK_MIITEL_USERS__1001__NAME", "Env Name")
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.ami.port == 15038
    assert cfg.ami.secret.get_secret_value() == "from-env"
    assert cfg.ami.host == "10.0.0.5"  # the rest of the section still comes from the file
    assert cfg.miitel.webhook_url is not None
    assert cfg.miitel.webhook_url.get_secret_value() == "https://other.miitel.jp/hook/zzz"
    assert cfg.numbers.outside_line_prefix == "0"
    assert cfg.users["1001"].name == "Env Name"


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTERISK_MIITEL_CONFIG", str(write(tmp_path, GOOD)))
    assert load_config(None).ami.host == "10.0.0.5"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[ami]\nport = "x"\n', "ami.port"),
        ("[ami]\nport = 70000\n", "ami.port"),
        ("[ami]\nhots = 'typo'\n", "ami.hots"),
        ("[bogus]\nx = 1\n", "bogus"),
        ('[pbx]\ntimezone = "Mars/Olympus"\n', "pbx.timezone"),
        ('[numbers]\nformat = "intl"\n', "numbers.format"),
        ('[users]\n"1001" = { miitel_user_id = "not-a-uuid" }\n', "users.1001.miitel_user_id"),
        ('[users]\n"tanaka" = { name = "x" }\n', "users"),
    ],
)
def test_errors_name_the_bad_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert f"config key {names}" in str(err.value)


def test_bad_env_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTERISK_MIITEL_AMI__PORT", "abc")
    with pytest.raises(ConfigError, match="ASTERISK_MIITEL_AMI__PORT"):
        load_config(None)


def test_secrets_never_in_errors_or_repr(tmp_path: Path) -> None:
    text = GOOD.replace("https://acme.miitel.jp/webhook/abcdef123456", "ftp://secret-host/abcdef")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "abcdef" not in str(err.value) and "miitel.webhook_url" in str(err.value)
    cfg = load_config(write(tmp_path, GOOD))
    dumped = repr(cfg) + str(cfg.model_dump())
    assert "s3cret-ami" not in dumped and "abcdef123456" not in dumped


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[ami\n"))
