"""What the service does with each of MiiTel's answers (README "Never lose a
call"), end to end: the real service, a captured call played by a fake AMI,
the MiiTel stand-in over real HTTP with its fault knobs."""

from __future__ import annotations

import io
import logging
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asterisk_miitel.ami.fake_server import FakeAmi
from asterisk_miitel.logs import setup_logging
from asterisk_miitel.miitel.standin import StandIn
from asterisk_miitel.outbox.manage import retry
from asterisk_miitel.outbox.store import Row

from .support import DEMO_DIR, TARO, done, running, service_config, wait_for
from .test_service import RECORDING, demo_events


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    (tmp_path / "monitor").mkdir(exist_ok=True)
    return Path(shutil.copy(DEMO_DIR / RECORDING, tmp_path / "monitor" / RECORDING))


async def one_call(tmp_path: Path, standin: StandIn, **over: object) -> tuple[Row, object]:
    """Play the demo call through the service until it is final; its outbox row."""
    async with FakeAmi(demo_events()) as ami:
        config = service_config(tmp_path, ami.port, standin.webhook_url, **over)
        async with running(config) as service:
            await wait_for(done(service), 20)
            [call_id] = await service.outbox.all_ids()
            row = await service.outbox.get(call_id)
            assert row is not None
            return row, service


# -- a 200 without an upload URL ---------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["<html>upstream says hello</html>", '{"other": 1}', '{"audio_upload_urls": []}'],
)
async def test_200_without_upload_url_is_outcome_unknown_not_rejected(
    tmp_path: Path, standin: StandIn, recording: Path, body: str
) -> None:
    # MiiTel created the history, but what came back is not the answer we know.
    standin.add_fault(method="POST", status=200, body=body, process=True)
    row, _ = await one_call(tmp_path, standin)
    assert (row.state, row.reason_code) == ("set_aside", "outcome_unknown")
    assert "answered 200" in (row.reason or "")
    assert f"asterisk-miitel retry --force {row.id}" in (row.reason or "")
    # A plain retry would POST it again: a second history. It needs --force.
    result = await _retry(tmp_path, row.id, force=False)
    assert not result.ok and "--force" in result.message
    [call] = standin.calls()
    assert call["post_count"] == 1


async def _retry(tmp_path: Path, call_id: str, *, force: bool):  # type: ignore[no-untyped-def]
    from asterisk_miitel.outbox.store import Outbox

    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        return await retry(outbox, call_id, service_config(tmp_path, 1, None), force=force)


# -- 5xx: processed or not? -----------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_server_error_after_processing_is_outcome_unknown_never_resent(
    tmp_path: Path, standin: StandIn, recording: Path, status: int
) -> None:
    # MiiTel created the history, then a gateway answered 5xx.
    standin.add_fault(method="POST", status=status, process=True)
    row, service = await one_call(tmp_path, standin)
    assert (row.state, row.reason_code) == ("set_aside", "outcome_unknown")
    assert f"answered {status}" in (row.reason or "")
    assert f"asterisk-miitel retry --force {row.id}" in (row.reason or "")
    assert "resend_on_server_error" in (row.reason or "")
    [call] = standin.calls()
    assert call["post_count"] == 1 and row.posts == 1
    assert service.sender.stats.retries == 0


async def test_server_error_is_resent_when_the_site_opted_in(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    standin.add_fault(method="POST", status=502, process=True, retry_after="0")
    row, _ = await one_call(tmp_path, standin, miitel={"resend_on_server_error": True})
    assert row.state == "uploaded"
    [call] = standin.calls()
    # The stand-in keeps a repeated call_data_id as one history: the behaviour
    # this setting assumes of MiiTel.
    assert call["post_count"] == 2 and call["status"] == "uploaded"


@pytest.mark.parametrize("status", [429, 503])
async def test_not_processed_is_retried_after_retry_after(
    tmp_path: Path, standin: StandIn, recording: Path, status: int
) -> None:
    standin.add_fault(method="POST", status=status, retry_after="2")
    async with FakeAmi(demo_events()) as ami:
        # retry_max 0.5 s: only Retry-After can make the service wait 2 s.
        config = service_config(tmp_path, ami.port, standin.webhook_url)
        async with running(config) as service:
            async def answered() -> bool:
                ids = await service.outbox.all_ids()
                row = await service.outbox.get(ids[0]) if ids else None
                return row is not None and f"answered {status}" in (row.last_error or "")
            await wait_for(answered, 20)
            [call_id] = await service.outbox.all_ids()
            waiting = await service.outbox.get(call_id)
            assert waiting is not None and waiting.state == "ready"
            assert waiting.next_attempt_at - waiting.updated_at > 1.9
            await wait_for(done(service), 20)
            row = await service.outbox.get(call_id)
    assert row is not None and row.state == "uploaded"
    [call] = standin.calls()
    assert call["post_count"] == 1  # the refused POST created nothing


# -- answers are read up to 1 MiB -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(200, "outcome_unknown"), (400, "rejected")],
)
async def test_a_200mb_answer_costs_no_memory_and_keeps_its_start(
    tmp_path: Path, standin: StandIn, recording: Path, status: int, code: str
) -> None:
    fault = standin.add_fault(method="POST", status=status, process=status == 200,
                              body='{"detail": "gateway page"} ', body_size=200 * 1024 * 1024)
    row, _ = await one_call(tmp_path, standin)
    assert (row.state, row.reason_code) == ("set_aside", code)
    assert "over 1 MiB" in (row.reason or "")
    if status == 400:  # the start of MiiTel's answer is the reason a person reads
        assert 'answered 400: {"detail": "gateway page"}' in (row.reason or "")
    assert len(row.reason or "") < 2000
    assert fault.body_sent < 24 * 1024 * 1024  # the service hung up after 1 MiB


# -- status: outcome-unknown calls first, with the command -------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asterisk_miitel", *args],
                          capture_output=True, text=True, timeout=60)


async def test_status_lists_outcome_unknown_first_with_the_exact_command(
    tmp_path: Path, standin: StandIn, recording: Path
) -> None:
    standin.add_fault(method="POST", status=502, process=True)
    row, _ = await one_call(tmp_path, standin)
    assert row.reason_code == "outcome_unknown"
    config = tmp_path / "my config.toml"
    config.write_text(f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n'
                      '[pbx]\ntimezone = "Asia/Tokyo"\n'
                      f'[users]\n"1001" = {{ miitel_user_id = "{TARO}" }}\n')
    status = cli("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("OUTCOME UNKNOWN: 1 call(s) MiiTel may or may not have")
    command = f"asterisk-miitel retry --force --config {shlex.quote(str(config))} {row.id}"
    assert lines[1].strip() == command
    assert "INCOMING_CALL 0312349999 -> 1001" in lines[2] and "answered 502" in lines[2]
    # The command works as printed (same outbox, same config).
    resent = cli(*shlex.split(command)[1:])
    assert resent.returncode == 0 and "queued again" in resent.stdout
    after = cli("status", "--config", str(config))
    assert "OUTCOME UNKNOWN" not in after.stdout


# -- user:password in the URL and an Authorization header ----------------------------------


def test_userinfo_and_authorization_header_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[miitel]\nwebhook_url = "https://hookuser:Pa55-w0rd-xyz@acme.miitel.jp/webhook/tok"\n'
        'headers = { authorization = "Bearer Tok3n-Value-123" }\n'
        f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n')
    result = cli("run", "--config", str(config))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # one line, no traceback, before anything starts
    assert "miitel.webhook_url" in line and "miitel.headers" in line and "Authorization" in line
    assert "Pa55-w0rd-xyz" not in line and "Tok3n-Value-123" not in line
    assert not (tmp_path / "outbox.sqlite3").exists()


def test_userinfo_from_the_environment_and_a_header_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asterisk_miitel.config import ConfigError, load_config

    config = tmp_path / "config.toml"
    config.write_text('[miitel]\nheaders = { Authorization = "Bearer x" }\n')
    monkeypatch.setenv("MIITEL_WEBHOOK_URL", "https://u:p@acme.miitel.jp/webhook/tok")
    with pytest.raises(ConfigError, match=r"miitel\.headers sets Authorization"):
        load_config(config)
    # Either one alone is fine.
    monkeypatch.setenv("MIITEL_WEBHOOK_URL", "https://acme.miitel.jp/webhook/tok")
    assert load_config(config).miitel.headers["Authorization"].get_secret_value() == "Bearer x"


async def test_userinfo_alone_still_reaches_the_standin(standin: StandIn) -> None:
    from asterisk_miitel.config import Config
    from asterisk_miitel.miitel.client import MiitelClient

    from .miitel_helpers import call_data

    url = standin.webhook_url.replace("http://", "http://hookuser:secret@")
    Config(miitel={"webhook_url": url})  # type: ignore[arg-type]
    async with MiitelClient(url) as client:
        assert await client.create_call_history(call_data("u"))
    assert standin.call("u") is not None


# -- the webhook's token and the Authorization credential, on their own ------------------------


class _Raw(logging.Handler):
    """Every log message as the code wrote it, before the log's secret filter."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("shape", ["/webhook/{token}", "/{token}/incoming"])
async def test_an_echoed_token_is_in_no_reason_log_or_status(
    tmp_path: Path, recording: Path, shape: str
) -> None:
    token = "Tk" + secrets.token_hex(12)  # as random as a real one, with digits
    credential = "cr3d-" + secrets.token_urlsafe(18)
    out = io.StringIO()
    raw = _Raw()
    async with StandIn(tmp_path / "miitel", port=0,
                       webhook_path=shape.format(token=token)) as standin:
        # A chatty gateway: its 401 quotes the path, the token and the credential.
        standin.add_fault(method="POST", status=401, echo=True, body="bad credentials")
        url = standin.webhook_url
        headers = {"Authorization": f"Bearer {credential}"}
        setup_logging("text", "DEBUG", [url, *headers.values()], stream=out)
        logging.getLogger().addHandler(raw)
        try:
            row, _ = await one_call(tmp_path, standin, miitel={"headers": headers})
        finally:
            logging.getLogger().handlers.clear()
    assert (row.state, row.reason_code) == ("set_aside", "rejected")
    assert '"request": "/' in (row.reason or "")  # the echo is there, its secrets are not
    config = tmp_path / "config.toml"
    config.write_text(f'[miitel]\nwebhook_url = "{url}"\n'
                      f'headers = {{ Authorization = "Bearer {credential}" }}\n'
                      f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n')
    status = cli("status", "--config", str(config))
    assert status.returncode == 0 and "[rejected]" in status.stdout
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite3*"))
    places = {"reason": row.reason or "", "log": out.getvalue(),
              "log as written": "\n".join(raw.messages), "status": status.stdout,
              "outbox file": stored.decode("utf-8", "replace")}
    for where, text in places.items():
        for secret in (token, credential):
            assert secret not in text, f"{secret} in the {where}"
    assert "POST http://127.0.0.1" in out.getvalue()  # it did log the request
