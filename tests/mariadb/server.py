"""Start and stop a throwaway MariaDB server (Debian's mariadb-server).

    with MariaDB() as db:                  # apt-get installs mariadb-server when root
        db.execute("SELECT 1")
        db.url                             # mysql://miitel:<random>@127.0.0.1:<port>/asteriskcdrdb

Everything lives in a temporary directory (datadir, socket, pid file, log)
that is removed on stop. The server listens on 127.0.0.1 on a free port
(never 3306) and its own socket, runs as root with `--user=root`, and is
shut down with `mariadb-admin shutdown`, then SIGTERM, then SIGKILL. As the
test lab does, the child gets PR_SET_PDEATHSIG so it dies with the test run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "mariadb-server"
DATABASE = "asteriskcdrdb"

# FreePBX 16/17's asteriskcdrdb.cdr (what its cdr_adaptive_odbc writes; `start`
# is aliased to calldate, local time; no answer/end columns).
FREEPBX_CDR_TABLE = """
CREATE TABLE IF NOT EXISTS `cdr` (
  `calldate` datetime NOT NULL DEFAULT '1970-01-01 00:00:00',
  `clid` varchar(80) NOT NULL DEFAULT '',
  `src` varchar(80) NOT NULL DEFAULT '',
  `dst` varchar(80) NOT NULL DEFAULT '',
  `dcontext` varchar(80) NOT NULL DEFAULT '',
  `channel` varchar(80) NOT NULL DEFAULT '',
  `dstchannel` varchar(80) NOT NULL DEFAULT '',
  `lastapp` varchar(80) NOT NULL DEFAULT '',
  `lastdata` varchar(80) NOT NULL DEFAULT '',
  `duration` int(11) NOT NULL DEFAULT 0,
  `billsec` int(11) NOT NULL DEFAULT 0,
  `disposition` varchar(45) NOT NULL DEFAULT '',
  `amaflags` int(11) NOT NULL DEFAULT 0,
  `accountcode` varchar(20) NOT NULL DEFAULT '',
  `uniqueid` varchar(32) NOT NULL DEFAULT '',
  `userfield` varchar(255) NOT NULL DEFAULT '',
  `did` varchar(50) NOT NULL DEFAULT '',
  `recordingfile` varchar(255) NOT NULL DEFAULT '',
  `cnum` varchar(80) NOT NULL DEFAULT '',
  `cnam` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnum` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnam` varchar(80) NOT NULL DEFAULT '',
  `dst_cnam` varchar(80) NOT NULL DEFAULT '',
  `linkedid` varchar(32) NOT NULL DEFAULT '',
  `peeraccount` varchar(80) NOT NULL DEFAULT '',
  `sequence` int(11) NOT NULL DEFAULT 0,
  KEY `calldate` (`calldate`),
  KEY `dst` (`dst`),
  KEY `accountcode` (`accountcode`),
  KEY `uniqueid` (`uniqueid`),
  KEY `did` (`did`),
  KEY `recordingfile` (`recordingfile`(191)),
  KEY `linkedid` (`linkedid`)
) DEFAULT CHARSET=utf8mb4
"""


class MariaDBError(RuntimeError):
    """The server cannot be installed or started; the message says why."""


def _tool(*names: str) -> str | None:
    for name in names:
        for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            path = Path(folder, name)
            if path.exists():
                return str(path)
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable_reason() -> str | None:
    """Why a MariaDB server cannot be run here, or None."""
    if not sys.platform.startswith("linux"):
        return f"the MariaDB test server needs Linux (this is {sys.platform})"
    if _tool("mariadbd", "mysqld") is None and os.geteuid() != 0:
        return "mariadb-server is not installed and installing it needs root"
    if os.geteuid() != 0:
        return "the MariaDB test server runs as root (--user=root, apt-get)"
    return None


def ensure_installed() -> None:
    if _tool("mariadbd", "mysqld") and _tool("mariadb-install-db", "mysql_install_db"):
        return
    if os.geteuid() != 0:
        raise MariaDBError("mariadb-server is missing and apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"[mariadb] installing {PACKAGE} with apt-get", file=sys.stderr, flush=True)
    upd = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
    # policy-rc.d 101: the package must not start a system-wide server of its own
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        inst = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE],
                              env=env, capture_output=True, text=True)
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)
    if inst.returncode != 0 or not _tool("mariadbd", "mysqld"):
        tail = "\n".join((upd.stdout + upd.stderr + inst.stdout + inst.stderr).splitlines()[-20:])
        raise MariaDBError(f"apt-get could not install {PACKAGE} (package registry?):\n{tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MariaDB:
    def __init__(self) -> None:
        self.dir: Path | None = None
        self.port = 0
        self.password = secrets.token_hex(12)
        self.user = "miitel"
        self.database = DATABASE
        self._proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def socket(self) -> str:
        assert self.dir is not None
        return str(self.dir / "mysqld.sock")

    @property
    def url(self) -> str:
        return (f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{self.database}")

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> MariaDB:
        ensure_installed()
        server = _tool("mariadbd", "mysqld")
        install = _tool("mariadb-install-db", "mysql_install_db")
        assert server and install
        self.dir = Path(tempfile.mkdtemp(prefix="asterisk-miitel-mariadb-"))
        data = self.dir / "data"
        t0 = time.monotonic()
        init = subprocess.run(
            [install, "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True)
        if init.returncode != 0:
            self.stop()
            raise MariaDBError(f"mariadb-install-db failed:\n{init.stdout[-2000:]}"
                               f"{init.stderr[-2000:]}")
        self.port = _free_port()
        log = open(self.dir / "server.log", "wb")
        self._proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-name-resolve",
             "--innodb-buffer-pool-size=32M", "--character-set-server=utf8mb4",
             "--collation-server=utf8mb4_general_ci", f"--log-error={self.dir / 'error.log'}"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_set_pdeathsig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self.log_tail()
                self.stop()
                raise MariaDBError(f"mariadbd exited with {self._proc.returncode}:\n{err}")
            if os.path.exists(self.socket):
                ok = self.execute("SELECT VERSION()", check=False)
                if ok.returncode == 0:
                    self.version = ok.stdout.strip().splitlines()[-1]
                    break
            time.sleep(0.1)
        else:
            err = self.log_tail()
            self.stop()
            raise MariaDBError(f"mariadbd did not answer within {timeout:.0f} s:\n{err}")
        self.execute(
            f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4;"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY "
            f"'{self.password}';"
            f"GRANT SELECT ON `{self.database}`.* TO '{self.user}'@'127.0.0.1';")
        self.execute(FREEPBX_CDR_TABLE, database=self.database)
        self.started_in = time.monotonic() - t0
        return self

    def execute(self, sql: str, *, database: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run SQL as root through the socket with the mariadb client."""
        client = _tool("mariadb", "mysql")
        if client is None:
            raise MariaDBError("the mariadb client is missing (mariadb-client)")
        cmd = [client, "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B"]
        if database:
            cmd.append(database)
        res = subprocess.run(cmd, input=sql, capture_output=True, text=True)
        if check and res.returncode != 0:
            raise MariaDBError(f"SQL failed: {res.stderr.strip()}")
        return res

    def insert_cdr(self, rows: list[dict[str, object]], table: str = "cdr") -> int:
        """Insert CDR rows (column -> value; unknown columns are dropped) as root."""
        import pymysql  # comes with aiomysql (asterisk-miitel[mysql])

        conn = pymysql.connect(unix_socket=self.socket, user="root", database=self.database,
                               charset="utf8mb4", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{table}` WHERE 1=0")
                columns = [d[0] for d in cur.description or ()]
                n = 0
                for row in rows:
                    cols = [c for c in columns if c in row]
                    marks = ",".join(["%s"] * len(cols))
                    names = ",".join(f"`{c}`" for c in cols)
                    cur.execute(f"INSERT INTO `{table}` ({names}) VALUES ({marks})",
                                [row[c] for c in cols])
                    n += 1
            return n
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        if self.dir is None:
            return ""
        path = self.dir / "error.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            admin = _tool("mariadb-admin", "mysqladmin")
            if admin and self.dir is not None:
                subprocess.run([admin, "--no-defaults", f"--socket={self.socket}", "-uroot",
                                "shutdown"], capture_output=True, timeout=30)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
