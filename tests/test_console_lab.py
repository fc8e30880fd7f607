"""The console in a real headless Chromium (Debian's package) after a real call.

A sipp caller rings the lab Asterisk, 1001 answers, the service (its own
process, `asterisk-miitel run --config`, with `[http] enabled`) uploads the
call to the MiiTel stand-in; then 1001 calls 1002, who has no MiiTel user, so
that call is set aside. Chromium loads the console and the first call's page:
both calls are listed with their state, the set-aside one with what to do,
and the uploaded one's steps are shown. The
screenshots are kept as test artifacts ($ASTERISK_MIITEL_ARTIFACTS, else
tests/artifacts/), their paths printed.
"""

from __future__ import annotations

import html
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import e2e
from tests.lab import Lab

from .chromium import ChromiumUnavailable, artifacts_dir, ensure_chromium, load

pytestmark = pytest.mark.lab


@pytest.fixture(scope="session")
def chromium() -> str:
    """Installed before the lab is taken (apt-get can take a minute on a clean machine).
    Where it cannot be (not root, not Linux) the test skips, as the lab's do; under
    CI=true it fails instead."""
    try:
        return ensure_chromium()
    except ChromiumUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def console_env(chromium: str, lab: Lab, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[e2e.E2E, str]]:
    port = free_port()
    plain = e2e.write_config

    def with_console(*args: object, **kw: object) -> Path:
        path = plain(*args, **kw)  # type: ignore[arg-type]
        path.write_text(path.read_text() + f"\n[http]\nenabled = true\nport = {port}\n")
        return path

    monkeypatch.setattr(e2e, "write_config", with_console)
    # 1002 is nobody in MiiTel here: a call to 1002 is set aside, and says why
    monkeypatch.setattr(e2e, "USERS", {k: v for k, v in e2e.USERS.items() if k != "1002"})
    with e2e.E2E(lab, tmp_path) as env:
        yield env, f"http://127.0.0.1:{port}"


def test_the_console_lists_a_real_call(console_env: tuple[e2e.E2E, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    env, base = console_env
    env.play("inbound_answered", duration_ms=2000)
    [call] = env.sent(1)
    call_id = call["call_data_id"]
    env.play("ext2ext", duration_ms=2000)
    [aside] = [r for r in env.wait_outbox(2) if r.state == "set_aside"]
    assert aside.reason_code == "users" and len(env.standin.calls()) == 1
    shots = artifacts_dir()
    overview = shots / "console-overview.png"
    page = load(base + "/", overview)
    with capsys.disabled():  # shown even when output is captured (-q)
        print(f"\nconsole screenshot: {overview}")
    assert "Healthy" in page and "connected" in page
    assert html.escape(call_id) in page
    customer = e2e.party(call["call_data"], "FROM")["number"]
    row = page[page.index('id="recent"'):]
    assert customer in row and "INCOMING_CALL" in row and "uploaded" in row
    assert "read-only" in page and "<form" not in page  # console_actions is off
    assert "<script" not in page  # nothing needs JavaScript
    listed = page[page.index("Set aside (1)"):page.index('id="recent"')]
    assert html.escape(aside.id) in listed and "EXTENSION" in listed
    assert "give extension 1002 a miitel_user_id in [users]" in listed
    assert html.escape(f"`asterisk-miitel retry {aside.id}") in listed
    detail = shots / "console-call.png"
    page = load(base + "/calls/" + quote(call_id, safe=""), detail)
    with capsys.disabled():
        print(f"call page screenshot: {detail}")
    for step in ("waiting for the recording", "ready to send", "being sent", "uploading",
                 "uploaded"):
        assert step in page, step
    assert "nothing: MiiTel has it" in page
    assert env.standin.webhook_url.rsplit("/", 1)[1] not in page  # the webhook's secret
    assert overview.stat().st_size > 10_000 and detail.stat().st_size > 10_000
