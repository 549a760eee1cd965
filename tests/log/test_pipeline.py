"""The write pipeline every backend shares: bounded queue, group commit, backpressure, fail-stop.

The storage below is a test double of a *backend's storage* (it blocks on demand), so the pipeline
in runtime.log.base can be observed while a write is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from runtime.log.base import Entry, EventLog, LogBrokenError, SeqRange, SessionMeta
from tests.log.contract import entries


class GatedLog(EventLog):
    def __init__(self, queue_batches: int, group_batches: int) -> None:
        super().__init__(writable=True, queue_batches=queue_batches, group_batches=group_batches)
        self.location = "gated"
        self.gate = asyncio.Event()
        self.groups: list[int] = []
        self.fail: Exception | None = None
        self._last = 0

    @property
    def last_seq(self) -> int:
        return self._last

    async def meta(self) -> SessionMeta:
        return SessionMeta(session_id="gated", last_seq=self._last)

    async def read(self, first: int = 1, last: int | None = None):  # pragma: no cover - not read here
        return
        yield

    async def _write_batches(self, batches: list[Sequence[Entry]]) -> list[SeqRange]:
        await self.gate.wait()
        if self.fail:
            raise self.fail
        self.groups.append(len(batches))
        out = []
        for batch in batches:
            out.append(SeqRange(self._last + 1, self._last + len(batch)))
            self._last += len(batch)
        return out

    async def _sync(self) -> None:
        pass

    async def _put_checkpoint(self, seq, data) -> None:  # pragma: no cover - not checkpointed here
        pass

    async def checkpoints(self) -> list[int]:  # pragma: no cover
        return []

    async def get_checkpoint(self, seq) -> bytes:  # pragma: no cover
        raise KeyError(seq)

    @property
    def target(self):  # pragma: no cover
        return "gated", None

    async def mark(self, status, reason=None) -> None:
        pass

    def _status(self):
        return "ended"

    async def _release(self) -> None:
        pass


async def test_a_full_queue_makes_producers_wait_and_nothing_is_dropped():
    """Given a queue of 2 and a write in flight, a further producer waits until there is room."""
    log = GatedLog(queue_batches=2, group_batches=8)
    tasks = [asyncio.create_task(log.append(entries(1, i))) for i in range(6)]
    await asyncio.sleep(0.01)
    assert log._queue.qsize() == 2  # one batch is in the writer, two queued, three producers waiting
    assert not any(t.done() for t in tasks)
    log.gate.set()
    ranges = await asyncio.gather(*tasks)
    assert ranges == [SeqRange(i, i) for i in range(1, 7)]
    assert sum(log.groups) == 6 and max(log.groups) > 1  # queued batches shared a write (group commit)
    await log.close()


async def test_a_failed_write_fails_its_batches_and_every_later_append():
    """Fail-stop: the producers of the failed group get the error; later appends get LogBrokenError."""
    log = GatedLog(queue_batches=4, group_batches=4)
    log.fail = OSError("disk on fire")
    first = [asyncio.create_task(log.append(entries(1, i))) for i in range(3)]
    await asyncio.sleep(0)
    log.gate.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    with pytest.raises(LogBrokenError, match="an earlier write failed \\(disk on fire\\); reopen the log"):
        await log.append(entries(1))
    await log.close()


async def test_close_waits_for_queued_batches():
    """Closing drains the queue: every batch a producer handed over is written before close returns."""
    log = GatedLog(queue_batches=8, group_batches=2)
    tasks = [asyncio.create_task(log.append(entries(2, 2 * i))) for i in range(5)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    log.gate.set()
    await closing
    assert [t.result() for t in tasks][-1] == SeqRange(9, 10) and log.last_seq == 10
