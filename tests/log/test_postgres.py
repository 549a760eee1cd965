"""The event-log contract on PostgreSQL, and what only a server brings: locks, reconnects, migrations.

Every test that needs the server is marked ``postgres`` and works in a fresh schema (``pg_schema_dsn``).
Failures are made with the real server: rows written around the log, backends ended with
``pg_terminate_backend``, a writer process that dies, and a loopback proxy that cuts a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest

from config import LogSettings
from runtime.events import BookDelta
from runtime.log import (
    CorruptLogError,
    EventLog,
    LogBrokenError,
    LogError,
    LogLockedError,
    LogUnavailableError,
    NotALogError,
    SeqConflictError,
    SessionMeta,
    create_log,
    list_sessions,
    open_log,
)
from runtime.log.postgres import MIGRATIONS, migrate
from runtime.log.segments import ENCODER
from tests.log.contract import LogContract, delta, entries, read_all

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = LogSettings(sync="batch")


@pytest.mark.postgres
class TestPgLog(LogContract):
    @pytest.fixture
    def target(self, pg_schema_dsn):
        return pg_schema_dsn


@pytest.mark.postgres
class TestPgLogIntervalSync(TestPgLog):
    """The contract again with asynchronous commits between synchronous ones (``sync="interval"``)."""

    settings = LogSettings(sync="interval", sync_interval_ms=5)


# -- helpers ---------------------------------------------------------------------------------------
def new_meta() -> SessionMeta:
    """A session unique across concurrent test runs (tests find a log's backend by the session id)."""
    return SessionMeta(session_id=f"pg-{uuid.uuid4().hex[:12]}", mode="demo", venue="sim", seed=7, code_version="test")


@contextlib.asynccontextmanager
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test schema, for doing things behind the log's back."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def backend_pid(dsn: str, session_id: str, role: str = "writer") -> int | None:
    """The server process of a log's connection, found by its application name."""
    async with admin(dsn) as conn:
        return await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"tape {role} {session_id}"
        )


async def terminate(dsn: str, pid: int) -> None:
    async with admin(dsn) as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)


async def eventually_unlocked(dsn: str, session_id: str) -> None:
    """Wait until the session's terminated writer backend is gone, and its lock with it."""
    deadline = time.monotonic() + 10
    while await backend_pid(dsn, session_id) is not None:
        assert time.monotonic() < deadline, "the old writer's backend did not go away"
        await asyncio.sleep(0.01)


async def read_session(dsn: str, session_id: str) -> list:
    async with await open_log(dsn, session=session_id, settings=SETTINGS) as log:
        return await read_all(log)


def with_address(dsn: str, *, port: int | None = None, password: str | None = None) -> str:
    """``dsn`` with another port (on 127.0.0.1) or another password."""
    parts = urlsplit(dsn)
    secret = password or parts.password
    user = f"{parts.username}:{secret}" if secret else parts.username
    host, port = ("127.0.0.1", port) if port else (parts.hostname, parts.port or 5432)
    return urlunsplit(parts._replace(netloc=f"{user}@{host}:{port}"))


COMMIT_REPLY = b"C\x00\x00\x00\x0bCOMMIT\x00"  # the server's CommandComplete message for COMMIT


class CuttingProxy:
    """A loopback TCP proxy to the server that, once armed, cuts a connection right after the server
    answers COMMIT: the transaction is committed but the client never hears so."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.armed = False
        self.cuts = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_server: bool) -> None:
            try:
                while data := await src.read(1 << 16):
                    if from_server and self.armed and COMMIT_REPLY in data:
                        self.armed = False
                        self.cuts += 1
                        client_w.transport.abort()
                        server_w.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(client_r, server_w, False), pump(server_r, client_w, True))


# -- writing around the log -------------------------------------------------------------------------
@pytest.mark.postgres
async def test_a_row_written_around_the_log_fails_the_next_append_and_loses_nothing(pg_schema_dsn):
    """A duplicate seq stored behind the writer's back makes its next append fail naming the seq; seqs 1..10 stay."""
    meta = new_meta()
    log = await create_log(pg_schema_dsn, meta, SETTINGS)
    await log.append(entries(10))
    async with admin(pg_schema_dsn) as conn:
        payload = ENCODER.encode((11, 0, delta(99)))
        await conn.execute("INSERT INTO tape_events VALUES ($1, 11, 0, 'book_delta', $2)", meta.session_id, payload)
    with pytest.raises(SeqConflictError, match=f"seq 11 of session '{meta.session_id}' is already stored: something wrote"):
        await log.append(entries(3, 10))
    with pytest.raises(LogBrokenError):
        await log.append(entries(1, 10))
    await log.close()
    got = await read_session(pg_schema_dsn, meta.session_id)
    assert [r.seq for r in got] == list(range(1, 11))
    assert [r.event for r in got] == [e for _, e in entries(10)]


@pytest.mark.postgres
async def test_an_end_moved_around_the_log_fails_the_next_append(pg_schema_dsn):
    """If the session's last seq moves behind the writer's back, its next append fails and writes nothing."""
    meta = new_meta()
    log = await create_log(pg_schema_dsn, meta, SETTINGS)
    await log.append(entries(10))
    async with admin(pg_schema_dsn) as conn:
        await conn.execute("UPDATE tape_sessions SET last_seq = 12 WHERE session_id = $1", meta.session_id)
    with pytest.raises(SeqConflictError, match="the session ends at seq 12, but this writer expected 10"):
        await log.append(entries(3, 10))
    await log.close()
    async with admin(pg_schema_dsn) as conn:
        assert await conn.fetchval("SELECT max(seq) FROM tape_events WHERE session_id = $1", meta.session_id) == 10


@pytest.mark.postgres
async def test_rows_past_the_acknowledged_end_refuse_a_new_writer(pg_schema_dsn):
    """Opening for appending refuses a session holding rows past its last acknowledged seq."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(4))
    async with admin(pg_schema_dsn) as conn:
        payload = ENCODER.encode((5, 0, delta(5)))
        await conn.execute("INSERT INTO tape_events VALUES ($1, 5, 0, 'book_delta', $2)", meta.session_id, payload)
    with pytest.raises(SeqConflictError, match="rows up to seq 5 are stored past the session's last acknowledged seq 4"):
        await open_log(pg_schema_dsn, session=meta.session_id, mode="a", settings=SETTINGS)


@pytest.mark.postgres
async def test_an_event_that_cannot_be_encoded_is_refused_before_anything_is_written(pg_schema_dsn):
    """An append holding an unencodable event is refused whole, names the entry, and the log goes on."""
    meta = new_meta()
    log = await create_log(pg_schema_dsn, meta, SETTINGS)
    await log.append(entries(3))
    huge = BookDelta(market="KX", side="yes", price=1, delta=2**70)
    with pytest.raises(ValueError) as refused:
        await log.append([*entries(20_000, 3), (1, huge)])
    assert isinstance(refused.value.__cause__, (OverflowError, msgspec.EncodeError))  # msgspec's reason is carried
    assert str(refused.value) == f"append: entry 20000 (book_delta): {refused.value.__cause__}"
    await log.close()
    async with admin(pg_schema_dsn) as conn:
        assert await conn.fetchval("SELECT count(*) FROM tape_events WHERE session_id = $1", meta.session_id) == 3
        assert await conn.fetchval("SELECT last_seq FROM tape_sessions WHERE session_id = $1", meta.session_id) == 3


# -- the server going away ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://tape:s3cret@127.0.0.1:1/test", "postgresql://tape:***@127.0.0.1:1/test"),
        ("postgresql://tape@127.0.0.1:1/test?password=s3cret", "postgresql://tape@127.0.0.1:1/test?password=***"),
    ],
)
async def test_an_unreachable_server_is_reported_quickly_without_the_password(dsn, shown):
    """No server at the DSN: LogUnavailableError after the configured attempts, naming the DSN but no password."""
    settings = LogSettings(pg_connect_attempts=2)
    started = time.monotonic()
    with pytest.raises(LogUnavailableError) as caught:
        await create_log(dsn, new_meta(), settings)
    message = str(caught.value)
    assert time.monotonic() - started < 5
    assert message.startswith(f"PostgreSQL at {shown} is unreachable after 2 attempt(s) (")
    assert message.endswith(
        "Check that the server is running and accepts connections at that host and port "
        "(`pg_isready -h HOST -p PORT`) and that the DSN is right; nothing was written."
    )
    assert "s3cret" not in message


@pytest.mark.postgres
async def test_a_connection_the_server_refuses_is_reported_at_once(pg_dsn):
    """A DSN naming a database that does not exist fails at the first attempt with the server's reason."""
    dsn = urlunsplit(urlsplit(pg_dsn)._replace(path="/tape_no_such_db"))
    with pytest.raises(asyncpg.InvalidCatalogNameError) as server:  # what the server says, in its version and language
        await asyncpg.connect(dsn)
    with pytest.raises(LogUnavailableError) as caught:
        await create_log(dsn, new_meta(), LogSettings(pg_connect_attempts=100))
    assert str(caught.value) == (
        f"PostgreSQL at {dsn}: cannot connect ({type(server.value).__name__}: {server.value}). "
        "Check the user, password, database and parameters named in the DSN."
    )


@pytest.mark.postgres
async def test_the_writer_reconnects_after_its_backend_is_ended_between_appends(pg_schema_dsn):
    """Appends continue after the writer's backend is terminated while idle; every seq is stored once."""
    meta = new_meta()
    log = await create_log(pg_schema_dsn, meta, SETTINGS)
    assert await log.append(entries(10)) == (1, 10)
    old = await backend_pid(pg_schema_dsn, meta.session_id)
    await terminate(pg_schema_dsn, old)
    assert await log.append(entries(10, 10)) == (11, 20)
    assert await log.append(entries(10, 20)) == (21, 30)
    assert await backend_pid(pg_schema_dsn, meta.session_id) not in (None, old)
    await log.close()
    got = await read_session(pg_schema_dsn, meta.session_id)
    assert [r.seq for r in got] == list(range(1, 31))
    assert [r.event for r in got] == [e for _, e in entries(30)]


@pytest.mark.postgres
async def test_the_writer_redoes_an_append_whose_backend_is_ended_mid_copy(pg_schema_dsn):
    """A backend terminated during a large COPY: the append is written again and acknowledged once."""
    meta = new_meta()
    log = await create_log(pg_schema_dsn, meta, SETTINGS)
    await log.append(entries(5))

    def kill_during_copy() -> int:  # a thread: the event loop is busy encoding the COPY
        async def run() -> int:
            async with admin(pg_schema_dsn) as conn:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    pid = await conn.fetchval(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' "
                        "AND query LIKE 'COPY%'",
                        f"tape writer {meta.session_id}",
                    )
                    if pid is not None:
                        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
                        return pid
                    await asyncio.sleep(0.002)
            raise AssertionError("the writer's COPY was never seen")

        return asyncio.run(run())

    killed, rng = await asyncio.gather(asyncio.to_thread(kill_during_copy), log.append(entries(300_000, 5)))
    assert rng == (6, 300_005)
    assert await backend_pid(pg_schema_dsn, meta.session_id) != killed
    assert await log.append(entries(5, 300_005)) == (300_006, 300_010)
    await log.close()
    got = await read_session(pg_schema_dsn, meta.session_id)
    assert [r.seq for r in got] == list(range(1, 300_011))
    assert got[-1].event == delta(300_009) and got[5].event == delta(5)


@pytest.mark.postgres
async def test_a_writer_that_lost_its_session_to_another_writer_stops(pg_schema_dsn):
    """A writer whose connection dropped while a second writer took the session over is refused on reconnecting."""
    meta = new_meta()
    first = await create_log(pg_schema_dsn, meta, SETTINGS)
    await first.append(entries(10))
    await terminate(pg_schema_dsn, await backend_pid(pg_schema_dsn, meta.session_id))
    await eventually_unlocked(pg_schema_dsn, meta.session_id)
    second = await open_log(pg_schema_dsn, session=meta.session_id, mode="a", settings=SETTINGS)
    with pytest.raises(LogLockedError, match=r"lost the connection, and could not take the session's writer lock back: "
                       r"PostgreSQL backend \d+ holds it; a log has exactly one writer"):
        await first.append(entries(5, 10))
    assert await second.append(entries(5, 10)) == (11, 15)
    await second.close()
    await first.close()


@pytest.mark.postgres
async def test_a_writer_whose_session_moved_on_while_it_was_away_stops(pg_schema_dsn):
    """A writer reconnecting to find rows it did not write past its end fails with SeqConflictError."""
    meta = new_meta()
    first = await create_log(pg_schema_dsn, meta, SETTINGS)
    await first.append(entries(10))
    await terminate(pg_schema_dsn, await backend_pid(pg_schema_dsn, meta.session_id))
    await eventually_unlocked(pg_schema_dsn, meta.session_id)
    async with await open_log(pg_schema_dsn, session=meta.session_id, mode="a", settings=SETTINGS) as second:
        await second.append(entries(3, 10))
    with pytest.raises(SeqConflictError, match=r"after reconnecting, the session ends at seq 13 with rows this writer "
                       r"did not write \(it was appending seqs 11\.\.15\)"):
        await first.append(entries(5, 10))
    await first.close()
    assert [r.seq for r in await read_session(pg_schema_dsn, meta.session_id)] == list(range(1, 14))


@pytest.mark.postgres
async def test_a_reader_reconnects_after_its_backend_is_ended(pg_schema_dsn):
    """A read-only handle whose backend was terminated reads on over a new connection, seeing new appends."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(5))
        async with await open_log(pg_schema_dsn, session=meta.session_id, settings=SETTINGS) as ro:
            assert len(await read_all(ro)) == 5
            await terminate(pg_schema_dsn, await backend_pid(pg_schema_dsn, meta.session_id, "reader"))
            await log.append(entries(5, 5))
            assert [r.seq for r in await read_all(ro)] == list(range(1, 11))


@pytest.mark.postgres
async def test_a_commit_whose_answer_is_lost_is_acknowledged_once(pg_schema_dsn):
    """The connection is cut after the server commits but before the writer hears: the batch is stored once."""
    meta = new_meta()
    server = urlsplit(pg_schema_dsn)
    async with CuttingProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        via_proxy = with_address(pg_schema_dsn, port=proxy.listen_port)
        log = await create_log(via_proxy, meta, SETTINGS)
        await log.append(entries(10))
        proxy.armed = True
        assert await log.append(entries(10, 10)) == (11, 20)
        assert proxy.cuts == 1
        assert await log.append(entries(5, 20)) == (21, 25)
        await log.close()
    got = await read_session(pg_schema_dsn, meta.session_id)
    assert [r.seq for r in got] == list(range(1, 26))
    assert [r.event for r in got] == [e for _, e in entries(25)]


@pytest.mark.postgres
async def test_a_statement_blocked_past_the_timeout_fails_the_append(pg_schema_dsn):
    """A statement waiting longer than pg_timeout_s is cancelled by the server: the append fails, nothing is stored."""
    meta = new_meta()
    settings = LogSettings(pg_timeout_s=0.3)
    log = await create_log(pg_schema_dsn, meta, settings)
    async with admin(pg_schema_dsn) as conn, conn.transaction():
        await conn.execute("SELECT FROM tape_sessions WHERE session_id = $1 FOR UPDATE", meta.session_id)
        with pytest.raises(LogUnavailableError) as caught:
            await log.append(entries(2))
    cancelled = caught.value.__cause__
    assert isinstance(cancelled, asyncpg.QueryCanceledError)  # the server's reason is carried, in its words
    assert str(caught.value).startswith(
        f"{log.location}: PostgreSQL cancelled a statement while appending seqs 1..2, so none of it was written "
        f"({cancelled}). A statement may run for log.pg_timeout_s = 0.3 s")
    await log.close()
    assert await read_session(pg_schema_dsn, meta.session_id) == []


# -- writers that die ------------------------------------------------------------------------------
DIE_WITHOUT_CLOSING = """
import asyncio, os, sys
from config import LogSettings
from runtime.log import SessionMeta, create_log
from tests.log.contract import entries

async def main():
    log = await create_log(sys.argv[1], SessionMeta(session_id=sys.argv[2]), LogSettings())
    await log.append(entries(5))
    os._exit(0)  # no close(): the session stays "open" in the table

asyncio.run(main())
"""


async def eventually_status(log: EventLog, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (await log.meta()).status != status:
        assert time.monotonic() < deadline, f"status stayed {(await log.meta()).status!r}, expected {status!r}"
        await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_a_writer_that_died_shows_crashed_and_the_next_writer_resumes(pg_schema_dsn):
    """A writer process that exits without closing leaves a ``crashed`` session that a new writer continues."""
    sid = new_meta().session_id
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", DIE_WITHOUT_CLOSING, pg_schema_dsn, sid, cwd=ROOT)
    assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    async with await open_log(pg_schema_dsn, session=sid, settings=SETTINGS) as ro:
        await eventually_status(ro, "crashed")
        assert (await ro.meta()).last_seq == 5
    log = await open_log(pg_schema_dsn, session=sid, mode="a", settings=SETTINGS)
    assert log.recovery.previous_status == "open" and log.last_seq == 5
    assert await log.append(entries(3, 5)) == (6, 8)
    await log.close()
    assert [r.seq for r in await read_session(pg_schema_dsn, sid)] == list(range(1, 9))


@pytest.mark.postgres
async def test_the_writer_lock_message_names_the_holder_but_no_password(pg_schema_dsn):
    """A refused second writer is told which backend holds the session, and the DSN shows no password."""
    secret = urlsplit(pg_schema_dsn).password or "hunter2"  # the local server trusts, so any password will do
    dsn = with_address(pg_schema_dsn, password=secret)
    meta = new_meta()
    async with await create_log(dsn, meta, SETTINGS) as log, admin(dsn) as conn:
        pid, addr = await conn.fetchrow(
            "SELECT pid, host(client_addr) FROM pg_stat_activity WHERE application_name = $1",
            f"tape writer {meta.session_id}",
        )
        with pytest.raises(LogLockedError) as caught:
            await open_log(dsn, session=meta.session_id, mode="a", settings=SETTINGS)
    assert secret not in str(caught.value) and ":***@" in log.location
    assert str(caught.value) == (
        f"{log.location}: already open for writing by PostgreSQL backend {pid} (tape writer {meta.session_id}, "
        f"from {addr}); a log has exactly one writer. Stop that process, or open the log read-only."
    )


@pytest.mark.postgres
async def test_a_session_id_cannot_be_created_twice(pg_schema_dsn):
    """Creating a session whose id is stored already is refused."""
    meta = new_meta()
    await (await create_log(pg_schema_dsn, meta, SETTINGS)).close()
    with pytest.raises(LogError, match=f"session '{meta.session_id}' already exists; choose a new session id"):
        await create_log(pg_schema_dsn, meta, SETTINGS)


@pytest.mark.postgres
async def test_an_unknown_session_is_not_a_log(pg_schema_dsn):
    """Opening a session id that is not stored raises NotALogError naming it."""
    with pytest.raises(NotALogError, match="no session 'nope' there; list_sessions"):
        await open_log(pg_schema_dsn, session="nope", settings=SETTINGS)


# -- damage -------------------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_an_undecodable_payload_is_named_by_its_seq(pg_schema_dsn):
    """A payload that is not a record stops the read with CorruptLogError naming the session and the seq."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(20))
    async with admin(pg_schema_dsn) as conn:
        await conn.execute("UPDATE tape_events SET payload = '\\xc1' WHERE session_id = $1 AND seq = 7", meta.session_id)
    async with await open_log(pg_schema_dsn, session=meta.session_id, settings=SETTINGS) as ro:
        assert [r.seq for r in await read_all(ro, 1, 6)] == list(range(1, 7))
        with pytest.raises(CorruptLogError, match=r"undecodable payload at seq 7 \(") as caught:
            await read_all(ro)
    assert f"session={meta.session_id}:" in str(caught.value)


@pytest.mark.postgres
async def test_a_missing_row_is_named_by_its_seq(pg_schema_dsn):
    """A deleted row stops the read with CorruptLogError naming the missing seq."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(20))
    async with admin(pg_schema_dsn) as conn:
        await conn.execute("DELETE FROM tape_events WHERE session_id = $1 AND seq = 7", meta.session_id)
    async with await open_log(pg_schema_dsn, session=meta.session_id, settings=SETTINGS) as ro:
        with pytest.raises(CorruptLogError, match=r"seq 7 is missing \(the next stored row is seq 8\)"):
            await read_all(ro)


# -- tailing ------------------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_a_follower_is_woken_by_notify_not_by_polling(pg_schema_dsn):
    """A read-only follower that polls only every 30 s gets a new append at once: the writer's NOTIFY wakes it."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(1))
        async with await open_log(pg_schema_dsn, session=meta.session_id, settings=SETTINGS) as ro:
            follow = ro.follow(1, poll_s=30)
            assert [r.seq for r in await anext(follow)] == [1]
            waiting = asyncio.ensure_future(anext(follow))
            await asyncio.sleep(0.2)
            await log.append(entries(2, 1))
            assert [r.seq for r in await asyncio.wait_for(waiting, timeout=5)] == [2, 3]
            await follow.aclose()


@pytest.mark.postgres
async def test_marking_the_session_ended_wakes_a_waiting_follower(pg_schema_dsn):
    """A follower waiting for more returns as soon as the writer marks the session ended."""
    meta = new_meta()
    async with await create_log(pg_schema_dsn, meta, SETTINGS) as log:
        await log.append(entries(2))
        async with await open_log(pg_schema_dsn, session=meta.session_id, settings=SETTINGS) as ro:

            async def follow() -> list[int]:
                return [r.seq async for batch in ro.follow(1, poll_s=30) for r in batch]

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            await log.mark("ended", "done")
            assert await asyncio.wait_for(task, timeout=5) == [1, 2]


# -- migrations ---------------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_migrations_are_versioned_and_rerunning_them_changes_nothing(pg_schema_dsn):
    """The schema records each applied step; migrating an up-to-date schema is a no-op."""
    async with admin(pg_schema_dsn) as conn:
        assert await migrate(conn, "here") == len(MIGRATIONS) == 2
        assert await migrate(conn, "here") == 2
        rows = await conn.fetch("SELECT version, description FROM tape_schema_version ORDER BY version")
        assert [tuple(r) for r in rows] == [(1, "sessions and events"), (2, "checkpoints")]


@pytest.mark.postgres
async def test_a_schema_of_an_earlier_tape_is_brought_up_to_date_and_its_sessions_kept(pg_schema_dsn):
    """A database written by a tape without checkpoints (schema 1) gets the checkpoints table on first use; its
    sessions read as before and can take checkpoints."""
    async with admin(pg_schema_dsn) as conn:
        await conn.execute("CREATE TABLE tape_schema_version (version integer PRIMARY KEY, description text NOT NULL, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        await conn.execute(MIGRATIONS[0][1])
        await conn.execute("INSERT INTO tape_schema_version (version, description) VALUES (1, 'sessions and events')")
    old = await create_log(pg_schema_dsn, SessionMeta(session_id="old"), SETTINGS)
    await old.append(entries(5))
    await old.put_checkpoint(5, b"state")
    await old.close()
    async with admin(pg_schema_dsn) as conn:
        assert await conn.fetchval("SELECT max(version) FROM tape_schema_version") == 2
    async with await open_log(pg_schema_dsn, session="old", settings=SETTINGS) as log:
        assert (log.last_seq, await log.checkpoints(), await log.get_checkpoint(5)) == (5, [5], b"state")


@pytest.mark.postgres
async def test_concurrent_migrations_apply_each_step_once(pg_schema_dsn):
    """Two processes migrating an empty schema at once both succeed, and each step is applied once."""
    async with admin(pg_schema_dsn) as a, admin(pg_schema_dsn) as b:
        assert await asyncio.gather(migrate(a, "a"), migrate(b, "b")) == [2, 2]
        assert await a.fetchval("SELECT count(*) FROM tape_schema_version") == 2


@pytest.mark.postgres
async def test_a_schema_newer_than_this_tape_is_refused(pg_schema_dsn):
    """Tables migrated by a newer tape are refused with a clear message instead of being misread."""
    async with admin(pg_schema_dsn) as conn:
        await migrate(conn, "here")
        await conn.execute("INSERT INTO tape_schema_version (version, description) VALUES (3, 'from the future')")
    with pytest.raises(NotALogError, match="the tape tables are at schema version 3, newer than this tape's 2; upgrade tape to use them"):
        await list_sessions(pg_schema_dsn, SETTINGS)


@pytest.mark.postgres
async def test_a_dropped_session_is_gone_and_a_held_one_cannot_be_dropped(pg_schema_dsn):
    """drop_session deletes a closed session's rows; while a writer holds a session it is refused."""
    from runtime.log.postgres import drop_session

    settings = LogSettings()
    held = await create_log(pg_schema_dsn, SessionMeta(session_id=f"held-{uuid.uuid4().hex[:8]}"), settings)
    await held.append(entries(3))
    with pytest.raises(LogLockedError, match="a writer holds the session"):
        await drop_session(pg_schema_dsn, (await held.meta()).session_id, settings)
    await held.close()
    assert await drop_session(pg_schema_dsn, (await held.meta()).session_id, settings) == 3
    assert [m.session_id for m in await list_sessions(pg_schema_dsn, settings)] == []
    with pytest.raises(NotALogError, match="no such session"):
        await drop_session(pg_schema_dsn, (await held.meta()).session_id, settings)
