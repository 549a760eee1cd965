"""The local exchange's core: N markets of the order-flow model, and the accounts of the clients that trade
on them — pure, deterministic, and without any network (the server, :mod:`.server`, is a shell around it).

**Markets.** Market ``i`` is ``MarketFlow(f"{prefix}-{i:03d}", config, derive_seed(seed, "market", i),
start_ns, start_ns + session_s)``, exactly as in :class:`.session.SynthSession`: with no orders from
outside, the exchange's market data equals ``tape synth``'s for the same seed, event for event.

**Time** comes in as an argument, never from a clock. :meth:`Exchange.advance` runs every model action
due at or before ``now_ns`` — markets merged by time, the lower market index first at equal times, as in
the synthetic session — and each command first does the same, so an order meets the book as it stands at
its time. The clock never goes back: a command or advance with an earlier time acts at the current one.

**Output.** Everything that happens comes out as ``(ts_ns, audience, events)`` entries, in order: the
audience is :data:`PUBLIC` for market data (``BookSnapshot``, ``BookDelta``, ``PublicTrade``,
``MarketLifecycle``) or the owner key of the account whose private events they are (``OrderFilled``,
``OrderStatusReported``, ``PositionReported``). A synthetic participant's fills are not private events.
A ``BookDelta`` that an account's order caused — the levels it took from and its resting remainder when
placed, its removal when canceled or expired — carries that order's ``client_order_id`` (if it has one):
Kalshi sends it to the owner only, so the server writes it for connections whose owner :meth:`Exchange.owns`
it (two owners who chose the same id would both see it). :meth:`Exchange.ticker` gives a market's top of
book, last price and volume (for the ``ticker`` channel).

**What REST shows** (Kalshi's OpenAPI shapes need more than the events carry): :meth:`Exchange.market` has
each market's times, top of book, last price, volume (contracts traded since the open, and in the last
24 hours by the minute), open interest (the engine's: every owner's net position from its trades, the
longs summed) and the top of book and last price as they stood at the start of the market's current day
(24 hours from its open; zero on its first day); :meth:`Exchange.order_details` each order's creation and
expiry time, self-trade prevention, and its fill costs and fees as taker and as maker (the cost is what
the order's side paid per contract: the YES price for a bid, one dollar less it for an ask);
:meth:`Exchange.position_details` what was traded per market and when its position last changed;
:meth:`Exchange.portfolio` the balance, the positions marked at each market's last price, and when the
balance last changed.

**Accounts** are keyed by owner (the API key id, or ``"trust"``) and opened on first use with
``starting_balance``. An order refused for one of these reasons changes nothing and returns an
:class:`ExchangeError` (HTTP status, code, message naming the value):

==========================  ======  ===============================================================
code                        status  when
==========================  ======  ===============================================================
``unknown_market``          404     the ticker is not one of the exchange's markets
``market_closed``           400     the market has not opened yet, or has closed
``invalid_price``           400     the price is off the market's grid (``tick`` .. ``1 - tick``)
``invalid_count``           400     the count is not positive
``bad_request``             400     an unknown self-trade prevention type, an expiration in the past
``duplicate_client_order_id`` 409   the owner already used this ``client_order_id``
``reduce_only_violation``   400     a reduce-only order that would not only reduce the position
``insufficient_cash``       400     the available balance does not cover the order's reservation
``post_only_would_cross``   400     a post-only order would take
``fok_unfillable``          400     a fill-or-kill order cannot fill whole at once
``not_found``               404     cancel, amend, decrease: no such order of this owner, or it is no longer
                                    resting; an order group of another owner, or none
``order_group_triggered``   400     the order's group hit its contracts limit (or was triggered): reset it
==========================  ======  ===============================================================

**Amend and decrease** (:meth:`Exchange.amend_order`, :meth:`Exchange.decrease_order`): an amend names the
order's market and side (unchanged), a new price and a new *total* count — filled plus resting, Kalshi's
``count`` — and may rename its ``client_order_id`` (409 if taken) or move or remove its expiry. Queue
priority follows Kalshi's documented rule: only a size decrease keeps the order's place (the same price and a
smaller count, or nothing changed: an expiry-only amend, a retry); a new price or a larger count sends it to
the back of its new level, after taking what it crosses as a taker (self-trade prevention and post-only as at
placement). The account's cash pool reserves for the new terms before the engine acts (the larger of old and
new while it is in flight; ``insufficient_cash`` if short) and settles on them after. A decrease takes
``reduce_by`` off what rests, or leaves ``reduce_to`` resting (0 cancels; the count resting already is a
no-op), in place, and releases the difference. A refused amend or decrease changes nothing. Both publish the
book deltas they cause (with the order's ``client_order_id``, as every delta an account's order causes) and
the order's new state on the owner's private channel.

**Order groups** (V2 create's ``order_group_id``): a group's orders may match at most its contracts limit in
any 15 seconds (:data:`GROUP_WINDOW_NS`, exchange time); the fill that reaches it, once the command it came in
is applied, cancels every resting order of the group, and the group refuses new orders until it is reset.
It can be triggered (the same, by request), deleted (triggered, then gone), and its limit changed.

**Money** is the runtime's own ledger, so the exchange and the runtime agree to the cent: each account is
an :class:`actors.cash.CashPool` (an order reserves ``count × worst unit outlay + 1 cent``; a fill moves the
balance by Kalshi's rounding of its revenue less its trade fee, with the order's rounding accumulator; a
YES + NO pair pays $1) and an :class:`actors.positions.Positions` (signed position, cost, realized PnL,
fees). A fill's fee is the fee schedule's (default :class:`actors.fees.KalshiFees`) trade fee, rounded up to
$0.0001. The reported balance is what is available (cash less reservations), never negative. At the
close every resting order is canceled; settlement pays $1 per winning contract and zeroes positions.

**Orders** get ids derived from the seed and a counter (UUID-shaped, like each market's ``market_ids``
entry), and go through the market's
matching engine with the participants' orders — true price-time priority — and the makers learn from
their trades. Orders with an expiration are canceled when it passes (before any model action due at the
same time). Same seed and same sequence of (time, command): same everything.
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
from collections import deque
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import msgspec
from msgspec import Struct

from actors.cash import CashPool
from actors.fees import FeeSchedule, KalshiFees
from actors.positions import Positions
from runtime.events import (
    AmendRejected,
    AmendRequested,
    BookDelta,
    BookSnapshot,
    CashDeposited,
    Event,
    MarketLifecycle,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatusReported,
    PositionReported,
    PublicTrade,
    VenueOrderStatus,
)
from runtime.units import MONEY_SCALE, PRICE_MAX, format_count, format_money, format_price

from .engine import Canceled, Fill, Placed
from .flow import FlowConfig, MarketFlow
from .session import derive_seed

if TYPE_CHECKING:  # the wire package is the server's business; the core only reads an order's fields
    from ..kalshi.rest import AmendRequest, OrderRequest

__all__ = [
    "DEFAULT_BALANCE",
    "PUBLIC",
    "AccountView",
    "CommandResult",
    "Entry",
    "Exchange",
    "ExchangeError",
    "MarketInfo",
    "MarketTicker",
    "OrderDetail",
    "OrderGroupView",
    "Portfolio",
    "PositionDetail",
]

PUBLIC: Final = ""  # the audience of market data
DEFAULT_BALANCE: Final = 10_000 * MONEY_SCALE  # $10,000 in micro-dollars
_STP: Final = frozenset({"taker_at_cross", "maker"})
_MINUTE_NS: Final = 60 * 1_000_000_000
_DAY_MINUTES: Final = 24 * 60
_DAY_NS: Final = _DAY_MINUTES * _MINUTE_NS
GROUP_WINDOW_NS: Final = 15 * 1_000_000_000  # an order group's contracts limit counts the last 15 seconds

Entry: TypeAlias = tuple[int, str, list[Event]]  # (ts_ns, audience, events)
MarketStatus = Literal["initialized", "active", "closed", "determined", "settled"]
_STATUS_AFTER: Final[dict[str, MarketStatus]] = {
    "activated": "active", "deactivated": "closed", "determined": "determined", "settled": "settled"}


class ExchangeError(Struct, frozen=True):
    """A refused command: the HTTP status to answer with, a code (see the module docstring) and a message."""

    status: int
    code: str
    message: str


class CommandResult(Struct, frozen=True):
    """What one command did: the order as it stands after it (or the error), the count a cancel took off
    the book, and every entry the command caused — model actions it ran first included — in order."""

    order: OrderStatusReported | None = None
    error: ExchangeError | None = None
    canceled: int = 0
    events: list[Entry] = []


class MarketInfo(Struct, frozen=True):
    """A market as ``GET /markets`` shows it (times in ns, prices in 1/10,000 dollar, counts in 1/100
    contract; see the module docstring). ``previous_*`` are as of the start of the market's current day."""

    ticker: str
    status: MarketStatus
    tick: int
    open_ns: int
    close_ns: int
    result: str | None = None
    settlement_value: int | None = None
    yes_bid: int | None = None
    yes_ask: int | None = None
    yes_bid_size: int = 0
    yes_ask_size: int = 0
    last_price: int | None = None
    volume: int = 0
    volume_24h: int = 0
    open_interest: int = 0
    previous_yes_bid: int | None = None
    previous_yes_ask: int | None = None
    previous_price: int | None = None
    determined_ns: int | None = None
    settled_ns: int | None = None
    latest_expiration_ns: int = 0
    settle_after_s: int = 0


class MarketTicker(Struct, frozen=True):
    """A market's ``ticker``: top of book (YES leg, 1/10,000 dollar; sizes in 1/100 contract), the last
    trade's price and the volume traded since the open."""

    ticker: str
    yes_bid: int | None
    yes_ask: int | None
    yes_bid_size: int
    yes_ask_size: int
    last_price: int | None
    volume: int


class OrderDetail(Struct, frozen=True):
    """An order as ``GET /portfolio/orders`` shows it: its report, and what the report does not carry (times
    in ms; costs and fees in micro-dollars)."""

    report: OrderStatusReported
    created_ms: int
    expiration_ms: int | None
    self_trade_prevention: str
    taker_cost: int
    maker_cost: int
    taker_fees: int
    maker_fees: int
    order_group_id: str | None = None


class OrderGroupView(Struct, frozen=True):
    """An order group as ``GET /portfolio/order_groups`` shows it: its contracts limit (1/100 contract), its
    orders' ids (oldest first) and whether its limit was hit (or it was triggered) and it is not reset yet."""

    order_group_id: str
    contracts_limit: int
    orders: tuple[str, ...]
    triggered: bool


class PositionDetail(Struct, frozen=True):
    """A position as ``GET /portfolio/positions`` shows it: its report, the money traded in the market
    (micro-dollars: what each fill's side paid), the contracts traded (1/100 contract) and when it last changed."""

    report: PositionReported
    traded: int
    traded_count: int
    updated_ms: int


class Portfolio(Struct, frozen=True):
    """``GET /portfolio/balance``: the available balance and the positions marked at each market's last price
    (micro-dollars), and when the balance last changed (Unix ms)."""

    balance: int
    positions_value: int
    updated_ms: int


class AccountView(Struct, frozen=True):
    """An account's money: ``cash`` includes what resting orders reserve; ``available`` is the balance
    Kalshi reports. ``rounding_paid`` is what the balance rounding took, less rebates (kept by the venue)."""

    owner: str
    cash: int
    reserved: int
    available: int
    rounding_paid: int
    fees_paid: int


class _Order:
    """One of a client's orders, as the exchange tracks it (mutable; reported as ``OrderStatusReported``)."""

    __slots__ = ("client_order_id", "costs", "created_ms", "engine_id", "expiration_ms", "filled", "group", "index",
                 "initial", "market", "order_id", "owner", "post_only", "price", "remaining", "side", "status", "stp",
                 "updated_ms")

    def __init__(self, order_id: str, owner: str, index: int, market: str, request: OrderRequest, ts_ms: int) -> None:
        self.order_id = order_id
        self.owner = owner
        self.index = index
        self.market = market
        self.engine_id = 0
        self.client_order_id = request.client_order_id
        self.side = request.side
        self.price = request.price
        self.initial = request.count
        self.filled = 0
        self.remaining = request.count
        self.status: VenueOrderStatus = "resting"
        self.updated_ms = ts_ms
        self.created_ms = ts_ms
        self.expiration_ms = request.expiration_ts_ms
        self.stp = request.self_trade_prevention or "taker_at_cross"
        self.post_only = request.post_only
        self.group = request.order_group_id
        self.costs = [0, 0, 0, 0]  # taker cost, maker cost, taker fees, maker fees (micro-dollars)

    def report(self) -> OrderStatusReported:
        return OrderStatusReported(client_order_id=self.client_order_id or "", order_id=self.order_id,
                                   market=self.market, status=self.status, side=self.side, price=self.price,
                                   fill_count=self.filled, remaining_count=self.remaining, initial_count=self.initial,
                                   venue_ts_ms=self.updated_ms)

    def detail(self) -> OrderDetail:
        taker_cost, maker_cost, taker_fees, maker_fees = self.costs
        return OrderDetail(self.report(), self.created_ms, self.expiration_ms, self.stp, taker_cost, maker_cost,
                           taker_fees, maker_fees, self.group)


class _Group:
    """An order group (mutable): its limit, its orders, and the contracts they matched recently."""

    __slots__ = ("group_id", "limit", "matched", "orders", "owner", "triggered")

    def __init__(self, group_id: str, owner: str, limit: int) -> None:
        self.group_id = group_id
        self.owner = owner
        self.limit = limit
        self.orders: list[str] = []
        self.matched: deque[tuple[int, int]] = deque()  # (ts_ns, count) of the group's fills in the window
        self.triggered = False

    def view(self) -> OrderGroupView:
        return OrderGroupView(self.group_id, self.limit, tuple(self.orders), self.triggered)


class _Account:
    __slots__ = ("client_ids", "engine_owner", "fills", "key", "orders", "pool", "positions", "traded", "updated_ns",
                 "volume")

    def __init__(self, key: str, fees: FeeSchedule, balance: int) -> None:
        self.key = key
        self.engine_owner = "user:" + key  # never a participant's name (mm<i>, noise<i>, informed)
        self.pool = CashPool(fees)
        self.pool.handle(1, 0, CashDeposited(amount=balance, note="starting balance"))
        self.positions = Positions()
        self.orders: list[_Order] = []  # oldest first
        self.client_ids: set[str] = set()
        self.fills: list[OrderFilled] = []  # oldest first
        self.traded: set[str] = set()  # markets with a fill
        self.volume: dict[str, list[int]] = {}  # per market: [money traded, count traded, last change ms]
        self.updated_ns = 0  # when the balance last changed


class _Changes:
    """The private events one action or command causes, gathered per account and written out in order:
    per account (in the order first touched) its fills, then its orders' new states, then its positions."""

    def __init__(self) -> None:
        self._by_owner: dict[str, tuple[list[OrderFilled], dict[str, _Order], dict[str, None]]] = {}

    def _of(self, owner: str) -> tuple[list[OrderFilled], dict[str, _Order], dict[str, None]]:
        slot = self._by_owner.get(owner)
        if slot is None:
            slot = self._by_owner[owner] = ([], {}, {})
        return slot

    def fill(self, event: OrderFilled, order: _Order) -> None:
        fills, orders, markets = self._of(order.owner)
        fills.append(event)
        orders[order.order_id] = order
        markets[order.market] = None

    def order(self, order: _Order) -> None:
        self._of(order.owner)[1][order.order_id] = order

    def position(self, owner: str, market: str) -> None:
        self._of(owner)[2][market] = None

    def flush(self, ts_ns: int, out: list[Entry], exchange: Exchange) -> None:
        ts_ms = ts_ns // 1_000_000
        for owner, (fills, orders, markets) in self._by_owner.items():
            events: list[Event] = [*fills, *(o.report() for o in orders.values())]
            events += [exchange._position(owner, m, ts_ms) for m in markets]
            out.append((ts_ns, owner, events))
        self._by_owner.clear()


class Exchange:
    """The local exchange's markets and accounts (see the module docstring for every rule)."""

    def __init__(self, markets: int, seed: int, *, config: FlowConfig | None = None, session_s: float = 3600.0,
                 start_ns: int, prefix: str = "KXSIM", starting_balance: int = DEFAULT_BALANCE,
                 fees: FeeSchedule | None = None) -> None:
        if markets < 1:
            raise ValueError(f"an exchange needs at least one market, got {markets}")
        if not session_s > 0:
            raise ValueError(f"session_s must be positive, got {session_s}")
        if starting_balance < 0:
            raise ValueError(f"starting_balance must be >= 0 micro-dollars, got {starting_balance}")
        self.seed = seed
        self.config = config or FlowConfig()
        self.fees: FeeSchedule = fees if fees is not None else KalshiFees()
        self.prefix = prefix
        self.starting_balance = starting_balance
        self.start_ns = start_ns
        self.end_ns = start_ns + round(session_s * 1_000_000_000)
        self.tickers = tuple(f"{prefix}-{i:03d}" for i in range(markets))
        self.flows = tuple(MarketFlow(t, self.config, derive_seed(seed, "market", i), start_ns, self.end_ns)
                           for i, t in enumerate(self.tickers))
        self._index = {t: i for i, t in enumerate(self.tickers)}
        self.market_ids = {t: _uuid(f"{seed}/market/{i}") for i, t in enumerate(self.tickers)}  # Kalshi's market_id
        self._status: list[MarketStatus] = ["initialized"] * markets
        self._results: list[MarketLifecycle | None] = [None] * markets
        self._due = [(start_ns, i) for i in range(markets)]  # (due ns, market): every market's next action
        self._due_at: list[int | None] = [start_ns] * markets  # each market's registered due time
        self._expiries: list[tuple[int, int, str]] = []  # (expires ns, order number, order id)
        self._accounts: dict[str, _Account] = {}
        self._owners: dict[str, _Account] = {}  # by engine owner name
        self._orders: dict[str, _Order] = {}
        self._resting: dict[tuple[int, int], _Order] = {}  # (market index, engine order id)
        self._last_price: list[int | None] = [None] * markets  # each market's last trade price
        self._volume = [0] * markets  # each market's count traded since the open
        self._minutes: list[deque[list[int]]] = [deque() for _ in range(markets)]  # [minute, count] of the last day
        self._determined: list[int | None] = [None] * markets  # when each market was determined, and settled
        self._settled: list[int | None] = [None] * markets
        self._day_mark = [start_ns + _DAY_NS] * markets  # the end of each market's current day
        self._previous: list[tuple[int | None, int | None, int | None]] = [(None, None, None)] * markets
        self._now = start_ns
        self._seq = 1  # the cause seq fed to the account machines (their events stay inside)
        self._numbered = 0
        self._groups: dict[str, _Group] = {}
        self._groups_made = 0
        self._tripped: dict[str, None] = {}  # groups whose limit a fill reached, to trigger after the command

    @property
    def now_ns(self) -> int:
        """The exchange's time: the latest time it was advanced to (or acted at)."""
        return self._now

    # --- time -----------------------------------------------------------------------------------------
    def advance(self, now_ns: int, *, limit: int | None = None) -> list[Entry]:
        """Run every model action (and order expiry) due at or before ``now_ns``, in time order; return
        what they did. With ``limit``, stop after that many model actions: the clock then stands at the
        last one's time (a server that falls behind keeps serving)."""
        out: list[Entry] = []
        self._run(now_ns, limit, out)
        return out

    def _run(self, now_ns: int, limit: int | None, out: list[Entry]) -> None:
        now = max(now_ns, self._now)
        flows, due, due_at, expiries = self.flows, self._due, self._due_at, self._expiries
        done = 0
        while True:
            while due and due_at[due[0][1]] != due[0][0]:
                heapq.heappop(due)  # superseded: the market's next action moved
            flow_t = due[0][0] if due else None
            if expiries and expiries[0][0] <= now and (flow_t is None or expiries[0][0] <= flow_t):
                t, _, order_id = heapq.heappop(expiries)
                self._now = max(self._now, t)
                self._expire(order_id, t, out)
                continue
            if flow_t is None or flow_t > now:
                break
            if limit is not None and done >= limit:
                return
            t, i = heapq.heappop(due)
            flow = flows[i]
            entry = flow.step()
            nxt = due_at[i] = flow.next_due_ns()
            if nxt is not None:
                heapq.heappush(due, (nxt, i))
            self._now = max(self._now, t)
            done += 1
            if entry is None:
                continue
            t, events = entry
            if t >= self._day_mark[i]:
                self._new_day(i, t)
            if events:
                out.append((t, PUBLIC, events))
                self._traded(i, events)
            updates = flow.outside_updates()
            if updates:
                self._apply_updates(i, updates, t, out)
                self._trip(t, out)
            for event in events:
                if type(event) is MarketLifecycle:
                    self._lifecycle(i, event, t, out)
        self._now = now

    def _apply_updates(self, index: int, updates: Iterable[Fill | Canceled], t: int, out: list[Entry]) -> None:
        changes = _Changes()
        for update in updates:
            order = self._resting[(index, update.order_id)]
            if type(update) is Fill:
                self._fill(order, update, t, changes)
            else:  # the close canceled it
                self._canceled(order, update.count, t // 1_000_000, t, changes)
        changes.flush(t, out, self)

    def _lifecycle(self, index: int, event: MarketLifecycle, t: int, out: list[Entry]) -> None:
        self._status[index] = _STATUS_AFTER.get(event.kind, self._status[index])
        if event.kind in ("determined", "settled"):
            self._results[index] = event
            (self._determined if event.kind == "determined" else self._settled)[index] = t
        if event.kind != "settled":
            return
        changes = _Changes()
        for key in sorted(self._accounts):
            account = self._accounts[key]
            if event.market not in account.traded:
                continue
            seq = self._next_seq()
            account.pool.handle(seq, t, event)
            account.updated_ns = t
            if account.positions.handle(seq, t, event):
                account.volume[event.market][2] = t // 1_000_000
                changes.position(key, event.market)
        changes.flush(t, out, self)

    def _expire(self, order_id: str, t: int, out: list[Entry]) -> None:
        order = self._orders[order_id]
        if order.status != "resting" or order.expiration_ms is None or order.expiration_ms * 1_000_000 != t:
            return  # done, or an amend moved or removed its expiry
        canceled = self.flows[order.index].cancel(order.engine_id, t)
        if canceled is None:  # pragma: no cover - a resting order is on the book
            raise AssertionError(f"order {order_id} is resting but not on the book")
        out.append((t, PUBLIC, _caused_by(order, canceled.events)))
        changes = _Changes()
        self._canceled(order, canceled.count, t // 1_000_000, t, changes)
        changes.flush(t, out, self)

    # --- commands ---------------------------------------------------------------------------------------
    def create_order(self, owner: str, request: OrderRequest, now_ns: int) -> CommandResult:
        """Place an order for ``owner`` at ``now_ns`` (after running what is due); see the module docstring."""
        out = self.advance(now_ns)
        now = self._now
        index = self._index.get(request.market)
        if index is None:
            return _refused(out, 404, "unknown_market", f"market {request.market!r} does not exist")
        error = self._check(owner, index, request, now) or self._group_check(owner, request.order_group_id)
        if error is not None:
            return CommandResult(error=error, events=out)
        account = self._account(owner)
        self._numbered += 1
        order = _Order(self._order_id(self._numbered), owner, index, request.market, request, now // 1_000_000)
        seq = self._next_seq()
        intent = OrderIntent(cause_seq=seq, client_order_id=order.order_id, market=request.market, side=request.side,
                             price=request.price, count=request.count, tif=request.tif, post_only=request.post_only)
        (answer,) = account.pool.handle(seq, now, intent)
        if type(answer) is OrderRejected:
            return _refused(out, 400, "insufficient_cash", f"the order {answer.detail}")
        account.updated_ns = now
        placed = self.flows[index].submit(account.engine_owner, request.side, request.price, request.count, now,
                                          tif=request.tif, post_only=request.post_only,
                                          client_order_id=request.client_order_id,
                                          self_trade=request.self_trade_prevention or "taker_at_cross")
        self._rescheduled(index)
        if placed.status == "rejected":
            account.pool.handle(seq, now, OrderRejected(client_order_id=order.order_id, market=request.market,
                                                        reason=placed.reason or "venue_rejected", cause_seq=seq))
            return _refused(out, 400, placed.reason or "venue_rejected", placed.detail)
        order.engine_id = placed.order_id  # type: ignore[assignment]
        self._orders[order.order_id] = order
        account.orders.append(order)
        if request.client_order_id is not None:
            account.client_ids.add(request.client_order_id)
        if placed.remaining:
            self._resting[(index, order.engine_id)] = order
        if order.group is not None:
            self._groups[order.group].orders.append(order.order_id)
        self._placed(order, placed, now, out)
        if placed.remaining and request.expiration_ts_ms is not None:
            heapq.heappush(self._expiries, (request.expiration_ts_ms * 1_000_000, self._numbered, order.order_id))
        self._trip(now, out)
        return CommandResult(order=order.report(), events=out)

    def amend_order(self, owner: str, order_id: str, request: AmendRequest, now_ns: int) -> CommandResult:
        """Amend one of ``owner``'s resting orders at ``now_ns``: its new price and its new total count (filled
        plus resting; Kalshi's ``count``). The same price and a smaller count (or the same) keep its place; a new
        price or a larger count sends it to the back, after taking what it crosses. The cash pool reserves for
        the new terms first (``insufficient_cash`` if short). ``canceled`` is what the amend took off the book
        in place (a decrease)."""
        out = self.advance(now_ns)
        now = self._now
        order, error = self._resting_order(owner, order_id)
        if order is None:
            return CommandResult(error=error, events=out)
        error = self._amend_check(owner, order, request, now)
        if error is not None:
            return CommandResult(error=error, events=out)
        account = self._accounts[owner]
        seq = self._next_seq()
        (verdict,) = account.pool.handle(seq, now, AmendRequested(cause_seq=seq, client_order_id=order.order_id,
                                                                  price=request.price, count=request.count))
        if type(verdict) is AmendRejected:
            return _refused(out, 400, verdict.reason, f"the amend: {verdict.detail}")
        remaining = request.count - order.filled
        flow = self.flows[order.index]
        if request.price == order.price and remaining <= order.remaining:
            placed = flow.decrease(order.engine_id, remaining, now)
        else:
            placed = flow.amend(order.engine_id, request.price, remaining, now, post_only=order.post_only,
                                self_trade=order.stp)  # type: ignore[arg-type]
        if placed is None:  # pragma: no cover - a resting order is on the book
            raise AssertionError(f"order {order_id} is resting but not on the book")
        self._rescheduled(order.index)
        if placed.status == "rejected":
            account.pool.handle(seq, now, AmendRejected(client_order_id=order.order_id, reason=placed.reason or
                                                        "venue_rejected", cause_seq=seq))
            return _refused(out, 400, placed.reason or "venue_rejected", placed.detail)
        if request.updated_client_order_id is not None and request.updated_client_order_id != order.client_order_id:
            order.client_order_id = request.updated_client_order_id
            account.client_ids.add(request.updated_client_order_id)
        if request.expiration_ts_ms is not None:
            order.expiration_ms = request.expiration_ts_ms or None
            if order.expiration_ms is not None:  # the entry of its old expiry, if any, is skipped when due
                heapq.heappush(self._expiries, (order.expiration_ms * 1_000_000, self._numbered, order.order_id))
        order.price = request.price
        order.initial = request.count
        order.updated_ms = now // 1_000_000
        account.updated_ns = now
        self._amended(order, placed, seq, now, out)
        self._trip(now, out)
        return CommandResult(order=order.report(), canceled=placed.canceled if placed.status == "resting" else 0,
                             events=out)

    def decrease_order(self, owner: str, order_id: str, now_ns: int, *, reduce_by: int | None = None,
                       reduce_to: int | None = None) -> CommandResult:
        """Take count off one of ``owner``'s resting orders in place at ``now_ns``: ``reduce_by`` of what rests,
        or down to ``reduce_to`` resting (exactly one; 0 left cancels it). It keeps its place in the queue;
        ``canceled`` is the count taken off. Reducing to what rests already changes nothing (a retry)."""
        out = self.advance(now_ns)
        now = self._now
        if (reduce_by is None) == (reduce_to is None):
            return _refused(out, 400, "bad_request", "give exactly one of reduce_by and reduce_to")
        order, error = self._resting_order(owner, order_id)
        if order is None:
            return CommandResult(error=error, events=out)
        if reduce_by is not None and not 0 < reduce_by <= order.remaining:
            return _refused(out, 400, "invalid_count", f"reduce_by {format_count(reduce_by)} is not in (0, "
                            f"{format_count(order.remaining)}], what rests")
        if reduce_to is not None and not 0 <= reduce_to <= order.remaining:
            return _refused(out, 400, "invalid_count", f"reduce_to {format_count(reduce_to)} is not in [0, "
                            f"{format_count(order.remaining)}], what rests (a decrease cannot add)")
        left = order.remaining - reduce_by if reduce_by is not None else reduce_to
        placed = self.flows[order.index].decrease(order.engine_id, left, now)  # type: ignore[arg-type]
        if placed is None:  # pragma: no cover - a resting order is on the book
            raise AssertionError(f"order {order_id} is resting but not on the book")
        if placed.events:
            out.append((now, PUBLIC, _caused_by(order, placed.events)))
        changes = _Changes()
        if placed.status == "canceled":
            self._canceled(order, placed.canceled, now // 1_000_000, now, changes)
        else:
            account = self._accounts[owner]
            seq = self._next_seq()
            order.initial -= placed.canceled
            order.remaining = placed.remaining
            order.updated_ms = now // 1_000_000
            account.updated_ns = now
            account.pool.handle(seq, now, OrderAmended(client_order_id=order.order_id, order_id=order.order_id,
                                                       price=order.price, count=order.initial, cause_seq=seq))
            changes.order(order)
        changes.flush(now, out, self)
        return CommandResult(order=order.report(), canceled=placed.canceled, events=out)

    def _resting_order(self, owner: str, order_id: str) -> tuple[_Order | None, ExchangeError | None]:
        order = self._orders.get(order_id)
        if order is None or order.owner != owner:
            return None, ExchangeError(404, "not_found", f"order {order_id!r} not found")
        if order.status != "resting":
            return None, ExchangeError(404, "not_found", f"order {order_id!r} is {order.status}, not resting")
        return order, None

    def _amend_check(self, owner: str, order: _Order, r: AmendRequest, now: int) -> ExchangeError | None:
        """What an amend may not do: change the order's market or side, name another client_order_id, leave an
        off-grid price or nothing to rest, take an updated client_order_id already used, expire in the past."""
        if r.market != order.market:
            return ExchangeError(400, "bad_request", f"ticker {r.market!r} is not the order's market {order.market!r}")
        if r.side != order.side:
            return ExchangeError(400, "bad_request", f"side {r.side!r} is not the order's side {order.side!r}: an amend "
                                 "cannot change it")
        if r.client_order_id is not None and r.client_order_id != order.client_order_id:
            return ExchangeError(400, "bad_request", f"client_order_id {r.client_order_id!r} is not the order's")
        tick = self.config.tick
        if self._status[order.index] != "active":
            return ExchangeError(400, "market_closed", f"market {order.market} is {self._status[order.index]}")
        if r.price % tick or not tick <= r.price <= PRICE_MAX - tick:
            return ExchangeError(400, "invalid_price", f"price {format_price(r.price)} is off {order.market}'s grid "
                                 f"({format_price(tick)} to {format_price(PRICE_MAX - tick)} in steps of {format_price(tick)})")
        if r.count <= order.filled:
            return ExchangeError(400, "invalid_count", f"count {format_count(r.count)} is the order's total (filled "
                                 f"plus resting) and must exceed the {format_count(order.filled)} filled")
        new = r.updated_client_order_id
        if new is not None and new != order.client_order_id and new in self._accounts[owner].client_ids:
            return ExchangeError(409, "duplicate_client_order_id", f"client_order_id {new!r} was already used")
        if r.expiration_ts_ms and r.expiration_ts_ms * 1_000_000 <= now:
            return ExchangeError(400, "bad_request", f"expiration_time {r.expiration_ts_ms // 1000} is not in the future")
        return None

    def _amended(self, order: _Order, placed: Placed, seq: int, now: int, out: list[Entry]) -> None:
        """Apply what an amend did: its market data, its trades (both sides, when ours), self-trade cancels, the
        new terms in the cash pool, and the order's state (a remainder stopped by self-trade prevention is
        canceled)."""
        if placed.events:
            out.append((now, PUBLIC, _caused_by(order, placed.events)))
            self._traded(order.index, placed.events)
        changes = _Changes()
        for fill in placed.fills:
            if fill.owner not in self._owners:
                continue
            target = order if fill.order_id == order.engine_id else self._resting[(order.index, fill.order_id)]
            self._fill(target, fill, now, changes)
        for canceled in placed.makers_canceled:
            self._canceled(self._resting[(order.index, canceled.order_id)], canceled.count, now // 1_000_000, now,
                           changes)
        account = self._accounts[order.owner]
        account.pool.handle(seq, now, OrderAmended(client_order_id=order.order_id, order_id=order.order_id,
                                                   price=order.price, count=order.initial, cause_seq=seq))
        if placed.status == "canceled":
            self._canceled(order, placed.canceled, now // 1_000_000, now, changes)
        elif placed.status == "resting":
            order.remaining = placed.remaining
        changes.order(order)
        changes.flush(now, out, self)

    # --- order groups -------------------------------------------------------------------------------------
    def create_order_group(self, owner: str, contracts_limit: int) -> OrderGroupView | ExchangeError:
        """A new order group of ``owner``: its orders may match at most ``contracts_limit`` (1/100 contract) in any
        15 seconds; reaching it cancels every resting order of the group and refuses new ones until a reset."""
        if contracts_limit <= 0:
            return ExchangeError(400, "bad_request", f"contracts_limit {format_count(contracts_limit)} is not positive")
        self._groups_made += 1
        group = _Group(_uuid(f"{self.seed}/group/{self._groups_made}"), owner, contracts_limit)
        self._groups[group.group_id] = group
        self._account(owner)
        return group.view()

    def order_groups(self, owner: str) -> list[OrderGroupView]:
        """The owner's order groups, oldest first."""
        return [g.view() for g in self._groups.values() if g.owner == owner]

    def order_group(self, owner: str, group_id: str) -> OrderGroupView | ExchangeError:
        group = self._groups.get(group_id)
        if group is None or group.owner != owner:
            return ExchangeError(404, "not_found", f"order group {group_id!r} not found")
        return group.view()

    def update_order_group(self, owner: str, group_id: str, contracts_limit: int) -> OrderGroupView | ExchangeError:
        """Set the group's contracts limit (what it matched in the window still counts)."""
        group = self.order_group(owner, group_id)
        if isinstance(group, ExchangeError):
            return group
        if contracts_limit <= 0:
            return ExchangeError(400, "bad_request", f"contracts_limit {format_count(contracts_limit)} is not positive")
        self._groups[group_id].limit = contracts_limit
        return self._groups[group_id].view()

    def reset_order_group(self, owner: str, group_id: str) -> OrderGroupView | ExchangeError:
        """Zero the group's matched count and accept its orders again."""
        group = self.order_group(owner, group_id)
        if isinstance(group, ExchangeError):
            return group
        g = self._groups[group_id]
        g.matched.clear()
        g.triggered = False
        return g.view()

    def trigger_order_group(self, owner: str, group_id: str, now_ns: int, *, delete: bool = False) -> CommandResult:
        """Cancel every resting order of the group and refuse new ones until a reset (``delete``: and remove the
        group). ``canceled`` is the count taken off the book."""
        out = self.advance(now_ns)
        group = self.order_group(owner, group_id)
        if isinstance(group, ExchangeError):
            return CommandResult(error=group, events=out)
        canceled = self._trigger(self._groups[group_id], self._now, out)
        if delete:
            del self._groups[group_id]
        return CommandResult(canceled=canceled, events=out)

    def _group_check(self, owner: str, group_id: str | None) -> ExchangeError | None:
        if group_id is None:
            return None
        group = self._groups.get(group_id)
        if group is None or group.owner != owner:
            return ExchangeError(404, "not_found", f"order group {group_id!r} not found")
        if group.triggered:
            return ExchangeError(400, "order_group_triggered", f"order group {group_id!r} hit its contracts limit "
                                 "(or was triggered): reset it to place orders in it")
        return None

    def _matched(self, order: _Order, count: int, t: int) -> None:
        """A fill of a grouped order counts toward its group's limit; reaching it trips the group."""
        group = self._groups.get(order.group)  # type: ignore[arg-type]
        if group is None:
            return
        matched = group.matched
        matched.append((t, count))
        while matched[0][0] <= t - GROUP_WINDOW_NS:
            matched.popleft()
        if not group.triggered and sum(n for _, n in matched) >= group.limit:
            self._tripped[group.group_id] = None

    def _trip(self, t: int, out: list[Entry]) -> None:
        """Trigger the groups whose limit a fill of this command reached (after its fills are applied)."""
        while self._tripped:
            group_id = next(iter(self._tripped))
            del self._tripped[group_id]
            group = self._groups.get(group_id)
            if group is not None and not group.triggered:
                self._trigger(group, t, out)

    def _trigger(self, group: _Group, t: int, out: list[Entry]) -> int:
        group.triggered = True
        total = 0
        changes = _Changes()
        for order_id in group.orders:
            order = self._orders[order_id]
            if order.status != "resting":
                continue
            canceled = self.flows[order.index].cancel(order.engine_id, t)
            if canceled is None:  # pragma: no cover - a resting order is on the book
                raise AssertionError(f"order {order_id} is resting but not on the book")
            out.append((t, PUBLIC, _caused_by(order, canceled.events)))
            self._canceled(order, canceled.count, t // 1_000_000, t, changes)
            total += canceled.count
        changes.flush(t, out, self)
        return total

    def cancel_order(self, owner: str, order_id: str, now_ns: int) -> CommandResult:
        """Cancel one of ``owner``'s resting orders at ``now_ns``; ``canceled`` is the count taken off."""
        out = self.advance(now_ns)
        now = self._now
        order = self._orders.get(order_id)
        if order is None or order.owner != owner:
            return _refused(out, 404, "not_found", f"order {order_id!r} not found")
        if order.status != "resting":
            return _refused(out, 404, "not_found", f"order {order_id!r} is {order.status}, not resting")
        canceled = self.flows[order.index].cancel(order.engine_id, now)
        if canceled is None:  # pragma: no cover - a resting order is on the book
            raise AssertionError(f"order {order_id} is resting but not on the book")
        out.append((now, PUBLIC, _caused_by(order, canceled.events)))
        changes = _Changes()
        self._canceled(order, canceled.count, now // 1_000_000, now, changes)
        changes.flush(now, out, self)
        return CommandResult(order=order.report(), canceled=canceled.count, events=out)

    def _check(self, owner: str, index: int, r: OrderRequest, now: int) -> ExchangeError | None:
        """The order rules the exchange checks before the engine (the engine checks post-only and FOK)."""
        market, tick = r.market, self.config.tick
        status = self._status[index]
        if status != "active":
            return ExchangeError(400, "market_closed", f"market {market} is {'not open yet' if status == 'initialized' else status}")
        if r.price % tick or not tick <= r.price <= PRICE_MAX - tick:
            return ExchangeError(400, "invalid_price", f"price {format_price(r.price)} is off {market}'s grid "
                                 f"({format_price(tick)} to {format_price(PRICE_MAX - tick)} in steps of {format_price(tick)})")
        if r.count <= 0:
            return ExchangeError(400, "invalid_count", f"count {format_count(r.count)} is not positive")
        if r.self_trade_prevention is not None and r.self_trade_prevention not in _STP:
            return ExchangeError(400, "bad_request", f"self_trade_prevention_type {r.self_trade_prevention!r} is not "
                                 "one of maker, taker_at_cross")
        if r.expiration_ts_ms is not None and r.tif != "gtc":
            return ExchangeError(400, "bad_request", f"expiration_time goes with time_in_force good_till_canceled only, "
                                 f"not {r.tif}")
        if r.expiration_ts_ms is not None and r.expiration_ts_ms * 1_000_000 <= now:
            return ExchangeError(400, "bad_request", f"expiration_time {r.expiration_ts_ms // 1000} is not in the future")
        account = self._accounts.get(owner)
        if account is not None and r.client_order_id is not None and r.client_order_id in account.client_ids:
            return ExchangeError(409, "duplicate_client_order_id",
                                 f"client_order_id {r.client_order_id!r} was already used")
        if r.reduce_only:
            held = 0 if account is None else account.positions.get(market).position
            room = -held if r.side == "bid" else held
            if room < r.count:
                return ExchangeError(400, "reduce_only_violation",
                                     f"a reduce-only {r.side} of {format_count(r.count)} would not only reduce the "
                                     f"position of {format_count(held)} in {market}")
        return None

    def _placed(self, order: _Order, placed: Placed, now: int, out: list[Entry]) -> None:
        """Apply what a new order did at once: its trades (both sides, when ours), self-trade cancels, and
        its own state (a remainder that does not rest is canceled and its reservation released)."""
        if placed.events:
            out.append((now, PUBLIC, _caused_by(order, placed.events)))
            self._traded(order.index, placed.events)
        changes = _Changes()
        for fill in placed.fills:
            if fill.owner not in self._owners:
                continue  # a participant's side of the trade
            target = order if fill.order_id == order.engine_id else self._resting[(order.index, fill.order_id)]
            self._fill(target, fill, now, changes)
        for canceled in placed.makers_canceled:
            self._canceled(self._resting[(order.index, canceled.order_id)], canceled.count, now // 1_000_000, now,
                           changes)
        if placed.canceled:
            self._canceled(order, placed.canceled, now // 1_000_000, now, changes)
        changes.order(order)
        changes.flush(now, out, self)

    def _fill(self, order: _Order, fill: Fill, t: int, changes: _Changes) -> None:
        account = self._accounts[order.owner]
        fee = self.fees.trade_fee(order.market, fill.price, fill.count, fill.is_taker)
        event = OrderFilled(trade_id=fill.trade_id, order_id=order.order_id, client_order_id=order.client_order_id or "",
                            market=order.market, side=fill.side, price=fill.price, count=fill.count, fee=fee,
                            is_taker=fill.is_taker, venue_ts_ms=fill.ts_ms)
        seq = self._next_seq()
        account.pool.handle(seq, t, msgspec.structs.replace(event, client_order_id=order.order_id))
        account.positions.handle(seq, t, event)
        account.traded.add(order.market)
        account.updated_ns = t
        paid = fill.count * (fill.price if fill.side == "bid" else PRICE_MAX - fill.price)  # micro-dollars
        slot = 0 if fill.is_taker else 1
        order.costs[slot] += paid
        order.costs[slot + 2] += fee
        volume = account.volume.setdefault(order.market, [0, 0, 0])
        volume[0] += paid
        volume[1] += fill.count
        volume[2] = fill.ts_ms
        event = msgspec.structs.replace(event, post_position=account.positions.get(order.market).position)
        account.fills.append(event)
        order.filled += fill.count
        order.remaining = fill.remaining
        order.updated_ms = fill.ts_ms
        if not fill.remaining:
            order.status = "executed"
            self._resting.pop((order.index, order.engine_id), None)
        if order.group is not None:
            self._matched(order, fill.count, t)
        changes.fill(event, order)

    def _canceled(self, order: _Order, count: int, ts_ms: int, t: int, changes: _Changes) -> None:
        """What remained of an order left the book (requested, expired, self-trade, close, IOC remainder)."""
        order.remaining = 0
        order.status = "canceled"
        order.updated_ms = ts_ms
        self._resting.pop((order.index, order.engine_id), None)
        seq = self._next_seq()
        self._accounts[order.owner].updated_ns = t
        self._accounts[order.owner].pool.handle(seq, t, OrderCanceled(client_order_id=order.order_id,
                                                                      order_id=order.order_id, canceled_count=count,
                                                                      cause_seq=seq))
        changes.order(order)

    # --- reads ------------------------------------------------------------------------------------------
    def markets(self) -> list[MarketInfo]:
        """Every market, by ticker."""
        return [self._market(i) for i in range(len(self.tickers))]

    def market(self, ticker: str) -> MarketInfo | None:
        index = self._index.get(ticker)
        return None if index is None else self._market(index)

    def _market(self, i: int) -> MarketInfo:
        result = self._results[i]
        engine = self.flows[i].engine
        bid, ask = engine.best_bid(), engine.best_ask()
        previous = self._previous[i]
        return MarketInfo(self.tickers[i], self._status[i], self.config.tick, self.start_ns,
                          self.flows[i].profile.close_ns, None if result is None else result.result,
                          None if result is None else result.settlement_value, bid, ask,
                          0 if bid is None else engine.bid_size(bid), 0 if ask is None else engine.ask_size(ask),
                          self._last_price[i], self._volume[i], self._volume_24h(i), engine.open_interest,
                          previous[0], previous[1], previous[2], self._determined[i], self._settled[i], self.end_ns,
                          round(self.config.settle_after_s))

    def _new_day(self, i: int, t: int) -> None:
        """The market's day turned: what its top of book and last price are now is what ``previous_*`` says."""
        while self._day_mark[i] <= t:
            self._day_mark[i] += _DAY_NS
        engine = self.flows[i].engine
        self._previous[i] = (engine.best_bid(), engine.best_ask(), self._last_price[i])

    def _volume_24h(self, i: int) -> int:
        minutes, since = self._minutes[i], self._now // _MINUTE_NS - _DAY_MINUTES
        while minutes and minutes[0][0] <= since:
            minutes.popleft()
        return sum(n for _, n in minutes)

    def book(self, ticker: str) -> BookSnapshot | None:
        """The market's whole book now (None for an unknown ticker)."""
        index = self._index.get(ticker)
        return None if index is None else self.flows[index].engine.snapshot(self._now // 1_000_000)

    def ticker(self, ticker: str) -> MarketTicker | None:
        """The market's ticker now (None for an unknown ticker)."""
        index = self._index.get(ticker)
        if index is None:
            return None
        engine = self.flows[index].engine
        bid, ask = engine.best_bid(), engine.best_ask()
        return MarketTicker(ticker, bid, ask, 0 if bid is None else engine.bid_size(bid),
                            0 if ask is None else engine.ask_size(ask), self._last_price[index], self._volume[index])

    def owns(self, owner: str, client_order_id: str) -> bool:
        """Whether ``owner`` placed an order with this ``client_order_id`` (they are unique per owner)."""
        account = self._accounts.get(owner)
        return account is not None and client_order_id in account.client_ids

    def _traded(self, index: int, events: Iterable[Event]) -> None:
        for event in events:
            if type(event) is PublicTrade:
                self._last_price[index] = event.yes_price
                self._volume[index] += event.count
                minute, minutes = (event.venue_ts_ms or 0) // 60_000, self._minutes[index]
                if minutes and minutes[-1][0] == minute:
                    minutes[-1][1] += event.count
                else:
                    minutes.append([minute, event.count])
                    if len(minutes) > _DAY_MINUTES:
                        minutes.popleft()

    def balance(self, owner: str) -> int:
        """The owner's available balance, micro-dollars (what ``GET /portfolio/balance`` reports)."""
        account = self._accounts.get(owner)
        return self.starting_balance if account is None else account.pool.available

    def account(self, owner: str) -> AccountView:
        a = self._accounts.get(owner)
        if a is None:
            return AccountView(owner, self.starting_balance, 0, self.starting_balance, 0, 0)
        fees = sum(a.positions.get(m).fees for m in a.traded)
        return AccountView(owner, a.pool.cash, a.pool.reserved, a.pool.available, a.pool.rounding_paid, fees)

    def portfolio(self, owner: str) -> Portfolio:
        """The owner's balance, its positions marked at each market's last price (the cost when it has not
        traded), and when its balance last changed."""
        account = self._accounts.get(owner)
        if account is None:
            return Portfolio(self.starting_balance, 0, self.start_ns // 1_000_000)
        value = 0
        for market in account.traded:
            p = account.positions.get(market)
            last = self._last_price[self._index[market]]
            if p.position > 0:
                value += p.position * last if last is not None else p.cost_basis
            elif p.position < 0:
                value += -p.position * (PRICE_MAX - last) if last is not None else -p.position * PRICE_MAX + p.cost_basis
        return Portfolio(account.pool.available, value, (account.updated_ns or self.start_ns) // 1_000_000)

    def order_details(self, owner: str) -> list[OrderDetail]:
        """Every order of the owner with what REST shows of it, oldest first."""
        account = self._accounts.get(owner)
        return [] if account is None else [o.detail() for o in account.orders]

    def queue_positions(self, owner: str, tickers: Collection[str] | None = None) -> list[tuple[str, str, int]]:
        """``(order_id, ticker, ahead)`` of every resting order of the owner (in ``tickers``, if given), oldest
        first: ``ahead`` is the count that must trade or cancel before it fills, by true price-time priority
        (Kalshi's ``GET /portfolio/orders/queue_positions``)."""
        account = self._accounts.get(owner)
        if account is None:
            return []
        out = []
        for o in account.orders:
            if o.status != "resting" or (tickers is not None and o.market not in tickers):
                continue
            ahead = self.flows[o.index].engine.queue_ahead(o.engine_id)
            if ahead is not None:
                out.append((o.order_id, o.market, ahead))
        return out

    def order_detail(self, owner: str, order_id: str) -> OrderDetail | None:
        order = self._orders.get(order_id)
        return None if order is None or order.owner != owner else order.detail()

    def position_details(self, owner: str) -> list[PositionDetail]:
        """The owner's position in every market it traded, by ticker, with what REST shows of it."""
        account = self._accounts.get(owner)
        if account is None:
            return []
        out = []
        for market in sorted(account.traded):
            traded, count, updated_ms = account.volume[market]
            out.append(PositionDetail(self._position(owner, market, updated_ms), traded, count, updated_ms))
        return out

    def fill_id(self, fill: OrderFilled) -> str:
        """Kalshi's ``fill_id`` of one of an account's fills (UUID-shaped; the trade id is shared by both sides)."""
        return _uuid(f"{self.seed}/fill/{fill.trade_id}/{fill.order_id}")

    def orders(self, owner: str) -> list[OrderStatusReported]:
        """Every order of the owner, oldest first."""
        account = self._accounts.get(owner)
        return [] if account is None else [o.report() for o in account.orders]

    def order(self, owner: str, order_id: str) -> OrderStatusReported | None:
        order = self._orders.get(order_id)
        return None if order is None or order.owner != owner else order.report()

    def fills(self, owner: str) -> list[OrderFilled]:
        """Every fill of the owner, oldest first."""
        account = self._accounts.get(owner)
        return [] if account is None else list(account.fills)

    def positions(self, owner: str) -> list[PositionReported]:
        """The owner's position in every market it traded, by ticker (zero once settled)."""
        account = self._accounts.get(owner)
        ts_ms = self._now // 1_000_000
        return [] if account is None else [self._position(owner, m, ts_ms) for m in sorted(account.traded)]

    def queue_ahead(self, order_id: str) -> int | None:
        """The count resting ahead of a resting order at its price (:meth:`MatchingEngine.queue_ahead`)."""
        order = self._orders.get(order_id)
        if order is None or order.status != "resting":
            return None
        return self.flows[order.index].engine.queue_ahead(order.engine_id)

    def engine_order_id(self, order_id: str) -> int | None:
        """The matching engine's id of an order (for tests and tools)."""
        order = self._orders.get(order_id)
        return None if order is None else order.engine_id

    # --- internals ------------------------------------------------------------------------------------
    def _rescheduled(self, index: int) -> None:
        """An outside order may have moved the market's next action earlier (the makers react to its
        trades): register its due time again (the merge drops the superseded entry)."""
        nxt = self._due_at[index] = self.flows[index].next_due_ns()
        if nxt is not None:
            heapq.heappush(self._due, (nxt, index))

    def _account(self, owner: str) -> _Account:
        account = self._accounts.get(owner)
        if account is None:
            account = self._accounts[owner] = _Account(owner, self.fees, self.starting_balance)
            self._owners[account.engine_owner] = account
        return account

    def _position(self, owner: str, market: str, ts_ms: int) -> PositionReported:
        p = self._accounts[owner].positions.get(market)
        cost = p.cost_basis if p.position >= 0 else -p.position * PRICE_MAX + p.cost_basis
        return PositionReported(market=market, position=p.position, cost=cost, realized_pnl=p.realized_pnl,
                                fees_paid=p.fees, venue_ts_ms=ts_ms)

    def _order_id(self, n: int) -> str:
        return _uuid(f"{self.seed}/order/{n}")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def __repr__(self) -> str:
        return (f"Exchange(markets={len(self.tickers)}, seed={self.seed}, now_ns={self._now}, "
                f"accounts={len(self._accounts)}, balance_default=${format_money(self.starting_balance)})")


def _caused_by(order: _Order, events: Iterable[Event]) -> list[Event]:
    """The market data an account's order caused, its deltas naming the order's ``client_order_id``."""
    coid = order.client_order_id
    if coid is None:
        return list(events)
    return [msgspec.structs.replace(e, client_order_id=coid) if type(e) is BookDelta else e for e in events]


def _uuid(text: str) -> str:
    """A UUID-shaped id derived from ``text`` (ids look like Kalshi's, and are the same every run)."""
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))


def _refused(out: list[Entry], status: int, code: str, message: str) -> CommandResult:
    return CommandResult(error=ExchangeError(status, code, message), events=out)
