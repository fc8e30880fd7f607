"""Catch-up on a FreePBX host reads FreePBX's MariaDB by default (issue 14).

FreePBX writes no Master.csv: its CDRs are in asteriskcdrdb.cdr. With
[catchup] source = "auto" and no database_url, a machine with /etc/freepbx.conf
(or /etc/amportal.conf) is read over MariaDB's local socket as the service's
own system user, authenticated by the socket (no password in any file).
"""

from __future__ import annotations

import asyncio
import getpass
import time
from pathlib import Path
from typing import Any

import pytest

from asterisk_miitel.catchup import config as cc
from asterisk_miitel.catchup.config import CatchupConfig, freepbx_database_url
from asterisk_miitel.catchup.runner import make_source
from asterisk_miitel.catchup.sources.csv import CsvSource
from asterisk_miitel.catchup.sources.sql import SqlSource
from asterisk_miitel.config import Config
from tests.lab import Lab
from tests.mariadb import MariaDB
from tests.mariadb.fixtures import mariadb

__all__ = ["mariadb"]


def _host(tmp_path: Path, *, freepbx: bool, socket: bool) -> tuple[list[str], list[str]]:
    marker, sock = tmp_path / "freepbx.conf", tmp_path / "mysqld.sock"
    if freepbx:
        marker.write_text("<?php $amp_conf['AMPDBUSER'] = 'freepbxuser';\n")
    if socket:
        sock.write_text("")
    return [str(marker)], [str(tmp_path / "no.sock"), str(sock)]


def test_freepbx_host_defaults_to_its_cdr_database(tmp_path: Path) -> None:
    markers, sockets = _host(tmp_path, freepbx=True, socket=True)
    assert freepbx_database_url(markers, sockets, user="asterisk-miitel") == (
        f"mysql://asterisk-miitel@localhost/asteriskcdrdb?unix_socket={tmp_path}/mysqld.sock")
    # the service's own user by default, never a password
    url = freepbx_database_url(markers, sockets)
    assert url is not None and url.startswith(f"mysql://{getpass.getuser()}@localhost/")


def test_not_freepbx_or_no_mariadb_keeps_master_csv(tmp_path: Path) -> None:
    assert freepbx_database_url(*_host(tmp_path, freepbx=False, socket=True)) is None
    other = tmp_path / "no-mariadb"
    other.mkdir()
    assert freepbx_database_url(*_host(other, freepbx=True, socket=False)) is None


def test_make_source_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    markers, sockets = _host(tmp_path, freepbx=True, socket=True)
    monkeypatch.setattr(cc, "FREEPBX_MARKERS", tuple(markers))
    monkeypatch.setattr(cc, "MYSQL_SOCKETS", tuple(sockets))
    monkeypatch.setattr("asterisk_miitel.catchup.runner.freepbx_database_url",
                        lambda: freepbx_database_url(markers, sockets))
    config = Config()
    source = make_source(config, CatchupConfig())
    assert isinstance(source, SqlSource) and source.table == "cdr"
    assert "asteriskcdrdb" in source.describe()
    # an explicit choice wins: cdr_csv, or another database
    assert isinstance(make_source(config, CatchupConfig(source="csv")), CsvSource)
    other = make_source(config, CatchupConfig(database_url="mysql://u:p@db/cdrs"))
    assert isinstance(other, SqlSource) and "cdrs" in other.describe()
    monkeypatch.setattr("asterisk_miitel.catchup.runner.freepbx_database_url", lambda: None)
    assert isinstance(make_source(config, CatchupConfig()), CsvSource)


@pytest.mark.lab
def test_default_url_reads_a_real_mariadb_by_socket_authentication(
        mariadb: MariaDB, tmp_path: Path) -> None:
    # the test server's root is authenticated by the socket, as the GRANT line in
    # dialplan/README.md sets up the service's user
    markers, _ = _host(tmp_path, freepbx=True, socket=False)
    url = freepbx_database_url(markers, [mariadb.socket], user="root")
    assert url is not None and ":" not in url.split("@")[0].removeprefix("mysql://")
    source = SqlSource(url.replace("asteriskcdrdb", mariadb.database), "cdr", None)

    async def columns() -> list[str]:
        try:
            return await source.columns()
        finally:
            await source.close()

    assert "calldate" in asyncio.run(columns())


# -- tags, queue and group names survive in the CDR (dialplan/miitel-record.conf) -----

def test_userfield_marks_are_read_and_anything_else_ignored() -> None:
    from asterisk_miitel.catchup.rows import miitel_marks

    field = ("other-dialplan;miitel-Tag:c3VwcG9ydC1xdWV1ZQ==|miitel-Queue:U3VwcG9ydA==|"
             "miitel-Tag:5bGx55Sw44CBIuODhuOCueODiCIsIHgseQ==|miitel-Group:NjAw|"
             "miitel-Tag:!!!|miitel-Tag:/w==|")
    assert miitel_marks(field) == [("Tag", "support-queue"), ("Queue", "Support"),
                                   ("Tag", '山田、"テスト", x,y'), ("Group", "600")]
    assert miitel_marks("") == [] and miitel_marks("miitel-Tag:|") == []


def test_catch_up_rebuilds_tags_and_the_queue_name_from_the_userfield() -> None:
    # the plain lab's queue call, as Asterisk 22's cdr_csv wrote it (before the
    # dialplan kept tags there), with the userfield miitel-tag/-queue now leave
    from tests.test_catchup import (
        CDR_FIXTURES,
        _rows_csv,
        catchup_config,
        outcomes,
        rebuild_fixture,
    )

    folder = CDR_FIXTURES / "queue"
    config = catchup_config()
    rows = _rows_csv(folder)
    before = outcomes(rebuild_fixture(folder, rows, config), config)
    [o] = [o for o in before.values() if o.call_data is not None]
    assert o.call_data.payload()["tags"] == []  # what catch-up could rebuild until now
    for row in rows:
        if row.channel.startswith("PJSIP/trunk-"):  # the caller's, where miitel-tag ran
            row.userfield = "miitel-Tag:c3VwcG9ydC1xdWV1ZQ==|miitel-Queue:U3VwcG9ydA==|"
    [o] = [o for o in outcomes(rebuild_fixture(folder, rows, config), config).values()
           if o.call_data is not None]
    data = o.call_data.payload()
    assert data["tags"] == [{"value": "support-queue"}]
    assert data["queue_name"] == "Support"


@pytest.mark.lab
def test_real_asterisk_keeps_the_marks_in_master_csv(lab: Lab) -> None:
    # the plain lab's queue call: miitel-tag(support-queue) and miitel-queue(Support)
    # on the caller's channel; cdr_csv writes the userfield; catch-up reads it back
    from datetime import UTC

    from asterisk_miitel.catchup.rows import miitel_marks
    from asterisk_miitel.catchup.sources.csv import CsvSource
    from tests.lab.scenarios import SCENARIOS, Runner

    (lab.log_dir / "cdr-csv").mkdir(exist_ok=True)  # cdr_csv does not create it
    t0 = time.time()
    runner = Runner(lab)
    SCENARIOS["queue"][1](lab, runner, duration_ms=2000)
    runner.wait_all()
    lab.wait_idle()
    source = CsvSource([str(lab.log_dir / "cdr-csv" / "Master.csv")], UTC)

    async def rows() -> list[Any]:
        try:
            return [r async for r in source.scan(t0 - 5, time.time() + 5)]
        finally:
            await source.close()

    marks = {m for r in asyncio.run(rows()) if r.channel.startswith("PJSIP/trunk-")
             for m in miitel_marks(r.userfield)}
    assert marks == {("Tag", "support-queue"), ("Queue", "Support")}
