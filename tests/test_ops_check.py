"""`asterisk-miitel check` against a fake AMI server and the MiiTel stand-in, over
real sockets: each problem an admin can have shows up as one failing line
that says what to do, and no secret is ever printed."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi, shift_times, transcript_events
from asterisk_miitel.config import Config
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.ops.check import (
    MANAGER_FILTERS,
    CheckResult,
    check_main,
    exit_code,
    filter_would_pass,
    has_d_option,
    parse_version,
    run_checks,
    users_result,
)
from asterisk_miitel.outbox.store import NewCall, Outbox

from .support import DEMO_DIR, TARO

REPO = Path(__file__).resolve().parents[1]
LISTEN = 0.3  # seconds the check listens for events; FakeAmi sends them at once


@dataclass
class PickyAmi(FakeAmi):
    """FakeAmi that refuses some actions (a manager user without write=reporting)
    and reports another Asterisk version."""

    denied: tuple[str, ...] = ()
    asterisk_version: str = "22.10.1"

    def _answer(self, msg: dict[str, str]) -> bytes | None:
        action = msg.get("Action", "").lower()
        aid = msg.get("ActionID", "")
        if action in self.denied:
            return (f"Response: Error\r\nActionID: {aid}\r\nMessage: Permission denied"
                    "\r\n\r\n").encode()
        reply = super()._answer(msg)
        if action == "coresettings" and reply is not None:
            reply = reply.replace(b"AsteriskVersion: 22.10.1",
                                  f"AsteriskVersion: {self.asterisk_version}".encode())
        return reply


def demo_events() -> list[bytes]:
    """A real call as Asterisk sends it through manager_miitel.conf's filter."""
    return shift_times(transcript_events((DEMO_DIR / "ami.log").read_bytes()), time.time())


UNFILTERED = [
    b"Event: VarSet\r\nPrivilege: dialplan,all\r\nTimestamp: 1795472139.5\r\n"
    b"Channel: PJSIP/1001-00000001\r\nVariable: BRIDGEPEER\r\nValue: PJSIP/1002-00000002\r\n"
    b"Uniqueid: 1795472139.1\r\n\r\n",
    b"Event: RTCPSent\r\nPrivilege: reporting,all\r\nTimestamp: 1795472139.6\r\n"
    b"Channel: PJSIP/1001-00000001\r\nUniqueid: 1795472139.1\r\n\r\n",
]


def make_config(tmp_path: Path, ami: FakeAmi | None, webhook_url: str | None,
                **over: Any) -> Config:
    (tmp_path / "monitor").mkdir(exist_ok=True)
    base: dict[str, Any] = {
        "ami": {"host": "127.0.0.1", "port": ami.port if ami else free_port(),
                "username": "miitel", "secret": "s3cret-ami", "connect_timeout": 5,
                "ping_timeout": 2},
        "miitel": {"webhook_url": webhook_url, "timeout": 5},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")},
        "recordings": {"work_dir": str(tmp_path / "work"), "min_free_mb": 0,
                       "path_map": {"/var/spool/asterisk/monitor": str(tmp_path / "monitor")}},
        "users": {"1001": {"miitel_user_id": TARO}},
    }
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Config(**base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


@pytest.fixture
async def standin(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with StandIn(tmp_path / "miitel", port=0) as s:
        yield s


async def test_a_ready_machine_passes_every_check(tmp_path: Path, standin: StandIn) -> None:
    async with FakeAmi(demo_events(), secret="s3cret-ami") as ami:
        results = await run_checks(make_config(tmp_path, ami, standin.webhook_url),
                                   listen_seconds=LISTEN)
    got = by_name(results)
    assert [r.name for r in results] == [
        "AMI login", "AMI actions", "AMI event filter", "AMI timestamps", "Asterisk version",
        "MixMonitor events", "MiiTel webhook host", "recordings folder", "outbox", "work folder", "free disk",
        "MiiTel users"]
    assert got["AMI login"].ok and "Asterisk Call Manager 11.0.0" in got["AMI login"].detail
    assert got["AMI actions"].ok
    assert got["AMI event filter"].ok and "25 event(s)" in got["AMI event filter"].detail
    assert got["AMI timestamps"].ok
    assert got["Asterisk version"].ok and "D option available" in got["Asterisk version"].detail
    assert got["MiiTel webhook host"].ok and "plain HTTP" in got["MiiTel webhook host"].detail
    assert got["recordings folder"].ok and str(tmp_path / "monitor") in (
        got["recordings folder"].detail)
    assert got["outbox"].ok and "will be created" in got["outbox"].detail
    assert not (tmp_path / "state").exists()  # the check created nothing
    assert got["MiiTel users"].ok is None  # no history yet
    assert exit_code(results) == 0
    text = "\n".join(r.line() for r in results)
    assert "s3cret-ami" not in text and standin.state.webhook_path not in text


async def test_a_wrong_secret_fails_the_login_line_and_says_why(tmp_path: Path) -> None:
    async with FakeAmi(demo_events(), secret="the-right-one") as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    got = by_name(results)
    assert got["AMI login"].ok is False
    assert "login refused for user 'miitel'" in got["AMI login"].detail
    assert "secret" in got["AMI login"].detail and "s3cret-ami" not in got["AMI login"].detail
    assert got["AMI event filter"].ok is None and got["Asterisk version"].ok is None
    assert exit_code(results) == 1


async def test_nothing_listening_on_the_ami_port(tmp_path: Path) -> None:
    results = await run_checks(make_config(tmp_path, None, None), listen_seconds=LISTEN)
    login = by_name(results)["AMI login"]
    assert login.ok is False and "cannot connect to AMI" in login.detail


async def test_a_missing_event_filter_is_spotted(tmp_path: Path) -> None:
    async with FakeAmi(demo_events() + UNFILTERED, secret="s3cret-ami") as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    result = by_name(results)["AMI event filter"]
    assert result.ok is False
    assert "VarSet BRIDGEPEER x1" in result.detail and "RTCPSent x1" in result.detail
    assert "manager_miitel.conf" in result.detail


async def test_no_traffic_means_unknown_not_fine(tmp_path: Path) -> None:
    async with FakeAmi([], secret="s3cret-ami") as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    got = by_name(results)
    assert got["AMI login"].ok is True
    assert got["AMI event filter"].ok is None and "while a call is up" in (
        got["AMI event filter"].detail)
    assert got["AMI timestamps"].ok is None


async def test_events_without_timestamps(tmp_path: Path) -> None:
    events = [re.sub(rb"Timestamp: [0-9.]+\r\n", b"", e) for e in demo_events()]
    async with FakeAmi(events, secret="s3cret-ami") as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    result = by_name(results)["AMI timestamps"]
    assert result.ok is False and "timestampevents = yes" in result.detail


async def test_a_manager_user_without_write_reporting(tmp_path: Path) -> None:
    async with PickyAmi(demo_events(), secret="s3cret-ami",
                        denied=("coreshowchannels", "coresettings")) as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    got = by_name(results)
    assert got["AMI actions"].ok is False
    assert "CoreShowChannels refused (Permission denied)" in got["AMI actions"].detail
    assert "write = reporting" in got["AMI actions"].detail
    # Without CoreSettings the version is a guess from the AMI banner.
    assert got["Asterisk version"].ok is None and "Asterisk 22?" in got["Asterisk version"].detail


async def test_an_asterisk_without_the_d_option(tmp_path: Path) -> None:
    async with PickyAmi(demo_events(), secret="s3cret-ami", asterisk_version="20.7.0") as ami:
        results = await run_checks(make_config(tmp_path, ami, None), listen_seconds=LISTEN)
    version = by_name(results)["Asterisk version"]
    assert version.ok is True and "no MixMonitor D option" in version.detail


@pytest.mark.parametrize(("text", "parsed", "d"), [
    ("22.10.1", (22, 10), True),
    ("22.10.1+dfsg+~cs6-1", (22, 10), True),
    ("22.0.0", (22, 0), False),
    ("21.6.0", (21, 6), True),
    ("20.11.0", (20, 11), True),
    ("20.10.2", (20, 10), False),
    ("certified-20.7-cert5", (20, 7), False),
    ("18.24.3", (18, 24), False),
    ("23.0.0", (23, 0), True),
])
def test_which_versions_have_mixmonitor_d(text: str, parsed: tuple[int, int], d: bool) -> None:
    assert parse_version(text) == parsed and has_d_option(parsed) is d


def test_unknown_versions() -> None:
    assert parse_version("GIT-master-abc123") is None and parse_version(None) is None


async def test_no_webhook_url_fails(tmp_path: Path) -> None:
    results = await run_checks(make_config(tmp_path, None, None), listen_seconds=0)
    result = by_name(results)["MiiTel webhook host"]
    assert result.ok is False and "MIITEL_WEBHOOK_URL" in result.detail


async def test_an_unknown_webhook_host(tmp_path: Path) -> None:
    url = "https://no-such-company.invalid/webhook/secret-token-0123456789"
    results = await run_checks(make_config(tmp_path, None, url), listen_seconds=0)
    result = by_name(results)["MiiTel webhook host"]
    assert result.ok is False and "DNS lookup failed" in result.detail
    assert "secret-token" not in result.detail and "/webhook" not in result.detail


async def test_tls_handshake_without_sending_a_request(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    received: list[bytes] = []
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.read())
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()
        closed.set()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*self_signed)
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    url = f"https://localhost:{port}/webhook/secret-token-0123456789"
    try:
        trusted = await run_checks(make_config(tmp_path, None, url), listen_seconds=0)
        untrusted = by_name(trusted)["MiiTel webhook host"]
        insecure = await run_checks(
            make_config(tmp_path, None, url, miitel={"verify_tls": False}), listen_seconds=0)
        ok = by_name(insecure)["MiiTel webhook host"]
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert untrusted.ok is False and "certificate not trusted" in untrusted.detail
    assert ok.ok is True and "TLS handshake ok" in ok.detail and "NOT verified" in ok.detail
    assert f"https://localhost:{port}" in ok.detail
    assert received == [b""]  # handshake only: not one byte of HTTP
    for r in (untrusted, ok):
        assert "secret-token" not in r.detail and "/webhook" not in r.detail


async def test_ami_over_tls_trusts_the_ca_in_tls_ca_file(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    """check connects as the service does: [ami] tls_ca_file was ignored, so an
    Asterisk with a self-signed certificate failed the check but not the service."""
    cert, key = self_signed
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    async with FakeAmi(demo_events(), secret="s3cret-ami", ssl=ctx) as ami:
        def login(ca: Path | None) -> Config:
            config = make_config(tmp_path, ami, None)
            config.ami = config.ami.model_copy(
                update={"host": "localhost", "tls": True, "tls_ca_file": ca})
            return config
        trusted = by_name(await run_checks(login(cert), listen_seconds=LISTEN))
        untrusted = by_name(await run_checks(login(None), listen_seconds=0))
        missing = by_name(await run_checks(login(tmp_path / "nope.pem"), listen_seconds=0))
    ok, bad, gone = trusted["AMI login"], untrusted["AMI login"], missing["AMI login"]
    assert ok.ok is True and "over TLS (certificate verified)" in ok.detail, ok.detail
    assert trusted["AMI event filter"].ok  # the events came over the TLS session
    assert bad.ok is False and "not trusted" in bad.detail and "[ami] tls_ca_file" in bad.detail
    assert gone.ok is False and f"[ami] tls_ca_file {tmp_path / 'nope.pem'}" in gone.detail
    assert "No such file" in gone.detail
    for result in (ok, bad, gone):
        assert "s3cret-ami" not in result.detail


async def test_recordings_folder_that_does_not_exist(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, None,
                         recordings={"dirs": ["/var/spool/asterisk/monitor",
                                              "/var/spool/asterisk/voicemail"]})
    results = await run_checks(config, listen_seconds=0)
    result = by_name(results)["recordings folder"]
    assert result.ok is False and "/var/spool/asterisk/voicemail does not exist" in result.detail


async def test_extensions_in_calls_without_a_miitel_user(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, None)
    path = config.outbox.path

    def call(n: int, ext: str) -> NewCall:
        return NewCall(id=f"pbx:{n}", file=f"/r/{n}.raw", state="set_aside", audio={},
                       parties=[{"type": "FROM", "extension": None},
                                {"type": "TO", "extension": ext}])

    async with Outbox(path) as outbox:
        for n, ext in enumerate(["1004", "1004", "1001", "1010"]):
            await outbox.add(call(n, ext))
        live = users_result(config)  # the service running: read through its WAL
    closed = users_result(config)
    for result in (live, closed):
        assert result.ok is False
        assert "1004 (2 calls), 1010 (1 call)" in result.detail and "1001" not in result.detail
        assert "users import" in result.detail
    # Read without leaving files behind (as root they would lock the service out).
    assert sorted(p.name for p in path.parent.iterdir()) == ["outbox.sqlite3"]


def test_check_command_prints_one_line_per_check_and_exits_1(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, None)
    out = io.StringIO()
    code = check_main(config, out=out, listen_seconds=0)
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("note:")]
    assert code == 1 and len(lines) == 13  # the last: the service user's files
    assert lines[0].startswith("FAIL AMI login: cannot connect")
    assert all(line[:4] in ("ok  ", "FAIL", "??  ") for line in lines)
    assert "s3cret-ami" not in out.getvalue()


def test_filter_patterns_are_the_ones_users_install() -> None:
    conf = (REPO / "dialplan" / "manager_miitel.conf").read_text(encoding="utf-8")
    installed = [line.split("=", 1)[1].strip() for line in conf.splitlines()
                 if line.startswith("eventfilter")]
    assert installed == list(MANAGER_FILTERS)


def test_filter_lets_through_what_the_service_reads_only() -> None:
    assert filter_would_pass({"Event": "Hangup", "Channel": "PJSIP/1001-1"})
    assert filter_would_pass({"Event": "VarSet", "Channel": "x",
                              "Variable": "__FROM_DID", "Value": "0312345678"})
    assert not filter_would_pass({"Event": "VarSet", "Channel": "x",
                                  "Variable": "BRIDGEPEER", "Value": "y"})
    # A caller cannot smuggle an event through with a crafted name.
    assert not filter_would_pass({"Event": "VarSet", "Channel": "x", "Variable": "OTHER",
                                  "Value": "a Variable: MIXMONITOR_FILENAME "})
    assert not filter_would_pass({"Event": "UserEvent", "UserEvent": "Other"})
