"""The `[catchup]` section (`Config.catchup`): where the CDR is, and how far back to look.

It imports nothing of the package's: config.py imports it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from datetime import tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# cdr_csv's columns, in the order cdr_csv writes them (cdr_csv.c): 16 always,
# then uniqueid (loguniqueid=yes), userfield (loguserfield=yes), then
# peeraccount, linkedid, sequence (newcdrcolumns=yes).
CSV_BASE = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
            "lastdata", "start", "answer", "end", "duration", "billsec", "disposition",
            "amaflags")
CSV_KNOWN = frozenset((*CSV_BASE, "uniqueid", "userfield", "peeraccount", "linkedid",
                       "sequence"))


class CatchupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # On start (and after an AMI outage) look for recorded calls the service
    # did not see, from the last moment it was listening. Off: only `backfill`.
    enabled: bool = True
    # Where the CDR is: "auto" = the database when database_url is set; else,
    # on a FreePBX host (/etc/freepbx.conf), FreePBX's asteriskcdrdb.cdr over
    # MariaDB's local socket as the service's system user (no password:
    # dialplan/README.md, "Catch-up on FreePBX"); else the cdr_csv files;
    # "none" = recordings folder only (nothing is sent, unexplained files are
    # reported).
    source: Literal["auto", "csv", "sql", "none"] = "auto"
    # cdr_csv's Master.csv (Debian: /var/log/asterisk/cdr-csv/Master.csv).
    # Globs and rotated copies (.gz too) may be listed for backfill; path_map applies.
    cdr_csv: list[str] = Field(default_factory=lambda: ["/var/log/asterisk/cdr-csv/Master.csv"])
    # cdr.conf [csv] usegmtime=yes (Debian's shipped setting) writes UTC:
    # "UTC"; usegmtime=no: "local" (pbx.timezone, else this machine's).
    csv_timezone: str = "UTC"
    # Column names when Master.csv is not in one of cdr_csv's layouts
    # (16 + uniqueid + userfield [+ peeraccount, linkedid, sequence]).
    csv_columns: list[str] = Field(default_factory=list)
    # A CDR database: mysql://user:password@host:3306/asteriskcdrdb (MariaDB,
    # MySQL: FreePBX's asteriskcdrdb; needs asterisk-miitel[mysql]) or
    # postgresql://... (needs asterisk-miitel[postgresql]). Add
    # ?unix_socket=/run/mysqld/mysqld.sock for a local socket. Secret.
    database_url: SecretStr | None = None
    table: str = Field("cdr", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    # The database's naive DATETIMEs (FreePBX's calldate): "local" = the PBX's zone.
    sql_timezone: str = "local"
    # FreePBX's MixMonitor options for its own recordings (its Advanced
    # Setting MONITOR_REC_OPTION, "b" by default): only "b" matters here.
    freepbx_rec_options: str = "ab"
    # Voicemail spool (VoiceMail() rows): messages left while the service was away.
    voicemail_dirs: list[str] = Field(
        default_factory=lambda: ["/var/spool/asterisk/voicemail"])
    # Catch-up looks back from the last moment the service was listening,
    # minus this margin, and never further than max_lookback_hours.
    margin_seconds: float = Field(120.0, ge=0)
    max_lookback_hours: float = Field(24.0 * 7, gt=0)
    # A CDR row is read when its call may have ended in the window: calls
    # longer than this are not rebuilt.
    max_call_hours: float = Field(12.0, gt=0)
    # Seconds after AMI is up before catch-up runs (live tracking resumes its
    # own recordings first), and a second pass later for CDR back ends that
    # write in batches (cdr.conf batch=yes: up to its `time`, 300 s).
    settle_seconds: float = Field(10.0, ge=0)
    second_pass_seconds: float = Field(330.0, ge=0)
    # Backfill: calls rebuilt and queued at once.
    concurrency: int = Field(4, ge=1, le=64)

    @field_validator("csv_timezone", "sql_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in ("local", "UTC"):
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("csv_columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CSV_KNOWN and not c.startswith("x_")]
        if value and unknown:
            raise ValueError(f"unknown column(s) {unknown}: use cdr_csv's names "
                             f"({', '.join(sorted(CSV_KNOWN))}) or x_<anything> to ignore one")
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = value.get_secret_value().split(":", 1)[0].lower()
        if scheme not in ("mysql", "mariadb", "mysql+aiomysql", "postgresql", "postgres"):
            raise ValueError("must start with mysql://, mariadb:// or postgresql:// "
                             "(the value is not shown: it is secret)")
        return value


# A FreePBX machine has one of these; it writes no Master.csv, its CDRs are in
# MariaDB (asteriskcdrdb.cdr). MariaDB's local socket on FreePBX's distributions
# (Sangoma Linux / CentOS, then Debian for FreePBX 17).
FREEPBX_MARKERS = ("/etc/freepbx.conf", "/etc/amportal.conf")
MYSQL_SOCKETS = ("/var/lib/mysql/mysql.sock", "/run/mysqld/mysqld.sock",
                 "/var/run/mysqld/mysqld.sock")


def freepbx_database_url(markers: Sequence[str] = FREEPBX_MARKERS,
                         sockets: Sequence[str] = MYSQL_SOCKETS,
                         user: str | None = None) -> str | None:
    """On a FreePBX host, where catch-up reads by default: asteriskcdrdb over the
    local socket as the service's own system user, which MariaDB authenticates by
    the socket (no password; dialplan/README.md has the one GRANT line). None
    elsewhere, or when no MariaDB socket is there."""
    if not any(os.path.exists(m) for m in markers):
        return None
    socket = next((s for s in sockets if os.path.exists(s)), None)
    if socket is None:
        return None
    return f"mysql://{user or getpass.getuser()}@localhost/asteriskcdrdb?unix_socket={socket}"


def zone(name: str, pbx_zone: tzinfo | None) -> tzinfo | None:
    """A configured zone name -> tzinfo; "local" is the PBX's (None: this machine's)."""
    if name == "local":
        return pbx_zone
    return ZoneInfo(name)
