"""The local exchange's matching engine: one market's YES-leg book of individual resting orders.

Kalshi's book is two bid ladders — YES bids and NO bids — and so is this engine's: a bid on the YES
leg at ``p`` rests on the ``yes`` ladder at ``p``; an ask at ``p`` rests on the ``no`` ladder at
``10000 - p``. Two orders cross when their ladder prices sum to at least 10,000. Keeping both sides as
bids makes the engine symmetric (one matching loop serves both) and makes every level change a
Kalshi ``orderbook_delta`` as it is, with no price conversion.

Rules (each one a specification in ``tests/venues/test_sim_engine.py``):

* **Price-time priority.** Orders at a better price match first; at one price, the order that came
  first matches first, whoever placed it. A trade prints at the resting (maker) order's price.
* **Orders**: a limit order on the YES leg (``bid``/``ask``, price, count) with time in force ``gtc``
  (the remainder rests), ``ioc`` (the remainder is canceled) or ``fok`` (fills whole at once or is
  rejected, changing nothing); ``post_only`` is rejected if it would take; a ``client_order_id`` may be
  used once per owner. Refusals are outcomes (:class:`Placed` with ``status="rejected"`` and a
  :data:`runtime.events.RejectReason`), never exceptions; an exception is a caller's bug (a side that
  is neither ``bid`` nor ``ask``).
* **Self-trade prevention**, as Kalshi's ``self_trade_prevention_type``: ``taker_at_cross`` (default)
  cancels what is left of the taker when it reaches a resting order of its own owner; ``maker``
  cancels that resting order and goes on matching.
* **Output**: every command returns what it did — fills for both sides of each match (sharing a trade
  id), and the public market data it caused, in order: for each level it took from, one
  :class:`PublicTrade` per maker order filled, then one :class:`BookDelta` for the level's net change;
  then a delta for the remainder it left resting. The deltas fold into the engine's own book exactly
  (:meth:`MatchingEngine.levels`); :meth:`MatchingEngine.snapshot` gives the whole book as Kalshi's
  snapshot.
* **Amend and decrease** (Kalshi's ``/amend`` and ``/decrease``): :meth:`MatchingEngine.amend` gives a resting
  order a new price and resting count, :meth:`MatchingEngine.decrease` a smaller resting count; the order keeps
  its id. Kalshi's rule for the queue: an amend keeps the order's place only when it *decreases the size* at the
  same price; a new price or a larger size sends it to the back of the queue at its (new) price, where it first
  takes what it crosses, as a taker (self-trade prevention and post-only as at placement). A decrease, and an
  amend that changes nothing, keep the place. A decrease to zero cancels the order.
* **Closing** cancels every resting order (one delta each) and refuses orders until reopened.
* **Reads**: best prices, level sizes, both ladders, a snapshot, each price's queue in priority order
  and any order's place in it (:meth:`MatchingEngine.queue_ahead`: the count that must trade or cancel
  before it fills — the ground truth a paper fill model is judged against), and the open interest
  (:attr:`MatchingEngine.open_interest`: the contracts held, every owner's net position counted from its
  trades — a bid buys YES, an ask sells it — summed over the owners who are long).

Pure and deterministic: no clock (times come in as ``ts_ms`` and go out as ``venue_ts_ms``), no
randomness; order ids are 1, 2, 3, … per engine and trade ids ``<market>:<n>``.

Representation: per ladder, a list of 10,001 aggregate sizes indexed by price, a sorted list of the
prices with size (best = last, for both ladders), and a FIFO queue per price. A cancel removes its order
from the aggregate at once and from the queue lazily (matching skips it; a queue that is mostly
canceled orders is compacted), so a cancel costs O(1) however deep the queue.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from typing import Literal

import msgspec

from runtime.events import BookDelta, BookSnapshot, PublicTrade, RejectReason
from runtime.units import PRICE_MAX

__all__ = ["Canceled", "Fill", "MatchingEngine", "Placed", "RestingOrder"]

_LADDER = {"bid": 0, "ask": 1}
_LADDER_NAME = ("yes", "no")  # BookDelta.side of each ladder
_BOOK_SIDE = ("bid", "ask")
_TAKER_SIDE = ("yes", "no")  # PublicTrade.taker_side of a taker on each ladder
_TIFS = frozenset({"gtc", "ioc", "fok"})
_COMPACT_AT = 16  # a queue is compacted once it holds more canceled orders than this, and more than live ones

Side = Literal["bid", "ask"]
TimeInForce = Literal["gtc", "ioc", "fok"]
SelfTrade = Literal["taker_at_cross", "maker"]
Status = Literal["resting", "filled", "canceled", "rejected"]
MarketEvent = BookDelta | PublicTrade


class Fill(msgspec.Struct, frozen=True, gc=False):
    """One side of one match: the taker and the maker of a trade each get one, with the same trade id."""

    trade_id: str
    order_id: int
    owner: str
    client_order_id: str | None
    side: Side
    price: int  # YES-leg price of the trade (the maker's price)
    count: int
    is_taker: bool
    remaining: int  # what the order still has open after this fill
    ts_ms: int


class Canceled(msgspec.Struct, frozen=True, gc=False):
    """A resting order left the book unfilled: by request, by self-trade prevention, or at close."""

    order_id: int
    owner: str
    client_order_id: str | None
    side: Side
    price: int
    count: int  # the count that was canceled (what remained)
    reason: str  # "requested", "self_trade", "market_closed" ("amended": it left its place to move)
    events: tuple[MarketEvent, ...]


class Placed(msgspec.Struct, frozen=True, gc=False):
    """What one submitted order did (or an amend or decrease: :meth:`MatchingEngine.amend`). ``order_id`` is None
    when a new order was rejected (``reason`` says why); a refused amend keeps the order's id."""

    order_id: int | None
    client_order_id: str | None
    status: Status
    filled: int  # count traded at once (as the taker)
    remaining: int  # count left resting on the book
    canceled: int  # count canceled at once (IOC remainder, self-trade prevention)
    fills: tuple[Fill, ...] = ()
    events: tuple[MarketEvent, ...] = ()
    makers_canceled: tuple[Canceled, ...] = ()  # resting orders removed by ``maker`` self-trade prevention
    reason: RejectReason | None = None
    detail: str = ""


class RestingOrder(msgspec.Struct, frozen=True, gc=False):
    """A read-only view of an order on the book."""

    order_id: int
    owner: str
    client_order_id: str | None
    side: Side
    price: int
    count: int
    remaining: int
    ts_ms: int


class _Order:
    __slots__ = ("client_order_id", "count", "ladder", "lprice", "order_id", "owner", "remaining", "ts_ms")

    def __init__(self, order_id: int, owner: str, client_order_id: str | None, ladder: int, lprice: int,
                 count: int, remaining: int, ts_ms: int) -> None:
        self.order_id = order_id
        self.owner = owner
        self.client_order_id = client_order_id
        self.ladder = ladder
        self.lprice = lprice  # price on its own ladder (a NO price for an ask)
        self.count = count  # as placed
        self.remaining = remaining  # still resting
        self.ts_ms = ts_ms

    def view(self) -> RestingOrder:
        side = _BOOK_SIDE[self.ladder]
        price = self.lprice if self.ladder == 0 else PRICE_MAX - self.lprice
        return RestingOrder(self.order_id, self.owner, self.client_order_id, side, price, self.count,
                            self.remaining, self.ts_ms)


class _Level:
    __slots__ = ("dead", "queue")

    def __init__(self) -> None:
        self.queue: deque[_Order] = deque()
        self.dead = 0  # canceled orders still in the queue


class MatchingEngine:
    """One market's price-time-priority matching engine (see the module docstring for the rules)."""

    __slots__ = ("_client_ids", "_held", "_levels", "_next_order", "_next_trade", "_orders", "_prices", "_sizes",
                 "is_open", "market", "open_interest", "self_trade", "tick")

    def __init__(self, market: str, *, tick: int = 100, self_trade: SelfTrade = "taker_at_cross") -> None:
        if not 1 <= tick <= 5_000 or PRICE_MAX % tick:
            raise ValueError(f"{market}: tick must divide {PRICE_MAX} and lie in [1, 5000], got {tick}")
        if self_trade not in ("taker_at_cross", "maker"):
            raise ValueError(f"{market}: self_trade must be 'taker_at_cross' or 'maker', got {self_trade!r}")
        self.market = market
        self.tick = tick
        self.self_trade: SelfTrade = self_trade
        self.is_open = True
        self._sizes: tuple[list[int], list[int]] = ([0] * (PRICE_MAX + 1), [0] * (PRICE_MAX + 1))
        self._prices: tuple[list[int], list[int]] = ([], [])  # ladder prices with size, ascending
        self._levels: tuple[dict[int, _Level], dict[int, _Level]] = ({}, {})
        self._orders: dict[int, _Order] = {}  # resting orders by id
        self._client_ids: set[tuple[str, str]] = set()
        self._next_order = 1
        self._next_trade = 1
        self._held: dict[str, int] = {}  # each owner's net YES position from its trades, 1/100 contract
        self.open_interest = 0  # the sum of the long positions (= the sum of the short ones)

    # --- commands ---------------------------------------------------------------------------------
    def submit(self, owner: str, side: Side, price: int, count: int, ts_ms: int, *, tif: TimeInForce = "gtc",
               post_only: bool = False, client_order_id: str | None = None,
               self_trade: SelfTrade | None = None) -> Placed:
        """Place a limit order for ``owner`` on the YES leg; returns what it did (see :class:`Placed`)."""
        try:
            ladder = _LADDER[side]
        except KeyError:
            raise ValueError(f"{self.market}: side must be 'bid' or 'ask', got {side!r}") from None
        if tif not in _TIFS:
            raise ValueError(f"{self.market}: time in force must be 'gtc', 'ioc' or 'fok', got {tif!r}")
        stp = self.self_trade if self_trade is None else self_trade
        if stp not in ("taker_at_cross", "maker"):
            raise ValueError(f"{self.market}: self_trade must be 'taker_at_cross' or 'maker', got {stp!r}")
        if not self.is_open:
            return _rejected(client_order_id, "market_closed", f"{self.market} is closed")
        tick = self.tick
        if type(price) is not int or not tick <= price <= PRICE_MAX - tick or price % tick:
            return _rejected(client_order_id, "invalid_price",
                             f"price {price!r} is not a multiple of {tick} in [{tick}, {PRICE_MAX - tick}]")
        if type(count) is not int or count <= 0:
            return _rejected(client_order_id, "invalid_count", f"count {count!r} is not a positive integer")
        if client_order_id is not None:
            key = (owner, client_order_id)
            if key in self._client_ids:
                return _rejected(client_order_id, "duplicate_client_order_id",
                                 f"client_order_id {client_order_id!r} was already used")
        lprice = price if ladder == 0 else PRICE_MAX - price
        other = 1 - ladder
        opp_prices = self._prices[other]
        crosses = bool(opp_prices) and opp_prices[-1] + lprice >= PRICE_MAX
        if crosses and post_only:
            return _rejected(client_order_id, "post_only_would_cross",
                             f"post-only {side} at {price} would take liquidity")
        if tif == "fok" and (not crosses or self._fillable(owner, other, PRICE_MAX - lprice, count, stp) < count):
            return _rejected(client_order_id, "fok_unfillable", f"fill-or-kill {side} {count} at {price} cannot fill whole")
        if client_order_id is not None:
            self._client_ids.add((owner, client_order_id))

        order_id = self._next_order
        self._next_order = order_id + 1
        events: list[MarketEvent] = []
        fills: list[Fill] = []
        makers_canceled: list[Canceled] = []
        remaining = count
        stopped = False
        if crosses:
            remaining, stopped = self._match(order_id, owner, client_order_id, ladder, other, lprice, remaining,
                                             ts_ms, stp, events, fills, makers_canceled)
        filled = count - remaining
        if remaining and tif == "gtc" and not stopped:
            order = _Order(order_id, owner, client_order_id, ladder, lprice, count, remaining, ts_ms)
            self._rest(order)
            events.append(BookDelta(self.market, _LADDER_NAME[ladder], lprice, remaining, venue_ts_ms=ts_ms))
            return Placed(order_id, client_order_id, "resting", filled, remaining, 0, tuple(fills), tuple(events),
                          tuple(makers_canceled))
        status: Status = "filled" if not remaining else "canceled"
        return Placed(order_id, client_order_id, status, filled, 0, remaining, tuple(fills), tuple(events),
                      tuple(makers_canceled))

    def cancel(self, order_id: int, ts_ms: int) -> Canceled | None:
        """Cancel a resting order; None if no such order is resting (unknown, filled or canceled)."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        return self._remove(order, ts_ms, "requested")

    def amend(self, order_id: int, price: int, remaining: int, ts_ms: int, *, post_only: bool = False,
              self_trade: SelfTrade | None = None) -> Placed | None:
        """Give a resting order a new YES-leg ``price`` and resting count ``remaining``; None if no such order is
        resting. The same price and no more than it rests: a :meth:`decrease` (the order keeps its place).
        Otherwise the order leaves its place, takes what the new price crosses (``filled``, ``fills``, the
        trades' events) and rests what is left at the back of the queue, or is canceled by self-trade
        prevention (``taker_at_cross``: ``status="canceled"``, ``canceled`` the rest). A refusal
        (``status="rejected"``: closed market, off-grid price, a count that is not positive, post-only that
        would take) changes nothing. ``filled``/``remaining``/``canceled`` count this amend's doing; the
        returned ``events`` start with the order's removal from its old level."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        coid = order.client_order_id
        if not self.is_open:
            return _rejected(coid, "market_closed", f"{self.market} is closed", order_id)
        tick = self.tick
        if type(price) is not int or not tick <= price <= PRICE_MAX - tick or price % tick:
            return _rejected(coid, "invalid_price",
                             f"price {price!r} is not a multiple of {tick} in [{tick}, {PRICE_MAX - tick}]", order_id)
        if type(remaining) is not int or remaining <= 0:
            return _rejected(coid, "invalid_count", f"count {remaining!r} is not a positive integer", order_id)
        ladder = order.ladder
        lprice = price if ladder == 0 else PRICE_MAX - price
        if lprice == order.lprice and remaining <= order.remaining:
            return self._decrease(order, remaining, ts_ms)
        stp = self.self_trade if self_trade is None else self_trade
        if stp not in ("taker_at_cross", "maker"):
            raise ValueError(f"{self.market}: self_trade must be 'taker_at_cross' or 'maker', got {stp!r}")
        other = 1 - ladder
        opp_prices = self._prices[other]
        crosses = bool(opp_prices) and opp_prices[-1] + lprice >= PRICE_MAX
        if crosses and post_only:
            return _rejected(coid, "post_only_would_cross", f"post-only {_BOOK_SIDE[ladder]} at {price} would take "
                             "liquidity", order_id)
        filled_before = order.count - order.remaining
        events: list[MarketEvent] = list(self._remove(order, ts_ms, "amended").events)
        fills: list[Fill] = []
        makers_canceled: list[Canceled] = []
        left, stopped = remaining, False
        if crosses:
            left, stopped = self._match(order_id, order.owner, coid, ladder, other, lprice, left, ts_ms, stp, events,
                                        fills, makers_canceled)
        filled = remaining - left
        if left and not stopped:
            moved = _Order(order_id, order.owner, coid, ladder, lprice, filled_before + remaining, left, ts_ms)
            self._rest(moved)
            events.append(BookDelta(self.market, _LADDER_NAME[ladder], lprice, left, venue_ts_ms=ts_ms))
            return Placed(order_id, coid, "resting", filled, left, 0, tuple(fills), tuple(events),
                          tuple(makers_canceled))
        status: Status = "filled" if not left else "canceled"
        return Placed(order_id, coid, status, filled, 0, left, tuple(fills), tuple(events), tuple(makers_canceled))

    def decrease(self, order_id: int, remaining: int, ts_ms: int) -> Placed | None:
        """Leave a resting order ``remaining`` (no more than it has) in its place in the queue; None if no such
        order is resting. ``canceled`` is the count taken off; at zero the order is canceled
        (``status="canceled"``). A count above what rests (or negative) is refused, changing nothing."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        if type(remaining) is not int or not 0 <= remaining <= order.remaining:
            return _rejected(order.client_order_id, "invalid_count", f"count {remaining!r} is not in [0, "
                             f"{order.remaining}] (a decrease cannot add to what rests)", order_id)
        return self._decrease(order, remaining, ts_ms)

    def _decrease(self, order: _Order, remaining: int, ts_ms: int) -> Placed:
        n = order.remaining - remaining
        if not remaining:
            canceled = self._remove(order, ts_ms, "requested")
            return Placed(order.order_id, order.client_order_id, "canceled", 0, 0, n, events=canceled.events)
        events: tuple[MarketEvent, ...] = ()
        if n:
            order.remaining = remaining
            order.count -= n
            self._sizes[order.ladder][order.lprice] -= n
            events = (BookDelta(self.market, _LADDER_NAME[order.ladder], order.lprice, -n, venue_ts_ms=ts_ms),)
        return Placed(order.order_id, order.client_order_id, "resting", 0, remaining, n, events=events)

    def close(self, ts_ms: int) -> tuple[Canceled, ...]:
        """Close the market: cancel every resting order (oldest first) and refuse orders until :meth:`reopen`."""
        self.is_open = False
        return tuple(self._remove(order, ts_ms, "market_closed") for order in list(self._orders.values()))

    def reopen(self) -> None:
        """Accept orders again after :meth:`close`."""
        self.is_open = True

    # --- reads --------------------------------------------------------------------------------------
    def best_bid(self) -> int | None:
        """The highest YES bid, or None."""
        prices = self._prices[0]
        return prices[-1] if prices else None

    def best_ask(self) -> int | None:
        """The lowest YES ask (10000 - the highest NO bid), or None."""
        prices = self._prices[1]
        return PRICE_MAX - prices[-1] if prices else None

    def bid_size(self, price: int) -> int:
        """Resting count bid at YES price ``price``."""
        return self._sizes[0][price] if 0 <= price <= PRICE_MAX else 0

    def ask_size(self, price: int) -> int:
        """Resting count offered at YES price ``price``."""
        return self._sizes[1][PRICE_MAX - price] if 0 <= price <= PRICE_MAX else 0

    def levels(self) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """(YES bids, NO bids) as Kalshi sends them: (ladder price, count), ascending by price."""
        (yes, no), (yes_prices, no_prices) = self._sizes, self._prices
        return tuple((p, yes[p]) for p in yes_prices), tuple((q, no[q]) for q in no_prices)

    def snapshot(self, ts_ms: int | None = None) -> BookSnapshot:
        """The whole book as a Kalshi order-book snapshot."""
        yes, no = self.levels()
        return BookSnapshot(self.market, yes, no, venue_ts_ms=ts_ms)

    def queue(self, side: Side, price: int) -> tuple[RestingOrder, ...]:
        """The orders resting at YES price ``price`` on ``side``, first in priority first."""
        ladder = _LADDER[side]
        level = self._levels[ladder].get(price if ladder == 0 else PRICE_MAX - price)
        if level is None:
            return ()
        return tuple(o.view() for o in level.queue if o.remaining)

    def order(self, order_id: int) -> RestingOrder | None:
        """A resting order by id, or None."""
        order = self._orders.get(order_id)
        return None if order is None else order.view()

    def queue_ahead(self, order_id: int) -> int | None:
        """The count resting ahead of a resting order at its price (what must trade or cancel before it
        fills), or None if it is not resting."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        ahead = 0
        for o in self._levels[order.ladder][order.lprice].queue:
            if o is order:
                return ahead
            ahead += o.remaining
        raise AssertionError(f"{self.market}: resting order {order_id} is missing from its queue")  # a bug

    def is_resting(self, order_id: int) -> bool:
        return order_id in self._orders

    def resting_count(self) -> int:
        """How many orders rest on the book."""
        return len(self._orders)

    def __repr__(self) -> str:
        return (f"MatchingEngine({self.market!r}, bid={self.best_bid()}, ask={self.best_ask()}, "
                f"orders={len(self._orders)}, open={self.is_open})")

    # --- internals -----------------------------------------------------------------------------------
    def _fillable(self, owner: str, other: int, floor: int, want: int, stp: SelfTrade) -> int:
        """How much (up to ``want``) a taker of ``owner`` could fill from ladder ``other`` at prices >= ``floor``.

        Walks the queues, not the aggregates: the taker's own resting orders do not count, and under
        ``taker_at_cross`` the first of them ends the walk, as it would end the match."""
        levels, got = self._levels[other], 0
        for q in reversed(self._prices[other]):
            if q < floor:
                break
            for o in levels[q].queue:
                if not o.remaining:
                    continue
                if o.owner == owner:
                    if stp == "taker_at_cross":
                        return got
                    continue
                got += o.remaining
                if got >= want:
                    return got
        return got

    def _match(self, order_id: int, owner: str, client_order_id: str | None, ladder: int, other: int, lprice: int,
               remaining: int, ts_ms: int, stp: SelfTrade, events: list[MarketEvent], fills: list[Fill],
               makers_canceled: list[Canceled]) -> tuple[int, bool]:
        """Take from ladder ``other`` while it crosses; returns (remaining, stopped by self-trade prevention)."""
        market = self.market
        sizes, prices, levels = self._sizes[other], self._prices[other], self._levels[other]
        orders = self._orders
        floor = PRICE_MAX - lprice
        taker_side = _BOOK_SIDE[ladder]
        maker_side = _BOOK_SIDE[other]
        maker_ladder = _LADDER_NAME[other]
        taker_outcome = _TAKER_SIDE[ladder]
        stopped = False
        while remaining and prices and prices[-1] >= floor:
            q = prices[-1]
            yes_price = q if other == 0 else PRICE_MAX - q
            level = levels[q]
            queue = level.queue
            taken = 0
            while remaining and queue:
                maker = queue[0]
                if not maker.remaining:
                    queue.popleft()
                    level.dead -= 1
                    continue
                if maker.owner == owner:
                    if stp == "taker_at_cross":
                        stopped = True
                        break
                    n = maker.remaining
                    maker.remaining = 0
                    queue.popleft()
                    del orders[maker.order_id]
                    taken += n
                    makers_canceled.append(Canceled(maker.order_id, maker.owner, maker.client_order_id, maker_side,
                                                    yes_price, n, "self_trade", ()))
                    continue
                n = maker.remaining if maker.remaining < remaining else remaining
                trade_id = f"{market}:{self._next_trade}"
                self._next_trade += 1
                maker.remaining -= n
                remaining -= n
                taken += n
                fills.append(Fill(trade_id, order_id, owner, client_order_id, taker_side, yes_price, n, True,
                                  remaining, ts_ms))
                fills.append(Fill(trade_id, maker.order_id, maker.owner, maker.client_order_id, maker_side, yes_price,
                                  n, False, maker.remaining, ts_ms))
                events.append(PublicTrade(market, trade_id, yes_price, n, taker_outcome, venue_ts_ms=ts_ms))
                if ladder == 0:
                    self._hold(owner, maker.owner, n)
                else:
                    self._hold(maker.owner, owner, n)
                if not maker.remaining:
                    queue.popleft()
                    del orders[maker.order_id]
            if taken:
                left = sizes[q] - taken
                sizes[q] = left
                events.append(BookDelta(market, maker_ladder, q, -taken, venue_ts_ms=ts_ms))
                if not left:
                    prices.pop()
                    del levels[q]
            if stopped:
                break
        return remaining, stopped

    def _hold(self, buyer: str, seller: str, n: int) -> None:
        """A trade of ``n`` moves YES from ``seller`` to ``buyer``; the open interest follows the long positions."""
        held = self._held
        b0, s0 = held.get(buyer, 0), held.get(seller, 0)
        b1, s1 = b0 + n, s0 - n
        held[buyer], held[seller] = b1, s1
        self.open_interest += (b1 if b1 > 0 else 0) - (b0 if b0 > 0 else 0) + (s1 if s1 > 0 else 0) - (s0 if s0 > 0 else 0)

    def _rest(self, order: _Order) -> None:
        ladder, p = order.ladder, order.lprice
        sizes, levels = self._sizes[ladder], self._levels[ladder]
        level = levels.get(p)
        if level is None:
            level = levels[p] = _Level()
            insort(self._prices[ladder], p)
        level.queue.append(order)
        sizes[p] += order.remaining
        self._orders[order.order_id] = order

    def _remove(self, order: _Order, ts_ms: int, reason: str) -> Canceled:
        del self._orders[order.order_id]
        ladder, p, n = order.ladder, order.lprice, order.remaining
        order.remaining = 0
        sizes = self._sizes[ladder]
        left = sizes[p] - n
        sizes[p] = left
        levels = self._levels[ladder]
        if not left:
            del levels[p]
            prices = self._prices[ladder]
            del prices[bisect_left(prices, p)]
        else:
            level = levels[p]
            queue = level.queue
            if queue[-1] is order:
                queue.pop()
            elif queue[0] is order:
                queue.popleft()
            else:
                level.dead += 1
                if level.dead > _COMPACT_AT and 2 * level.dead > len(queue):
                    level.queue = deque(o for o in queue if o.remaining)
                    level.dead = 0
        delta = BookDelta(self.market, _LADDER_NAME[ladder], p, -n, venue_ts_ms=ts_ms)
        price = p if ladder == 0 else PRICE_MAX - p
        return Canceled(order.order_id, order.owner, order.client_order_id, _BOOK_SIDE[ladder], price, n, reason,
                        (delta,))


def _rejected(client_order_id: str | None, reason: RejectReason, detail: str, order_id: int | None = None) -> Placed:
    return Placed(order_id, client_order_id, "rejected", 0, 0, 0, reason=reason, detail=detail)
