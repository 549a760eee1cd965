"""The PostgreSQL event-log backend (asyncpg): many sessions in one database, one writer each.

Tables (created and migrated on first use, see :data:`MIGRATIONS`)::

    tape_schema_version  version, description, applied_at     one row per applied migration
    tape_sessions        session_id PK, the SessionMeta fields, last_seq (the acknowledged end)
    tape_events          (session_id, seq) PK, ts_ns, type, payload

A row's ``payload`` is the msgpack encoding of the whole record ``[seq, ts_ns, event]``, so a page of
rows decodes in one call: the server joins the page's payloads (``string_agg``), the client puts one
msgpack array header in front. ``type`` is there for SQL users. Reads page through seqs in order,
``PAGE_ROWS`` at a time; a missing row or an undecodable payload is named by its seq.

Writing. The one writer holds a session-level advisory lock keyed by the session (and schema) on its
connection; it dies with the connection, so a crashed writer never blocks the next. A group of queued
batches is one transaction: ``UPDATE tape_sessions SET last_seq`` guarded by the expected old value
(0 rows: :class:`SeqConflictError`), binary COPY of the rows (a duplicate key: :class:`SeqConflictError`
naming the seq), and ``NOTIFY tape_log, '<session_id>:<last_seq>'`` which wakes followers.

Durability. ``sync="batch"``: every commit is synchronous (acknowledged = on the server's disk).
``"interval"``: a commit is synchronous if the last synchronous one is ``sync_interval_ms`` old, else
it runs with ``SET LOCAL synchronous_commit = off`` (a server crash may lose the acknowledged tail not
yet flushed by the WAL writer, about 3 × ``wal_writer_delay``; a client crash loses nothing);
``flush()`` and ``close()`` make everything durable. ``"none"``: every commit is asynchronous.

Losing the connection. The writer reconnects (``pg_connect_attempts`` tries, with backoff), takes its
lock back (ending its old backend if that still holds it, so the lost transaction's fate is final) and
reads ``last_seq``: the in-flight group committed -> acknowledged; it did not -> written again; anything
else -> :class:`SeqConflictError`. So nothing acknowledged is lost or doubled.

Tables live in the first schema of the connection's ``search_path`` (a DSN may pick one with
``?options=-csearch_path%3DNAME`` or ``?search_path=NAME``). Needs PostgreSQL 11 or newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from config import LogSettings

from ..events import Record, event_type
from . import _redact
from .base import (
    CorruptLogError,
    Entry,
    EventLog,
    LogError,
    LogLockedError,
    LogUnavailableError,
    NotALogError,
    Recovery,
    SeqConflictError,
    SeqRange,
    SessionMeta,
    SessionStatus,
)
from .segments import ENCODER, RECORDS

__all__ = ["CHANNEL", "MIGRATIONS", "PAGE_ROWS", "PgLog", "drop_session", "migrate", "pg_list_sessions"]

CHANNEL = "tape_log"  # NOTIFY channel; payload "<session_id>:<last_seq>"
PAGE_ROWS = 10_000  # rows per read query (keyset pagination on seq)
_FIELDS = SessionMeta.__struct_fields__  # the tape_sessions columns, named as the struct's fields
_RECORD = msgspec.msgpack.Decoder(Record)

#: (description, SQL) per schema version, applied in order; append a step, never edit one.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "sessions and events",
        """
        CREATE TABLE tape_sessions (
            session_id     text    COLLATE "C" PRIMARY KEY,
            status         text    NOT NULL CHECK (status IN ('open', 'closed', 'ended', 'crashed')),
            mode           text    NOT NULL,
            venue          text    NOT NULL,
            seed           bigint  NOT NULL,
            config_hash    text    NOT NULL,
            code_version   text    NOT NULL,
            schema_version integer NOT NULL,
            created_ns     bigint  NOT NULL,
            ended_ns       bigint,
            end_reason     text,
            last_seq       bigint  NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
        );
        CREATE TABLE tape_events (
            session_id text   COLLATE "C" NOT NULL,
            seq        bigint NOT NULL,
            ts_ns      bigint NOT NULL,
            type       text   NOT NULL,
            payload    bytea  NOT NULL,
            PRIMARY KEY (session_id, seq)
        );
        """,
    ),
    (
        "checkpoints",
        """
        CREATE TABLE tape_checkpoints (
            session_id text   COLLATE "C" NOT NULL,
            seq        bigint NOT NULL,
            data       bytea  NOT NULL,
            PRIMARY KEY (session_id, seq)
        );
        """,
    ),
)

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS tape_schema_version (
        version     integer     PRIMARY KEY,
        description text        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )"""


def _key(session_sql: str) -> str:
    """SQL for the writer lock's key of a session (per schema, so test schemas never collide)."""
    return f"hashtextextended('tape writer ' || current_schema() || ' ' || {session_sql}, 0)"


_TRY_LOCK = f"SELECT pg_try_advisory_lock({_key('$1')})"
_UNLOCK = f"SELECT pg_advisory_unlock({_key('$1')})"
_HELD = """
    SELECT pid, classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
_SPLIT = "((k >> 32) & 4294967295)::oid, (k & 4294967295)::oid"  # bigint key -> pg_locks (classid, objid)
_HOLDER = f"""
    SELECT h.pid, host(a.client_addr), a.application_name
    FROM ({_HELD}) h LEFT JOIN pg_stat_activity a USING (pid), (SELECT {_key('$1')} AS k) key
    WHERE (h.classid, h.objid) = ({_SPLIT})"""
_END_OLD_BACKEND = f"""
    SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a, ({_HELD}) h, (SELECT {_key('$1')} AS k) key
    WHERE a.pid = $2 AND a.backend_start = $3 AND h.pid = a.pid AND (h.classid, h.objid) = ({_SPLIT})"""
_SELECT_META = f"""
    WITH held AS ({_HELD})
    SELECT {", ".join(f"s.{f}" for f in _FIELDS)},
           EXISTS (SELECT FROM held, (SELECT {_key("s.session_id")} AS k) key
                   WHERE (held.classid, held.objid) = ({_SPLIT})) AS writer_alive
    FROM tape_sessions s"""
_INSERT_SESSION = (
    f"INSERT INTO tape_sessions ({', '.join(_FIELDS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_FIELDS) + 1))}) "
    "ON CONFLICT (session_id) DO NOTHING RETURNING session_id"
)
_ADVANCE = f"""
    WITH advanced AS (UPDATE tape_sessions SET last_seq = $3 WHERE session_id = $1 AND last_seq = $2 RETURNING last_seq)
    SELECT last_seq, pg_notify('{CHANNEL}', $1 || ':' || last_seq) FROM advanced"""
_MARK = f"""
    WITH marked AS (UPDATE tape_sessions SET status = $2, ended_ns = $3, end_reason = $4 WHERE session_id = $1
                    RETURNING last_seq)
    SELECT last_seq, pg_notify('{CHANNEL}', $1 || ':' || last_seq) FROM marked"""
_BACKEND = "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
_LAST_SEQ = "SELECT last_seq FROM tape_sessions WHERE session_id = $1"
_ENDS = "SELECT payload FROM tape_events WHERE session_id = $1 AND seq IN ($2, $3) ORDER BY seq"
_MAX_SEQ = "SELECT max(seq) FROM tape_events WHERE session_id = $1"
# a page's payloads joined by the server: one value to fetch, one call to decode (see _decode)
_PAGE = """
    SELECT count(*), string_agg(payload, ''::bytea ORDER BY seq)
    FROM tape_events WHERE session_id = $1 AND seq BETWEEN $2 AND $3"""
_ROWS = "SELECT seq, payload FROM tape_events WHERE session_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"
_COLUMNS = ("session_id", "seq", "ts_ns", "type", "payload")
_DUPLICATE_SEQ = re.compile(r", (\d+)\) already exists")  # in "Key (session_id, seq)=(s1, 11) already exists."

# Errors after which a connection cannot be trusted: it is dropped and the work verified and redone.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
# Errors worth another connection attempt: the server is down, starting, restarting or full.
_TRANSIENT = (*_CONNECTION_ERRORS, asyncpg.exceptions.TooManyConnectionsError)


def _lost(conn: asyncpg.Connection | None, exc: BaseException) -> bool:
    return conn is None or conn.is_closed() or isinstance(exc, _CONNECTION_ERRORS)


def _scrub(text: str, dsn: str) -> str:
    """``text`` with the DSN's password (in the netloc or a ``password=`` parameter) hidden."""
    parts = urlsplit(dsn)
    secrets = [parts.password] + [v for k, v in parse_qsl(parts.query) if k == "password"]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    return text


def _location(dsn: str, session_id: str) -> str:
    """``<redacted DSN>?session=<id>``: names the session the way an ``open_log`` target does."""
    parts = urlsplit(_redact(dsn))
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("session", session_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _connect(dsn: str, settings: LogSettings, role: str) -> asyncpg.Connection:
    """A connection with tape's timeouts, after up to ``pg_connect_attempts`` tries with backoff."""
    attempts, delay = settings.pg_connect_attempts, 0.25
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await asyncpg.connect(
                dsn,
                timeout=settings.pg_timeout_s,
                command_timeout=settings.pg_timeout_s + 5,  # the server's statement_timeout acts first
                server_settings={
                    "application_name": f"tape {role}"[:63],
                    "statement_timeout": str(max(1, round(settings.pg_timeout_s * 1000))),
                },
            )
        except _TRANSIENT as exc:
            last = exc
        except Exception as exc:  # a wrong user, password, database, parameter or port: retrying cannot help
            raise LogUnavailableError(
                f"PostgreSQL at {_redact(dsn)}: cannot connect ({type(exc).__name__}: {_scrub(str(exc), dsn)}). "
                "Check the user, password, database and parameters named in the DSN."
            ) from None
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise LogUnavailableError(
        f"PostgreSQL at {_redact(dsn)} is unreachable after {attempts} attempt(s) "
        f"({type(last).__name__}: {_scrub(str(last), dsn)}). Check that the server is running and accepts "
        "connections at that host and port (`pg_isready -h HOST -p PORT`) and that the DSN is right; "
        "nothing was written."
    ) from None


async def _close(conn: asyncpg.Connection | None) -> None:
    if conn is None or conn.is_closed():
        return
    try:
        await conn.close(timeout=5)
    except Exception:  # a connection that cannot close cleanly is cut
        conn.terminate()


async def migrate(conn: asyncpg.Connection, where: str) -> int:
    """Bring the tape tables in ``conn``'s schema up to date; returns the schema version.

    Steps run in one transaction under a transaction-level advisory lock, so two processes starting
    at once apply each step exactly once. An up-to-date schema costs two cheap queries and no lock.
    """
    latest = len(MIGRATIONS)
    version = 0
    if await conn.fetchval("SELECT to_regclass('tape_schema_version') IS NOT NULL"):
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM tape_schema_version")
    if version < latest:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('tape migrate ' || current_schema(), 0))")
            await conn.execute(_VERSION_TABLE)
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM tape_schema_version")
            for number, (description, sql) in enumerate(MIGRATIONS[version:], version + 1):
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO tape_schema_version (version, description) VALUES ($1, $2)", number, description
                )
            version = max(version, latest)
    if version > latest:
        raise NotALogError(
            f"{where}: the tape tables are at schema version {version}, newer than this tape's {latest}; "
            "upgrade tape to use them"
        )
    return version


def _stored_meta(row: asyncpg.Record) -> SessionMeta:
    return SessionMeta(**{f: row[f] for f in _FIELDS})


def _meta_of(row: asyncpg.Record) -> SessionMeta:
    """The session's metadata; an ``open`` session whose writer lock is free reads ``crashed``."""
    meta = _stored_meta(row)
    if meta.status == "open" and not row["writer_alive"]:
        meta = msgspec.structs.replace(meta, status="crashed")
    return meta


async def pg_list_sessions(dsn: str, settings: LogSettings) -> list[SessionMeta]:
    """Every session stored at ``dsn``, oldest first, with its status and last seq."""
    conn = await _connect(dsn, settings, "list")
    try:
        await migrate(conn, _redact(dsn))
        rows = await conn.fetch(f"{_SELECT_META} ORDER BY s.created_ns, s.session_id")
    finally:
        await _close(conn)
    return [_meta_of(row) for row in rows]


async def drop_session(dsn: str, session_id: str, settings: LogSettings) -> int:
    """Delete a session and its events (refused while a writer holds it); returns the events deleted."""
    conn = await _connect(dsn, settings, "drop")
    try:
        await migrate(conn, _redact(dsn))
        async with conn.transaction():
            if not await conn.fetchval(_TRY_LOCK, session_id):
                raise LogLockedError(f"{_location(dsn, session_id)}: a writer holds the session; a log has exactly one writer, and it must close before the session is dropped")
            try:
                deleted = await conn.fetchval(
                    "WITH gone AS (DELETE FROM tape_events WHERE session_id = $1 RETURNING 1) SELECT count(*) FROM gone",
                    session_id,
                )
                await conn.execute("DELETE FROM tape_checkpoints WHERE session_id = $1", session_id)
                if await conn.execute("DELETE FROM tape_sessions WHERE session_id = $1", session_id) == "DELETE 0":
                    raise NotALogError(f"{_location(dsn, session_id)}: no such session")
            finally:
                await conn.fetchval(_UNLOCK, session_id)
    finally:
        await _close(conn)
    return int(deleted)


def _array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _decode(count: int, joined: bytes | None, lo: int, hi: int) -> list[Record] | None:
    """The records ``lo..hi`` from a page's joined payloads, or None if any is missing or bad."""
    if count != hi - lo + 1:
        return None
    try:
        records = RECORDS.decode(b"".join((_array_header(count), joined or b"")))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return records if [r.seq for r in records] == list(range(lo, hi + 1)) else None


class PgLog(EventLog):
    """One session's log in PostgreSQL. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, dsn: str, meta: SessionMeta, settings: LogSettings, *, writable: bool) -> None:
        super().__init__(
            writable=writable, queue_batches=settings.queue_batches, group_batches=settings.group_batches
        )
        self.dsn = dsn
        self.session_id = meta.session_id
        self.location = _location(dsn, meta.session_id)
        self.settings = settings
        self.recovery: Recovery | None = None
        self._meta = meta
        self._last_seq = meta.last_seq
        self._conn: asyncpg.Connection | None = None  # the writer's: holds the lock
        self._backend: tuple[int, Any] | None = None  # (pid, backend_start) of the writer's server process
        self._rconn: asyncpg.Connection | None = None  # reads, and LISTEN on a read-only handle
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._notified = asyncio.Event()
        self._unsynced = False
        self._last_durable = time.monotonic()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    async def create(cls, dsn: str, meta: SessionMeta, settings: LogSettings) -> PgLog:
        """Add a new session and open it for writing; refused if the session id is taken."""
        meta = msgspec.structs.replace(meta, status="open", ended_ns=None, end_reason=None, last_seq=0)
        log = cls(dsn, meta, settings, writable=True)
        try:
            conn = await log._connect_writer()
            if await conn.fetchval(_INSERT_SESSION, *(getattr(meta, f) for f in _FIELDS)) is None:
                raise LogError(f"{log.location}: session {meta.session_id!r} already exists; choose a new session id")
        except BaseException:
            await log._release()
            raise
        return log

    @classmethod
    async def open(cls, dsn: str, session_id: str, settings: LogSettings, *, writable: bool = False) -> PgLog:
        """Open a stored session, read-only or (``writable``) as its one writer, resuming at its end."""
        log = cls(dsn, SessionMeta(session_id=session_id), settings, writable=writable)
        try:
            if writable:
                conn = await log._connect_writer()
                row = await conn.fetchrow(f"{_SELECT_META} WHERE s.session_id = $1", session_id)
            else:
                row = await log._read_query("fetchrow", f"{_SELECT_META} WHERE s.session_id = $1", session_id)
            if row is None:
                raise NotALogError(
                    f"{_redact(dsn)}: no session {session_id!r} there; list_sessions() names those stored"
                )
            log._meta = _stored_meta(row)
            log._last_seq = row["last_seq"]
            if writable:
                await log._resume(conn)
        except BaseException:
            await log._release()
            raise
        return log

    async def _connect_writer(self) -> asyncpg.Connection:
        conn = await _connect(self.dsn, self.settings, f"writer {self.session_id}")
        try:
            await migrate(conn, _redact(self.dsn))
            if not await conn.fetchval(_TRY_LOCK, self.session_id):
                who = "another process"
                if holder := await conn.fetchrow(_HOLDER, self.session_id):
                    pid, addr, name = holder
                    who = f"PostgreSQL backend {pid} ({name or 'no name'}, from {addr or 'a local socket'})"
                raise LogLockedError(
                    f"{self.location}: already open for writing by {who}; a log has exactly one writer. "
                    "Stop that process, or open the log read-only."
                )
            self._backend = tuple(await conn.fetchrow(_BACKEND))
        except BaseException:
            await _close(conn)
            raise
        self._conn = conn
        return conn

    async def _resume(self, conn: asyncpg.Connection) -> None:
        """Check the stored end against the rows, and mark the session open again."""
        stored_max = await conn.fetchval(_MAX_SEQ, self.session_id) or 0
        if stored_max > self._last_seq:
            raise SeqConflictError(
                f"{self.location}: rows up to seq {stored_max} are stored past the session's last acknowledged "
                f"seq {self._last_seq}: something wrote to it around the one-writer lock. Inspect those rows "
                "before writing to this session again."
            )
        if stored_max < self._last_seq:
            raise self._damage(f"the session ends at seq {self._last_seq} but its rows stop at seq {stored_max}")
        self.recovery = Recovery(self._meta.status, self._last_seq, 0)
        await conn.fetchrow(_MARK, self.session_id, "open", None, None)
        self._meta = msgspec.structs.replace(self._meta, status="open", ended_ns=None, end_reason=None)

    # -- reading ------------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._last_seq

    async def meta(self) -> SessionMeta:
        if self.writable:
            return msgspec.structs.replace(self._meta, last_seq=self._last_seq)
        row = await self._read_query("fetchrow", f"{_SELECT_META} WHERE s.session_id = $1", self.session_id)
        if row is None:
            raise NotALogError(f"{self.location}: the session is no longer stored")
        self._meta = _stored_meta(row)
        self._last_seq = row["last_seq"]
        return _meta_of(row)

    async def read(self, first: int = 1, last: int | None = None) -> AsyncIterator[list[Record]]:
        if first < 1:
            raise ValueError(f"read: first seq must be >= 1, got {first}")
        if not self.writable:
            self._notified.clear()  # a NOTIFY from now on wakes the next _wait_external
            self._last_seq = await self._read_query("fetchval", _LAST_SEQ, self.session_id) or 0
        stop = self._last_seq if last is None else min(last, self._last_seq)
        lo = first
        while lo <= stop:
            hi = min(stop, lo + PAGE_ROWS - 1)
            count, joined = await self._read_query("fetchrow", _PAGE, self.session_id, lo, hi)
            records = _decode(count, joined, lo, hi)
            if records is None:  # find and name the damage, row by row
                self._find_damage(await self._read_query("fetch", _ROWS, self.session_id, lo, hi), lo, hi)
            yield records
            lo = hi + 1

    def _find_damage(self, rows: list[asyncpg.Record], lo: int, hi: int) -> None:
        """Raise :class:`CorruptLogError` for the first row of a page that is missing or bad."""
        for expect, (seq, payload) in enumerate(rows, lo):
            if seq != expect:
                raise self._damage(f"seq {expect} is missing (the next stored row is seq {seq})")
            try:
                record = _RECORD.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise self._damage(f"undecodable payload at seq {seq} ({exc})") from None
            if record.seq != seq:
                raise self._damage(f"the payload at seq {seq} holds seq {record.seq}")
        if len(rows) <= hi - lo:
            raise self._damage(f"seq {lo + len(rows)} is missing (rows stop at seq {lo + len(rows) - 1})")
        raise self._damage(f"the payloads of seqs {lo}..{hi} do not decode together")

    def _damage(self, detail: str) -> CorruptLogError:
        return CorruptLogError(self.location, None, detail)

    async def _read_query(self, method: str, sql: str, *args: Any) -> Any:
        """One query on the reading connection, connecting (again) when needed."""
        if self._closed:
            raise LogError(f"{self.location}: the log is closed")
        async with self._read_lock:
            for attempt in (1, 2):
                if self._rconn is None or self._rconn.is_closed():
                    self._rconn = await self._connect_reader()
                try:
                    return await getattr(self._rconn, method)(sql, *args)
                except asyncpg.exceptions.QueryCanceledError as exc:
                    raise self._cancelled(exc, "reading") from exc
                except Exception as exc:
                    if attempt == 2 or not _lost(self._rconn, exc):
                        raise
                    self._rconn.terminate()
        raise AssertionError("unreachable")  # pragma: no cover

    def _cancelled(self, exc: Exception, what: str) -> LogUnavailableError:
        return LogUnavailableError(
            f"{self.location}: PostgreSQL cancelled a statement while {what} ({exc}). A statement may run for "
            f"log.pg_timeout_s = {self.settings.pg_timeout_s} s: look for a long-held lock or an overloaded "
            "server, or raise that setting."
        )

    async def _connect_reader(self) -> asyncpg.Connection:
        conn = await _connect(self.dsn, self.settings, f"reader {self.session_id}")
        try:
            await migrate(conn, _redact(self.dsn))
            if not self.writable:
                await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await _close(conn)
            raise
        return conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.rpartition(":")[0] == self.session_id:
            self._notified.set()

    async def _wait_external(self, poll_s: float) -> None:
        """Wake on the writer's NOTIFY; poll every ``poll_s`` (at least 1 s while listening) as a fallback."""
        listening = self._rconn is not None and not self._rconn.is_closed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._notified.wait(), timeout=max(poll_s, 1.0) if listening else poll_s)

    # -- writing ------------------------------------------------------------------------------
    async def _write_batches(self, batches: list[Sequence[Entry]]) -> list[SeqRange]:
        expect = self._last_seq
        ranges, seq = [], expect + 1
        for entries in batches:
            ranges.append(SeqRange(seq, seq + len(entries) - 1))
            seq += len(entries)
        end = seq - 1
        sync = self.settings.sync
        durable = sync == "batch" or (
            sync == "interval" and (time.monotonic() - self._last_durable) * 1000 >= self.settings.sync_interval_ms
        )

        def rows() -> Iterator[tuple[str, int, int, str, bytes]]:
            """The rows, made while COPY streams them (the server inserts as the client encodes)."""
            sid = self.session_id
            for s, (ts, event) in enumerate((e for entries in batches for e in entries), expect + 1):
                yield sid, s, ts, event_type(event), ENCODER.encode((s, ts, event))

        async def commit(conn: asyncpg.Connection) -> None:
            await self._commit(conn, rows(), expect, end, durable)

        async def committed(stored: int) -> bool:
            if stored == expect:
                return False  # the group did not commit: write it again
            if stored == end:  # it did, unless another writer's rows ended there by chance: compare the ends
                first_ts, first_event = batches[0][0]
                last_ts, last_event = batches[-1][-1]
                ours = [ENCODER.encode((expect + 1, first_ts, first_event)), ENCODER.encode((end, last_ts, last_event))]
                assert self._conn is not None
                if [r[0] for r in await self._conn.fetch(_ENDS, self.session_id, expect + 1, end)] == ours:
                    return True
            raise SeqConflictError(
                f"{self.location}: after reconnecting, the session ends at seq {stored} with rows this writer "
                f"did not write (it was appending seqs {expect + 1}..{end}): another writer appended to it. "
                f"Seqs from {expect + 1} on were not acknowledged here."
            )

        await self._on_writer(commit, committed, f"appending seqs {expect + 1}..{end}")
        self._last_seq = end
        if durable:
            self._last_durable = time.monotonic()
        # a synchronous commit makes every earlier asynchronous one durable too
        self._unsynced = not durable and sync == "interval"
        return ranges

    async def _commit(
        self, conn: asyncpg.Connection, rows: Iterator[tuple[Any, ...]], expect: int, end: int, durable: bool
    ) -> None:
        """One transaction: advance ``last_seq`` from ``expect`` to ``end``, COPY the rows, NOTIFY."""
        try:
            async with conn.transaction():
                if not durable:
                    await conn.execute("SET LOCAL synchronous_commit = off")
                if await conn.fetchval(_ADVANCE, self.session_id, expect, end) is None:
                    stored = await conn.fetchval(_LAST_SEQ, self.session_id)
                    raise SeqConflictError(
                        f"{self.location}: the session ends at seq {stored}, but this writer expected {expect}: "
                        "something appended to it around the one-writer lock. Nothing of this batch was written; "
                        "stop the other writer and inspect the session."
                    )
                await conn.copy_records_to_table("tape_events", records=rows, columns=_COLUMNS)
        except asyncpg.UniqueViolationError as exc:
            found = _DUPLICATE_SEQ.search(exc.detail or "")
            seq = found.group(1) if found else "?"
            raise SeqConflictError(
                f"{self.location}: seq {seq} of session {self.session_id!r} is already stored: something wrote "
                "to it around the one-writer lock (or a bug). Nothing of this batch was written; stop the "
                "other writer and inspect the session before writing to it again."
            ) from None

    async def _on_writer(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[None]],
        took_effect: Callable[[int], Awaitable[bool]],
        what: str,
    ) -> None:
        """Run ``work`` on the writer's connection. If the connection is lost, reconnect, take the lock
        back, and ask ``took_effect(stored last_seq)`` whether the lost attempt committed; if not, redo it."""
        attempts = self.settings.pg_connect_attempts
        async with self._write_lock:
            for attempt in range(1, attempts + 1):
                try:
                    if (self._conn is None or self._conn.is_closed()) and await took_effect(await self._reconnect()):
                        return
                    assert self._conn is not None
                    await work(self._conn)
                    return
                except LogError:
                    raise
                except asyncpg.exceptions.QueryCanceledError as exc:
                    raise self._cancelled(exc, f"{what}, so none of it was written") from exc
                except Exception as exc:
                    if not _lost(self._conn, exc):
                        raise
                    if self._conn is not None:
                        self._conn.terminate()
                    if attempt == attempts:
                        raise LogUnavailableError(
                            f"{self.location}: lost the connection to PostgreSQL {attempts} time(s) while {what} "
                            f"({type(exc).__name__}: {_scrub(str(exc), self.dsn)}); it was not acknowledged. "
                            "Check the server, then reopen the log: it shows whether the last try was stored."
                        ) from None

    async def _reconnect(self) -> int:
        """Connect again, take the writer lock back, and return the stored ``last_seq``.

        The old backend may still hold the lock (it has not noticed yet, or is mid-statement): it is
        ours, so it is ended; once the lock is ours again the lost transaction's fate is final.
        """
        old, self._conn = self._backend, None
        conn = await _connect(self.dsn, self.settings, f"writer {self.session_id}")
        try:
            loop = asyncio.get_running_loop()
            deadline, delay = loop.time() + self.settings.pg_timeout_s, 0.01
            while not await conn.fetchval(_TRY_LOCK, self.session_id):
                holder = await conn.fetchval(_HOLDER, self.session_id)
                someone_else = holder is not None and (old is None or holder != old[0])
                if someone_else or loop.time() > deadline:
                    raise LogLockedError(
                        f"{self.location}: lost the connection, and could not take the session's writer lock "
                        f"back: PostgreSQL backend {holder} holds it; a log has exactly one writer. Nothing in "
                        "flight was acknowledged; stop the other writer, then reopen the log."
                    )
                if old is not None:  # our old backend has not noticed yet: end it
                    with contextlib.suppress(asyncpg.exceptions.InsufficientPrivilegeError):  # else wait for it
                        await conn.fetchval(_END_OLD_BACKEND, self.session_id, *old)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            self._backend = tuple(await conn.fetchrow(_BACKEND))
            stored = await conn.fetchval(_LAST_SEQ, self.session_id)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return stored

    # -- checkpoints ----------------------------------------------------------------------------
    async def _put_checkpoint(self, seq: int, data: bytes) -> None:
        sql = "INSERT INTO tape_checkpoints (session_id, seq, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"

        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute(sql, self.session_id, seq, data)

        async def took_effect(_stored: int) -> bool:
            return False  # the insert is idempotent: do it again

        await self._on_writer(work, took_effect, f"storing the checkpoint at seq {seq}")

    async def checkpoints(self) -> list[int]:
        rows = await self._read_query("fetch", "SELECT seq FROM tape_checkpoints WHERE session_id = $1 ORDER BY seq",
                                      self.session_id)
        return [row[0] for row in rows]

    async def get_checkpoint(self, seq: int) -> bytes:
        data = await self._read_query("fetchval", "SELECT data FROM tape_checkpoints WHERE session_id = $1 AND seq = $2",
                                      self.session_id, seq)
        if data is None:
            raise LogError(f"{self.location}: no checkpoint at seq {seq}")
        return bytes(data)

    @property
    def target(self) -> tuple[str, str | None]:
        return self.dsn, self.session_id

    async def _sync(self) -> None:
        """Under ``sync="interval"``, a synchronous no-op commit flushes every earlier asynchronous one."""
        if not self._unsynced or self._broken is not None or self._closed:
            return

        async def touch(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE tape_sessions SET last_seq = last_seq WHERE session_id = $1", self.session_id)

        await self._on_writer(touch, self._same_end, "syncing")
        self._unsynced = False
        self._last_durable = time.monotonic()

    async def _same_end(self, stored: int) -> bool:
        if stored != self._last_seq:
            raise SeqConflictError(
                f"{self.location}: after reconnecting, the session ends at seq {stored}, not at this writer's "
                f"{self._last_seq}: another writer appended to it."
            )
        return False

    # -- status and closing -------------------------------------------------------------------
    async def mark(self, status: SessionStatus, reason: str | None = None) -> None:
        if not self.writable:
            raise LogError(f"{self.location}: opened read-only; cannot change the session status")
        await self.flush()
        ended = time.time_ns() if status in ("ended", "crashed") else None

        async def update(conn: asyncpg.Connection) -> None:
            await conn.fetchval(_MARK, self.session_id, status, ended, reason)

        await self._on_writer(update, self._same_end, f"marking the session {status}")
        self._meta = msgspec.structs.replace(self._meta, status=status, ended_ns=ended, end_reason=reason)

    def _status(self) -> SessionStatus:
        return self._meta.status

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):  # closing releases the lock anyway; unlocking is faster
                await conn.fetchval(_UNLOCK, self.session_id)
        await _close(conn)
        rconn, self._rconn = self._rconn, None
        await _close(rconn)
