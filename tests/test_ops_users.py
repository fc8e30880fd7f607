"""`users import FILE.csv`, the users file, and reloading the map on SIGHUP."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from asterisk_miitel.config import ConfigError, load_config
from asterisk_miitel.ops.users import (
    UsersImportError,
    import_users,
    read_users_csv,
    reload_users,
    swap_users,
    users_import_main,
)

from .support import HANAKO, JIRO, TARO

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ASTERISK_MIITEL_") or key == "MIITEL_WEBHOOK_URL":
            monkeypatch.delenv(key)


def excel_csv(tmp_path: Path, *rows: str, bom: bool = True) -> Path:
    """As Excel's "CSV UTF-8" writes it: BOM, CRLF."""
    path = tmp_path / "users.csv"
    text = "\r\n".join(rows) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def site(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'users_file = "users.toml"\n{extra}', encoding="utf-8")
    return config


HEADER = "extension,miitel_user_id,name,number"


def test_import_then_the_service_sees_every_user(tmp_path: Path) -> None:
    csv_path = excel_csv(tmp_path, HEADER,
                         f"1001,{TARO},山田 太郎,",
                         f"1002,{HANAKO.upper()},\"Sato, Hanako\",03-1234-5679",
                         f"１００３,{JIRO},Jiro,")
    config_path = site(tmp_path)
    out = io.StringIO()
    assert users_import_main(str(csv_path), str(config_path), out=out) == 0
    assert "3 added" in out.getvalue()
    config = load_config(config_path)
    assert set(config.users) == {"1001", "1002", "1003"}
    assert str(config.users["1001"].miitel_user_id) == TARO
    assert config.users["1001"].name == "山田 太郎"
    assert config.users["1002"].name == "Sato, Hanako"
    assert config.user_number("1002") == "0312345679"  # stored as MiiTel wants it
    assert str(config.users["1002"].miitel_user_id) == HANAKO  # canonical form
    assert config.users_file == tmp_path / "users.toml"


def test_a_bad_uuid_names_its_line_and_nothing_is_written(tmp_path: Path) -> None:
    csv_path = excel_csv(tmp_path, HEADER, f"1001,{TARO},Taro,", "1002,not-a-uuid,Hanako,")
    err = io.StringIO()
    assert users_import_main(str(csv_path), str(site(tmp_path)), err=err) == 1
    assert "line 3: miitel_user_id 'not-a-uuid' is not a UUID" in err.getvalue()
    assert not (tmp_path / "users.toml").exists()


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    csv_path = excel_csv(tmp_path, HEADER,
                         f"1001,{TARO},Taro,",
                         f"1001,{HANAKO},Hanako,",
                         f"desk-a,{JIRO},Desk,",
                         f"1004,{JIRO},Jiro,03-12ab",
                         ",,,")  # an empty row Excel leaves: ignored
    with pytest.raises(UsersImportError) as info:
        read_users_csv(csv_path)
    problems = info.value.problems
    assert "line 3: extension 1001 is already on line 2" in problems
    assert any(p.startswith("line 4: extension 'desk-a' is not a phone number") for p in problems)
    assert any(p.startswith("line 5: number:") for p in problems)
    assert len(problems) == 3


def test_a_device_name_extension_needs_its_number(tmp_path: Path) -> None:
    rows, _ = read_users_csv(excel_csv(tmp_path, HEADER, f"desk-a,{JIRO},Desk,1003"))
    assert rows[0].extension == "desk-a" and rows[0].number == "1003"


def test_header_problems_are_explained(tmp_path: Path) -> None:
    with pytest.raises(UsersImportError, match=r"line 1 \(header\): missing column\(s\) "
                                               r"miitel_user_id; unknown column\(s\) 'userid'"):
        read_users_csv(excel_csv(tmp_path, "extension,userid,name", f"1001,{TARO},Taro"))
    # Headers as people type them: any case, spaces.
    rows, _ = read_users_csv(excel_csv(tmp_path, "Extension, MiiTel User ID ,Name",
                                       f"1001,{TARO},Taro", bom=False))
    assert rows[0].miitel_user_id == TARO


def test_a_shift_jis_csv_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(f"{HEADER}\r\n1001,{TARO},".encode() + "山田".encode("cp932") + b",\r\n")
    with pytest.raises(UsersImportError, match=r"line 2: not UTF-8 text .*CSV UTF-8"):
        read_users_csv(path)


def test_import_merges_and_keeps_what_the_csv_has_no_column_for(tmp_path: Path) -> None:
    users_file = tmp_path / "users.toml"
    users_file.write_text(
        "[users]\n"
        f'"1001" = {{ miitel_user_id = "{TARO}", name = "Taro", endpoints = ["desk-taro"] }}\n'
        f'"1009" = {{ miitel_user_id = "{JIRO}", name = "Kept" }}\n',
        encoding="utf-8",
    )
    os.chmod(users_file, 0o640)
    csv_path = excel_csv(tmp_path, HEADER, f"1001,{TARO},Taro Yamada,", f"1002,{HANAKO},,")
    report = import_users(csv_path, users_file)
    assert (report.added, report.updated, report.removed) == (["1002"], ["1001"], [])
    config = load_config(site(tmp_path))
    assert config.users["1001"].endpoints == ["desk-taro"]
    assert config.users["1001"].name == "Taro Yamada"
    assert config.users["1009"].name == "Kept"
    assert users_file.stat().st_mode & 0o777 == 0o640
    # --replace: the CSV is the whole list.
    report = import_users(csv_path, users_file, replace=True)
    assert report.removed == ["1009"] and report.unchanged == ["1001", "1002"]
    assert "1009" not in load_config(site(tmp_path)).users


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    code = users_import_main(str(excel_csv(tmp_path, HEADER, f"1001,{TARO},,")),
                             str(site(tmp_path)), dry_run=True, out=out)
    assert code == 0 and "would write" in out.getvalue()
    assert not (tmp_path / "users.toml").exists()


def test_an_extension_may_not_be_in_both_places(tmp_path: Path) -> None:
    config_path = site(tmp_path, f'[users]\n"1001" = {{ miitel_user_id = "{TARO}" }}\n')
    err = io.StringIO()
    csv_path = excel_csv(tmp_path, HEADER, f"1001,{HANAKO},,")
    assert users_import_main(str(csv_path), str(config_path), err=err) == 1
    assert "line 2: extension 1001 is already in the config's [users]" in err.getvalue()
    # Written by hand anyway: the config is refused, naming the extension.
    (tmp_path / "users.toml").write_text(f'[users]\n"1001" = {{ miitel_user_id = "{HANAKO}" }}\n')
    with pytest.raises(ConfigError, match="1001 are both in the config's"):
        load_config(config_path)


def test_without_a_users_file_the_import_says_what_to_set(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text("", encoding="utf-8")
    err = io.StringIO()
    csv_path = excel_csv(tmp_path, HEADER, f"1001,{TARO},,")
    assert users_import_main(str(csv_path), str(config_path), err=err) == 2
    assert "users_file" in err.getvalue()
    assert users_import_main(str(csv_path), str(config_path), output=str(tmp_path / "u.toml"),
                             out=io.StringIO()) == 0


def test_users_file_problems_name_the_file_and_extension(tmp_path: Path) -> None:
    config_path = site(tmp_path)
    with pytest.raises(ConfigError, match=r"users file .*users.toml does not exist"):
        load_config(config_path)
    (tmp_path / "users.toml").write_text('[users]\n"1001" = { miitel_user_id = "nope" }\n')
    with pytest.raises(ConfigError, match=r"users.toml: extension '1001' key miitel_user_id"):
        load_config(config_path)
    (tmp_path / "users.toml").write_text('[users]\n"desk-a" = { name = "Desk" }\n')
    with pytest.raises(ConfigError, match=r"extension 'desk-a'.*set its `number`"):
        load_config(config_path)


def test_env_can_point_to_the_users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users_file = tmp_path / "elsewhere.toml"
    users_file.write_text(f'[users]\n"1001" = {{ miitel_user_id = "{TARO}" }}\n')
    monkeypatch.setenv("ASTERISK_MIITEL_USERS_FILE", str(users_file))
    config = load_config(None)
    assert "1001" in config.users and config.users_file == users_file


def test_reload_swaps_the_whole_map_or_nothing(tmp_path: Path) -> None:
    config_path = site(tmp_path)
    (tmp_path / "users.toml").write_text(f'[users]\n"1001" = {{ miitel_user_id = "{TARO}" }}\n')
    config = load_config(config_path)
    before = config.users

    import_users(excel_csv(tmp_path, HEADER, f"1001,{TARO},Taro,", f"1002,{HANAKO},,"),
                 tmp_path / "users.toml")
    change = swap_users(config, reload_users(config_path))
    assert change.added == ("1002",) and change.changed == ("1001",) and not change.removed
    assert set(config.users) == {"1001", "1002"}
    assert before is not config.users and set(before) == {"1001"}  # old map untouched

    # A broken file: reload raises, the running map stays as it was.
    (tmp_path / "users.toml").write_text('[users]\n"1001" = { miitel_user_id = "x" }\n')
    current = config.users
    with pytest.raises(ConfigError):
        swap_users(config, reload_users(config_path))
    assert config.users is current


def test_the_sample_csv_in_deploy_imports(tmp_path: Path) -> None:
    report = import_users(REPO / "deploy" / "users.example.csv", tmp_path / "users.toml")
    assert report.written and report.added
    config_path = site(tmp_path)
    assert load_config(config_path).users
