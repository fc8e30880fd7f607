"""The durable outbox: every finished call, and how far it got, in SQLite.

States, in order (each written before the next network call, so a crash at
any point resumes at the right step):

    waiting_recording  assembled; Asterisk may still be writing the file
    ready              audio prepared; call_data final; nothing sent yet
    posting            the POST is about to go out (or went out: a crash here
                       means the outcome is unknown)
    created            MiiTel answered with an upload URL (and its expiry)
    uploaded           the PUT got 200: done
    sent               a missed call sent without audio (pbx.send_unanswered): done
    set_aside          needs a person; `reason` says why, `reason_code` what kind
    skipped            not sent by design (e.g. unanswered, no audio)

`call_data_id` is the primary key: the same call can never be queued twice.
The file is created readable by its owner only: it holds upload URLs.

Each step a call takes (a new state, or a retry's error) is also written to
`steps`, with its time, in the same transaction: `calls show` and the console
tell a person what happened when. Outboxes from before the table existed
keep working; their calls show no steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from .states import ACTIVE, IN_PROGRESS, STATES, ReasonCode, SetAsideCode, Source, State

_ACTIVE_SQL = "('" + "','".join(ACTIVE) + "')"
_IN_PROGRESS_SQL = "('" + "','".join(IN_PROGRESS) + "')"

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,              -- call_data_id
    file TEXT NOT NULL,               -- the recording as Asterisk named it
    state TEXT NOT NULL,
    reason TEXT,                      -- set_aside / skipped: for a person
    reason_code TEXT,
    source TEXT NOT NULL DEFAULT 'live',  -- live | gap | restart | catchup | backfill
    call_data TEXT,                   -- JSON, as it will be POSTed
    audio TEXT NOT NULL,              -- JSON: which files, what mode
    parties TEXT,                     -- JSON: extension per participant, to re-map users
    prepared TEXT,                    -- JSON: the file to upload, once prepared
    upload_url TEXT,
    upload_expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    ended_at REAL,                    -- the recording's end (hangup)
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    uploaded_at REAL,
    posts INTEGER NOT NULL DEFAULT 0, -- how many times the POST went out
    notes TEXT                        -- JSON list: what a person should know (truncated, ...)
);
CREATE INDEX IF NOT EXISTS calls_due ON calls (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS calls_file ON calls (file);
-- `calls` and the console list the newest first (by hangup, else when queued).
CREATE INDEX IF NOT EXISTS calls_time ON calls (COALESCE(ended_at, created_at));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- What happened to each call, when: one row per state change or retried error.
CREATE TABLE IF NOT EXISTS steps (
    call_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT                       -- the reason, the error, or what a person did
);
CREATE INDEX IF NOT EXISTS steps_call ON steps (call_id, at);
-- Recordings still being made: enough to finish or resume them after a crash.
CREATE TABLE IF NOT EXISTS journal (
    file TEXT PRIMARY KEY,
    data TEXT NOT NULL,               -- calls.snapshot JSON
    updated_at REAL NOT NULL
);
"""


class OutboxFull(Exception):
    """The disk holding the outbox is full or read-only: no new work is taken."""


@dataclass(slots=True)
class Row:
    id: str
    file: str
    state: State
    reason: str | None
    reason_code: ReasonCode | None
    source: str
    call_data: dict[str, Any] | None
    audio: dict[str, Any]
    parties: list[dict[str, Any]] | None
    prepared: dict[str, Any] | None
    upload_url: str | None
    upload_expires_at: float | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    ended_at: float | None
    created_at: float
    updated_at: float
    uploaded_at: float | None
    posts: int
    notes: list[str]

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> Row:
        return cls(
            id=r["id"],
            file=r["file"],
            state=r["state"],
            reason=r["reason"],
            reason_code=r["reason_code"],
            source=r["source"],
            call_data=_load(r["call_data"]),
            audio=_load(r["audio"]) or {},
            parties=_load(r["parties"]),
            prepared=_load(r["prepared"]),
            upload_url=r["upload_url"],
            upload_expires_at=r["upload_expires_at"],
            attempts=r["attempts"],
            next_attempt_at=r["next_attempt_at"],
            last_error=r["last_error"],
            ended_at=r["ended_at"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            uploaded_at=r["uploaded_at"],
            posts=r["posts"],
            notes=_load(r["notes"]) or [],
        )


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    state: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class NewCall:
    id: str
    file: str
    state: State
    audio: dict[str, Any]
    call_data: dict[str, Any] | None = None
    parties: list[dict[str, Any]] | None = None
    reason: str | None = None
    reason_code: ReasonCode | None = None
    source: Source = "live"
    ended_at: float | None = None
    notes: list[str] | None = None


class Outbox:
    """Async access to the outbox database (one connection, on its own thread)."""

    def __init__(self, path: str | Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._write = asyncio.Lock()

    async def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Owner-only from the first byte: it will hold signed upload URLs.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a call we said was queued survives a power cut, not only a crash.
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)
        await self._migrate()
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return self

    async def _migrate(self) -> None:
        """Columns added since the first release (an old outbox keeps working)."""
        async with self.db.execute("PRAGMA table_info(calls)") as cur:
            columns = {row[1] for row in await cur.fetchall()}
        if "notes" not in columns:
            await self.db.execute("ALTER TABLE calls ADD COLUMN notes TEXT")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Outbox:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    # -- writing --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self, transaction: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """One writer at a time: a statement issued while another coroutine's
        transaction is open would silently join (or roll back with) it."""
        db = self.db
        async with self._write:
            try:
                if not transaction:
                    yield db
                    return
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    # SQLite has already rolled back after some errors (disk full).
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise _full(exc) from exc

    async def add(self, call: NewCall, *, closes: str | None = None) -> bool:
        """Queue a finished call. False if it was already there (never twice).

        `closes` names the journal entry of the recording this call finishes:
        it is removed in the same transaction, so a crash leaves one or the other.
        """
        now = self._clock()
        async with self._writing(transaction=True) as db:
            cur = await db.execute(
                "INSERT OR IGNORE INTO calls (id, file, state, reason, reason_code, source,"
                " call_data, audio, parties, ended_at, created_at, updated_at, notes)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    call.id, call.file, call.state, call.reason, call.reason_code,
                    call.source, _dump(call.call_data), _dump(call.audio),
                    _dump(call.parties), call.ended_at, now, now, _dump(call.notes or None),
                ),
            )
            if cur.rowcount == 1:
                await _step(db, call.id, now, call.state, call.reason)
            if closes is not None:
                await db.execute("DELETE FROM journal WHERE file = ?", (closes,))
        return cur.rowcount == 1

    async def journal(self, writes: dict[str, dict[str, Any] | None]) -> None:
        """Save (or, for None, drop) open recordings' snapshots, in one transaction."""
        if not writes:
            return
        now = self._clock()
        async with self._writing(transaction=True) as db:
            for file, data in writes.items():
                if data is None:
                    await db.execute("DELETE FROM journal WHERE file = ?", (file,))
                else:
                    await db.execute(
                        "INSERT INTO journal (file, data, updated_at) VALUES (?,?,?)"
                        " ON CONFLICT(file) DO UPDATE SET data = excluded.data,"
                        " updated_at = excluded.updated_at",
                        (file, _dump(data), now),
                    )

    async def has_file(self, file: str) -> bool:
        """Is a call for this recording already queued or done?"""
        async with self.db.execute("SELECT 1 FROM calls WHERE file = ? LIMIT 1", (file,)) as cur:
            return await cur.fetchone() is not None

    async def file_needed_by_others(self, file: str, call_id: str) -> bool:
        """Does another call on this recording (a piece of a recording cut at a
        transfer) still have to be sent, now or after a retry?"""
        async with self.db.execute(
            "SELECT 1 FROM calls WHERE file = ? AND id != ?"
            " AND state NOT IN ('uploaded', 'sent', 'skipped') LIMIT 1", (file, call_id),
        ) as cur:
            return await cur.fetchone() is not None

    async def files_ended_since(self, since: float) -> list[tuple[str, float | None]]:
        """(file, ended_at) of every call that ended at or after `since`, or
        whose end is not known: what catch-up must not queue again."""
        async with self.db.execute(
            "SELECT file, ended_at FROM calls WHERE ended_at IS NULL OR ended_at >= ?",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        return [(r["file"], r["ended_at"]) for r in rows]

    async def states_by_source(self, sources: Sequence[Source]) -> list[tuple[str, str, int]]:
        """(source, state, how many calls) for calls learnt one of these ways,
        in source then state order."""
        marks = ",".join("?" * len(sources))
        async with self.db.execute(
            f"SELECT source, state, COUNT(*) AS n FROM calls WHERE source IN ({marks})"
            " GROUP BY source, state ORDER BY source, state", tuple(sources),
        ) as cur:
            rows = await cur.fetchall()
        return [(r["source"], r["state"], r["n"]) for r in rows]

    async def journaled(self) -> list[tuple[str, dict[str, Any], float]]:
        async with self.db.execute("SELECT file, data, updated_at FROM journal") as cur:
            rows = await cur.fetchall()
        return [(r["file"], json.loads(r["data"]), r["updated_at"]) for r in rows]

    async def update(self, call_id: str, *, note: str | None = None, **fields: Any) -> None:
        """Write a step. Dict/list values are stored as JSON.

        A new `state` or a `last_error` is also recorded in `steps`, with the
        reason, the error or `note` (what a person did) as its detail.
        """
        now = fields["updated_at"] = self._clock()
        cols = ", ".join(f"{k} = ?" for k in fields)
        values = [_dump(v) if isinstance(v, (dict, list)) else v for v in fields.values()]
        state = fields.get("state")
        detail = note or fields.get("last_error") or fields.get("reason")
        if state is None and not fields.get("last_error"):
            async with self._writing() as db:
                await db.execute(f"UPDATE calls SET {cols} WHERE id = ?", (*values, call_id))
            return
        async with self._writing(transaction=True) as db:
            await db.execute(f"UPDATE calls SET {cols} WHERE id = ?", (*values, call_id))
            if state is None:
                async with db.execute("SELECT state FROM calls WHERE id = ?", (call_id,)) as cur:
                    row = await cur.fetchone()
                state = row["state"] if row else "?"
            await _step(db, call_id, now, state, detail)

    async def set_aside(self, call_id: str, code: SetAsideCode, reason: str) -> None:
        await self.update(call_id, state="set_aside", reason_code=code, reason=reason)

    async def mark_posting(self, call_id: str) -> None:
        """Written just before the POST leaves: a crash now means outcome unknown."""
        now = self._clock()
        async with self._writing(transaction=True) as db:
            await db.execute(
                "UPDATE calls SET state='posting', posts = posts + 1, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ?",
                (now, call_id),
            )
            await _step(db, call_id, now, "posting", "the call history is being sent to MiiTel")

    async def recover_after_crash(self) -> list[str]:
        """At start: a POST that was in flight when we died has an unknown outcome."""
        rows = await self._ids("SELECT id FROM calls WHERE state = 'posting'")
        for call_id in rows:
            await self.set_aside(
                call_id,
                "outcome_unknown",
                "the service stopped while creating this call history, so MiiTel may or may "
                "not have it: check MiiTel, then `asterisk-miitel retry --force "
                f"{call_id}` if it is missing",
            )
        return rows

    async def set_meta(self, key: str, value: str) -> None:
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def get_meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return row["value"] if row else None

    # -- reading ----------------------------------------------------------------------

    async def get(self, call_id: str) -> Row | None:
        async with self.db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)) as cur:
            row = await cur.fetchone()
        return Row.from_sql(row) if row else None

    async def due(self, now: float, limit: int = 100, exclude: Iterable[str] = ()) -> list[Row]:
        skip = set(exclude)
        async with self.db.execute(
            f"SELECT * FROM calls WHERE state IN {_ACTIVE_SQL}"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
            (now, limit + len(skip)),
        ) as cur:
            rows = await cur.fetchall()
        return [Row.from_sql(r) for r in rows if r["id"] not in skip][:limit]

    async def next_due_at(self) -> float | None:
        return await self._earliest("next_attempt_at", _ACTIVE_SQL)

    async def counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT state, COUNT(*) AS n FROM calls GROUP BY state") as cur:
            rows = await cur.fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    async def sources(self) -> dict[str, int]:
        """Calls by how they were learnt (live, gap, restart, catchup, backfill)."""
        sql = "SELECT source, COUNT(*) AS n FROM calls GROUP BY source"
        async with self.db.execute(sql) as cur:
            return {r["source"]: r["n"] for r in await cur.fetchall()}

    async def oldest_waiting(self) -> float | None:
        return await self._earliest("created_at", _IN_PROGRESS_SQL)

    async def _earliest(self, column: str, states_sql: str) -> float | None:
        async with self.db.execute(
            f"SELECT MIN({column}) AS t FROM calls WHERE state IN {states_sql}"
        ) as cur:
            row = await cur.fetchone()
        return row["t"] if row and row["t"] is not None else None

    async def latest(self, states: Sequence[State], limit: int = 10) -> list[Row]:
        marks = ",".join("?" * len(states))
        async with self.db.execute(
            f"SELECT * FROM calls WHERE state IN ({marks}) ORDER BY updated_at DESC LIMIT ?",
            (*states, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [Row.from_sql(r) for r in rows]

    async def set_aside_as(self, code: SetAsideCode, limit: int = 50) -> tuple[list[Row], int]:
        """Calls set aside with `reason_code`, oldest call first, and how many there are."""
        where = "FROM calls WHERE state = 'set_aside' AND reason_code = ?"
        async with self.db.execute(f"SELECT COUNT(*) AS n {where}", (code,)) as cur:
            row = await cur.fetchone()
        async with self.db.execute(
            f"SELECT * {where} ORDER BY COALESCE(ended_at, created_at), id LIMIT ?",
            (code, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [Row.from_sql(r) for r in rows], row["n"] if row else 0

    async def recent(
        self,
        *,
        states: Sequence[str] = (),
        since: float | None = None,
        extension: str | None = None,
        limit: int = 50,
    ) -> list[Row]:
        """Calls newest first (by hangup, else by when they were queued).

        `extension`: a party's extension, or a participant's number, as given.
        """
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if since is not None:
            where.append("COALESCE(ended_at, created_at) >= ?")
            args.append(since)
        if extension:
            where.append(
                "(EXISTS (SELECT 1 FROM json_each(calls.parties)"
                " WHERE json_extract(value, '$.extension') = ?)"
                " OR EXISTS (SELECT 1 FROM json_each(calls.call_data, '$.participants')"
                " WHERE json_extract(value, '$.number') = ?))"
            )
            args += [extension, extension]
        sql = "SELECT * FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY COALESCE(ended_at, created_at) DESC, created_at DESC LIMIT ?"
        async with self.db.execute(sql, (*args, limit)) as cur:
            rows = await cur.fetchall()
        return [Row.from_sql(r) for r in rows]

    async def find(self, text: str) -> list[str]:
        """Ids equal to `text`, else containing it (a person types part of an id)."""
        if await self.get(text) is not None:
            return [text]
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        return await self._ids(
            "SELECT id FROM calls WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 10",
            (pattern,),
        )

    async def steps(self, call_id: str) -> list[Step]:
        async with self.db.execute(
            "SELECT at, state, detail FROM steps WHERE call_id = ? ORDER BY at, rowid",
            (call_id,),
        ) as cur:
            rows = await cur.fetchall()
        return [Step(r["at"], r["state"], r["detail"]) for r in rows]

    async def last_uploaded_at(self) -> float | None:
        """When MiiTel last took a call (its upload's 200, or a missed call sent)."""
        async with self.db.execute("SELECT MAX(uploaded_at) AS t FROM calls") as cur:
            row = await cur.fetchone()
        return row["t"] if row and row["t"] is not None else None

    async def all_ids(self, state: State | None = None) -> list[str]:
        if state is None:
            return await self._ids("SELECT id FROM calls ORDER BY created_at")
        return await self._ids(
            "SELECT id FROM calls WHERE state = ? ORDER BY created_at", (state,)
        )

    async def _ids(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        async with self.db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [r[0] for r in rows]


async def _step(
    db: aiosqlite.Connection, call_id: str, at: float, state: str, detail: str | None
) -> None:
    await db.execute(
        "INSERT INTO steps (call_id, at, state, detail) VALUES (?,?,?,?)",
        (call_id, at, state, detail),
    )


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _full(exc: sqlite3.OperationalError) -> Exception:
    text = str(exc).lower()
    if "full" in text or "readonly" in text or "disk i/o" in text:
        return OutboxFull(f"the outbox database cannot be written: {exc}")
    return exc
