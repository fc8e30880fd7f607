"""`asterisk-miitel setup` on the real lab Asterisk: a PBX without anything of
ours (no manager user, no timestampevents, no #include of the dialplan
snippets) gets them from setup alone; after the steps setup lists as left by
hand (the webhook URL, the users, the reloads) a real sipp call reaches the
MiiTel stand-in, uploaded."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asterisk_miitel.ops.envfile import read_env_file
from asterisk_miitel.ops.setup import Options, setup_main
from asterisk_miitel.ops.users import users_import_main
from tests.lab import PHONES, Lab
from tests.lab.scenarios import SCENARIOS, Runner

from .e2e import USERS, ThreadedStandIn

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[1]


def _strip_ours(etc: Path) -> None:
    """The lab's PBX as it was before anyone installed asterisk-miitel."""
    manager = (etc / "manager.conf").read_text(encoding="utf-8")
    # Explicitly off: a reload keeps the old value of a key that is gone, and
    # setup's [general](+) must win over what [general] itself says.
    manager = re.sub(r"^timestampevents = yes$", "timestampevents = no", manager, flags=re.M)
    manager = manager.split("; The service's user", 1)[0]  # the [miitel] section goes
    (etc / "manager.conf").write_text(manager, encoding="utf-8")
    plain = (etc / "extensions-plain.conf").read_text(encoding="utf-8")
    plain = re.sub(r'^#include ".*/miitel-record.conf"\n', "", plain, flags=re.M)
    (etc / "extensions-plain.conf").write_text(plain, encoding="utf-8")
    (etc / "miitel-record.conf").unlink()  # the lab's link to the repo's copy


def _reload(lab: Lab) -> None:
    out = lab.admin().command("dialplan reload")
    assert "error" not in out.lower() or "0 errors" in out.lower(), out
    lab.admin().command("manager reload")


def _strip_ours_freepbx(etc: Path) -> None:
    """The FreePBX-style lab before the install: manager.conf as FreePBX generates
    it (including manager_custom.conf, no [miitel] user), and the dialplan
    reaching our hooks only through extensions_custom.conf."""
    _strip_ours(etc)
    manager = (etc / "manager.conf").read_text(encoding="utf-8")
    (etc / "manager.conf").write_text(manager + "#include manager_custom.conf\n",
                                      encoding="utf-8")
    dialplan = etc / "freepbx-style" / "extensions.conf"
    text = dialplan.read_text(encoding="utf-8")
    text, n = re.subn(r'^#include ".*/freepbx/extensions_miitel.conf"$',
                      f'#include "{etc}/extensions_custom.conf"', text, flags=re.M)
    assert n == 1
    dialplan.write_text(text, encoding="utf-8")
    # FreePBX ships both (an #include of a missing file fails the whole reload)
    (etc / "extensions_custom.conf").write_text("; FreePBX: yours\n", encoding="utf-8")
    (etc / "manager_custom.conf").write_text("; FreePBX: yours\n", encoding="utf-8")


def test_setup_alone_makes_the_lab_pbx_send_a_real_call(lab: Lab, tmp_path: Path) -> None:
    _install_and_call(lab, tmp_path, "plain")


def test_setup_freepbx_on_the_freepbx_style_lab(freepbx_lab: Lab, tmp_path: Path) -> None:
    """FreePBX's layout: manager.conf generated (untouched by setup), our files
    reached through manager_custom.conf and extensions_custom.conf."""
    _install_and_call(freepbx_lab, tmp_path, "freepbx")


def _install_and_call(lab: Lab, tmp_path: Path, pbx: str) -> None:
    etc = lab.etc_dir
    names = ("manager.conf", "extensions.conf", "extensions-plain.conf",
             "freepbx-style/extensions.conf")
    saved = {name: (etc / name).read_bytes() for name in names}
    link_target = os.readlink(etc / "miitel-record.conf")
    standin = ThreadedStandIn(tmp_path / "miitel").start()
    service: subprocess.Popen[bytes] | None = None
    log_path = tmp_path / "service.log"
    try:
        (_strip_ours_freepbx if pbx == "freepbx" else _strip_ours)(etc)
        generated = (etc / "manager.conf").read_bytes()
        _reload(lab)
        settings = lab.admin().command("manager show settings")
        assert re.search(r"Timestamp events:\s+No", settings), settings
        assert "miitel" not in lab.admin().command("manager show users")

        conf = tmp_path / "asterisk-miitel"
        out = io.StringIO()
        # Every path outside the lab's etc under the test's folder: never this
        # machine's /etc/asterisk-miitel.
        opts = Options(pbx=pbx, etc=etc, config_dir=conf,  # type: ignore[arg-type]
                       unit_dir=tmp_path / "systemd",
                       bin_link=tmp_path / "bin" / "asterisk-miitel")
        assert all(tmp_path in p.parents for p in (opts.config_dir, opts.unit_dir,
                                                    opts.bin_link))
        code = setup_main(opts, out=out)
        text = out.getvalue()
        assert code == 0, text
        print(text)
        if pbx == "freepbx":
            assert (etc / "manager.conf").read_bytes() == generated  # FreePBX's own
            assert "does not #include" not in text  # both *_custom.conf are read

        # What setup says is left by hand: the reloads, the URL, the users.
        _reload(lab)
        settings = lab.admin().command("manager show settings")
        assert re.search(r"Timestamp events:\s+Yes", settings), settings
        assert "miitel" in lab.admin().command("manager show users")
        lab.check_dialplan()
        env = conf / "env"
        env.write_text(env.read_text().replace(
            "MIITEL_WEBHOOK_URL=\n", f"MIITEL_WEBHOOK_URL={standin.webhook_url}\n"))
        csv_file = tmp_path / "users.csv"
        csv_file.write_text("extension,miitel_user_id,name,number,endpoints\n" + "".join(
            f"{ext},{u['miitel_user_id']},{u['name']},,{' '.join(u.get('endpoints', []))}\n"
            for ext, u in USERS.items()), encoding="utf-8")
        assert users_import_main(str(csv_file), str(conf / "config.toml")) == 0

        # The service as the unit runs it, with the env file's values; only the
        # state folders systemd would create are moved under the test's folder.
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("ASTERISK_MIITEL_", "MIITEL_"))}
        child_env.update(read_env_file(env))
        child_env["ASTERISK_MIITEL_OUTBOX__PATH"] = str(tmp_path / "state" / "outbox.sqlite3")
        child_env["ASTERISK_MIITEL_RECORDINGS__WORK_DIR"] = str(tmp_path / "cache")
        child_env["ASTERISK_MIITEL_PBX__TIMEZONE"] = "Asia/Tokyo"
        with open(log_path, "wb") as log_file:
            service = subprocess.Popen(
                [sys.executable, "-m", "asterisk_miitel", "run", "--config",
                 str(conf / "config.toml")], cwd=REPO, env=child_env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "AMI connected" not in log_path.read_text(errors="replace"):
            assert service.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)

        if pbx == "freepbx":  # 1001 dials out: FreePBX's route records, our legs
            _flavour, play = SCENARIOS["freepbx_outbound"]
            runner = Runner(lab)
            play(lab, runner, duration_ms=3000)
            runner.wait_all()
        else:
            callee = lab.sipp_start("uas_answer", ip=PHONES["1002"].ip)
            lab.sipp("uac_talk", ip=PHONES["1001"].ip, service="1002",
                     inf=[["Suzuki Ichiro", "1001"]], duration_ms=3000).check()
            callee.wait().check()
        lab.wait_idle()

        deadline = time.monotonic() + 20
        calls: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            calls = [c for c in standin.calls() if c["status"] == "uploaded"]
            if calls:
                break
            time.sleep(0.1)
        assert calls, (standin.calls(), log_path.read_text(errors="replace")[-3000:])
        [call] = calls
        call_data = call["call_data"]
        expected = "OUTGOING_CALL" if pbx == "freepbx" else "EXTENSION"
        assert call_data["event_type"] == expected  # type: ignore[index]
        assert call_data["audio_channel_type"] == "STEREO"  # type: ignore[index]
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(20)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        standin.stop()
        for name, data in saved.items():
            (etc / name).write_bytes(data)
        for name in ("miitel-record.conf", "manager_miitel.conf", "manager_custom.conf",
                     "extensions_custom.conf", "extensions_miitel.conf"):
            (etc / name).unlink(missing_ok=True)
        (etc / "miitel-record.conf").symlink_to(link_target)
        _reload(lab)
