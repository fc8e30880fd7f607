"""`asterisk-miitel setup` on a temporary tree (--root): every install step,
idempotent, local changes kept, the dry run a diff, the secrets never shown.
The real-Asterisk proof is tests/test_setup_lab.py."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from asterisk_miitel import config as config_module
from asterisk_miitel.cli import main
from asterisk_miitel.config import load_config
from asterisk_miitel.ops.envfile import read_env_file
from asterisk_miitel.ops.setup import BEGIN, Options, run_setup, setup_main

REPO = Path(__file__).resolve().parents[1]
MANAGER = """[general]
enabled = yes
port = 15038
bindaddr = 127.0.0.1

[admin]
secret = admin-secret-1
read = all
write = all
"""
EXTENSIONS = """[general]
static = yes

[globals]

[from-internal]
exten => _1XXX,1,Gosub(miitel-record,s,1)
 same => n,Dial(PJSIP/${EXTEN})
"""


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("ASTERISK_MIITEL_", "MIITEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG", tmp_path / "nowhere.toml")
    etc = tmp_path / "etc" / "asterisk"
    etc.mkdir(parents=True)
    (etc / "manager.conf").write_text(MANAGER, encoding="utf-8")
    (etc / "extensions.conf").write_text(EXTENSIONS, encoding="utf-8")
    (etc / "asterisk.conf").write_text("[directories]\nastspooldir => /srv/spool\n",
                                       encoding="utf-8")
    return tmp_path


def setup(tree: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    opts = Options(root=tree, command=Path("/opt/asterisk-miitel/bin/asterisk-miitel"))
    for arg in args:
        key, _, value = arg.partition("=")
        setattr(opts, key, value if value else True)
    return setup_main(opts, out=out), out.getvalue()


def snapshot(tree: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(tree)): (p.read_bytes() if not p.is_symlink() else b"->",
                                       p.lstat().st_mode)
            for p in sorted(tree.rglob("*")) if p.is_file() or p.is_symlink()}


def test_setup_plain_does_every_step_and_the_result_loads(tree: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    code, out = setup(tree)
    assert code == 0, out
    etc, conf = tree / "etc" / "asterisk", tree / "etc" / "asterisk-miitel"
    assert (etc / "miitel-record.conf").read_text() == (REPO / "dialplan" /
                                                       "miitel-record.conf").read_text()
    assert (etc / "manager_miitel.conf").read_text() == (REPO / "dialplan" /
                                                        "manager_miitel.conf").read_text()
    extensions = (etc / "extensions.conf").read_text()
    assert extensions.startswith(EXTENSIONS)  # the admin's dialplan is untouched
    assert "#include miitel-record.conf" in extensions
    manager = (etc / "manager.conf").read_text()
    assert manager.startswith(MANAGER)
    assert "[general](+)\ntimestampevents = yes" in manager
    assert "read = call,dialplan,agent,user" in manager and "write = reporting" in manager
    assert "#include manager_miitel.conf" in manager
    env = read_env_file(conf / "env")
    secret = env["ASTERISK_MIITEL_AMI__SECRET"]
    assert len(secret) >= 24 and f"secret = {secret}" in manager
    assert secret not in out  # never printed
    assert stat.S_IMODE((conf / "env").stat().st_mode) == 0o600
    assert stat.S_IMODE((conf / "config.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE(conf.stat().st_mode) == 0o750
    unit = (tree / "etc" / "systemd" / "system" / "asterisk-miitel.service").read_text()
    assert "ExecStart=/opt/asterisk-miitel/bin/asterisk-miitel run --config " \
           "/etc/asterisk-miitel/config.toml" in unit
    documentation = unit.split("Documentation=file://", 1)[1].split("\n", 1)[0]
    assert Path(documentation).is_file()  # a Documentation= that exists
    link = tree / "usr" / "local" / "bin" / "asterisk-miitel"
    assert os.readlink(link) == "/opt/asterisk-miitel/bin/asterisk-miitel"
    # What setup wrote is a config the service accepts, with the env file's values.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    text = (conf / "config.toml").read_text().replace('"users.toml"',
                                                      f'"{conf / "users.toml"}"')
    (conf / "config.toml").write_text(text)
    loaded = load_config(conf / "config.toml")
    assert loaded.ami.port == 15038 and loaded.ami.username == "miitel"
    assert loaded.ami.secret.get_secret_value() == secret
    assert loaded.recordings.dirs == ["/srv/spool/monitor"]  # from asterisk.conf
    assert loaded.miitel.webhook_url is None  # left to do by hand, and said so:
    todo = out.split("Left to do by hand:", 1)[1]
    for step in ("MIITEL_WEBHOOK_URL=", "users import", "Gosub(miitel-record,s,1)",
                 'asterisk -rx "dialplan reload"', 'asterisk -rx "manager reload"',
                 "systemctl daemon-reload && systemctl enable --now asterisk-miitel",
                 "check --config /etc/asterisk-miitel/config.toml --env-file"):
        assert step in todo, step


def test_setup_twice_changes_nothing(tree: Path) -> None:
    assert setup(tree)[0] == 0
    first = snapshot(tree)
    code, out = setup(tree)
    assert code == 0
    assert snapshot(tree) == first
    done = out.split("Left to do by hand:", 1)[0]
    assert "create" not in done and "update" not in done
    assert out.count("unchanged") >= 5


def test_dry_run_prints_a_diff_and_writes_nothing(tree: Path) -> None:
    before = snapshot(tree)
    code, out = setup(tree, "dry_run")
    assert code == 0
    assert snapshot(tree) == before
    assert "--- /etc/asterisk/manager.conf (now)" in out
    assert "+++ /etc/asterisk/manager.conf (setup)" in out
    assert "+#include miitel-record.conf" in out and "+timestampevents = yes" in out
    assert "+secret = <secret>" in out and "admin-secret-1" not in out


def test_a_local_change_is_kept_and_said_force_replaces_it(tree: Path) -> None:
    setup(tree)
    record = tree / "etc" / "asterisk" / "miitel-record.conf"
    record.write_text(record.read_text() + "; my change\n")
    code, out = setup(tree)
    assert code == 0 and record.read_text().endswith("; my change\n")
    assert "KEPT      /etc/asterisk/miitel-record.conf (local changes)" in out
    assert "changed here since setup wrote it" in out and "--force" in out
    code, out = setup(tree, "force")
    assert not record.read_text().endswith("; my change\n")
    assert record.with_name("miitel-record.conf.bak").read_text().endswith("; my change\n")


def test_changes_outside_the_block_survive_inside_it_are_kept(tree: Path) -> None:
    setup(tree)
    extensions = tree / "etc" / "asterisk" / "extensions.conf"
    extensions.write_text(extensions.read_text() + "\n[my-context]\nexten => 9,1,NoOp\n")
    _code, out = setup(tree)
    assert "[my-context]" in extensions.read_text() and "unchanged /etc/asterisk/extensions" \
        in out
    manager = tree / "etc" / "asterisk" / "manager.conf"
    manager.write_text(manager.read_text().replace("permit = 127.0.0.1/255.255.255.255",
                                                   "permit = 10.0.0.5/255.255.255.255"))
    _code, out = setup(tree)
    assert "10.0.0.5" in manager.read_text()
    assert "KEPT      /etc/asterisk/manager.conf" in out


def test_an_include_written_by_hand_is_not_added_twice(tree: Path) -> None:
    extensions = tree / "etc" / "asterisk" / "extensions.conf"
    extensions.write_text(EXTENSIONS + '#include "miitel-record.conf"\n')
    _code, out = setup(tree)
    assert BEGIN not in extensions.read_text()
    assert "not written by setup: left alone" in out


def test_a_manager_user_written_by_hand_is_reported(tree: Path) -> None:
    manager = tree / "etc" / "asterisk" / "manager.conf"
    manager.write_text(MANAGER + "\n[miitel]\nsecret = old\n")
    _code, out = setup(tree)
    assert "already has a [miitel] user outside setup's block" in out


def test_setup_freepbx_uses_the_custom_files_and_leaves_generated_ones(tree: Path) -> None:
    etc = tree / "etc" / "asterisk"
    generated = MANAGER + "#include manager_additional.conf\n#include manager_custom.conf\n"
    (etc / "manager.conf").write_text(generated)
    (etc / "extensions_custom.conf").write_text("[from-internal-custom]\n")
    code, out = setup(tree, "pbx=freepbx")
    assert code == 0, out
    assert (etc / "manager.conf").read_text() == generated  # FreePBX rewrites it
    assert (etc / "extensions.conf").read_text() == EXTENSIONS
    custom = (etc / "manager_custom.conf").read_text()
    assert "[general](+)\ntimestampevents = yes" in custom and "[miitel]" in custom
    assert "#include extensions_miitel.conf" in (etc / "extensions_custom.conf").read_text()
    assert (etc / "extensions_miitel.conf").read_text() == (
        REPO / "dialplan" / "freepbx" / "extensions_miitel.conf").read_text()
    assert (etc / "miitel-record.conf").exists()  # extensions_miitel.conf includes it
    assert "no trunk or extension needs another context" in out and "fwconsole reload" in out
    assert "miitel-from-pstn" not in out  # the predial hooks cover every extension
    assert "does not #include manager_custom.conf" not in out
    assert "extensions.conf does not #include extensions_custom.conf" in out  # ours: plain
    unit = (tree / "etc" / "systemd" / "system" / "asterisk-miitel.service").read_text()
    assert "freepbx.service" in unit.split("After=", 1)[1].split("\n", 1)[0]


def test_the_secret_is_kept_across_runs(tree: Path) -> None:
    setup(tree)
    conf = tree / "etc" / "asterisk-miitel"
    first = read_env_file(conf / "env")["ASTERISK_MIITEL_AMI__SECRET"]
    (conf / ".setup-state.json").unlink()  # even without setup's memory
    setup(tree)
    assert read_env_file(conf / "env")["ASTERISK_MIITEL_AMI__SECRET"] == first
    assert f"secret = {first}" in (tree / "etc" / "asterisk" / "manager.conf").read_text()


def test_no_asterisk_folder_is_a_clear_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--pbx", "plain", "--root", str(tmp_path)]) == 2
    assert "does not exist: is Asterisk installed here?" in capsys.readouterr().err


def test_run_setup_reports_without_printing(tree: Path) -> None:
    report = run_setup(Options(root=tree, dry_run=True))
    assert any("extensions.conf" in line for line in report.lines)
    assert report.todo and not report.kept


def test_every_template_setup_uses_is_installed_with_the_package() -> None:
    """pip install (not from the checkout) must bring the files setup copies."""
    import re
    import tomllib

    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"]
    installed = {f for files in data_files.values() for f in files}
    for files in data_files.values():
        for name in files:
            assert (REPO / name).is_file(), name
    source = (REPO / "asterisk_miitel" / "ops" / "setup.py").read_text()
    used = set(re.findall(r'template\("([^"]+)"\)', source))
    used |= set(re.findall(r"template\('([^']+)'\)", source))
    assert used and used <= installed, used - installed
    for name in used:  # template() looks for <prefix>/share/asterisk-miitel/<name>
        target = "share/asterisk-miitel/" + str(Path(name).parent)
        assert name in data_files[target], (name, target)


def test_new_asterisk_files_are_owned_like_etc_asterisk(tree: Path) -> None:
    """FreePBX runs Asterisk as `asterisk`: a root-only manager_custom.conf
    would not be read, and the manager user would silently not exist."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give files away")
    etc = tree / "etc" / "asterisk"
    os.chown(etc, 1234, 2345)
    setup(tree, "pbx=freepbx")
    for name in ("manager_custom.conf", "extensions_custom.conf", "miitel-record.conf",
                 "extensions_miitel.conf", "manager_miitel.conf"):
        st = (etc / name).stat()
        assert (st.st_uid, st.st_gid) == (1234, 2345), name
    # The PBX's files that existed keep their owner.
    assert (etc / "manager.conf").stat().st_uid == 0
