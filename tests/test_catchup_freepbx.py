"""Catch-up on a FreePBX host reads FreePBX's MariaDB by default (issue 14).

FreePBX writes no Master.csv: its CDRs are in asteriskcdrdb.cdr. With
[catchup] source = "auto" and no database_url, a machine with /etc/freepbx.conf
(or /etc/amportal.conf) is read over MariaDB's local socket as the service's
own system user, authenticated by the socket (no password in any file).
"""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

import pytest

from asterisk_miitel.catchup import config as cc
from asterisk_miitel.catchup.config import CatchupConfig, freepbx_database_url
from asterisk_miitel.catchup.runner import make_source
from asterisk_miitel.catchup.sources.csv import CsvSource
from asterisk_miitel.catchup.sources.sql import SqlSource
from asterisk_miitel.config import Config
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
