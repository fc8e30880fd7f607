"""A CDR table in a database: FreePBX's asteriskcdrdb.cdr (MariaDB/MySQL),
or any cdr_adaptive_odbc / cdr_mysql / cdr_pgsql-style table.

Columns are read by name, whatever the table has: `calldate` (FreePBX,
cdr_mysql) or `start`, optional `answer`/`end` (else from duration and
billsec), and FreePBX's `did`, `recordingfile`, `cnum`, `cnam`. Times are the
table's naive DATETIMEs in [catchup] sql_timezone (FreePBX: the PBX's local time).

Drivers: aiomysql (`pip install asterisk-miitel[mysql]`) for mysql:// and
mariadb://, asyncpg (`asterisk-miitel[postgresql]`) for postgresql://. The
query is read in pages of a day, ordered by start time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..rows import CdrRow, to_int
from . import SourceError

PAGE = timedelta(hours=6)
TEXT = ("clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
        "disposition", "accountcode", "uniqueid", "userfield", "linkedid", "did",
        "recordingfile", "cnum", "cnam")


class SqlSource:
    order = "start"

    def __init__(self, url: str, table: str, tz: tzinfo | None, *,
                 max_call_hours: float = 12.0) -> None:
        self._url = url
        self.table = table
        self.tz = tz
        self.max_call = max_call_hours * 3600
        self._problems: list[str] = []
        self.rows_read = 0
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        self.kind = "postgresql" if self.scheme.startswith("postgres") else "mysql"
        self._conn: Any = None
        self._columns: list[str] | None = None

    @property
    def problems(self) -> list[str]:
        return self._problems

    def describe(self) -> str:
        parts = urlsplit(self._url)
        where = parts.hostname or parse_qs(parts.query).get("unix_socket", ["socket"])[0]
        return f"{self.kind} table {self.table} on {where}{parts.path}"  # no user, no password

    # -- connection --------------------------------------------------------------------

    async def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            if self.kind == "mysql":
                self._conn = await _mysql_connect(self._url)
            else:
                self._conn = await _pg_connect(self._url)
        except ImportError as exc:
            extra = "mysql" if self.kind == "mysql" else "postgresql"
            raise SourceError(
                f"reading a {self.kind} CDR needs the {exc.name} driver: "
                f"pip install 'asterisk-miitel[{extra}]'") from None
        except Exception as exc:  # driver errors: never echo the URL (it holds a password)
            raise SourceError(f"cannot connect to the CDR database ({self.describe()}): "
                              f"{type(exc).__name__}: {_safe(exc, self._url)}") from None

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self.kind == "mysql":
                conn.close()
            else:
                await conn.close()

    async def columns(self) -> list[str]:
        if self._columns is None:
            await self.connect()
            _rows, names = await self._query(f"SELECT * FROM {self._quoted()} WHERE 1=0", ())
            self._columns = [n.lower() for n in names]
            if "calldate" not in self._columns and "start" not in self._columns:
                raise SourceError(f"table {self.table} has neither calldate nor start: "
                                  "is it a CDR table?")
        return self._columns

    # -- reading -------------------------------------------------------------------------

    async def scan(self, since: float, until: float) -> AsyncIterator[CdrRow]:
        cols = await self.columns()
        start_col = "calldate" if "calldate" in cols else "start"
        lo = self._naive(since - self.max_call)
        hi = self._naive(until)
        page = lo
        while page <= hi:
            top = min(page + PAGE, hi + timedelta(seconds=1))
            q = self._q(start_col)
            sql = (f"SELECT * FROM {self._quoted()} WHERE {q} >= {self._mark(1)} AND "
                   f"{q} < {self._mark(2)} ORDER BY {q}")
            try:
                rows, names = await self._query(sql, (page, top))
            except SourceError:
                raise
            except Exception as exc:
                raise SourceError(f"CDR query failed ({self.describe()}): "
                                  f"{type(exc).__name__}: {_safe(exc, self._url)}") from None
            lower = [n.lower() for n in names]
            for values in rows:
                row = self._row(dict(zip(lower, values, strict=True)), start_col)
                if row is None or row.end < since - 1 or row.start > until:
                    continue
                self.rows_read += 1
                yield row
            page = top

    def _row(self, v: dict[str, Any], start_col: str) -> CdrRow | None:
        start = self._epoch(v.get(start_col))
        if start is None:
            return None
        duration = to_int(v.get("duration"))
        billsec = to_int(v.get("billsec"))
        end = self._epoch(v.get("end")) if "end" in v else None
        if end is None:
            end = start + duration
        if "answer" in v:
            answer = self._epoch(v.get("answer"))
        else:  # FreePBX's table: answered billsec seconds before the end
            answer = end - billsec if billsec > 0 or _text(v.get("disposition")) == "ANSWERED" \
                else None
        text = {k: _text(v.get(k)) for k in TEXT}
        seq = v.get("sequence")
        table = self.table.rpartition(".")[2]
        return CdrRow(
            start=start, end=end, answer=answer, duration=duration, billsec=billsec,
            sequence=to_int(seq) if seq not in (None, "") else None,
            origin=f"{table}@{start_col}={v.get(start_col)}", **text,
        )

    def _epoch(self, value: Any) -> float | None:
        if value is None or value == "" or (isinstance(value, datetime) and value.year < 1971):
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=self.tz) if self.tz is not None \
                    else value.astimezone()
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        if not text or text.startswith("0000"):
            return None
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.tz) if self.tz is not None \
                else moment.astimezone()
        return moment.timestamp()

    def _naive(self, ts: float) -> datetime:
        moment = datetime.fromtimestamp(ts, self.tz) if self.tz is not None \
            else datetime.fromtimestamp(ts)
        return moment.replace(tzinfo=None, microsecond=0)

    def _q(self, name: str) -> str:
        return f"`{name}`" if self.kind == "mysql" else f'"{name}"'

    def _quoted(self) -> str:
        return ".".join(self._q(p) for p in self.table.split("."))

    def _mark(self, n: int) -> str:
        return "%s" if self.kind == "mysql" else f"${n}"

    async def _query(self, sql: str, args: Sequence[Any]) -> tuple[list[Sequence[Any]], list[str]]:
        await self.connect()
        if self.kind == "mysql":
            async with self._conn.cursor() as cur:
                await cur.execute(sql, tuple(args))
                rows = await cur.fetchall()
                names = [d[0] for d in cur.description or ()]
            return list(rows), names
        stmt = await self._conn.prepare(sql)
        names = [a.name for a in stmt.get_attributes()]
        records = await stmt.fetch(*args)
        return [tuple(r) for r in records], names


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _safe(exc: Exception, url: str) -> str:
    text = str(exc)
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text[:300]


async def _mysql_connect(url: str) -> Any:
    import aiomysql

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/") or "asteriskcdrdb", "charset": query.get("charset", "utf8mb4"),
        "autocommit": True, "connect_timeout": float(query.get("connect_timeout", 10)),
    }
    if query.get("unix_socket"):
        kwargs["unix_socket"] = query["unix_socket"]
    else:
        kwargs["host"] = parts.hostname or "127.0.0.1"
        kwargs["port"] = parts.port or 3306
    return await aiomysql.connect(**kwargs)


async def _pg_connect(url: str) -> Any:
    import asyncpg

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "table"}
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or "") or None,
        "password": unquote(parts.password or "") or None,
        "database": parts.path.lstrip("/") or None, "timeout": 10,
    }
    if query.get("host"):  # postgresql:///db?host=/run/postgresql (a socket folder)
        kwargs["host"] = query["host"]
    else:
        kwargs["host"] = parts.hostname or "127.0.0.1"
        kwargs["port"] = parts.port or 5432
    return await asyncpg.connect(**kwargs)
