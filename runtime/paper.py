"""A live paper session: venue market data in, the topology's machines on Ray (or in-process), one log.

:class:`PaperSession` is the driver behind ``tape paper``. It owns no trading logic: it feeds the
sequencer (:mod:`runtime.sequencer`) with inputs from the edge and watches what gets logged.

* **Inputs**, all stamped at the edge with the wall clock (the only place it is read): the venue feed's
  batches (:class:`runtime.venues.kalshi.ws.KalshiFeed`), a ``TimerFired("decide")`` every
  ``decide_every_s`` (time-based exits on quiet books), and at the end the operator's ``halt`` (the
  orchestrator cancels every working order; inputs go on until the cancels have landed and no cash is
  reserved, at most ``drain_s``), then ``SessionEnded``. One task submits: whatever arrived
  while the previous submit ran is merged into the next one, so the sequencer sees one writer and the
  batches stay large under load.
* **The watch**: every record the sequencer fans out (inputs and every derived round) is folded by a
  :class:`Watch` — the same book, cash and position machines, in this process — for the live status and
  the summary: cash, reserved, positions, fills, fees, PnL marked at the mid, its maximum drawdown, and
  the tick-to-order latency (a book update received -> the order intent it caused, durable in the log).
* **Stopping**: at ``duration_s``, on ``stop()`` (Ctrl-C), or when the feed ends. If the log fails, the
  sequencer raises and nothing more is traded (:class:`~runtime.sequencer.SequencerStopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import msgspec

from actors.book import OrderBook
from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.orchestrator import HALT
from actors.positions import Positions

from .events import (
    BookDelta,
    BookSnapshot,
    Event,
    FillDuplicated,
    OperatorCommand,
    OrderFilled,
    OrderIntent,
    PolicyDecided,
    Record,
    SessionEnded,
    TimerFired,
)
from .log import EventLog
from .sequencer import InProcessRunner, Runner, Sequencer
from .topology import SessionSpec, session_inputs, topology

__all__ = ["PaperSession", "Summary", "Watch"]

DECIDE = "decide"


class Summary(msgspec.Struct, kw_only=True):
    """What a session did, in exact units (money in micro-dollars)."""

    reason: str
    seconds: float
    records: int
    inputs: int
    derived: int
    intents: int
    decisions: int
    fills: int
    fees: int
    cash: int
    reserved: int
    pnl: int  # realized + unrealized at the mid, net of fees
    max_drawdown: int
    positions: dict[str, int]
    latency_ms: list[float]  # tick-to-order samples


class Watch:
    """The session's state as the log tells it, folded in this process for display (never for trading)."""

    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec
        self.books = {m: OrderBook(m) for m in spec.markets}
        self.cash = CashPool(KalshiFees())
        self.positions = Positions()
        self.records = self.inputs = self.derived = 0
        self.fills = self.fees = self.intents = self.decisions = 0
        self.peak = self.max_drawdown = 0
        self.latency_ms: list[float] = []
        self._received: dict[int, int] = {}  # seq of a book update -> its wall receive time (ns), for latency

    def __call__(self, records: Sequence[Record]) -> None:
        self.records += len(records)
        now = time.time_ns()
        for r in records:
            event, kind = r.event, type(r.event)
            if getattr(event, "cause_seq", None) is None:
                self.inputs += 1
            else:
                self.derived += 1
            if kind is BookDelta or kind is BookSnapshot:
                book = self.books.get(event.market)  # type: ignore[union-attr]
                if book is not None:
                    book.handle(r.seq, r.ts_ns, event)
                    self._received[r.seq] = r.ts_ns
            elif kind is OrderIntent:
                self.intents += 1
                received = self._received.get(event.cause_seq)  # type: ignore[union-attr]
                if received is not None:
                    self.latency_ms.append((now - received) / 1e6)
            elif kind is PolicyDecided:
                self.decisions += 1
            self.cash.handle(r.seq, r.ts_ns, event)
            changed = self.positions.handle(r.seq, r.ts_ns, event)
            if kind is OrderFilled and not (changed and type(changed[0]) is FillDuplicated):
                self.fills += 1
                self.fees += event.fee  # type: ignore[union-attr]
        if len(self._received) > 100_000:  # only recent book updates can still cause an intent
            keep = sorted(self._received)[-10_000:]
            self._received = {s: self._received[s] for s in keep}
        pnl = self.pnl()
        self.peak = max(self.peak, pnl)
        self.max_drawdown = max(self.max_drawdown, self.peak - pnl)

    def mid(self, market: str) -> int | None:
        twice = self.books[market].mid2()
        return None if twice is None else twice // 2

    def pnl(self) -> int:
        """Realized + unrealized at the mid (or at cost where a book has no mid), net of fees."""
        total = 0
        for market in self.spec.markets:
            p = self.positions.get(market)
            mid = self.mid(market)
            unrealized = 0 if mid is None or p.position == 0 else self.positions.unrealized(market, mid)
            total += p.realized_pnl + unrealized - p.fees
        return total

    def summary(self, reason: str, seconds: float) -> Summary:
        return Summary(reason=reason, seconds=seconds, records=self.records, inputs=self.inputs,
                       derived=self.derived, intents=self.intents, decisions=self.decisions, fills=self.fills,
                       fees=self.fees, cash=self.cash.cash, reserved=self.cash.reserved, pnl=self.pnl(),
                       max_drawdown=self.max_drawdown,
                       positions={m: self.positions.get(m).position for m in self.spec.markets},
                       latency_ms=self.latency_ms)


class _Watched:
    """A runner that shows every record to the watch before the machines get it."""

    def __init__(self, inner: Runner, watch: Callable[[Sequence[Record]], None]) -> None:
        self.inner, self.watch = inner, watch

    async def handle(self, records: list[Record]) -> list[Event]:
        self.watch(records)
        return await self.inner.handle(records)

    async def close(self) -> None:
        await self.inner.close()


class PaperSession:
    """One paper session on ``log`` (see the module docstring). ``feed`` is an async iterable of batches of
    ``(received_ns, Event)`` (a :class:`KalshiFeed` already entered); ``runner`` hosts the machines
    (default: in this process)."""

    def __init__(self, log: EventLog, spec: SessionSpec, feed, *, session_id: str, venue: str = "sim",
                 runner: Runner | None = None, decide_every_s: float = 1.0, config_hash: str = "",
                 code_version: str = "", drain_s: float = 5.0) -> None:
        self.log, self.spec, self.feed = log, spec, feed
        self.session_id, self.venue = session_id, venue
        self.watch = Watch(spec)
        self.runner = _Watched(runner or InProcessRunner(topology(spec)), self.watch)
        self.sequencer = Sequencer(log, self.runner)
        self.decide_every_s = decide_every_s
        self.drain_s = drain_s
        self.config_hash, self.code_version = config_hash, code_version
        self._stop = asyncio.Event()
        self._queue: list[tuple[int, Event]] = []
        self._ready = asyncio.Event()
        self.started = 0.0

    def stop(self) -> None:
        """End the session soon (Ctrl-C): halt, flush and end cleanly."""
        self._stop.set()

    async def run(self, duration_s: float, on_status: Callable[[Watch, float], None] | None = None) -> Summary:
        await self.sequencer.submit(session_inputs(self.spec, time.time_ns(), session_id=self.session_id,
                                                   mode="paper", venue=self.venue, config_hash=self.config_hash,
                                                   code_version=self.code_version))
        self.started = time.perf_counter()  # after the first round: the machines (Ray actors) are up
        tasks = [asyncio.create_task(self._read_feed(), name="paper-feed"),
                 asyncio.create_task(self._timer(), name="paper-timer")]
        reason = "completed"
        try:
            deadline = self.started + duration_s
            while not self._stop.is_set():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.5)):
                        await self._ready.wait()
                if self._queue:
                    batch, self._queue = self._queue, []
                    self._ready.clear()
                    await self.sequencer.submit(batch)
                if on_status is not None:
                    on_status(self.watch, time.perf_counter() - self.started)
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            if self._stop.is_set():
                reason = "interrupted"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._drain()
        now = time.time_ns()
        await self.sequencer.submit([(now, SessionEnded(reason=reason))])
        await self.sequencer.close()
        return self.watch.summary(reason, time.perf_counter() - self.started)

    async def _drain(self) -> None:
        """Halt, then go on feeding what arrives (and timers, so the paper venue's latency elapses) until no cash
        is reserved — every cancel has landed — or ``drain_s`` has passed."""
        await self.sequencer.submit([(time.time_ns(), OperatorCommand(command=HALT))])
        deadline = time.perf_counter() + self.drain_s
        while self.watch.cash.reserved and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            now = time.time_ns()
            batch, self._queue = self._queue, []
            await self.sequencer.submit([*batch, (now, TimerFired(name=DECIDE, due_ns=now))])
        if self._queue:  # what arrived before the end is recorded too
            batch, self._queue = self._queue, []
            await self.sequencer.submit(batch)

    def _push(self, entries: Sequence[tuple[int, Event]]) -> None:
        self._queue.extend(entries)
        self._ready.set()

    async def _read_feed(self) -> None:
        async for batch in self.feed:
            self._push(batch)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.decide_every_s)
            now = time.time_ns()
            self._push([(now, TimerFired(name=DECIDE, due_ns=now))])
