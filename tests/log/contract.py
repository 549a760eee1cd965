"""The event-log contract: every backend's test class subclasses :class:`LogContract`.

A subclass provides the ``target`` fixture: where new sessions are created (a directory, or a DSN).
Each test is a specification of behaviour every backend must share.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import pytest

from config import LogSettings
from runtime.events import BookDelta, Record, SessionEnded
from runtime.log import (
    EventLog,
    LogError,
    LogLockedError,
    SessionMeta,
    create_log,
    list_sessions,
    open_log,
)
from tests.samples import one_of_each
from tests.wording import words_of

_ids = itertools.count()


def delta(i: int) -> BookDelta:
    return BookDelta(market=f"KX-{i % 3}", side="yes" if i % 2 else "no", price=1 + i % 9_999, delta=i % 500 - 250)


def entries(n: int, start: int = 0) -> list[tuple[int, BookDelta]]:
    return [(1_000 + i, delta(i)) for i in range(start, start + n)]


async def read_all(log: EventLog, first: int = 1, last: int | None = None) -> list[Record]:
    return [r for batch in [b async for b in log.read(first, last)] for r in batch]


class LogContract:
    settings = LogSettings(sync="batch")

    @pytest.fixture
    def target(self):  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def meta(self, **kw) -> SessionMeta:
        fields = {"session_id": f"s{next(_ids)}-{id(self) % 10_000}", "mode": "demo", "venue": "sim", "seed": 7,
                  "config_hash": "c" * 64, "code_version": "test"}
        fields.update(kw)
        return SessionMeta(**fields)

    async def new_log(self, target, **kw) -> EventLog:
        return await create_log(target, self.meta(**kw), self.settings)

    async def reopen(self, target, log: EventLog, mode: str = "r") -> EventLog:
        return await open_log(target, session=(await log.meta()).session_id, mode=mode, settings=self.settings)

    # -- appending ------------------------------------------------------------------------------
    async def test_batches_get_consecutive_seqs_from_one(self, target):
        """Given a new log, when batches are appended, then they get seqs 1.. with no gaps."""
        async with await self.new_log(target) as log:
            assert log.last_seq == 0
            assert await log.append(entries(3)) == (1, 3)
            assert await log.append(entries(1, 3)) == (4, 4)
            assert await log.append(entries(5, 4)) == (5, 9)
            assert log.last_seq == 9

    async def test_read_returns_exactly_what_was_appended(self, target):
        """Every event type, its ts and its seq come back unchanged and in order."""
        samples = one_of_each()
        async with await self.new_log(target) as log:
            await log.append([(10 * i, e) for i, e in enumerate(samples)])
            got = await read_all(log)
        assert [r.seq for r in got] == list(range(1, len(samples) + 1))
        assert [r.ts_ns for r in got] == [10 * i for i in range(len(samples))]
        assert [r.event for r in got] == samples

    async def test_read_range(self, target):
        """A range read returns first..last inclusive, clipped to the log; past the end returns nothing."""
        async with await self.new_log(target) as log:
            for start in range(0, 100, 10):
                await log.append(entries(10, start))
            assert [r.seq for r in await read_all(log, 15, 37)] == list(range(15, 38))
            assert [r.seq for r in await read_all(log, 95)] == list(range(95, 101))
            assert [r.seq for r in await read_all(log, 90, 1000)] == list(range(90, 101))
            assert await read_all(log, 101) == []
            with pytest.raises(ValueError, match="first seq must be >= 1"):
                await read_all(log, 0)

    async def test_bad_batches_are_refused_and_write_nothing(self, target):
        """An empty batch, a non-event or a bad timestamp is refused before anything is written."""
        async with await self.new_log(target) as log:
            with pytest.raises(ValueError, match="the batch is empty"):
                await log.append([])
            with pytest.raises(TypeError, match="entry 1 holds dict, not a tape event"):
                await log.append([(1, delta(0)), (2, {"type": "book_delta"})])
            with pytest.raises(TypeError, match="entry 0 has ts_ns -5"):
                await log.append([(-5, delta(0))])
            with pytest.raises(TypeError, match=r"expected a \(ts_ns, event\) tuple"):
                await log.append([delta(0)])
            assert log.last_seq == 0
            assert await log.append(entries(1)) == (1, 1)

    async def test_a_batch_larger_than_a_frame_is_stored_whole(self, target):
        """A batch of 70,000 events (more than one frame holds) reads back complete and in order."""
        async with await self.new_log(target) as log:
            assert await log.append(entries(70_000)) == (1, 70_000)
            got = await read_all(log)
        assert len(got) == 70_000 and got[-1].seq == 70_000 and got[-1].event == delta(69_999)

    async def test_concurrent_appends_never_drop_or_overlap(self, target):
        """Many producers against a one-batch queue: each batch acknowledged once, all seqs covered."""
        settings = LogSettings(sync="batch", queue_batches=1, group_batches=4)
        log = await create_log(target, self.meta(), settings)
        async with log:
            ranges = await asyncio.gather(*(log.append(entries(7, 7 * i)) for i in range(60)))
            got = await read_all(log)
        assert sorted(s for r in ranges for s in range(r.first, r.last + 1)) == list(range(1, 421))
        assert all(r.last - r.first == 6 for r in ranges)
        by_seq = {r.seq: r.event for r in got}
        for i, rng in enumerate(ranges):  # each batch landed whole and contiguous
            assert [by_seq[s] for s in range(rng.first, rng.last + 1)] == [e for _, e in entries(7, 7 * i)]

    # -- sessions, reopening and writers --------------------------------------------------------
    async def test_metadata_survives_reopening(self, target):
        """Session metadata is kept; a cleanly closed session reads ``closed``, a marked one ``ended``."""
        log = await self.new_log(target, seed=99, config_hash="h" * 64, venue="kalshi-demo")
        await log.append(entries(4))
        await log.close()
        ro = await self.reopen(target, log)
        meta = await ro.meta()
        assert (meta.seed, meta.config_hash, meta.venue, meta.status, meta.last_seq) == (99, "h" * 64, "kalshi-demo", "closed", 4)
        await ro.close()
        rw = await self.reopen(target, log, "a")
        await rw.append([(5, SessionEnded())])
        await rw.mark("ended", "done")
        await rw.close()
        ro = await self.reopen(target, log)
        meta = await ro.meta()
        assert (meta.status, meta.end_reason, meta.last_seq) == ("ended", "done", 5)
        await ro.close()

    async def test_appending_resumes_at_the_next_seq(self, target):
        """Reopened for appending, a log continues exactly where it stopped."""
        log = await self.new_log(target)
        await log.append(entries(10))
        await log.close()
        log2 = await self.reopen(target, log, "a")
        assert log2.last_seq == 10
        assert await log2.append(entries(5, 10)) == (11, 15)
        got = await read_all(log2)
        await log2.close()
        assert [r.event for r in got] == [e for _, e in entries(15)]

    async def test_exactly_one_writer(self, target):
        """A second writer is refused while the first holds the session; after close it may open."""
        log = await self.new_log(target)
        await log.append(entries(1))
        with pytest.raises(LogLockedError, match="one writer"):
            await self.reopen(target, log, "a")
        await log.close()
        second = await self.reopen(target, log, "a")
        assert await second.append(entries(1)) == (2, 2)
        await second.close()

    async def test_read_only_log_refuses_appends(self, target):
        log = await self.new_log(target)
        await log.append(entries(1))
        ro = await self.reopen(target, log)
        with pytest.raises(LogError, match="read-only"):
            await ro.append(entries(1))
        await ro.close()
        await log.close()

    async def test_sessions_are_listed(self, target):
        """Listing shows each session with its last seq."""
        a = await self.new_log(target)
        await a.append(entries(3))
        await a.close()
        b = await self.new_log(target)
        await b.close()
        listed = {m.session_id: m for m in await list_sessions(target, self.settings)}
        a_id, b_id = (await a.meta()).session_id, (await b.meta()).session_id
        assert listed[a_id].last_seq == 3 and listed[b_id].last_seq == 0

    # -- tailing --------------------------------------------------------------------------------
    async def test_follow_sees_appends_from_another_handle_and_ends_with_the_session(self, target):
        """A follower on a read-only handle gets every record as written, and stops once ended."""
        log = await self.new_log(target)
        await log.append(entries(5))
        follower = await self.reopen(target, log)

        async def follow() -> list[int]:
            return [r.seq async for batch in follower.follow(1, poll_s=0.01) for r in batch]

        task = asyncio.create_task(follow())
        for start in range(5, 50, 5):
            await asyncio.sleep(0.01)
            await log.append(entries(5, start))
        await log.mark("ended")
        seqs = await asyncio.wait_for(task, timeout=30)
        assert seqs == list(range(1, 51))
        await follower.close()
        await log.close()

    async def test_follow_on_the_writing_handle(self, target):
        """The writer's own handle can be followed too (a same-process consumer)."""
        async with await self.new_log(target) as log:
            got: list[int] = []

            async def follow() -> None:
                async for batch in log.follow(1, poll_s=0.01):
                    got.extend(r.seq for r in batch)
                    if got[-1] >= 30:
                        return

            task = asyncio.create_task(follow())
            for start in range(0, 30, 3):
                await log.append(entries(3, start))
                await asyncio.sleep(0)
            await asyncio.wait_for(task, timeout=30)
        assert got == list(range(1, 31))

    async def test_an_event_breaking_the_schema_is_refused_and_the_log_goes_on(self, target):
        """Values a reader would reject (an enum, a unit range, a huge ts) are refused before writing."""
        async with await self.new_log(target) as log:
            await log.append(entries(1))
            bad = BookDelta(market="KX", side="maybe", price=1, delta=1)  # type: ignore[arg-type]
            with pytest.raises(ValueError) as side:
                await log.append([(1, delta(1)), (2, bad)])
            with pytest.raises(ValueError) as price:
                await log.append([(1, BookDelta(market="KX", side="yes", price=20_000, delta=1))])
            for refused, ours in ((side, "append: entry 1 (book_delta) field side"),
                                  (price, "append: entry 0 (book_delta) field price")):
                assert isinstance(refused.value.__cause__, msgspec.ValidationError)  # msgspec's reason is carried
                assert str(refused.value) == f"{ours}: {words_of(refused.value.__cause__)}"
            with pytest.raises(TypeError, match=r"entry 0 has ts_ns 9223372036854775808"):
                await log.append([(2**63, delta(1))])
            assert await log.append(entries(2, 1)) == (2, 3)
            assert [r.seq for r in await read_all(log)] == [1, 2, 3]

    async def test_close_while_producers_append_loses_and_hangs_nothing(self, target):
        """Every append accepted before close is written and acknowledged; later ones are refused."""
        settings = LogSettings(sync="batch", queue_batches=2, group_batches=2)
        log = await create_log(target, self.meta(), settings)

        async def produce(i: int):
            try:
                return await log.append(entries(50, 50 * i))
            except LogError as exc:
                return exc

        tasks = [asyncio.create_task(produce(i)) for i in range(12)]
        await asyncio.sleep(0)
        await log.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        acked = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, LogError)]
        assert len(acked) + len(refused) == 12 and acked
        assert all("closed" in str(r) for r in refused)
        reader = await self.reopen(target, log)
        assert reader.last_seq == 50 * len(acked) and (await reader.meta()).status == "closed"
        await reader.close()

    async def test_a_producer_cancelled_while_waiting_for_room_leaves_no_gap(self, target):
        """Backpressure plus a timeout: the cancelled batch is not written, and later batches still get 1, 2, …"""
        settings = LogSettings(sync="batch", queue_batches=1, group_batches=1)
        async with await create_log(target, self.meta(), settings) as log:
            waiting = [asyncio.create_task(log.append(entries(5, 5 * i))) for i in range(4)]
            await asyncio.sleep(0)  # one batch in the writer, one queued, two waiting for room
            waiting[3].cancel()
            done = await asyncio.gather(*waiting, return_exceptions=True)
            assert isinstance(done[3], asyncio.CancelledError)
            assert await log.append(entries(5, 100)) == (16, 20)
            assert [r.seq for r in await read_all(log)] == list(range(1, 21))

    async def test_checkpoints_are_kept_beside_the_records_and_read_back_from_another_handle(self, target):
        """A checkpoint at a durable seq is stored, listed in seq order and read back exactly; a second one at the
        same seq changes nothing; one past the durable end, or on a read-only handle, is refused."""
        async with await self.new_log(target) as log:
            await log.append(entries(30))
            assert await log.checkpoints() == []
            await log.put_checkpoint(20, b"state at 20")
            await log.put_checkpoint(10, b"\x00" * 100_000)
            await log.put_checkpoint(20, b"state at 20")
            with pytest.raises(LogError, match="durable seq"):
                await log.put_checkpoint(31, b"too far")
            assert await log.checkpoints() == [10, 20]
            reader = await self.reopen(target, log)
            assert await reader.checkpoints() == [10, 20]
            assert await reader.get_checkpoint(10) == b"\x00" * 100_000
            assert await reader.get_checkpoint(20) == b"state at 20"
            with pytest.raises(LogError, match="no checkpoint at seq 15"):
                await reader.get_checkpoint(15)
            with pytest.raises(LogError, match="read-only"):
                await reader.put_checkpoint(10, b"x")
            target_, session = reader.target
            again = await open_log(target_, session=session, settings=self.settings)
            assert await again.get_checkpoint(20) == b"state at 20" and again.last_seq == 30
            await again.close()
            await reader.close()
