"""The orchestrator: when a decision is due for a market, runs the policies and turns their outputs into orders.

**What it folds.** Its whole view is the log as of each seq:

* book snapshots and deltas into its own :class:`~actors.book.OrderBook` and
  :class:`~policies.features.FeatureTracker` per market (a ``BookInconsistent`` the book derives is the
  book actor's to log, so it is dropped here), public trades into the trackers;
* lifecycle: ``deactivated``, ``determined`` and ``settled`` close a market, ``activated`` reopens a
  deactivated one (``determined`` and ``settled`` are final); any lifecycle event may carry the close time;
* ``MarketInfo``, the venue's definition of a market: its close time (as a lifecycle event's, the later in the
  log wins), its price grid and its fee terms (:class:`~actors.fees.MarketFees`, which its copy of the cash pool
  reserves by too);
* its own copies of the cash pool and the positions (:mod:`actors.cash`, :mod:`actors.positions`: the
  same code folded over the same events; what they derive is ignored). A fill moves the balance with no
  cash event of its own, so free cash cannot be followed from ``Cash*`` events alone; and a copy is exact
  as of every seq instead of waiting for the positions actor's ``PositionChanged`` to be sequenced;
* its own orders (client order ids ``{prefix}-…``), from the logged ``OrderIntent`` (an ``exit`` order
  if reduce-only, else an ``entry``) until fully filled, rejected, canceled or expired. An intent it has
  emitted that the log has not yet returned is *pending*: its worst-case cost is held out of free cash
  and its market is busy.

**Halting.** An ``OperatorCommand`` named :data:`HALT` (Ctrl-C, or a log that must stop) makes it log a
``CancelRequested`` for every working order not already being canceled, and decide nothing more.

**When it decides.** For one market, on a book update the book applied, at most once per
``decide_every_ms`` of event time; and for every market (in the configured order) on a
``TimerFired`` named ``timer``, whatever the throttle (timers drive time-based exits on quiet books).
Never on a stale book, never on a closed market, never while an intent of the market is pending or an
exit order of it is working, and no exit for ``exit_retry_ms`` after a close that did not complete. "Now"
is the deciding event's ``ts_ns`` (for a timer, the time it was logged), never the wall clock.
The markets a timer makes due are decided as one by one in the configured order; with policies that answer
several observations at once (``decide_many``: one call to a policy actor, :mod:`actors.policy_actor`) in
lockstep: each role is asked once per step for all the markets at that step, and a market after one that placed an
order decides again on the cash that order left (:meth:`Orchestrator._round`). The events are the same bytes
either way.

**What it decides.** A flat market with no working order runs signal → sizing → entry, unless it closes
within ``entry_cutoff_s`` (no new entries then; exits go on until the close). A market with a position
or a working entry order runs exit. ``passive`` joins our side's touch (post-only GTC), ``cross`` takes
the opposite touch (IOC); ``close`` is an IOC at the touch for the whole position, reduce-only, and
cancels the working entry order first; ``cancel`` is a ``CancelRequested`` for the working entry order.
An order's price must be within (0, $1) and on its market's grid — the ``MarketInfo``'s
(:func:`~actors.market_info.on_grid`), or the ``tick`` grid for a market without one — (else ``skip_price``), and its
worst-case cost — exactly what the cash pool will reserve for it — must fit the free cash (else
``skip_cash``): a refusal is a ``PolicyDecided``, never an intent that the pool would reject.

**What it logs (decision volume).** Each role that ran logs one ``PolicyDecided(cause_seq=seq)`` with its
action and the policy's version (sizing: ``size`` / ``skip``; refusals: ``skip_book``, ``skip_price``,
``skip_cash``; exit: the rule's reason), then the order events. A decision that ends in no order is
logged only when its outcome — the actions of the roles that ran — differs from the market's previous
decision: a market that keeps holding logs one ``hold``, not one per book update. So per market and
``decide_every_ms``, at most three ``PolicyDecided`` and one intent (entry), or one ``PolicyDecided`` and
two order events (exit). Client order ids are ``{prefix}-{seq}-{k}``, ``k`` counting from 1 within one seq.

**Models.** A ``ModelLoaded`` is handed to ``loader`` (if one is given), whose policy replaces that role's;
its ``version`` is then what the decisions record. Without a loader the event changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec

from policies.base import (
    ROLES,
    EntryDecision,
    EntryObservation,
    ExitDecision,
    ExitObservation,
    MarketView,
    Policy,
    SignalDecision,
    SignalObservation,
    SizingDecision,
    SizingObservation,
    WorkingOrder,
    decide_many,
)
from policies.features import FeatureSpec, FeatureTracker, TrackerState
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    CashDeposited,
    Event,
    MarketInfo,
    MarketLifecycle,
    ModelLoaded,
    OperatorCommand,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PolicyDecided,
    PublicTrade,
    Role,
    SeqGapDetected,
    SessionStarted,
    TimerFired,
)
from runtime.units import PRICE_MAX

from .book import BookState, OrderBook
from .cash import ALLOWANCE, CashPool, CashSnapshot
from .fees import CENT, FeeSchedule, MarketFees, leg_price
from .machine import NOTHING
from .market_info import on_grid
from .positions import Positions, PositionsSnapshot

__all__ = ["Decision", "MarketState", "Orchestrator", "OrchestratorConfig", "OrchestratorSnapshot", "OwnOrder", "Step",
           "lockstep", "run", "worst_case_cost"]

_NS = 1_000_000_000
_MS = 1_000_000
_CLOSING = frozenset({"deactivated", "determined", "settled"})
_FINAL = frozenset({"determined", "settled"})
_CASH_EVENTS = (OrderIntent, OrderFilled, OrderCanceled, OrderExpired, OrderRejected, MarketLifecycle, CashDeposited,
                SessionStarted)
_DONE = (OrderRejected, OrderCanceled, OrderExpired)
HALT = "halt"
"""the operator command that cancels every working order and stops all decisions"""

Loader = Callable[[ModelLoaded], Policy]


Step = tuple[Role, Any]
"""what a decision yields: the role to decide and its observation"""
Decision = Generator[Step, Any, None]
"""a decision in progress (:meth:`Orchestrator.decision`): send it each role's decision"""
_R = TypeVar("_R")


def run(decision: Decision, policies: Mapping[Role, Policy]) -> None:
    """Drive ``decision`` to its end, each role answered by its policy."""
    try:
        role, obs = next(decision)
        while True:
            role, obs = decision.send(policies[role].decide(obs))
    except StopIteration:
        pass


def lockstep(decisions: Sequence[Generator[Step, Any, _R]], policies: Mapping[Role, Policy]) -> list[_R]:
    """Drive ``decisions`` together to their ends, what each returns in order: at each step every decision still
    running has yielded a ``(role, observation)``, and each role present is asked once for all of its observations
    (``decide_many``, roles in :data:`ROLES` order). A decision's answers are what :func:`run` would give it (a
    policy is deterministic given its observation), so this is for decisions that do not depend on each other."""
    results: list[Any] = [None] * len(decisions)
    steps: dict[int, Step] = {}
    for k, decision in enumerate(decisions):
        try:
            steps[k] = next(decision)
        except StopIteration as stop:
            results[k] = stop.value
    while steps:
        asked: dict[Role, list[int]] = {}
        for k, (role, _) in steps.items():
            asked.setdefault(role, []).append(k)
        answers: dict[int, Any] = {}
        for role in ROLES:
            ks = asked.get(role)
            if ks:
                answers.update(zip(ks, decide_many(policies[role], [steps[k][1] for k in ks]), strict=True))
        running: dict[int, Step] = {}
        for k in steps:  # (ascending: the order they were first stepped in)
            try:
                running[k] = decisions[k].send(answers[k])
            except StopIteration as stop:
                results[k] = stop.value
        steps = running
    return results


def worst_case_cost(fees: FeeSchedule, market: str, side: Literal["bid", "ask"], price: int, count: int) -> int:
    """What the cash pool reserves for a new order: every count unit at its worst outlay plus the allowance."""
    return count * fees.worst_unit_outlay(market, leg_price(side, price)) + ALLOWANCE


class OrchestratorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the orchestrator runs: part of its snapshot, so a restored one runs the same way."""

    markets: tuple[str, ...]
    prefix: str
    """client order id prefix, unique per session"""
    decide_every_ms: int = 1_000
    """least event time between two book-driven decisions of one market"""
    entry_cutoff_s: int = 120
    """no new entries this close to a market's close"""
    tick: int = 100
    """price grid of our orders (whole cents: valid on every Kalshi market)"""
    timer: str = "decide"
    """name of the TimerFired that makes every market's decision due"""
    exit_retry_ms: int = 5_000
    """after a close that did not complete (an IOC that found too little), wait this long to try again"""
    features: FeatureSpec = FeatureSpec()
    precision: int = CENT
    """the member's balance precision, as the cash pool's"""

    def __post_init__(self) -> None:
        if len(set(self.markets)) != len(self.markets):
            raise ValueError(f"orchestrator: markets must be distinct, got {self.markets}")
        if min(self.decide_every_ms, self.entry_cutoff_s, self.exit_retry_ms) < 0 or not 1 <= self.tick < PRICE_MAX:
            raise ValueError(f"orchestrator: decide_every_ms, entry_cutoff_s and exit_retry_ms must be >= 0 and tick "
                             f"in [1, {PRICE_MAX}), got {self.decide_every_ms}, {self.entry_cutoff_s}, "
                             f"{self.exit_retry_ms}, {self.tick}")


class OwnOrder(msgspec.Struct, gc=False):
    """One of our working orders, as the log tells it."""

    client_order_id: str
    market: str
    purpose: Literal["entry", "exit"]
    side: Literal["bid", "ask"]
    price: int
    count: int
    placed_ns: int
    filled: int = 0
    order_id: str | None = None
    cancel_requested: bool = False
    trades: tuple[str, ...] = ()


class MarketState(msgspec.Struct, gc=False):
    """What the orchestrator keeps per market beyond its book and features."""

    market: str
    closed: bool = False
    final: bool = False
    close_ts_ms: int | None = None
    last_decided_ns: int | None = None
    opened_ns: int | None = None
    """event time the current position was opened"""
    exit_retry_ns: int | None = None
    """no exit decision before this event time (after a close that did not complete)"""
    last_outcome: tuple[str, ...] = ()
    """``role:action`` of the previous decision, for logging no-op decisions only when they change"""


class OrchestratorSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    config: OrchestratorConfig
    books: tuple[BookState, ...]  # config.markets order, as are the next two
    trackers: tuple[TrackerState, ...]
    markets: tuple[MarketState, ...]
    cash: CashSnapshot
    positions: PositionsSnapshot
    orders: tuple[OwnOrder, ...]  # in the order they were logged
    pending: tuple[tuple[str, str, int], ...]  # (client order id, market, worst-case cost), in emission order
    models: tuple[ModelLoaded, ...]  # the last one per role, in role order
    halted: bool  # (every field above is required, so always encoded, as when the struct kept defaults)
    market_info: tuple[MarketInfo, ...] = ()  # the latest per market, by market: omitted when empty (old bytes)


class _Decision:
    """One decision being made for one market: its PolicyDecided events, then its order events.

    The ``PolicyDecided`` events are built only if the decision is logged (:meth:`decided`): most are not.
    """

    __slots__ = ("intents", "logged", "market", "orders", "outcome", "seq")

    def __init__(self, seq: int, market: str, intents: int) -> None:
        self.seq, self.market = seq, market
        self.intents = intents  # intents emitted at this seq so far: numbers the next client order id
        self.logged: list[tuple[Role, str, str, float | None, int | None, int | None]] = []
        self.outcome: tuple[str, ...] = ()  # ``role:action`` of each role that ran
        self.orders: list[Event] = []

    def log(self, role: Role, action: str, version: str, *, score: float | None = None, size: int | None = None,
            price: int | None = None) -> None:
        self.logged.append((role, action, version, score, size, price))
        self.outcome += (f"{role}:{action}",)

    def decided(self) -> list[PolicyDecided]:
        seq, market = self.seq, self.market
        return [PolicyDecided(cause_seq=seq, role=role, market=market, action=action, version=version, score=score,
                              size=size, price=price) for role, action, version, score, size, price in self.logged]


class Orchestrator:
    """Signal, sizing, entry and exit for every market of a session, folded over the log (module docstring)."""

    def __init__(self, markets: Sequence[str], policies: Mapping[Role, Policy], *, fees: FeeSchedule, prefix: str,
                 decide_every_ms: int = 1_000, entry_cutoff_s: int = 120, tick: int = 100, timer: str = "decide",
                 exit_retry_ms: int = 5_000, features: FeatureSpec | None = None, precision: int = CENT,
                 loader: Loader | None = None) -> None:
        self.config = OrchestratorConfig(markets=tuple(markets), prefix=prefix, decide_every_ms=decide_every_ms,
                                         entry_cutoff_s=entry_cutoff_s, tick=tick, timer=timer,
                                         exit_retry_ms=exit_retry_ms, features=features or FeatureSpec(),
                                         precision=precision)
        if sorted(policies) != sorted(ROLES) or any(policies[r].role != r for r in ROLES):
            raise ValueError(f"orchestrator: needs one policy per role {ROLES}, each of its role; got "
                             f"{ {r: getattr(p, 'role', None) for r, p in policies.items()} }")
        self.policies: dict[Role, Policy] = {r: policies[r] for r in ROLES}
        self.fees = MarketFees(fees)  # the configured schedule, and the fee terms the log's MarketInfo name
        self.loader = loader
        self._mine = prefix + "-"
        self._every_ns = decide_every_ms * _MS
        self._books = {m: OrderBook(m) for m in self.config.markets}
        self._trackers = {m: FeatureTracker(self._books[m], self.config.features) for m in self.config.markets}
        self._markets = {m: MarketState(m) for m in self.config.markets}
        self._cash = CashPool(self.fees, precision=precision)
        self._positions = Positions()
        self._held: dict[str, int] = {}  # market -> position, as self._positions says (a cache: see position())
        self._orders: dict[str, OwnOrder] = {}  # working, in the order they were logged
        self._pending: dict[str, tuple[str, int]] = {}  # emitted, not yet logged: cid -> (market, cost)
        # indexes of the two above, so that a decision need not scan them: per market, how many of the orders
        # and of the pending intents are its; the pending intents' total cost
        self._orders_in: dict[str, int] = {}
        self._pending_in: dict[str, int] = {}
        self._pending_cost = 0
        self._halted = False
        self._models: dict[Role, ModelLoaded] = {}
        self.lockstep: bool | None = None
        """a timer's round of decisions driven in lockstep (True: :meth:`_round`, each role asked once per step for
        every market), one market after the other (False), or (None) in lockstep when a policy answers several
        observations itself (has ``decide_many``: a policy actor's proxy), since for policies in this process it only
        costs time: the same events every way (a test compares them)"""

    # -- reads ----------------------------------------------------------------------------------
    @property
    def free_cash(self) -> int:
        """Cash available to a new order: the pool's available cash less what pending intents will reserve."""
        return self._cash.available - self._pending_cost

    def position(self, market: str) -> int:
        held = self._held.get(market)
        if held is None:  # cached until the positions fold next changes (``_positions_handle``)
            held = self._held[market] = self._positions.get(market).position
        return held

    def _positions_handle(self, seq: int, ts_ns: int, event: OrderFilled | MarketLifecycle) -> None:
        self._positions.handle(seq, ts_ns, event)
        self._held.pop(event.market, None)

    def flat(self, market: str) -> bool:
        """No position, no working order and no intent on its way to the log in ``market``."""
        return not (self.position(market) or self._orders_in.get(market) or self._pending_in.get(market))

    def working(self, market: str) -> list[OwnOrder]:
        """Our working orders in ``market``, in the order they were logged."""
        return [o for o in self._orders.values() if o.market == market] if self._orders_in.get(market) else []

    # -- the two indexed collections: every change goes through these ----------------------------
    def _add_order(self, order: OwnOrder) -> None:
        if order.client_order_id not in self._orders:
            self._orders_in[order.market] = self._orders_in.get(order.market, 0) + 1
        self._orders[order.client_order_id] = order

    def _drop_order(self, client_order_id: str) -> OwnOrder | None:
        order = self._orders.pop(client_order_id, None)
        if order is not None:
            self._orders_in[order.market] -= 1
        return order

    def _add_pending(self, client_order_id: str, market: str, cost: int) -> None:
        replaced = self._pending.get(client_order_id)
        if replaced is not None:
            self._unindex_pending(*replaced)
        self._pending[client_order_id] = (market, cost)
        self._pending_in[market] = self._pending_in.get(market, 0) + 1
        self._pending_cost += cost

    def _drop_pending(self, client_order_id: str) -> None:
        pending = self._pending.pop(client_order_id, None)
        if pending is not None:
            self._unindex_pending(*pending)

    def _unindex_pending(self, market: str, cost: int) -> None:
        self._pending_in[market] -= 1
        self._pending_cost -= cost

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Fold one event; the decisions it makes due are made here with ``self.policies``."""
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:  # the hot path: most book updates make nothing due
            market = self._book_updated(seq, ts_ns, event)  # type: ignore[arg-type]
            if market is None:
                return NOTHING
            out: list[Event] = []
            run(self.decision(seq, ts_ns, market, out), self.policies)
            return out or NOTHING
        out = []
        due = self.fold(seq, ts_ns, event, out)
        if len(due) > 1 and (self._batches() if self.lockstep is None else self.lockstep):
            self._round(seq, ts_ns, due, out)
        else:
            for market in due:
                run(self.decision(seq, ts_ns, market, out), self.policies)
        return out or NOTHING

    def _batches(self) -> bool:
        return any(getattr(p, "decide_many", None) is not None for p in self.policies.values())

    def _round(self, seq: int, now: int, markets: Sequence[str], out: list[Event]) -> None:
        """The decisions of several markets due at once (a timer), exactly as made one by one in ``markets`` order,
        but each role asked once per step for all the markets at that step (:func:`lockstep`).

        One by one, a market decides on the state the markets before it left, and the only part of it one market's
        decision changes for another is what an intent does: its worst-case cost is held out of the free cash (in
        every observation, and what the cash check compares with), and it numbers the next client order id. So the
        markets are decided in waves: a wave runs the decisions of every market not yet decided, from the state as
        it is, and commits them in order up to the first one that emitted an intent; the markets after that one are
        decided again by the next wave, from the state it left (their first answers are dropped: a policy is
        deterministic given its observation and keeps no state, so asking again costs only time). A round costs
        each role one call per wave: one, unless orders go out in several markets of it."""
        start = 0
        while start < len(markets):
            made = lockstep([self._deciding(seq, now, m, out) for m in markets[start:]], self.policies)
            for decision in made:
                start += 1
                if decision is not None:
                    self._commit(decision, out)
                    if any(type(e) is OrderIntent for e in decision.orders):
                        break

    def fold(self, seq: int, ts_ns: int, event: Event, out: list[Event]) -> Sequence[str]:
        """Fold one event and return the markets whose decision it makes due, in the configured order; events the
        fold itself derives (a ``halt``'s cancels) are appended to ``out``. ``handle`` is ``fold``, then each
        due market's :meth:`decision` run with ``self.policies``; a training environment runs them itself."""
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            market = self._book_updated(seq, ts_ns, event)  # type: ignore[arg-type]
            return () if market is None else (market,)
        if kind is PublicTrade:  # the next most frequent (not a cash event)
            tracker = self._trackers.get(event.market)  # type: ignore[union-attr]
            if tracker is not None:
                tracker.handle(seq, ts_ns, event)
            return ()
        if isinstance(event, _CASH_EVENTS):
            self._cash.handle(seq, ts_ns, event)
        if kind is OrderIntent:
            self._placed(ts_ns, event)  # type: ignore[arg-type]
        elif kind is OrderFilled:
            self._filled(seq, ts_ns, event)  # type: ignore[arg-type]
        elif kind is OrderAccepted:
            order = self._orders.get(event.client_order_id)  # type: ignore[union-attr]
            if order is not None:
                order.order_id = event.order_id  # type: ignore[union-attr]
        elif kind in _DONE:
            self._done(ts_ns, event.client_order_id)  # type: ignore[union-attr]
        elif kind is CancelRequested:
            order = self._orders.get(event.client_order_id)  # type: ignore[union-attr]
            if order is not None:
                order.cancel_requested = True
        elif kind is MarketLifecycle:
            self._lifecycle(seq, ts_ns, event)  # type: ignore[arg-type]
        elif kind is SeqGapDetected:
            for market in event.markets:  # type: ignore[union-attr]
                if market in self._books:
                    self._books[market].handle(seq, ts_ns, event)
        elif kind is ModelLoaded:
            self._load(event)  # type: ignore[arg-type]
        elif kind is MarketInfo:
            self.fees.learn(event)  # type: ignore[arg-type]
            state = self._markets.get(event.market)  # type: ignore[union-attr]
            if state is not None and event.close_ts_ms is not None:  # type: ignore[union-attr]
                state.close_ts_ms = event.close_ts_ms  # type: ignore[union-attr]
        elif kind is OperatorCommand and event.command == HALT:  # type: ignore[union-attr]
            out.extend(self._halt(seq))
        elif kind is TimerFired and event.name == self.config.timer:  # type: ignore[union-attr]
            return [m for m in self.config.markets if self._can_decide(m)]
        return ()

    def _book_updated(self, seq: int, ts_ns: int, event: BookDelta | BookSnapshot) -> str | None:
        """Fold a book update; its market if that makes the market's decision due (the hot path)."""
        market = event.market
        book = self._books.get(market)
        if book is None:
            return None
        tracker = self._trackers[market]
        if ts_ns > tracker.next_sample_ns:  # a regime grid point passed: sampled before the book moves on
            tracker.advance(ts_ns)
        book.handle(seq, ts_ns, event)  # a BookInconsistent it returns is the book actor's to log
        if book.last_update_seq != seq:  # not applied (stale, or inconsistent): the tracker ignores it too
            return None
        tracker.book_updated(ts_ns)
        state = self._markets[market]
        last = state.last_decided_ns
        if last is not None and ts_ns - last < self._every_ns:
            return None
        return None if self._halted or state.closed or book.stale else market

    def _placed(self, ts_ns: int, intent: OrderIntent) -> None:
        self._drop_pending(intent.client_order_id)
        if intent.client_order_id.startswith(self._mine):
            self._add_order(OwnOrder(intent.client_order_id, intent.market, "exit" if intent.reduce_only else "entry",
                                     intent.side, intent.price, intent.count, ts_ns))

    def _filled(self, seq: int, ts_ns: int, fill: OrderFilled) -> None:
        before = self.position(fill.market)
        self._positions_handle(seq, ts_ns, fill)
        after = self.position(fill.market)
        state = self._markets.get(fill.market)
        if state is not None and before != after:
            state.opened_ns = None if not after else ts_ns if before * after <= 0 else state.opened_ns
        order = self._orders.get(fill.client_order_id)
        if order is None or fill.trade_id in order.trades:
            return
        order.filled += fill.count
        order.trades = (*order.trades, fill.trade_id)
        if order.filled >= order.count:
            self._drop_order(fill.client_order_id)

    def _done(self, ts_ns: int, client_order_id: str) -> None:
        order = self._drop_order(client_order_id)
        if order is not None and order.purpose == "exit":  # it ended short of closing the position: back off
            self._markets[order.market].exit_retry_ns = ts_ns + self.config.exit_retry_ms * _MS

    def _lifecycle(self, seq: int, ts_ns: int, event: MarketLifecycle) -> None:
        self._positions_handle(seq, ts_ns, event)
        state = self._markets.get(event.market)
        if state is None:
            return
        self._trackers[event.market].handle(seq, ts_ns, event)
        if event.close_ts_ms is not None:
            state.close_ts_ms = event.close_ts_ms
        if event.kind in _CLOSING:
            state.closed = True
            state.final = state.final or event.kind in _FINAL
        elif event.kind == "activated" and not state.final:
            state.closed = False
        if not self.position(event.market):
            state.opened_ns = None

    def _load(self, event: ModelLoaded) -> None:
        if self.loader is None:
            return
        policy = self.loader(event)
        if policy.role != event.role:
            raise ValueError(f"orchestrator: the loader gave a {policy.role} policy for a {event.role} model")
        self.policies[event.role] = policy
        self._models[event.role] = event

    # -- deciding -------------------------------------------------------------------------------
    def _halt(self, seq: int) -> Sequence[Event]:
        self._halted = True
        out: list[Event] = []
        for order in self._orders.values():
            if not order.cancel_requested:
                order.cancel_requested = True
                out.append(CancelRequested(cause_seq=seq, client_order_id=order.client_order_id,
                                           order_id=order.order_id))
        return out or NOTHING

    @property
    def halted(self) -> bool:
        """True once an operator ``halt`` was logged: no decision is made after it."""
        return self._halted

    def _can_decide(self, market: str) -> bool:
        state = self._markets[market]
        return not (self._halted or state.closed or self._books[market].stale)

    def decision(self, seq: int, now: int, market: str, out: list[Event]) -> Decision:
        """The decision of ``market`` at ``seq`` (event time ``now``), due by :meth:`fold`: a generator that yields
        ``(role, observation)`` for each role it runs and is sent that role's decision back; what it derives is
        appended to ``out``. Driven by :func:`run` with policies, or step by step by a training environment:
        the same code either way."""
        made = yield from self._deciding(seq, now, market, out)
        if made is not None:
            self._commit(made, out)

    def _deciding(self, seq: int, now: int, market: str, out: list[Event]) -> Generator[Step, Any, _Decision | None]:
        """:meth:`decision` up to its last answer: what it made (None: it ran no role), nothing committed yet. Its
        reads of the orchestrator's state beyond ``market``'s own are the free cash and the intents in ``out``,
        which only a committed intent changes (:meth:`_round`)."""
        state = self._markets[market]
        state.last_decided_ns = now
        if self._pending_in.get(market):
            return None
        orders = self.working(market)
        if orders and any(o.purpose == "exit" for o in orders):
            return None
        decision = _Decision(seq, market, sum(1 for e in out if type(e) is OrderIntent) if out else 0)
        if self.position(market) or orders:
            if state.exit_retry_ns is not None and now < state.exit_retry_ns:
                return None
            yield from self._exit(decision, now, orders)
        elif state.close_ts_ms is None or state.close_ts_ms * _MS - now > self.config.entry_cutoff_s * _NS:
            yield from self._enter(decision, now)
        else:
            return None
        return decision

    def _commit(self, decision: _Decision, out: list[Event]) -> None:
        """Log what a decision made (if it placed or canceled an order, or its outcome changed) and hold its
        intents' worst-case cost out of the free cash."""
        market = decision.market
        state = self._markets[market]
        outcome = decision.outcome
        if decision.orders or outcome != state.last_outcome:
            out.extend(decision.decided())
            out.extend(decision.orders)
        state.last_outcome = outcome
        for event in decision.orders:
            if type(event) is OrderIntent:
                self._add_pending(event.client_order_id, market, self._cost(event.side, event.price, event.count, market))
            elif type(event) is CancelRequested:
                self._orders[event.client_order_id].cancel_requested = True

    def _view(self, market: str, now: int, position: int, free: int,
              ) -> tuple[MarketView, tuple[int | None, int | None, int, int]]:
        """The market's view, and what ``FeatureTracker.observe`` reads from the book (``top``): read once for both."""
        bid, ask, bid_size, ask_size, bid_depth, ask_depth = self._books[market].top(self.config.features.levels)
        close = self._markets[market].close_ts_ms
        view = MarketView(market=market, now_ns=now, best_bid=bid, best_ask=ask, bid_size=bid_size, ask_size=ask_size,
                          bid_depth=bid_depth, ask_depth=ask_depth, position=position, free_cash=free,
                          close_ns=None if close is None else close * _MS,
                          history=self._trackers[market].history(now))
        return view, (bid, ask, bid_depth, ask_depth)

    def _enter(self, d: _Decision, now: int) -> Decision:
        market, free = d.market, self.free_cash
        view, top = self._view(market, now, 0, free)
        features = self._trackers[market].observe(0, free, now, top=top)
        signal: SignalDecision = yield "signal", SignalObservation(view=view, features=features)
        d.log("signal", signal.direction, self.policies["signal"].version, score=signal.confidence)
        if signal.direction == "hold":
            return
        side: Literal["bid", "ask"] = "bid" if signal.direction == "buy_yes" else "ask"
        take, join = (view.best_ask, view.best_bid) if side == "bid" else (view.best_bid, view.best_ask)
        if take is None:
            d.log("sizing", "skip_book", self.policies["sizing"].version)
            return
        unit = self.fees.worst_unit_outlay(market, leg_price(side, take))
        sizing: SizingDecision = yield "sizing", SizingObservation(view=view, features=features, signal=signal,
                                                                   unit_cost=unit)
        count = sizing.count
        d.log("sizing", "size" if count else "skip", self.policies["sizing"].version, size=count)
        if not count:
            return
        entry: EntryDecision = yield "entry", EntryObservation(view=view, features=features, signal=signal, count=count)
        action = entry.action
        entry_version = self.policies["entry"].version
        if action == "skip":
            d.log("entry", "skip", entry_version)
            return
        price = join if action == "passive" else take
        refusal = self._refusal(market, side, price, count, free)
        d.log("entry", refusal or action, entry_version, score=signal.confidence, size=count, price=price)
        if not refusal:
            d.orders.append(self._intent(d, market, side, price, count, passive=action == "passive"))  # type: ignore[arg-type]

    def _exit(self, d: _Decision, now: int, orders: list[OwnOrder]) -> Decision:
        market, free = d.market, self.free_cash
        position, cost_basis, _ = self._positions.marks(market)  # (no copy of the lots)
        entry = orders[-1] if orders else None
        view, top = self._view(market, now, position, free)
        opened = self._markets[market].opened_ns
        obs = ExitObservation(
            view=view, features=self._trackers[market].observe(position, free, now, top=top),
            cost_basis=cost_basis,
            held_ns=0 if opened is None else now - opened,
            entry_order=None if entry is None else WorkingOrder(
                client_order_id=entry.client_order_id, side=entry.side, price=entry.price, count=entry.count,
                filled=entry.filled, age_ns=now - entry.placed_ns))
        decision: ExitDecision = yield "exit", obs
        version = self.policies["exit"].version
        if decision.action == "hold":
            d.log("exit", decision.label, version)
            return
        cancels = [CancelRequested(cause_seq=d.seq, client_order_id=o.client_order_id, order_id=o.order_id)
                   for o in orders if not o.cancel_requested]
        if decision.action == "cancel" or not position:
            d.log("exit", decision.label, version)
            d.orders.extend(cancels)
            return
        side: Literal["bid", "ask"] = "ask" if position > 0 else "bid"
        price, count = obs.exit_price, abs(position)
        refusal = self._refusal(market, side, price, count, free)
        d.log("exit", refusal or decision.label, version, size=count, price=price)
        d.orders.extend(cancels)
        if not refusal:
            d.orders.append(self._intent(d, market, side, price, count, passive=False, reduce_only=True))  # type: ignore[arg-type]

    def _refusal(self, market: str, side: Literal["bid", "ask"], price: int | None, count: int, free: int) -> str:
        """Why an order at ``price`` cannot go out ('' if it can): no touch, off the grid, or short of cash."""
        if price is None:
            return "skip_book"
        info = self.fees.infos.get(market)
        if not 0 < price < PRICE_MAX or (price % self.config.tick if info is None else not on_grid(info, price)):
            return "skip_price"
        if count <= 0 or self._cost(side, price, count, market) > free:
            return "skip_cash"
        return ""

    def _cost(self, side: Literal["bid", "ask"], price: int, count: int, market: str) -> int:
        return worst_case_cost(self.fees, market, side, price, count)

    def _intent(self, d: _Decision, market: str, side: Literal["bid", "ask"], price: int, count: int, *, passive: bool,
                reduce_only: bool = False) -> OrderIntent:
        d.intents += 1
        return OrderIntent(cause_seq=d.seq, client_order_id=f"{self.config.prefix}-{d.seq}-{d.intents}", market=market,
                           side=side, price=price, count=count, tif="gtc" if passive else "ioc", post_only=passive,
                           reduce_only=reduce_only)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> OrchestratorSnapshot:
        markets = self.config.markets
        return OrchestratorSnapshot(
            config=self.config,
            books=tuple(self._books[m].snapshot() for m in markets),
            trackers=tuple(self._trackers[m].snapshot() for m in markets),
            markets=tuple(msgspec.structs.replace(self._markets[m]) for m in markets),
            cash=self._cash.snapshot(),
            positions=self._positions.snapshot(),
            orders=tuple(msgspec.structs.replace(o) for o in self._orders.values()),
            pending=tuple((cid, market, cost) for cid, (market, cost) in self._pending.items()),
            models=tuple(self._models[r] for r in ROLES if r in self._models),
            halted=self._halted,
            market_info=self.fees.learned(),
        )

    @classmethod
    def restore(cls, snap: OrchestratorSnapshot, policies: Mapping[Role, Policy], *, fees: FeeSchedule,
                loader: Loader | None = None) -> Orchestrator:
        """An orchestrator equal to the one whose ``snapshot()`` was ``snap``. Policies, fees and the loader are
        configuration, as at construction; the models the snapshot had loaded are loaded again through ``loader``."""
        config = snap.config
        machine = cls(policies=policies, fees=fees, loader=loader,
                      **{f: getattr(config, f) for f in config.__struct_fields__})
        machine._books = {b.market: OrderBook.restore(b) for b in snap.books}
        machine._trackers = {t.market: FeatureTracker.restore(t, machine._books[t.market]) for t in snap.trackers}
        machine._markets = {m.market: msgspec.structs.replace(m) for m in snap.markets}
        for info in snap.market_info:
            machine.fees.learn(info)
        machine._cash = CashPool.restore(snap.cash, machine.fees, precision=config.precision)
        machine._positions = Positions.restore(snap.positions)
        machine._held = {}
        for order in snap.orders:
            machine._add_order(msgspec.structs.replace(order))
        for cid, market, cost in snap.pending:
            machine._add_pending(cid, market, cost)
        machine._halted = snap.halted
        for event in snap.models:
            machine._load(event)
        return machine
