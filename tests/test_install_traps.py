"""Traps that broke a real install (issue 15), each with the behaviour a user needs.

Every alert docs/OPERATIONS.md documents is triggered here against a running
service's /metrics, so an alert that can never fire is caught.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.service import Service

from .support import DEMO_DIR, service_config, wait_for

REPO = Path(__file__).resolve().parents[1]
RECORDING = "miitel-1795472139-1795472139.4-1.raw"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (PromQL's selector)."""
    return sum(v for (n, ls), v in got.items()
               if n == name and all((k, w) in ls for k, w in labels.items()))


async def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from asterisk_miitel.ops.http import bound_port

    port = bound_port(service._http)
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        return samples(await resp.text())


def demo_events(ended_ago: float = 10.0) -> list[bytes]:
    return shift_times(transcript_events((DEMO_DIR / "ami.log").read_bytes()),
                       time.time() - ended_ago)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HTTP = {"enabled": True, "port": 0}


# -- the documented alerts ------------------------------------------------------------


def documented_alerts() -> list[str]:
    text = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    para = text.split("Example alerts:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"`([^`]+)`", para)


ALERTS_TESTED = {
    "asterisk_miitel_ami_connected == 0": "test_alert_ami_down",
    'increase(asterisk_miitel_calls_total{outcome="set_aside"}[1h]) > 0':
        "test_alert_set_aside_fires_for_a_call_set_aside_at_intake",
    "asterisk_miitel_outbox_oldest_waiting_seconds > 1800": "test_alert_call_waiting",
    "histogram_quantile(0.95, rate(asterisk_miitel_hangup_to_upload_seconds_bucket[1h])) > 300":
        "test_alert_slow_uploads",
}


def test_every_documented_alert_has_a_test() -> None:
    documented = documented_alerts()
    assert documented, "docs/OPERATIONS.md lists no alerts"
    assert set(documented) == set(ALERTS_TESTED), documented
    for name in ALERTS_TESTED.values():
        assert name in globals(), name


async def test_alert_set_aside_fires_for_a_call_set_aside_at_intake(tmp_path: Path) -> None:
    """A call whose user is missing is set aside before the sender sees it; it
    must still count as outcome="set_aside" (it did not: the alert never fired)."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, FakeAmi([]) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, users={"1001": {}}, http=HTTP)
        service = Service(config)
        await service.start()
        try:
            before = await scrape(service)
            ami.events = demo_events()  # the call happens: the next session streams it
            ami.cut()

            async def set_aside() -> bool:
                return (await service.outbox.counts())["set_aside"] == 1

            await wait_for(set_aside, 20)
            after = await scrape(service)
        finally:
            await service.stop()
    name = "asterisk_miitel_calls_total"
    # The series exists at 0 before the first such call: Prometheus' increase()
    # cannot see a series that appears already at 1.
    key = (name, (("event_type", "INCOMING_CALL"), ("outcome", "set_aside")))
    assert before[key] == 0
    increase = (total(after, name, outcome="set_aside")
                - total(before, name, outcome="set_aside"))
    assert increase > 0  # the alert's condition
    assert total(after, name, outcome="set_aside", event_type="INCOMING_CALL") == 1


async def test_alert_ami_down(tmp_path: Path) -> None:
    config = service_config(tmp_path, free_port(), None, http=HTTP)  # nothing listens
    service = Service(config)
    await service.start()
    try:
        got = await scrape(service)
    finally:
        await service.stop()
    assert got[("asterisk_miitel_ami_connected", ())] == 0


async def test_alert_call_waiting(tmp_path: Path) -> None:
    """No webhook URL: the call waits; after 30 minutes the alert's gauge passes 1800."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    now = [time.time()]
    async with FakeAmi(demo_events()) as ami:
        service = Service(service_config(tmp_path, ami.port, None, http=HTTP),
                          clock=lambda: now[0])
        await service.start()
        try:

            async def queued() -> bool:
                return service.stats.queued == 1

            await wait_for(queued, 20)
            assert total(await scrape(service),
                         "asterisk_miitel_outbox_oldest_waiting_seconds") < 1800
            now[0] += 1801
            got = await scrape(service)
        finally:
            await service.stop()
    assert got[("asterisk_miitel_outbox_oldest_waiting_seconds", ())] > 1800


def quantile(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], q: float) -> float:
    """histogram_quantile over the cumulative buckets, as Prometheus computes it."""
    buckets = sorted(
        ((float("inf") if dict(ls)["le"] == "+Inf" else float(dict(ls)["le"])), v)
        for (n, ls), v in got.items() if n == "asterisk_miitel_hangup_to_upload_seconds_bucket")
    count = buckets[-1][1]
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(cumulative - below, 1e-9)
        lower, below = upper, cumulative
    return lower


async def test_alert_slow_uploads(tmp_path: Path) -> None:
    """A call that ended 10 minutes before MiiTel took its audio: p95 above 300 s."""
    (tmp_path / "monitor").mkdir()
    shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING)
    async with StandIn(tmp_path / "miitel", port=0) as standin, \
            FakeAmi(demo_events(ended_ago=600)) as ami:
        service = Service(service_config(tmp_path, ami.port, standin.webhook_url, http=HTTP))
        await service.start()
        try:

            async def uploaded() -> bool:
                return (await service.outbox.counts())["uploaded"] == 1

            await wait_for(uploaded, 20)
            got = await scrape(service)
        finally:
            await service.stop()
    assert got[("asterisk_miitel_hangup_to_upload_seconds_count", ())] == 1
    assert quantile(got, 0.95) > 300


# -- the AMI link: backoff, version, the last line ---------------------------------------


async def test_reconnect_delay_never_exceeds_reconnect_max(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """reconnect_max = 30 once gave a 35.9 s wait: the jitter went above the cap."""
    import asyncio
    import logging
    import random

    from asterisk_miitel.ami.listener import AmiListener
    from asterisk_miitel.config import AmiConfig

    monkeypatch.setattr(random, "uniform", lambda a, b: b)  # the worst jitter, both ways
    monkeypatch.setattr(random, "random", lambda: 0.999999)
    cfg = AmiConfig(port=free_port(), reconnect_min=0.05, reconnect_max=0.1,
                    connect_timeout=1)
    listener = AmiListener(cfg, lambda event, at: None)
    caplog.set_level(logging.WARNING, "asterisk_miitel.ami.listener")
    task = asyncio.create_task(listener.run())
    try:
        async def three() -> bool:
            return listener.stats.reconnects >= 3
        await wait_for(three, 10)
    finally:
        await listener.stop()
        await asyncio.wait_for(task, 5)
    waits = [float(r.args[1]) for r in caplog.records  # type: ignore[index]
             if "reconnecting in" in r.msg]
    assert len(waits) >= 3 and max(waits) <= 0.1, waits
    assert max(waits) > 0.08  # it did back off to about the cap


async def test_healthz_shows_asterisks_version_not_the_ami_protocols(tmp_path: Path) -> None:
    from asterisk_miitel.ops.http import bound_port

    async with FakeAmi([]) as ami:
        service = Service(service_config(tmp_path, ami.port, None, http=HTTP))
        await service.start()
        try:
            async def versioned() -> bool:
                return service.listener is not None and \
                    service.listener.stats.asterisk_version is not None
            await wait_for(versioned, 10)
            port = bound_port(service._http)
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{port}/healthz") as resp:
                body = await resp.json()
        finally:
            await service.stop()
    assert body["ami"]["version"] == "22.10.1"  # FakeAmi's CoreSettings, as Asterisk 22
    assert body["ami"]["ami_version"] == "11.0.0"  # the banner


def test_run_logs_a_final_stopped_line(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "config.toml"
    config.write_text(f"""\
[ami]
port = {free_port()}
[outbox]
path = "{tmp_path / 'outbox.sqlite3'}"
[recordings]
work_dir = "{tmp_path / 'work'}"
[catchup]
enabled = false
""", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTERISK_MIITEL_",
                                                                  "MIITEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "asterisk_miitel", "run", "--config",
                             str(config)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        seen = ""
        assert proc.stdout is not None
        while "started:" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = (seen + rest).strip().splitlines()
    assert proc.returncode == 0, lines
    assert lines[-1].rstrip().endswith("stopped"), lines[-3:]


# -- the config file ---------------------------------------------------------------------

from asterisk_miitel import config as config_module  # noqa: E402
from asterisk_miitel.config import ConfigError, load_config  # noqa: E402

SECRET_PATH = "s3cr3t-token-4f1a"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("ASTERISK_MIITEL_", "MIITEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG", tmp_path / "absent" / "config.toml",
                        raising=False)  # raising=False: the test also runs on old code
    return monkeypatch


def test_a_config_saved_with_a_utf8_bom_loads(tmp_path: Path, clean_env: pytest.MonkeyPatch
                                               ) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[ami]\nusername = "miitel2"\n')
    assert load_config(path).ami.username == "miitel2"


def test_users_file_after_a_table_says_where_the_key_goes(
    tmp_path: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[log]\nlevel = "INFO"\nusers_file = "users.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "inside [log]" in text and "top of the file" in text
    assert "pydantic" not in text and "unknown key" not in text


def test_an_inline_comment_in_the_env_file_is_refused_at_start(
    tmp_path: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    """systemd hands `URL   # from MiiTel Admin` to the service as the value."""
    url = f"https://acme.miitel.jp/webhook/{SECRET_PATH}     # from MiiTel Admin"
    clean_env.setenv("MIITEL_WEBHOOK_URL", url)
    with pytest.raises(ConfigError) as err:
        load_config(None)
    text = str(err.value)
    assert "miitel.webhook_url" in text and "MIITEL_WEBHOOK_URL" in text
    assert "comment" in text and SECRET_PATH not in text
    clean_env.setenv("MIITEL_WEBHOOK_URL", f"https://acme.miitel.jp/{SECRET_PATH}#x")
    with pytest.raises(ConfigError, match="'#'"):
        load_config(None)


def test_plain_http_to_another_host_is_refused_unless_allowed(
    tmp_path: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("MIITEL_WEBHOOK_URL", f"http://miitel.example.com/{SECRET_PATH}")
    with pytest.raises(ConfigError) as err:
        load_config(None)
    assert "allow_insecure_http" in str(err.value) and SECRET_PATH not in str(err.value)
    clean_env.setenv("ASTERISK_MIITEL_MIITEL__ALLOW_INSECURE_HTTP", "true")
    assert load_config(None).miitel.webhook_url is not None
    clean_env.delenv("ASTERISK_MIITEL_MIITEL__ALLOW_INSECURE_HTTP")
    for local in ("http://127.0.0.1:8765/x", "http://localhost/x", "http://[::1]:80/x"):
        clean_env.setenv("MIITEL_WEBHOOK_URL", local)
        assert load_config(None).miitel.webhook_url is not None  # a local stand-in


def test_without_config_commands_use_etc_asterisk_miitel(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Run as root without --config, commands used the embedded defaults and
    looked for the outbox in ~/.local/state."""
    from asterisk_miitel.cli import main

    etc = tmp_path / "etc" / "config.toml"
    etc.parent.mkdir()
    outbox = tmp_path / "var" / "outbox.sqlite3"
    etc.write_text(f'[outbox]\npath = "{outbox}"\n', encoding="utf-8")
    clean_env.setattr(config_module, "DEFAULT_CONFIG", etc)
    assert load_config(None).outbox.path == outbox
    assert main(["status"]) == 2
    assert str(outbox) in capsys.readouterr().err  # the config's outbox, not ~/.local
    other = tmp_path / "other.toml"
    other.write_text('[ami]\nusername = "from-env"\n', encoding="utf-8")
    clean_env.setenv("ASTERISK_MIITEL_CONFIG", str(other))
    assert load_config(None).ami.username == "from-env"  # the env var still wins


# -- users ---------------------------------------------------------------------------------

TARO_ID = "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"
HANAKO_ID = "5d7c3e1a-2b4f-4c6d-8e9f-0a1b2c3d4e5f"


def _as_root() -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root: owners of files are what this checks")


def test_users_import_as_root_creates_the_file_owned_like_the_config(
    tmp_path: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    """As root it wrote users.toml root:root 0640: the service could not read it
    and restarted for ever."""
    import os

    from asterisk_miitel.ops.users import users_import_main

    _as_root()
    config = tmp_path / "config.toml"
    config.write_text('users_file = "users.toml"\n', encoding="utf-8")
    os.chown(config, 0, 4321)  # root:asterisk-miitel, as the install guide makes it
    config.chmod(0o640)
    csv_file = tmp_path / "users.csv"
    csv_file.write_text(f"extension,miitel_user_id\n1001,{TARO_ID}\n", encoding="utf-8")
    assert users_import_main(str(csv_file), str(config)) == 0
    st = (tmp_path / "users.toml").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 4321, 0o640)


def test_users_import_keeps_an_existing_files_owner_group_and_mode(
    tmp_path: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    import os

    from asterisk_miitel.ops.users import users_import_main

    _as_root()
    config = tmp_path / "config.toml"
    config.write_text('users_file = "users.toml"\n', encoding="utf-8")
    users = tmp_path / "users.toml"
    users.write_text("[users]\n", encoding="utf-8")
    os.chown(users, 1234, 5678)
    users.chmod(0o604)
    csv_file = tmp_path / "users.csv"
    csv_file.write_text(f"extension,miitel_user_id\n1001,{TARO_ID}\n", encoding="utf-8")
    assert users_import_main(str(csv_file), str(config)) == 0
    st = users.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 5678, 0o604)
    assert TARO_ID in users.read_text(encoding="utf-8")


def test_users_csv_endpoints_column_list_and_export_round_trip(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from asterisk_miitel.cli import main

    config = tmp_path / "config.toml"
    config.write_text('users_file = "users.toml"\n', encoding="utf-8")
    csv_file = tmp_path / "users.csv"
    csv_file.write_text(
        "extension,miitel_user_id,name,number,endpoints\n"
        f"1001,{TARO_ID},Suzuki Ichiro,,PJSIP/desk-suzuki\n"
        f"1002,{HANAKO_ID},Sato Hanako,0312345679,desk-sato;sato-mobile\n",
        encoding="utf-8")
    assert main(["users", "import", str(csv_file), "--config", str(config)]) == 0
    loaded = load_config(config)
    assert loaded.users["1001"].endpoints == ["desk-suzuki"]
    assert loaded.users["1002"].endpoints == ["desk-sato", "sato-mobile"]
    capsys.readouterr()
    assert main(["users", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "desk-suzuki" in listed and "desk-sato sato-mobile" in listed
    assert "2 user(s)" in listed
    exported = tmp_path / "export.csv"
    assert main(["users", "export", "--config", str(config), "--output", str(exported)]) == 0
    # What export wrote, imported with --replace, is the same map.
    (tmp_path / "users.toml").unlink()
    assert main(["users", "import", str(exported), "--config", str(config)]) == 0
    assert load_config(config).users == loaded.users
    bad = tmp_path / "bad.csv"
    bad.write_text(f"extension,miitel_user_id,endpoints\n1003,{TARO_ID},desk/\"x\"\n",
                   encoding="utf-8")
    assert main(["users", "import", str(bad), "--config", str(config)]) == 1
    assert "line 2: endpoint" in capsys.readouterr().err


def test_a_phone_with_an_unknown_device_name_says_the_exact_fix() -> None:
    """The demo call rings PJSIP/desk-suzuki; 1001's user lacks the endpoint."""
    from asterisk_miitel.config import Config
    from asterisk_miitel.replay import replay_file

    config = Config(users={"1001": {"miitel_user_id": TARO_ID}},
                    pbx={"id": "pbx1", "timezone": "Asia/Tokyo"})
    [outcome] = [o for o in replay_file(str(DEMO_DIR / "ami.log"), config) if o.set_aside]
    assert outcome.set_aside_code == "users"
    assert 'endpoints = ["desk-suzuki"]' in (outcome.set_aside or "")


# -- check: the service's user, the env file -----------------------------------------------


@pytest.fixture
def open_dir() -> object:
    """A folder every user can traverse (pytest's tmp_path is root's only)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="asterisk-miitel-perm-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_check_says_when_the_service_user_cannot_read_its_files(
    open_dir: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    """`users import` as root made users.toml root's only; check passed as root and
    the service could not start: check now looks with the service user's eyes."""
    import os

    from asterisk_miitel.ops.check import service_user_results

    _as_root()
    unit = open_dir / "asterisk-miitel.service"
    unit.write_text("[Service]\nUser=nobody\nGroup=nogroup\nStateDirectory=asterisk-miitel\n",
                    encoding="utf-8")
    monitor = open_dir / "monitor"
    monitor.mkdir(mode=0o750)
    os.chown(monitor, 0, 0)  # root:root 0750: not readable by nobody
    outbox = open_dir / "state"
    outbox.mkdir(mode=0o755)
    config = open_dir / "config.toml"
    config.write_text(f"""users_file = "users.toml"
[outbox]
path = "{outbox / 'outbox.sqlite3'}"
[recordings]
work_dir = "{open_dir / 'work'}"
dirs = ["{monitor}"]
""", encoding="utf-8")
    users = open_dir / "users.toml"
    users.write_text("[users]\n", encoding="utf-8")
    os.chown(config, 0, 65534)
    config.chmod(0o640)
    users.chmod(0o640)  # root:root: the trap
    loaded = load_config(config)
    [result] = service_user_results(loaded, config_path=config, unit=unit)
    assert result.ok is False
    assert "nobody (User= in" in result.detail
    assert f"users file: {users}" in result.detail and "not readable by nobody" in result.detail
    assert f"recordings {monitor}" in result.detail
    assert "outbox folder" in result.detail  # root's 0755 folder: not writable
    assert "config:" not in result.detail  # root:nogroup 0640 is fine

    os.chown(users, 0, 65534)
    os.chown(monitor, 0, 65534)
    os.chown(outbox, 65534, 65534)
    (open_dir / "work").mkdir()
    os.chown(open_dir / "work", 65534, 65534)
    [result] = service_user_results(loaded, config_path=config, unit=unit)
    assert result.ok is True, result.detail
    assert "users file" in result.detail and "work folder" in result.detail


def test_check_reads_the_service_user_from_the_config_owner_without_a_unit(
    open_dir: Path, clean_env: pytest.MonkeyPatch,
) -> None:
    import os

    from asterisk_miitel.ops.check import service_user

    _as_root()
    config = open_dir / "config.toml"
    config.write_text("", encoding="utf-8")
    os.chown(config, 65534, 65534)
    user = service_user(config, open_dir / "no-such.service")
    assert user is not None and user.name == "nobody" and "owner of" in user.source


def test_env_file_is_read_as_systemd_reads_it() -> None:
    from asterisk_miitel.ops.envfile import parse_env

    text = """# a comment
; another
MIITEL_WEBHOOK_URL=https://acme.miitel.jp/webhook/abc     # from MiiTel Admin
  ASTERISK_MIITEL_AMI__SECRET = "se cr\\"et"
QUOTED='a # not a comment'
CONT=one\\
two
EMPTY=
"""
    env = parse_env(text)
    # The inline comment is part of the value, as systemd hands it over.
    assert env["MIITEL_WEBHOOK_URL"] == ("https://acme.miitel.jp/webhook/abc     "
                                         "# from MiiTel Admin")
    assert env["ASTERISK_MIITEL_AMI__SECRET"] == 'se cr"et'
    assert env["QUOTED"] == "a # not a comment"
    assert env["CONT"] == "onetwo"
    assert env["EMPTY"] == ""


def test_check_env_file_refuses_the_mangled_url_without_showing_it(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from asterisk_miitel.cli import main

    env = tmp_path / "env"
    env.write_text(f"MIITEL_WEBHOOK_URL=https://acme.miitel.jp/{SECRET_PATH}   # note\n",
                   encoding="utf-8")
    env.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    # check --env-file sets the process's environment: undone after this test
    clean_env.setenv("MIITEL_WEBHOOK_URL", "")
    clean_env.delenv("MIITEL_WEBHOOK_URL")
    assert main(["check", "--config", str(config), "--env-file", str(env)]) == 2
    err = capsys.readouterr().err
    assert "MIITEL_WEBHOOK_URL" in err and "comment" in err and SECRET_PATH not in err


# -- demo ----------------------------------------------------------------------------------


def test_demo_explains_the_silent_side_group_name_and_the_next_step(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from asterisk_miitel.cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Tanaka Hanako's side is silent because the captured caller was" in out
    assert "groupname and group_name carry the same value" in out
    tail = out.rstrip().splitlines()[-5:]
    assert tail[0] == "Next: connect it to your PBX."
    assert any("asterisk-miitel setup --pbx plain --dry-run" in line for line in tail)


def test_retry_help_example_looks_like_a_real_call_data_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from asterisk_miitel.calls.classify import call_data_id
    from asterisk_miitel.cli import main

    with pytest.raises(SystemExit):
        main(["retry", "--help"])
    example = capsys.readouterr().out.split("example:", 1)[1].split()[2]
    real = call_data_id("pbx1", "/var/spool/asterisk/monitor/"
                                "miitel-1795472139-1795472139.4-1.raw")

    def shape(text: str) -> str:
        return re.sub(r"[0-9a-f]{16}$", "<hash>", re.sub(r"\d", "9", text))

    assert shape(example) == shape(real), (example, real)
