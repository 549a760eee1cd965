"""A live session: venue market data in, the topology's machines on Ray (or in-process), one log.

:class:`PaperSession` is the driver behind ``tape paper``. It owns no trading logic: it feeds the
sequencer (:mod:`runtime.sequencer`) with inputs from the edge and watches what gets logged.

* **Inputs**, all stamped at the edge with the wall clock (the only place it is read): the venue feed's
  batches (:class:`runtime.venues.kalshi.ws.KalshiFeed`), a ``TimerFired("decide")`` every
  ``decide_every_s`` (time-based exits on quiet books), the order gateway's replies (venue execution, below)
  and at the end the operator's ``halt`` (the orchestrator cancels every working order; inputs go on until
  the cancels have landed and no cash is reserved, at most ``drain_s``), then ``SessionEnded``. One task
  submits: whatever arrived while the previous submit ran is merged into the next one, so the sequencer
  sees one writer and the batches stay large under load.
* **Execution.** With ``spec.execution == "paper"`` the topology's paper matcher fills our orders and
  nothing leaves this process. With ``"venue"`` the execution node is the :class:`~actors.router.Router`
  (it derives nothing) and the driver runs an :class:`~runtime.venues.kalshi.gateway.OrderGateway` that
  sends real orders and cancels: its view of the router is a second ``Router`` folded here, by the watch,
  over every durable record — the work list is a pure function of the log prefix, so it equals the actor's —
  and it is woken each time a batch becomes durable (so nothing is sent before its intent is in the log). Its replies are inputs: they go into the same queue as the feed's, so
  the submit loop stays the sequencer's only caller. Fills come back on the feed (its private channels
  ``fill``, ``user_orders``, ``market_positions`` and its REST reconciliation), deduplicated by trade id
  there and again by the machines. At the end, after the drain, one more REST read logs any fill of ours
  the feed had not delivered yet, and the venue's positions in our markets (``PositionReported``).
* **The watch**: every record, once durable (inputs and every derived round: the sequencer's
  ``on_durable``), is folded by a :class:`Watch` — the same book, cash and position machines (and, trading on the venue, the router), in
  this process — for the live status and the summary: cash, reserved, positions, fills, fees, PnL marked at
  the mid, its maximum drawdown, and the **input-to-order latency** of every order intent: from the wall time the
  input whose handling caused the decision was received at the edge (a venue message, or a ``decide`` timer
  tick) to the intent being durable in the log, counted per kind of cause (``Summary.latency_causes``).
* **Policies** come from ``policies`` (a :class:`~runtime.topology.PolicyProvider`: the kernel imports no
  policies), which builds the default in-process runner's orchestrator; a ``runner`` passed in was built with them.
* **Models**: with ``models`` (a :class:`ModelFeed`, e.g. ``policies.registry.ModelSource``), the version it names is logged as
  ``ModelLoaded`` inputs right after the session's first batch, before any market data; every
  ``reload_every_s`` it is asked again, and a newer version (``tape train --out`` into the same registry
  directory) is logged the same way: the orchestrator loads it when it folds the event (hot reload), and a
  replay loads the same version at the same seq.
* **Queue positions** (venue execution with ``queue_every_s``, as ``tape paper --shadow`` and ``tape fidelity`` run):
  every ``queue_every_s`` the venue's queue position of each of our resting orders (Kalshi's
  ``GET /portfolio/orders/queue_positions``) is logged as a ``QueuePositionReported`` input, for the shadow execution
  (:mod:`actors.shadow`) to answer with its own.
* **Stopping**: at ``duration_s``, on ``stop()`` (Ctrl-C), or when the feed ends. If the log fails, the
  sequencer raises and nothing more is traded (:class:`~runtime.sequencer.SequencerStopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from actors.book import OrderBook
from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.positions import Positions
from actors.router import Router

from .events import (
    BookDelta,
    BookSnapshot,
    Event,
    FillDuplicated,
    ModelLoaded,
    OperatorCommand,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderStatusReported,
    PolicyDecided,
    PositionReported,
    QueuePositionReported,
    Record,
    SessionEnded,
    SessionMode,
    TimerFired,
    VenueError,
    event_type,
)
from .log import EventLog
from .logger import get_logger
from .sequencer import InProcessRunner, Runner, Sequencer, SequencerStopped
from .topology import ROUTER_TYPES, PolicyProvider, SessionSpec, session_inputs, topology
from .venues.kalshi.codec import clip
from .venues.kalshi.gateway import OrderGateway
from .venues.kalshi.http import KalshiError, KalshiRest

__all__ = ["ModelFeed", "PaperSession", "Summary", "Watch", "session_mode"]

DECIDE = "decide"


class ModelFeed(Protocol):
    """A model a session follows (module docstring)."""

    def poll(self) -> list[ModelLoaded]:
        """The ``ModelLoaded`` events of a version not returned before (none: nothing new); called in a thread."""
        ...


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
    latency_ms: list[float]  # input-to-order samples, one per order intent whose cause was received in this session
    execution: str = "paper"  # SessionSpec.execution: who filled our orders
    venue: str = "sim"
    venue_fills: int = 0  # fills logged as inputs: reported by the venue (0 on paper)
    reconciled_fills: int = 0  # of those, the ones only the final REST read found
    gateway: dict[str, int] = {}  # OrderGateway.stats: creates, cancels, accepted, rejected, ...
    venue_positions: dict[str, int] | None = None  # the venue's final word on our markets (venue execution)
    models: list[str] = []  # every model version loaded during the session, in order ("role=version")
    latency_causes: dict[str, int] = {}  # the latency samples by the kind of input that caused them ("book_delta", ...)


def session_mode(spec: SessionSpec, venue: str) -> SessionMode:
    """The session's mode as logged: ``paper`` when the paper matcher fills; sending orders, ``live`` on Kalshi
    production and ``demo`` elsewhere (Kalshi's demo, or the local exchange: real orders, no money at risk)."""
    if spec.execution == "paper":
        return "paper"
    return "live" if venue == "kalshi" else "demo"


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
        self.latency_causes: dict[str, int] = {}  # event type of the cause -> samples
        self._received: dict[int, tuple[int, str]] = {}  # seq of an input -> (its wall receive time (ns), its type)
        # venue execution: the router the gateway reads (the execution actor's twin), and what the end checks
        self.router: Router | None = Router() if spec.execution == "venue" else None
        self.trade_ids: set[str] = set()  # every fill logged (not a duplicate)
        self.venue_fills = 0  # of them, inputs: reported by the venue
        self.ours: set[str] = set()  # client order ids of our intents
        self.order_ids: dict[str, str] = {}  # the venue's ids of our orders -> their client order ids
        self.venue_positions: dict[str, int] = {}  # the latest PositionReported per market
        self.models: list[str] = []  # "role=version" of every ModelLoaded, in order

    def __call__(self, records: Sequence[Record]) -> None:
        self.records += len(records)
        now = time.time_ns()
        for r in records:
            event, kind = r.event, type(r.event)
            if getattr(event, "cause_seq", None) is None:
                self.inputs += 1
                self._received[r.seq] = (r.ts_ns, event_type(event))  # stamped at the edge when it was received
            else:
                self.derived += 1
            if kind is BookDelta or kind is BookSnapshot:
                book = self.books.get(event.market)  # type: ignore[union-attr]
                if book is not None:
                    book.handle(r.seq, r.ts_ns, event)
            elif kind is OrderIntent:
                self.intents += 1
                cause = self._received.get(event.cause_seq)  # type: ignore[union-attr]
                if cause is not None:
                    self.latency_ms.append((now - cause[0]) / 1e6)
                    self.latency_causes[cause[1]] = self.latency_causes.get(cause[1], 0) + 1
                self.ours.add(event.client_order_id)  # type: ignore[union-attr]
            elif kind is PolicyDecided:
                self.decisions += 1
            elif kind is ModelLoaded:
                self.models.append(f"{event.role}={event.model_id}")  # type: ignore[union-attr]
            elif (kind is OrderAccepted or kind is OrderStatusReported) and event.client_order_id in self.ours:  # type: ignore[union-attr]
                self.order_ids[event.order_id] = event.client_order_id  # type: ignore[union-attr]
            elif kind is PositionReported:
                self.venue_positions[event.market] = event.position  # type: ignore[union-attr]
            if self.router is not None and kind in ROUTER_TYPES:
                self.router.handle(r.seq, r.ts_ns, event)
            self.cash.handle(r.seq, r.ts_ns, event)
            changed = self.positions.handle(r.seq, r.ts_ns, event)
            if kind is OrderFilled and not (changed and type(changed[0]) is FillDuplicated):
                self.fills += 1
                self.fees += event.fee  # type: ignore[union-attr]
                self.trade_ids.add(event.trade_id)  # type: ignore[union-attr]
                if event.cause_seq is None:  # type: ignore[union-attr]
                    self.venue_fills += 1
        if len(self._received) > 100_000:  # only recent inputs can still cause an intent
            keep = sorted(self._received)[-10_000:]
            self._received = {s: self._received[s] for s in keep}
        pnl = self.pnl()
        self.peak = max(self.peak, pnl)
        self.max_drawdown = max(self.max_drawdown, self.peak - pnl)

    def pnl(self) -> int:
        """Realized + unrealized at the mid (or at cost where a book has no mid), net of fees (``Positions.value2``,
        exact, rounded down to the micro-dollar once for the whole session)."""
        positions, books = self.positions, self.books
        return sum(positions.value2(m, books[m].mid2()) for m in self.spec.markets) // 2

    def summary(self, reason: str, seconds: float, *, venue: str = "sim", reconciled_fills: int = 0,
                gateway: dict[str, int] | None = None) -> Summary:
        venue_positions = None
        if self.spec.execution == "venue":
            venue_positions = {m: self.venue_positions.get(m, 0) for m in self.spec.markets}
        return Summary(reason=reason, seconds=seconds, records=self.records, inputs=self.inputs,
                       derived=self.derived, intents=self.intents, decisions=self.decisions, fills=self.fills,
                       fees=self.fees, cash=self.cash.cash, reserved=self.cash.reserved, pnl=self.pnl(),
                       max_drawdown=self.max_drawdown,
                       positions={m: self.positions.get(m).position for m in self.spec.markets},
                       latency_ms=self.latency_ms, execution=self.spec.execution, venue=venue,
                       venue_fills=self.venue_fills, reconciled_fills=reconciled_fills, gateway=dict(gateway or {}),
                       venue_positions=venue_positions, models=list(self.models),
                       latency_causes=dict(sorted(self.latency_causes.items())))


class PaperSession:
    """One session on ``log`` (see the module docstring). ``feed`` is an async iterable of batches of
    ``(received_ns, Event)`` (a :class:`KalshiFeed` already entered; trading on the venue, one subscribed to
    the private channels too, with ``rest=`` for its reconciliation); ``runner`` hosts the machines
    (default: in this process, the orchestrator's policies from ``policies``); ``rest`` is the venue's REST client, required when
    ``spec.execution == "venue"`` (the order gateway sends with it); ``watch`` replaces the default
    :class:`Watch` (a subclass that measures more)."""

    def __init__(self, log: EventLog, spec: SessionSpec, feed, *, session_id: str, venue: str = "sim",
                 runner: Runner | None = None, decide_every_s: float = 1.0, config_hash: str = "",
                 code_version: str = "", drain_s: float = 5.0, rest: KalshiRest | None = None,
                 reconcile_margin_s: int = 60, watch: Watch | None = None, models: ModelFeed | None = None,
                 reload_every_s: float = 2.0, policies: PolicyProvider | None = None, queue_every_s: float = 0.0) -> None:
        if spec.execution == "venue" and rest is None:
            raise ValueError("a session that sends its orders to the venue (execution='venue') needs rest=KalshiRest")
        self.log, self.spec, self.feed = log, spec, feed
        self.session_id, self.venue = session_id, venue
        self.rest = rest
        self.watch = watch or Watch(spec)
        self.models = models
        self.reload_every_s = reload_every_s
        self.queue_every_s = queue_every_s
        if runner is None and policies is None:
            raise ValueError("a session needs its runner, or the policies to build one in this process (policies=)")
        self.runner = runner or InProcessRunner(topology(spec, policies))  # type: ignore[arg-type]
        self.sequencer = Sequencer(log, self.runner, on_durable=self._durable)
        self.gateway: OrderGateway | None = None
        self.decide_every_s = decide_every_s
        self.drain_s = drain_s
        self.reconcile_margin_s = reconcile_margin_s
        self.reconciled_fills = 0
        self.config_hash, self.code_version = config_hash, code_version
        self._stop = asyncio.Event()
        self._queue: list[tuple[int, Event]] = []
        self._ready = asyncio.Event()
        self.started = 0.0
        self._started_s = 0  # wall clock at the start, Unix seconds (the final fills read starts before it)

    def stop(self) -> None:
        """End the session soon (Ctrl-C): halt, flush and end cleanly."""
        self._stop.set()

    async def run(self, duration_s: float, on_status: Callable[[Watch, float], None] | None = None) -> Summary:
        now = time.time_ns()
        self._started_s = now // 1_000_000_000
        await self._submit(session_inputs(self.spec, now, session_id=self.session_id,
                                          mode=session_mode(self.spec, self.venue), venue=self.venue,
                                          config_hash=self.config_hash, code_version=self.code_version))
        if self.models is not None:  # the model the session starts with, logged before any market data
            await self._submit(await self._model_inputs())
        self.started = time.perf_counter()  # after the first round: the machines (Ray actors) are up
        if self.spec.execution == "venue":
            assert self.rest is not None
            self.gateway = OrderGateway(self.rest, self.watch.router, self._from_gateway)  # type: ignore[arg-type]
            self.gateway.start()
        feed = asyncio.create_task(self._read_feed(), name="paper-feed")
        timer = asyncio.create_task(self._timer(), name="paper-timer")
        helpers = [timer]  # (stopped at the end of trading; the feed goes on through the drain)
        if self.models is not None:
            helpers.append(asyncio.create_task(self._reload(), name="paper-models"))
        if self.queue_every_s > 0 and self.spec.execution == "venue":
            helpers.append(asyncio.create_task(self._queue_positions(), name="paper-queue"))
        reason = "completed"
        failure: Exception | None = None
        try:
            try:
                deadline = self.started + duration_s
                while not self._stop.is_set():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(remaining, 0.5)):
                            await self._ready.wait()
                    await self._flush()
                    if on_status is not None:
                        on_status(self.watch, time.perf_counter() - self.started)
                    for task in (feed, *helpers):
                        if task.done() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                if self._stop.is_set():
                    reason = "interrupted"
            except SequencerStopped:
                raise
            except Exception as exc:  # the feed or a status callback failed: halt and end the session cleanly
                failure, reason = exc, f"failed: {type(exc).__name__}: {exc}"[:500]
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
            await self._drain()  # the feed goes on: fills and cancels still arrive
        except SequencerStopped:
            await self._cancel_at_venue()  # the log records nothing more: stop trading, cancel what we can
            raise
        finally:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)
            if self.gateway is not None:
                await self.gateway.close()
        await self._flush()  # what arrived before the end is recorded too
        if self.rest is not None and self.spec.execution == "venue":
            await self._reconcile(self.rest)
        await self._submit([(time.time_ns(), SessionEnded(reason=reason))])
        await self.sequencer.close()
        if failure is not None:
            raise failure
        return self.watch.summary(reason, time.perf_counter() - self.started, venue=self.venue,
                                  reconciled_fills=self.reconciled_fills,
                                  gateway=None if self.gateway is None else self.gateway.stats)

    async def _queue_positions(self) -> None:
        """Venue execution with ``queue_every_s``: every so often, the venue's queue position of each of our resting
        orders, logged as a ``QueuePositionReported`` input (the truth a shadow execution's queue is measured
        against). A failed read is a ``VenueError``, and the next poll tries again."""
        assert self.rest is not None
        while True:
            await asyncio.sleep(self.queue_every_s)
            try:
                positions = await self.rest.queue_positions(self.spec.markets)
            except KalshiError as exc:
                self._push([(time.time_ns(), VenueError(where="paper.queue_positions", message=clip(str(exc))))])
                continue
            now, coids = time.time_ns(), self.watch.order_ids
            entries: list[tuple[int, Event]] = [
                (now, QueuePositionReported(client_order_id=coids[oid], order_id=oid, market=ticker, ahead=ahead))
                for oid, ticker, ahead in positions if oid in coids]
            if entries:
                self._push(entries)

    async def _cancel_at_venue(self) -> None:
        """Last resort when the log has failed (DESIGN: stop trading, cancel resting orders where it can): cancel
        every order of ours the venue acknowledged, directly, unrecorded. Paper orders live only in the log."""
        if self.rest is None or self.spec.execution != "venue":
            return
        for order_id in self.watch.router.venue_order_ids():
            with contextlib.suppress(Exception):
                await self.rest.cancel_order(order_id)

    async def _submit(self, batch: Sequence[tuple[int, Event]]) -> None:
        """The one call of the sequencer."""
        await self.sequencer.submit(batch)

    def _durable(self, records: list[Record]) -> None:
        """Records just made durable: the watch folds them, then the gateway looks at the work list they made."""
        self.watch(records)
        if self.gateway is not None:
            self.gateway.wake()

    async def _flush(self) -> None:
        """Submit whatever the edge has queued."""
        if self._queue:
            batch, self._queue = self._queue, []
            self._ready.clear()
            await self._submit(batch)

    def _draining(self) -> bool:
        """Whether the end must wait: cash is reserved (an order is not done), or a venue call is in flight."""
        return bool(self.watch.cash.reserved) or (self.gateway is not None and self.gateway.in_flight > 0)

    async def _drain(self) -> None:
        """Halt, then go on feeding what arrives (on paper, timers too, so the matcher's latency elapses) until no
        cash is reserved — every cancel has landed — and no venue call is in flight, or ``drain_s`` has passed."""
        from actors.orchestrator import HALT  # (not at the top: importing the orchestrator loads policies.base)

        await self._submit([(time.time_ns(), OperatorCommand(command=HALT))])
        deadline = time.perf_counter() + self.drain_s
        while self._draining() and time.perf_counter() < deadline:
            if self.gateway is None:
                await asyncio.sleep(0.05)
                now = time.time_ns()
                self._push([(now, TimerFired(name=DECIDE, due_ns=now))])
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._ready.wait()
            await self._flush()

    async def _reconcile(self, rest: KalshiRest) -> None:
        """Venue execution, at the very end: log the fills of our orders the venue has and the log lacks (a fill
        frame still on its way when the drain ended), then the venue's positions in our markets. A failed read
        is a ``VenueError``."""
        try:
            fills = await rest.fills(min_ts_s=max(0, self._started_s - self.reconcile_margin_s))
            reported = await rest.positions()
        except KalshiError as exc:
            message = f"the final reconciliation could not read the venue's fills and positions: {exc}"
            await self._submit([(time.time_ns(), VenueError(where="paper.reconcile", message=clip(message)))])
            return
        w, now = self.watch, time.time_ns()
        missing: dict[str, OrderFilled] = {}
        for f in fills:
            if (type(f) is OrderFilled and f.trade_id not in w.trade_ids
                    and (f.order_id in w.order_ids or f.client_order_id in w.ours)):
                missing.setdefault(f.trade_id, f)
        self.reconciled_fills = len(missing)
        markets = set(self.spec.markets)
        positions = [p for p in reported if type(p) is PositionReported and p.market in markets]
        entries: list[tuple[int, Event]] = [(now, e) for e in (*missing.values(), *positions)]
        if entries:
            await self._submit(entries)

    async def _from_gateway(self, entries: list[tuple[int, Event]]) -> None:
        """The gateway's ``submit``: its replies join the input queue (the submit loop logs them)."""
        self._push(entries)

    def _push(self, entries: Sequence[tuple[int, Event]]) -> None:
        self._queue.extend(entries)
        self._ready.set()

    async def _read_feed(self) -> None:
        async for batch in self.feed:
            self._push(batch)

    async def _model_inputs(self) -> list[tuple[int, Event]]:
        """``ModelLoaded`` inputs if the followed model has a new version (the first call: the version now)."""
        assert self.models is not None
        events = await asyncio.to_thread(self.models.poll)
        now = time.time_ns()
        return [(now, e) for e in events]

    async def _reload(self) -> None:
        """Hot reload: a new version saved where the session's model path points is logged, and so loaded."""
        while True:
            await asyncio.sleep(self.reload_every_s)
            entries = await self._model_inputs()
            if entries:
                get_logger("paper").info("model reloaded", version=entries[0][1].model_id)  # type: ignore[attr-defined]
                self._push(entries)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.decide_every_s)
            now = time.time_ns()
            self._push([(now, TimerFired(name=DECIDE, due_ns=now))])
