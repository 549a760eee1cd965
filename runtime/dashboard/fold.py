"""The dashboard's fold of one session's log: what the three channels show, as of any seq.

:class:`SessionView` folds records in seq order through the session's own machines — one
:class:`~actors.book.OrderBook` per market, the :class:`~actors.cash.CashPool`, the
:class:`~actors.positions.Positions` and the :class:`~actors.orders.Orders` lifecycle, exactly as
:class:`runtime.paper.Watch` folds them for the terminal status — and keeps beside them what a person watching
wants and the machines do not: the last public trades per market, the venue's health, the fills, every order
with its fate and its decision trace (the ``PolicyDecided`` events of the input that caused it, with the model
versions), the models loaded, and PnL and cash over time.

Its three channel states (:meth:`market`, :meth:`trader`, :meth:`trades`) are plain JSON-ready dicts in the
log's exact integer units (prices in 1/10,000 dollar, counts in 1/100 contract, money in micro-dollars), and the
trader channel's figures are, by construction, those ``tape replay run --to SEQ`` prints: cash, reserved,
per market position, cost basis, realized PnL, fees and PnL at the mid (``(position x (bid + ask) - 2 x cost)
// 2 + realized``), the open orders.

The fold also records what changed since the hub last asked (:meth:`take_changes`): the markets touched,
whether the trader state moved, the new fills, decisions and models and the orders whose fate changed. The hub
turns that into deltas; a view copied for a scrubbing client simply never asks.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actors.book import OrderBook
from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.orders import TRANSITIONS, Orders
from actors.positions import Positions
from runtime.events import (
    BookDelta,
    BookInconsistent,
    BookResynced,
    BookSnapshot,
    CashDeposited,
    FillDuplicated,
    MalformedInput,
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
    Record,
    SeqGapDetected,
    SessionCrashed,
    SessionEnded,
    SessionStarted,
    VenueError,
    event_type,
)
from runtime.topology import PolicyProvider, SpecMissingError, spec_from_log, topology

__all__ = ["SessionView"]

TOP_LEVELS = 5  # book levels per side in the market channel
TRADES_KEPT = 10  # public trades kept per market
FILLS_KEPT = 500  # fills in the trades channel (the count is exact whatever this is)
ORDERS_KEPT = 500  # orders (with their traces) in the trades channel
DECISIONS_KEPT = 200  # the latest policy decisions, whatever they led to
HISTORY_KEPT = 2_000  # points of cash and PnL over time (halved, every other point, when full)
HISTORY_EVERY_NS = 1_000_000_000  # at most one point per second of event time (and one per fill)
RATE_WINDOW_NS = 5_000_000_000  # the event rate is over this much event time
CONNECTED_NS = 5_000_000_000  # market data within this much event time: the feed is taken as connected
_INPUTS_KEPT = 20_000  # recent inputs remembered (an intent's cause is always recent)
_TRACES_KEPT = 5_000  # recent (cause, market) decision traces waiting for their order

_CASH_TYPES = (OrderIntent, OrderFilled, OrderCanceled, OrderExpired, OrderRejected, MarketLifecycle, CashDeposited,
               SessionStarted)
_ORDER_TYPES = (OrderIntent, OrderFilled, OrderAccepted, OrderRejected, OrderCanceled, OrderExpired)
_CASH = frozenset(_CASH_TYPES)


def _no_policy(*_: object) -> Any:
    raise RuntimeError("the dashboard builds no orchestrator: it runs no policy")


_NO_POLICIES = PolicyProvider(named=_no_policy, load=_no_policy)  # only the execution node is built
_ORDERS = frozenset(_ORDER_TYPES)


class SessionView:
    """One session's state as its log tells it through ``through`` (see the module docstring)."""

    def __init__(self) -> None:
        self.session: dict[str, Any] = {}  # from SessionStarted: id, mode, venue, seed, markets, starting cash
        self.markets: list[str] = []
        self.books: dict[str, OrderBook] = {}
        self.cash = CashPool(KalshiFees())
        self.positions = Positions()
        self.orders = Orders()
        self.execution: Any = None  # the session's execution machine (the paper matcher), once its spec is read
        self._execution_types: frozenset[type] = frozenset()
        self._head: list[Record] = []  # the first two records, until the spec is read from them
        self.through = 0  # the last seq folded
        self.through_ts = 0  # its ts_ns
        self.records = self.inputs = 0
        self.fills = self.fees = 0
        self.status = "open"  # "ended: <reason>", "crashed: <error>" once the log says so
        self.halted_seq: int | None = None
        self._trades: dict[str, deque[list[Any]]] = {}
        self._last_ns: dict[str, int] = {}  # market -> ts of its last book or trade event
        self._updates: dict[str, int] = {}  # market -> book and trade events folded
        self.health: dict[str, Any] = {"gaps": 0, "resyncs": 0, "inconsistent": 0, "malformed": 0, "venue_errors": 0,
                                       "problems": []}  # the last few problems: [seq, ts_ns, kind, text]
        self._last_market_ns = 0
        self._rate: deque[tuple[int, int]] = deque()  # (ts_ns, seq) per fold call, over the rate window
        self._fill_rows: deque[dict[str, Any]] = deque(maxlen=FILLS_KEPT)
        self._order_rows: dict[str, dict[str, Any]] = {}  # client order id -> its row, oldest first
        self._open: dict[str, None] = {}  # client order ids not yet done, in order of intent
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)
        self._traces: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._inputs: dict[int, tuple[int, str, str | None, int | None, int | None]] = {}  # seq -> (ts, type, market, bid, ask)
        self.models: list[dict[str, Any]] = []
        self.history: list[list[int]] = []  # [ts_ns, seq, cash, available, pnl (net of fees, at the mid)]
        self._history_ns = 0
        self._traded: set[str] = set()  # markets with a fill or a settlement: the ones PnL is summed over
        self._reset_changes()

    # -- the fold ---------------------------------------------------------------------------------
    def fold(self, records: list[Record]) -> None:
        """Fold a batch of records (consecutive, in seq order)."""
        books, inputs = self.books, self._inputs
        execution, routed = self.execution, self._execution_types
        for r in records:
            seq, ts, event = r.seq, r.ts_ns, r.event
            kind = type(event)
            if kind in routed:
                execution.handle(seq, ts, event)  # what it derives is in the log already
            if kind is BookDelta or kind is BookSnapshot:
                market = event.market  # type: ignore[union-attr]
                book = books.get(market) or self._add_market(market)
                book.handle(seq, ts, event)
                self._touch(market, ts)
                inputs[seq] = (ts, "book_delta" if kind is BookDelta else "book_snapshot", market, book.best_bid(),
                               book.best_ask())
                continue
            if kind is PublicTrade:
                market = event.market  # type: ignore[union-attr]
                if market not in books:
                    self._add_market(market)
                self._trades[market].append([seq, ts, event.yes_price, event.count, event.taker_side])  # type: ignore[union-attr]
                self._touch(market, ts)
                inputs[seq] = (ts, "public_trade", market, books[market].best_bid(), books[market].best_ask())
                continue
            if getattr(event, "cause_seq", None) is None:
                inputs[seq] = (ts, event_type(event), None, None, None)
            if kind in _CASH:
                self.cash.handle(seq, ts, event)
                self._trader_changed = True
            if kind in _ORDERS:
                self.orders.handle(seq, ts, event)
                self._trader_changed = True
            if kind is OrderFilled:
                self._fill(seq, ts, event)  # type: ignore[arg-type]
            elif kind is OrderIntent:
                self._intent(seq, ts, event)  # type: ignore[arg-type]
            elif kind in (OrderAccepted, OrderRejected, OrderCanceled, OrderExpired):
                self._fate(event)
            elif kind is PolicyDecided:
                self._decided(seq, event)  # type: ignore[arg-type]
            elif kind is MarketLifecycle:
                self._lifecycle(seq, ts, event)  # type: ignore[arg-type]
            elif kind is SeqGapDetected:
                for market in event.markets:  # type: ignore[union-attr]
                    book = books.get(market) or self._add_market(market)
                    book.handle(seq, ts, event)
                    self._changed_markets.add(market)
                self._problem(seq, ts, "gaps", f"seq gap on subscription {event.sid}: expected {event.expected}, "  # type: ignore[union-attr]
                              f"received {event.received} ({', '.join(event.markets) or 'no market named'})")  # type: ignore[union-attr]
            elif kind is BookResynced:
                self.health["resyncs"] += 1
                self._health_changed = True
            elif kind is BookInconsistent:
                self._problem(seq, ts, "inconsistent", f"{event.market}: a {event.side} delta of {event.delta} at "  # type: ignore[union-attr]
                              f"{event.price} would leave {event.resting} resting negative")  # type: ignore[union-attr]
                self._changed_markets.add(event.market)  # type: ignore[union-attr]
            elif kind is MalformedInput:
                self._problem(seq, ts, "malformed", f"{event.source}: {event.error}")  # type: ignore[union-attr]
            elif kind is VenueError:
                self._problem(seq, ts, "venue_errors", f"{event.where}: {event.message}")  # type: ignore[union-attr]
            elif kind is ModelLoaded:
                row = {"seq": seq, "ts_ns": ts, "role": event.role, "model_id": event.model_id,  # type: ignore[union-attr]
                       "version_hash": event.version_hash, "source": event.source}  # type: ignore[union-attr]
                self.models.append(row)
                self._new_models.append(row)
            elif kind is SessionStarted:
                self._started(event)  # type: ignore[arg-type]
                if seq == 1:
                    self._head = [r]
            elif kind is OperatorCommand and seq == 2:
                self._spec([*self._head, r])
                execution, routed = self.execution, self._execution_types
            elif kind is OperatorCommand and event.command == "halt":  # type: ignore[union-attr]
                self.halted_seq = seq
                self._trader_changed = True
            elif kind is SessionEnded:
                self.status = f"ended: {event.reason}"  # type: ignore[union-attr]
                self._trader_changed = True
            elif kind is SessionCrashed:
                self.status = f"crashed: {event.error}"  # type: ignore[union-attr]
                self._trader_changed = True
        if not records:
            return
        last = records[-1]
        self.records += len(records)
        self.through, self.through_ts = last.seq, last.ts_ns
        rate = self._rate
        rate.append((last.ts_ns, last.seq))
        while len(rate) > 2 and rate[1][0] <= last.ts_ns - RATE_WINDOW_NS:
            rate.popleft()
        if len(inputs) > 2 * _INPUTS_KEPT:
            for s in list(inputs)[: len(inputs) - _INPUTS_KEPT]:
                del inputs[s]
        if last.ts_ns - self._history_ns >= HISTORY_EVERY_NS:
            self._sample(last.seq, last.ts_ns)

    def _add_market(self, market: str) -> OrderBook:
        book = self.books[market] = OrderBook(market)
        self.markets.append(market)
        self._trades[market] = deque(maxlen=TRADES_KEPT)
        self._updates[market] = 0
        return book

    def _touch(self, market: str, ts: int) -> None:
        self._last_ns[market] = ts
        self._last_market_ns = ts
        self._updates[market] += 1
        self._changed_markets.add(market)

    def _started(self, event: SessionStarted) -> None:
        self.session = {"session_id": event.session_id, "mode": event.mode, "venue": event.venue, "seed": event.seed,
                        "markets": list(event.markets), "starting_cash": event.starting_cash,
                        "config_hash": event.config_hash, "code_version": event.code_version}
        for market in event.markets:
            if market not in self.books:
                self._add_market(market)

    def _spec(self, head: list[Record]) -> None:
        """The session's spec from its first two records: build its execution machine, as ``tape replay run`` does
        (the open orders it shows are that machine's). A log of market data alone has none."""
        self._head = []
        try:
            spec = spec_from_log(head)
        except SpecMissingError:
            return
        (node,) = [n for n in topology(spec, _NO_POLICIES) if n.name == "execution"]
        self.execution, self._execution_types = node.build(), node.types

    def _problem(self, seq: int, ts: int, counter: str, text: str) -> None:
        self.health[counter] += 1
        problems = self.health["problems"]
        problems.append([seq, ts, counter, text[:300]])
        del problems[:-10]
        self._health_changed = True

    def _fill(self, seq: int, ts: int, fill: OrderFilled) -> None:
        if fill.market not in self.books:
            self._add_market(fill.market)
        changed = self.positions.handle(seq, ts, fill)
        if changed and type(changed[0]) is FillDuplicated:
            return
        self.fills += 1
        self.fees += fill.fee
        self._traded.add(fill.market)
        row = {"seq": seq, "ts_ns": ts, "trade_id": fill.trade_id, "client_order_id": fill.client_order_id,
               "market": fill.market, "side": fill.side, "price": fill.price, "count": fill.count, "fee": fill.fee,
               "is_taker": fill.is_taker}
        self._fill_rows.append(row)
        self._new_fills.append(row)
        self._changed_markets.add(fill.market)
        self._trader_changed = True
        self._fate(fill)
        self._sample(seq, ts)

    def _intent(self, seq: int, ts: int, intent: OrderIntent) -> None:
        cid = intent.client_order_id
        cause = self._inputs.get(intent.cause_seq)
        book = self.books.get(intent.market)
        if cause is not None and cause[2] == intent.market:
            bid, ask = cause[3], cause[4]
        else:  # a timer (or another market's event) caused it: the book as it is now
            bid, ask = (book.best_bid(), book.best_ask()) if book is not None else (None, None)
        row = {"client_order_id": cid, "seq": seq, "ts_ns": ts, "market": intent.market, "side": intent.side,
               "price": intent.price, "count": intent.count, "tif": intent.tif, "post_only": intent.post_only,
               "reduce_only": intent.reduce_only, "cause_seq": intent.cause_seq,
               "cause": {"type": None if cause is None else cause[1], "ts_ns": None if cause is None else cause[0],
                         "best_bid": bid, "best_ask": ask},
               "trace": self._traces.pop((intent.cause_seq, intent.market), []),
               "state": "intent", "filled": 0, "order_id": None, "fate": ""}
        self._order_rows[cid] = row
        if len(self._order_rows) > ORDERS_KEPT:
            del self._order_rows[next(iter(self._order_rows))]
        self._open[cid] = None
        self._changed_orders.add(cid)

    def _fate(self, event: Any) -> None:
        """An order's fate moved (accepted, rejected, canceled, expired, filled): its row follows the machine."""
        cid = event.client_order_id
        record = self.orders.get(cid)
        row = self._order_rows.get(cid)
        if record is not None and row is not None:
            row["state"], row["filled"], row["order_id"] = record.state, record.filled, record.order_id
            kind = type(event)
            if kind is OrderRejected:
                row["fate"] = f"rejected: {event.reason}" + (f" ({event.detail})" if event.detail else "")
            elif kind is OrderCanceled:
                row["fate"] = f"canceled: {event.reason}"
            elif kind is OrderExpired:
                row["fate"] = "expired"
            self._changed_orders.add(cid)
        if record is not None and not TRANSITIONS[record.state] and cid in self._open:
            del self._open[cid]
            self._trader_changed = True

    def _decided(self, seq: int, event: PolicyDecided) -> None:
        row = {"seq": seq, "cause_seq": event.cause_seq, "role": event.role, "market": event.market,
               "action": event.action, "version": event.version, "score": event.score, "size": event.size,
               "price": event.price}
        self._decisions.append(row)
        self._new_decisions.append(row)
        traces = self._traces
        traces.setdefault((event.cause_seq, event.market), []).append(row)
        if len(traces) > 2 * _TRACES_KEPT:
            for key in list(traces)[:_TRACES_KEPT]:
                del traces[key]

    def _lifecycle(self, seq: int, ts: int, event: MarketLifecycle) -> None:
        self.positions.handle(seq, ts, event)
        if event.kind == "settled":
            self._traded.add(event.market)
            self._trader_changed = True
            self._sample(seq, ts)
        if event.market in self.books:
            self._changed_markets.add(event.market)

    def _sample(self, seq: int, ts: int) -> None:
        history = self.history
        history.append([ts, seq, self.cash.cash, self.cash.cash - self.cash.reserved, self.pnl()])
        self._history_ns = ts
        self._new_history.append(history[-1])
        if len(history) > HISTORY_KEPT:
            del history[1::2]

    # -- figures ----------------------------------------------------------------------------------
    def pnl(self) -> int:
        """The session's PnL net of fees, open positions marked at the mid (at cost without one): what ``tape paper``
        reports (:meth:`runtime.paper.Watch.pnl`)."""
        positions, books = self.positions, self.books
        return sum(positions.value2(m, books[m].mid2() if m in books else None) for m in self._traded) // 2

    def position_row(self, market: str) -> dict[str, Any]:
        """One market as ``tape replay run`` prints it (exact units; ``pnl_at_mid`` None without a two-sided book)."""
        book = self.books[market]
        bid, ask = book.best_bid(), book.best_ask()
        p = self.positions.get(market)
        unrealized = None if bid is None or ask is None else (p.position * (bid + ask) - 2 * p.cost_basis) // 2
        return {"market": market, "best_bid": bid, "best_ask": ask, "stale": book.stale, "position": p.position,
                "cost_basis": p.cost_basis, "realized_pnl": p.realized_pnl, "fees": p.fees,
                "unrealized_pnl": unrealized, "pnl_at_mid": None if unrealized is None else unrealized + p.realized_pnl}

    def open_orders(self) -> list[dict[str, Any]]:
        """The orders still open at the venue, as ``tape replay run`` lists them: the paper matcher's (which, inside a
        round, already counts what that round derives); else the lifecycle machine's."""
        resting = getattr(self.execution, "orders", None)
        if isinstance(resting, dict):
            return [{"client_order_id": o.client_order_id, "market": o.market, "side": o.side, "price": o.price,
                     "count": o.count, "remaining": o.remaining, "live": o.live} for o in resting.values()]
        out = []
        for cid in self._open:
            o = self.orders.get(cid)
            if o is None:
                continue
            out.append({"client_order_id": cid, "market": o.market, "side": o.side, "price": o.price, "count": o.count,
                        "remaining": o.remaining, "state": o.state, "live": o.state != "intent"})
        return out

    def market_row(self, market: str) -> dict[str, Any]:
        book = self.books[market]
        return {"market": market, "bids": book.bids(TOP_LEVELS), "asks": book.asks(TOP_LEVELS),
                "best_bid": book.best_bid(), "best_ask": book.best_ask(), "stale": book.stale,
                "trades": list(self._trades[market]), "last_ns": self._last_ns.get(market),
                "updates": self._updates[market]}

    def health_state(self) -> dict[str, Any]:
        rate = self._rate
        eps = 0.0
        if len(rate) >= 2 and rate[-1][0] > rate[0][0]:
            eps = (rate[-1][1] - rate[0][1]) / ((rate[-1][0] - rate[0][0]) / 1e9)
        stale = sum(1 for b in self.books.values() if b.stale)
        connected = bool(self._last_market_ns) and self.through_ts - self._last_market_ns < CONNECTED_NS
        return {**self.health, "problems": list(self.health["problems"]), "stale_markets": stale,
                "markets": len(self.books), "connected": connected, "last_market_ns": self._last_market_ns or None,
                "event_rate": round(eps, 1), "records": self.records}

    def head(self) -> dict[str, Any]:
        return {"through": self.through, "ts_ns": self.through_ts, "status": self.status, "halted_seq": self.halted_seq}

    # -- the three channels -----------------------------------------------------------------------
    def market(self) -> dict[str, Any]:
        return {"markets": {m: self.market_row(m) for m in self.markets}, "health": self.health_state()}

    def trader_totals(self) -> dict[str, Any]:
        rows = [self.positions.get(m) for m in self._traded]
        return {"cash": self.cash.cash, "reserved": self.cash.reserved, "available": self.cash.cash - self.cash.reserved,
                "starting_cash": self.session.get("starting_cash", 0), "pnl": self.pnl(),
                "realized_pnl": sum(p.realized_pnl for p in rows), "fees": self.fees, "fills": self.fills,
                "open_orders": self.open_orders(), "status": self.status, "halted_seq": self.halted_seq}

    def trader(self) -> dict[str, Any]:
        return {**self.trader_totals(), "positions": {m: self.position_row(m) for m in self.markets},
                "history": list(self.history)}

    def trades(self) -> dict[str, Any]:
        return {"fills": list(self._fill_rows), "orders": list(self._order_rows.values()),
                "decisions": list(self._decisions), "models": list(self.models)}

    # -- what changed -----------------------------------------------------------------------------
    def _reset_changes(self) -> None:
        self._changed_markets: set[str] = set()
        self._changed_orders: set[str] = set()
        self._new_fills: list[dict[str, Any]] = []
        self._new_decisions: list[dict[str, Any]] = []
        self._new_models: list[dict[str, Any]] = []
        self._new_history: list[list[int]] = []
        self._trader_changed = False
        self._health_changed = False

    def take_changes(self) -> dict[str, Any]:
        """What changed since the last call: ``markets`` (set), ``orders`` (rows), ``fills``, ``decisions``,
        ``models``, ``history`` (lists), ``trader`` and ``health`` (bools)."""
        out = {"markets": self._changed_markets, "orders": [self._order_rows[c] for c in self._changed_orders
                                                            if c in self._order_rows],
               "fills": self._new_fills, "decisions": self._new_decisions, "models": self._new_models,
               "history": self._new_history, "trader": self._trader_changed, "health": self._health_changed}
        self._reset_changes()
        return out

    def traded(self) -> set[str]:
        """The markets PnL is summed over (a fill or a settlement seen)."""
        return set(self._traded)
