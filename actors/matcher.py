"""Paper execution: our orders matched against the book we observe, as a pure state machine.

Our paper orders are never shown to the venue, so the observed book does not react to them. The rules
below stand in for that; each is explicit and tested.

* **Latency.** An order (and a cancel) reaches the simulated venue ``latency_ns`` of event time after
  the event that released it; it is validated, accepted and matched then, against the book as it is
  then. Time advances with the events folded, whatever their market.
* **Admission.** An ``OrderIntent`` waits for the cash pool's verdict: ``CashReserved`` releases it to
  the venue, an ``OrderRejected`` drops it. At the venue: unknown market, closed market, stale book,
  price outside 1..9,999, non-positive count, post-only that would cross, fill-or-kill that cannot fill
  whole: each is an ``OrderRejected`` with its reason.
* **Aggressive orders** walk the opposite side level by level at each level's price while within the
  limit (so a sweep fills at its VWAP), taking ``available = displayed - consumed`` at each level.
  IOC cancels what is left; FOK fills whole or is rejected; GTC rests the remainder.
* **Consumed liquidity.** Size we took at a level stays consumed: after every change of that level,
  ``consumed = min(consumed, displayed)``. So only size that arrives later (the level growing again)
  is available to our next order, and two of our orders never fill against the same displayed size.
* **Queue position.** A resting order queues behind the size displayed at its price when it went live
  (and behind our earlier orders there). A public trade at its price consumes the queue ahead first;
  the rest of the traded volume fills it. A trade *through* its price (a sell below our bid, a buy
  above our ask) fills it outright. When displayed size at its price shrinks without a trade to
  explain it (a cancel), ``queue_model`` says how far the queue advances: ``conservative`` — only as
  far as needed to keep ``ahead <= displayed``; ``proportional`` — by ``cancelled * ahead / before``; ``share`` —
  by ``cancel_ahead_pct`` percent of what was cancelled (a share calibrated against a true queue,
  :mod:`runtime.fidelity`); ``orders`` — a venue's delta is one order's event (Kalshi's and the local exchange's
  are), so each growth of the level after ours went live is an order that joined *behind* it, which only a cancel
  can take away while we rest (trades take the front of the queue): a cancel the size of one of those came from
  behind and leaves ``ahead`` alone; any other came from ahead (an order there before us, or what a trade left of
  one) and advances it by its size. Each never past ``ahead <= displayed``.
  Shrinkage that follows a trade at that price is attributed to the trade first (the trade credit).
* **Crossing.** If the displayed opposite side moves through a resting order's price, the order fills
  as a maker at its own price against the available size.
* **Fees**: taker fees for aggressive fills, maker fees for resting fills, from the fee function.
* **Market info.** A ``MarketInfo`` in the log is the venue's definition of its market: from then on an order
  there must be on its price grid (whole cents and its ``price_ranges``, :func:`.market_info.on_grid`; else
  ``invalid_price`` naming the grid), and its fills pay the fee terms it names (:func:`.fees.fee_terms`) instead
  of the fee function's. A market without one is checked and charged as before the event existed. The latest
  ``MarketInfo`` per market is part of the snapshot (left out when there is none).
* **Rate limits** (``limits``: a Kalshi tier, :mod:`.limits`; None, the default, for no limit). The venue
  meters our requests in event time: an order reaching it takes 10 tokens from the tier's write bucket, a
  cancel 2. An order the bucket cannot cover is refused as Kalshi would refuse it (429): an ``OrderRejected``
  with reason ``rate_limited``, before any other check (Kalshi charges a request it admits even if it then
  refuses the order). A cancel is never refused: a client retries it, so it is delayed until the bucket holds
  its cost. The bucket starts full and is part of the snapshot.
* **Pacing** (``pacing``: a Kalshi tier, None for none). Our own REST client paces itself to the account's tier
  (:mod:`runtime.venues.kalshi.http`): an order or a cancel it cannot afford waits for the write bucket instead of
  being sent. With ``pacing`` the matcher models that wait as the client waits: in turn (first come, first sent; of
  one round, the orders before the cancels, as the order gateway starts them), each until the bucket holds its cost
  — an order 10 tokens, a cancel 2 — plus the client's margin (50 ms of refill), then it goes on as above (in event
  time; the bucket and the waiting line are part of the snapshot). A burst of orders thus reaches the venue spread
  out, and so do the cancels behind it, as they do when live.
* **Beside live orders** (``own_prefix``: the shadow execution, :mod:`.shadow`). The book then shows our live
  orders too: deltas carrying a client order id with ``own_prefix`` (Kalshi tells the owner which of its orders
  caused a delta) are our own footprint. It is counted per level (less the venue's maker fills of our orders,
  ``OrderFilled`` inputs) and never counts as queue: a paper order queues behind the displayed size less our own,
  its queue does not advance when our own order leaves, and our own size is never taken. Size our own live order
  took stays available to its paper copy (which reaches the simulated venue later) until the level next changes.

The rules are deterministic, so the matcher needs no random draws. Fills are ``OrderFilled`` with
``trade_id`` ``paper-<seq>-<n>``; order ids are ``paper-<client order id>``.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from runtime.events import (
    BookDelta,
    BookResynced,
    BookSnapshot,
    CancelRequested,
    CashReserved,
    Event,
    MarketInfo,
    MarketLifecycle,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PublicTrade,
    SeqGapDetected,
)

from .book import BookState, OrderBook
from .fees import SeriesFees, fee_terms
from .limits import CANCEL_COST, DEFAULT_COST, Cost, RateLimits, RateLimitsSnapshot, Tier
from .machine import NOTHING
from .market_info import grid_text, on_grid

__all__ = ["FeeFn", "PaperMatcher"]

FeeFn = Callable[[str, int, int, bool], int]  # (market, price, count, is_taker) -> fee in micro-dollars
QueueModel = Literal["conservative", "proportional", "share", "orders"]
QUEUE_MODELS: tuple[QueueModel, ...] = ("conservative", "proportional", "share", "orders")
_CLOSING = frozenset({"deactivated", "determined", "settled"})
_ALL_LEVELS = 10_001
_ORDER_COST = Cost("write", DEFAULT_COST)  # what reaching the venue costs an order, and a cancel
_CANCEL_COST = Cost("write", CANCEL_COST)
_PACE_MARGIN_NS = 50_000_000  # the refill our REST client waits for beyond a request's cost (KalshiRest pace_margin_s)


class _Order(msgspec.Struct, gc=False):
    """One of our orders at the simulated venue (mutable: it is the matcher's own state)."""

    client_order_id: str
    market: str
    side: Literal["bid", "ask"]
    price: int
    count: int
    remaining: int
    tif: str
    post_only: bool
    expires_ns: int | None
    live: bool = False
    ahead: int = 0  # displayed size ahead of us in the queue, while resting

    @property
    def order_id(self) -> str:
        return f"paper-{self.client_order_id}"


class _Due(msgspec.Struct, array_like=True, order=True):
    """Work that falls due at an event time: an order reaching the venue, a cancel, an expiry."""

    at_ns: int
    n: int  # insertion counter: ties run in the order they were scheduled
    kind: Literal["live", "cancel", "expire", "pace"]  # (pace: the head of the pacing line may go now)
    client_order_id: str


class MatcherSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    books: dict[str, BookState]
    orders: list[_Order]
    waiting: list[OrderIntent]
    due: list[_Due]
    consumed: list[tuple[str, str, int, int]]
    credit: list[tuple[str, str, int, int]]
    closed: list[str]
    scheduled: int
    limits: RateLimitsSnapshot | None = None  # (omitted when None: a snapshot without limits is as it was)
    market_info: tuple[MarketInfo, ...] = ()  # the latest per market, by market (omitted when empty, as above)
    own: list[tuple[str, str, int, int]] = []  # our live orders' size per level, beside live orders (as above)
    pacer: RateLimitsSnapshot | None = None  # the pacing bucket (omitted when None, as above)
    held: list[_Due] = []  # what waits for it, in turn
    waking: bool = False  # the line's head is due to be looked at again (a "pace" entry is in ``due``)
    behind: list[tuple[str, list[int]]] = []  # queue_model "orders": per resting order, the orders behind it (as above)


class PaperMatcher:
    """Paper execution for every market of a session (see the module docstring for the rules)."""

    def __init__(self, fee: FeeFn, *, latency_ns: int = 0, queue_model: QueueModel = "conservative",
                 limits: Tier | str | None = None, own_prefix: str | None = None, cancel_ahead_pct: int = 0,
                 pacing: Tier | str | None = None) -> None:
        if latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
        if queue_model not in QUEUE_MODELS:
            raise ValueError(f"queue_model must be one of {', '.join(QUEUE_MODELS)}, got {queue_model!r}")
        if not 0 <= cancel_ahead_pct <= 100:
            raise ValueError(f"cancel_ahead_pct must be 0..100, got {cancel_ahead_pct}")
        self.cancel_ahead_pct = cancel_ahead_pct
        self.fee = fee
        self.latency_ns = latency_ns
        self.queue_model = queue_model
        self.limits = None if limits is None else RateLimits(limits)  # the venue's buckets for our account
        self.pacer = None if pacing is None else RateLimits(pacing)  # our client's model of them, which it waits on
        self._held: deque[_Due] = deque()  # orders and cancels waiting for the pacer, in turn
        self._waking = False  # a "pace" entry is scheduled
        self.books: dict[str, OrderBook] = {}
        self.orders: dict[str, _Order] = {}  # open orders by client order id, in placement order
        self._resting: dict[tuple[str, str], dict[int, list[_Order]]] = {}  # (market, side) -> price -> queue
        self._prices: dict[tuple[str, str], list[int]] = {}  # (market, side) -> sorted prices with resting orders
        self._resting_in: dict[str, int] = {}  # market -> how many of our orders rest in it
        self._waiting: dict[str, OrderIntent] = {}  # intents waiting for the cash pool
        self._due: list[_Due] = []
        self._scheduled = 0
        self._consumed: dict[tuple[str, str, int], int] = {}  # (market, book side, price) -> count
        self._credit: dict[tuple[str, str, int], int] = {}  # traded volume not yet seen leave the book
        self._closed: set[str] = set()
        self._fills = 0  # fills emitted while handling the current event (trade id suffix)
        self._info: dict[str, MarketInfo] = {}  # the latest MarketInfo per market
        self._terms: dict[str, SeriesFees] = {}  # the fee terms those name
        self.own_prefix = own_prefix  # beside live orders: the client order ids whose footprint the book shows
        self._own: dict[tuple[str, str, int], int] = {}  # (market, book side, price) -> our live orders' size there
        self._behind: dict[str, list[int]] = {}  # queue_model "orders": client order id -> the sizes of the orders
        # that joined behind it while it rests, oldest first
        self.rested: list[tuple[str, str, int, int]] = []  # beside live orders: (client order id, market, ahead,
        # remaining) of the orders that came to rest while handling the current event

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        out: list[Event] = []
        self._fills = 0
        if self.rested:
            self.rested = []
        if self._due and self._due[0].at_ns <= ts_ns:
            self._run_due(seq, ts_ns, out)
        if type(event) is BookDelta:  # the hot path
            book = self.books.get(event.market)
            if book is not None:
                key = (event.market, "bid", event.price) if event.side == "yes" else (
                    event.market, "ask", 10_000 - event.price)
                coid = event.client_order_id
                if coid is not None and self.own_prefix is not None and coid.startswith(self.own_prefix):
                    self._own_delta(book, key, event, seq, ts_ns)
                # with no resting order of ours in the market and nothing consumed, credited or ours at the level,
                # _level_changed has nothing to change (the common case): the book moves, nothing else
                elif (self._resting_in.get(event.market) or key in self._consumed or key in self._credit
                      or (self._own and key in self._own)):
                    self._delta(book, key, event, seq, ts_ns, out)
                else:
                    book.handle(seq, ts_ns, event)
            if self._due and self._due[0].at_ns <= ts_ns:
                self._run_due(seq, ts_ns, out)
            return out or NOTHING
        match event:
            case BookSnapshot(market=market):
                book = self.books.get(market)
                if book is None:  # (not setdefault: that would build a book, 160 KB, on every snapshot)
                    book = self.books[market] = OrderBook(market)
                book.handle(seq, ts_ns, event)
                self._book_replaced(market, seq, out)
            case PublicTrade():
                if event.market in self.books:
                    self._public_trade(event, seq, out)
            case OrderIntent(client_order_id=coid):
                self._waiting[coid] = event
            case CashReserved(client_order_id=coid):
                intent = self._waiting.pop(coid, None)
                if intent is not None:
                    self._place(intent, ts_ns)
            case OrderRejected(client_order_id=coid):
                self._waiting.pop(coid, None)  # the cash pool said no (our own rejections are no-ops)
            case CancelRequested(client_order_id=coid):
                if coid in self.orders:
                    self._schedule(ts_ns + self.latency_ns, "cancel", coid)
            case MarketLifecycle(market=market, kind=kind):
                if kind in _CLOSING:
                    self._closed.add(market)
                    for order in [o for o in self.orders.values() if o.market == market]:
                        if order.live:
                            self._cancel(order, "market_closed", seq, out)
                        else:  # still on its way: the venue refuses it
                            self._reject(order, "market_closed", f"market {market} closed", seq, out)
                elif kind == "activated":
                    self._closed.discard(market)
            case SeqGapDetected() | BookResynced():
                for book in self.books.values():
                    book.handle(seq, ts_ns, event)
            case MarketInfo():
                self._learn(event)
            case OrderFilled(cause_seq=None, is_taker=False) if self._own:  # the venue filled one of our live orders
                if self.own_prefix is not None and event.client_order_id.startswith(self.own_prefix):
                    self._own_filled(event)
        return self._after(seq, ts_ns, out)

    def _after(self, seq: int, ts_ns: int, out: list[Event]) -> Sequence[Event]:
        if self._due and self._due[0].at_ns <= ts_ns:  # work this event made due at once (zero latency)
            self._run_due(seq, ts_ns, out)
        return out or NOTHING

    # -- time -----------------------------------------------------------------------------------
    def _schedule(self, at_ns: int, kind: Literal["live", "cancel", "expire", "pace"], coid: str) -> None:
        self._scheduled += 1
        heapq.heappush(self._due, _Due(at_ns, self._scheduled, kind, coid))

    def _run_due(self, seq: int, ts_ns: int, out: list[Event]) -> None:
        while self._due and self._due[0].at_ns <= ts_ns:
            due = heapq.heappop(self._due)
            order = self.orders.get(due.client_order_id)
            if order is None:
                if due.kind == "pace":
                    self._waking = False
                    self._release(due.at_ns, seq, out)
                continue
            # our client sends it in turn, once it can afford it
            if due.kind != "expire" and self.pacer is not None and (self._held or not self._afford(due)):
                self._hold(due)
                self._wake(due.at_ns)
                continue
            self._arrive(due, order, seq, out)

    def _hold(self, due: _Due) -> None:
        """Join the pacing line: at its end, but an order goes before the cancels of its own round (the gateway starts
        a round's sends before its cancels, so they queue for the bucket first)."""
        i = len(self._held)
        if due.kind == "live":
            while i and self._held[i - 1].kind == "cancel" and self._held[i - 1].at_ns == due.at_ns:
                i -= 1
        self._held.insert(i, due)

    def _afford(self, due: _Due) -> bool:
        """Take the pacer's tokens for ``due`` if it holds them and the client's margin (as the client does)."""
        cost = _ORDER_COST if due.kind == "live" else _CANCEL_COST
        if self.pacer.wait_ns(due.at_ns, cost, _PACE_MARGIN_NS):  # type: ignore[union-attr]
            return False
        return self.pacer.take(due.at_ns, cost)  # type: ignore[union-attr]

    def _wake(self, now_ns: int) -> None:
        """Look at the head of the pacing line again when the pacer will hold its cost (once)."""
        if not self._waking and self._held:
            cost = _ORDER_COST if self._held[0].kind == "live" else _CANCEL_COST
            self._waking = True
            self._schedule(now_ns + max(1, self.pacer.wait_ns(now_ns, cost, _PACE_MARGIN_NS)), "pace", "")  # type: ignore[union-attr]

    def _release(self, at_ns: int, seq: int, out: list[Event]) -> None:
        """Send the pacing line's head, and those after it, while the pacer affords them."""
        while self._held:
            head = self._held[0]
            order = self.orders.get(head.client_order_id)
            now = _Due(at_ns, head.n, head.kind, head.client_order_id)
            if order is not None and not self._afford(now):
                break
            self._held.popleft()
            if order is not None:
                self._arrive(now, order, seq, out)
        self._wake(at_ns)

    def _arrive(self, due: _Due, order: _Order, seq: int, out: list[Event]) -> None:
        """``due`` happens now: the order reaches the venue, or its cancel does, or it expires."""
        if due.kind == "live":
            self._go_live(order, due.at_ns, seq, out)
        elif due.kind == "cancel":
            if self.limits is not None and not self.limits.take(due.at_ns, _CANCEL_COST):
                self._schedule(due.at_ns + self.limits.wait_ns(due.at_ns, _CANCEL_COST), "cancel", order.client_order_id)
                return
            self._cancel(order, "requested", seq, out)
        elif order.live:
            self._remove(order)
            out.append(OrderExpired(client_order_id=order.client_order_id, order_id=order.order_id,
                                    expired_count=order.remaining, cause_seq=seq))

    def _place(self, intent: OrderIntent, ts_ns: int) -> None:
        order = _Order(intent.client_order_id, intent.market, intent.side, intent.price, intent.count,
                       intent.count, intent.tif, intent.post_only,
                       None if intent.expiration_ts_ms is None else intent.expiration_ts_ms * 1_000_000)
        self.orders[order.client_order_id] = order
        self._schedule(ts_ns + self.latency_ns, "live", order.client_order_id)

    # -- reaching the venue ---------------------------------------------------------------------
    def _reject(self, order: _Order, reason: str, detail: str, seq: int, out: list[Event]) -> None:
        del self.orders[order.client_order_id]
        out.append(OrderRejected(client_order_id=order.client_order_id, market=order.market,
                                 reason=reason, detail=detail, cause_seq=seq))  # type: ignore[arg-type]

    def _go_live(self, order: _Order, at_ns: int, seq: int, out: list[Event]) -> None:
        if self.limits is not None and not self.limits.take(at_ns, _ORDER_COST):
            bucket = self.limits.buckets["write"]
            return self._reject(order, "rate_limited",
                                f"{self.limits.tier.name} tier: the write bucket holds {bucket.tokens(at_ns)} of the "
                                f"{_ORDER_COST.tokens} tokens an order costs ({bucket.rate} tokens/s, up to "
                                f"{bucket.capacity}); Kalshi would answer 429", seq, out)
        book = self.books.get(order.market)
        if book is None:
            return self._reject(order, "unknown_market", f"no book for market {order.market!r}", seq, out)
        if order.market in self._closed:
            return self._reject(order, "market_closed", f"market {order.market} is closed", seq, out)
        if book.stale:
            return self._reject(order, "book_stale", f"the book of {order.market} is stale until resynced", seq, out)
        if not 1 <= order.price <= 9_999:
            return self._reject(order, "invalid_price", f"price {order.price} is outside 1..9999", seq, out)
        info = self._info.get(order.market)
        if info is not None and not on_grid(info, order.price):
            return self._reject(order, "invalid_price", f"price {order.price} is not on the grid of {order.market} "
                                f"({grid_text(info)})", seq, out)
        if order.count <= 0:
            return self._reject(order, "invalid_count", f"count {order.count} is not positive", seq, out)
        crosses = self._crossing_size(order, book)
        if order.post_only and crosses:
            return self._reject(order, "post_only_would_cross",
                                f"a post-only {order.side} at {order.price} would take {crosses} resting", seq, out)
        if order.tif == "fok" and crosses < order.count:
            return self._reject(order, "fok_unfillable",
                                f"only {crosses} of {order.count} can fill at {order.price} or better", seq, out)
        order.live = True
        out.append(OrderAccepted(client_order_id=order.client_order_id, order_id=order.order_id,
                                 market=order.market, cause_seq=seq))
        if crosses:
            self._take(order, book, seq, out, taker=True, at_own_price=False)
        if order.remaining and order.tif == "ioc":
            self._cancel(order, "ioc_remainder", seq, out)
        elif order.remaining:
            order.ahead = book.bid_size(order.price) if order.side == "bid" else book.ask_size(order.price)
            if self._own:
                order.ahead = max(0, order.ahead - self._own.get((order.market, order.side, order.price), 0))
            order.ahead += sum(o.remaining for o in self._resting_at(order.market, order.side, order.price))
            self._rest(order)
            if self.own_prefix is not None:  # (a shadow reports it)
                self.rested.append((order.client_order_id, order.market, order.ahead, order.remaining))
            if order.expires_ns is not None:
                self._schedule(order.expires_ns, "expire", order.client_order_id)

    def _opposite(self, order: _Order, book: OrderBook) -> list[tuple[int, int]]:
        """Levels that could trade with ``order`` (best first), within its limit."""
        limit = order.price
        if order.side == "bid":
            levels = book.asks(8)
            if len(levels) == 8 and levels[-1][0] <= limit:
                levels = book.asks(_ALL_LEVELS)
            chosen = [lv for lv in levels if lv[0] <= limit]
        else:
            levels = book.bids(8)
            if len(levels) == 8 and levels[-1][0] >= limit:
                levels = book.bids(_ALL_LEVELS)
            chosen = [lv for lv in levels if lv[0] >= limit]
        if self._own:  # levels our own live order emptied are still there for its paper copy (module docstring)
            oside = "ask" if order.side == "bid" else "bid"
            shown = {p for p, _ in chosen}
            gone = [(p, 0) for (m, side, p), n in self._own.items() if n < 0 and m == order.market and side == oside
                    and p not in shown and (p <= limit if order.side == "bid" else p >= limit)]
            if gone:
                chosen = sorted(chosen + gone, reverse=order.side == "ask")
        return chosen

    def _crossing_size(self, order: _Order, book: OrderBook) -> int:
        oside = "ask" if order.side == "bid" else "bid"
        own = self._own
        return sum(max(0, n - self._consumed.get((order.market, oside, p), 0)
                       - (own.get((order.market, oside, p), 0) if own else 0)) for p, n in self._opposite(order, book))

    def _take(self, order: _Order, book: OrderBook, seq: int, out: list[Event], *, taker: bool, at_own_price: bool) -> None:
        """Fill ``order`` against available opposite size within its limit, best level first."""
        oside = "ask" if order.side == "bid" else "bid"
        for price, displayed in self._opposite(order, book):
            if not order.remaining:
                break
            key = (order.market, oside, price)
            available = displayed - self._consumed.get(key, 0) - (self._own.get(key, 0) if self._own else 0)
            if available <= 0:
                continue
            take = min(available, order.remaining)
            self._consumed[key] = self._consumed.get(key, 0) + take
            self._fill(order, order.price if at_own_price else price, take, taker, seq, out)

    def _fill(self, order: _Order, price: int, count: int, taker: bool, seq: int, out: list[Event]) -> None:
        self._fills += 1
        order.remaining -= count
        out.append(OrderFilled(
            trade_id=f"paper-{seq}-{self._fills}", order_id=order.order_id, client_order_id=order.client_order_id,
            market=order.market, side=order.side, price=price, count=count,
            fee=self._fee(order.market, price, count, taker), is_taker=taker, cause_seq=seq))
        if not order.remaining:
            self._remove(order)

    def _cancel(self, order: _Order, reason: str, seq: int, out: list[Event]) -> None:
        """Cancel a live order's remainder (a cancel is always due after its order went live)."""
        self._remove(order)
        out.append(OrderCanceled(client_order_id=order.client_order_id, order_id=order.order_id,
                                 canceled_count=order.remaining, reason=reason, cause_seq=seq))

    def _rest(self, order: _Order) -> None:
        key = (order.market, order.side)
        levels = self._resting.setdefault(key, {})
        if order.price not in levels:
            levels[order.price] = []
            bisect.insort(self._prices.setdefault(key, []), order.price)
        levels[order.price].append(order)
        self._resting_in[order.market] = self._resting_in.get(order.market, 0) + 1

    def _remove(self, order: _Order) -> None:
        if self.orders.pop(order.client_order_id, None) is None:
            return
        if self._behind:
            self._behind.pop(order.client_order_id, None)
        key = (order.market, order.side)
        queue = self._resting.get(key, {}).get(order.price)
        if queue is not None and order in queue:
            queue.remove(order)
            self._resting_in[order.market] -= 1
            if not queue:
                del self._resting[key][order.price]
                prices = self._prices[key]
                del prices[bisect.bisect_left(prices, order.price)]

    def _trim(self, order: _Order, others: int) -> None:
        """What joined behind ``order`` is no more than the level shows beyond the queue ahead of it (the oldest
        leave first: a snapshot or an unexplained shrink says the record is off, and the newest are the likeliest
        there)."""
        behind = self._behind.get(order.client_order_id)
        if behind:
            room = others - order.ahead
            while behind and sum(behind) > room:
                behind.pop(0)

    def _resting_at(self, market: str, side: str, price: int) -> list[_Order]:
        return self._resting.get((market, side), {}).get(price, [])

    def _resting_where(self, market: str, side: str, beyond: int, inclusive: bool) -> list[_Order]:
        """Resting orders priced better than ``beyond`` (at it too if ``inclusive``), best first."""
        prices = self._prices.get((market, side))
        if not prices:
            return []
        levels = self._resting[(market, side)]
        if side == "bid":
            cut = bisect.bisect_left(prices, beyond) if inclusive else bisect.bisect_right(prices, beyond)
            chosen = reversed(prices[cut:])
        else:
            cut = bisect.bisect_right(prices, beyond) if inclusive else bisect.bisect_left(prices, beyond)
            chosen = iter(prices[:cut])
        return [o for p in chosen for o in levels[p]]

    # -- the book moves -------------------------------------------------------------------------
    def _delta(self, book: OrderBook, key: tuple[str, str, int], event: BookDelta, seq: int, ts_ns: int,
               out: list[Event]) -> None:
        market, bside, level = key
        before = book.bid_size(level) if bside == "bid" else book.ask_size(level)
        book.handle(seq, ts_ns, event)
        self._level_changed(market, bside, level, before, seq, out)

    def _own_delta(self, book: OrderBook, key: tuple[str, str, int], event: BookDelta, seq: int, ts_ns: int) -> None:
        """Our own live order changed the level (placed, took, left): the book moves, the queue ahead of a paper order
        there does not (it never counted our own size), and size we left is not what anyone else consumed."""
        book.handle(seq, ts_ns, event)
        own = self._own.get(key, 0) + event.delta
        if own:
            self._own[key] = own
        else:
            self._own.pop(key, None)
        market, bside, level = key
        after = book.bid_size(level) if bside == "bid" else book.ask_size(level)
        if key in self._consumed:
            self._consumed[key] = min(self._consumed[key], max(0, after - self._own.get(key, 0)))
            if not self._consumed[key]:
                del self._consumed[key]
        others = max(0, after - self._own.get(key, 0))
        for order in self._resting_at(market, bside, level):
            order.ahead = min(order.ahead, others)

    def _own_filled(self, fill: OrderFilled) -> None:
        key = (fill.market, fill.side, fill.price)
        own = self._own.get(key, 0)
        if own > 0:
            if own > fill.count:
                self._own[key] = own - fill.count
            else:
                del self._own[key]

    def _level_changed(self, market: str, bside: str, level: int, before: int, seq: int, out: list[Event]) -> None:
        book = self.books[market]
        after = book.bid_size(level) if bside == "bid" else book.ask_size(level)
        key = (market, bside, level)
        if self._own and self._own.get(key, 0) < 0:  # the size our own order took is back or gone for good: the race
            del self._own[key]  # is over
        if key in self._consumed:
            self._consumed[key] = min(self._consumed[key], after)
            if not self._consumed[key]:
                del self._consumed[key]
        if after < before:
            shrink = before - after
            credit = self._credit.get(key, 0)
            explained = min(credit, shrink)
            if credit:
                self._credit[key] = credit - explained
                if not self._credit[key]:
                    del self._credit[key]
            cancelled = shrink - explained
            others = after - self._own.get(key, 0) if self._own else after
            for order in list(self._resting_at(market, bside, level)):
                if self.queue_model == "proportional" and cancelled and before:
                    order.ahead -= cancelled * order.ahead // before
                elif self.queue_model == "share" and cancelled:
                    order.ahead -= cancelled * self.cancel_ahead_pct // 100
                elif self.queue_model == "orders" and cancelled:
                    behind = self._behind.get(order.client_order_id)
                    if behind and cancelled in behind:
                        behind.remove(cancelled)
                    else:
                        order.ahead -= cancelled
                order.ahead = max(0, min(order.ahead, others))
                if self._behind:
                    self._trim(order, others)
        elif after > before and not book.stale:
            if self.queue_model == "orders":
                for order in self._resting_at(market, bside, level):
                    self._behind.setdefault(order.client_order_id, []).append(after - before)
            # only growth makes size available, and only at this level: resting orders of the other
            # side priced through it now cross it
            other = "ask" if bside == "bid" else "bid"
            for order in self._resting_where(market, other, level, inclusive=True):
                if order.remaining:
                    self._take(order, book, seq, out, taker=False, at_own_price=True)

    def _book_replaced(self, market: str, seq: int, out: list[Event]) -> None:
        book = self.books[market]
        for key in [k for k in self._consumed if k[0] == market]:
            size = book.bid_size(key[2]) if key[1] == "bid" else book.ask_size(key[2])
            self._consumed[key] = min(self._consumed[key], size)
            if not self._consumed[key]:
                del self._consumed[key]
        for key in [k for k in self._credit if k[0] == market]:
            del self._credit[key]
        for key in [k for k in self._own if k[0] == market]:  # our orders are in the snapshot: no more than it shows
            size = book.bid_size(key[2]) if key[1] == "bid" else book.ask_size(key[2])
            self._own[key] = min(self._own[key], size)
            if self._own[key] <= 0:
                del self._own[key]
        for side in ("bid", "ask"):
            for price, queue in self._resting.get((market, side), {}).items():
                size = book.bid_size(price) if side == "bid" else book.ask_size(price)
                size = max(0, size - self._own.get((market, side, price), 0))
                for order in queue:
                    order.ahead = min(order.ahead, size)
                    if self._behind:
                        self._trim(order, size)
        self._cross(market, seq, out)

    def _cross(self, market: str, seq: int, out: list[Event]) -> None:
        """Resting orders that the opposite side has moved through fill as makers at their price."""
        book = self.books[market]
        if book.stale:
            return
        best_ask, best_bid = book.best_ask(), book.best_bid()
        crossed = []
        if best_ask is not None:
            crossed += self._resting_where(market, "bid", best_ask, inclusive=True)
        if best_bid is not None:
            crossed += self._resting_where(market, "ask", best_bid, inclusive=True)
        for order in crossed:
            if order.remaining:
                self._take(order, book, seq, out, taker=False, at_own_price=True)

    def _public_trade(self, trade: PublicTrade, seq: int, out: list[Event]) -> None:
        # taker bought NO (sold YES) -> it hit YES bids at >= price; taker bought YES -> lifted asks at <= price
        side = "bid" if trade.taker_side == "no" else "ask"
        volume = trade.count
        self._credit[(trade.market, side, trade.yes_price)] = self._credit.get((trade.market, side, trade.yes_price), 0) + volume
        # orders priced better than the trade were ahead of it in price priority: they fill first
        for order in self._resting_where(trade.market, side, trade.yes_price, inclusive=False):
            take = min(order.remaining, volume)
            volume -= take
            if take:
                self._fill(order, order.price, take, False, seq, out)
        # at the trade's price the volume works down the queue; each order's `ahead` already counts
        # the displayed size and our earlier orders in front of it, so each sees the whole volume
        for order in list(self._resting_at(trade.market, side, trade.yes_price)):
            used = min(order.ahead, volume)
            order.ahead -= used
            take = min(order.remaining, volume - used)
            if take:
                self._fill(order, order.price, take, False, seq, out)

    def _fee(self, market: str, price: int, count: int, taker: bool) -> int:
        terms = self._terms.get(market)
        return self.fee(market, price, count, taker) if terms is None else terms.trade_fee(price, count, taker)

    def _learn(self, info: MarketInfo) -> None:
        """The market's definition is now ``info`` (fee terms it does not name: the fee function's)."""
        self._info[info.market] = info
        terms = fee_terms(info)
        if terms is None:
            self._terms.pop(info.market, None)
        else:
            self._terms[info.market] = terms

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> MatcherSnapshot:
        return MatcherSnapshot(
            books={m: b.snapshot() for m, b in self.books.items()},
            orders=[msgspec.structs.replace(o) for o in self.orders.values()],
            waiting=list(self._waiting.values()),
            due=sorted(self._due),
            consumed=[(*k, v) for k, v in self._consumed.items()],
            credit=[(*k, v) for k, v in self._credit.items()],
            closed=sorted(self._closed),
            scheduled=self._scheduled,
            limits=None if self.limits is None else self.limits.snapshot(),
            market_info=tuple(self._info[m] for m in sorted(self._info)),
            own=[(*k, v) for k, v in self._own.items()],
            pacer=None if self.pacer is None else self.pacer.snapshot(),
            held=list(self._held),
            waking=self._waking,
            behind=[(coid, list(sizes)) for coid, sizes in self._behind.items() if sizes],
        )

    @classmethod
    def restore(cls, snap: MatcherSnapshot, fee: FeeFn, *, latency_ns: int = 0,
                queue_model: QueueModel = "conservative", limits: Tier | str | None = None,
                own_prefix: str | None = None, cancel_ahead_pct: int = 0,
                pacing: Tier | str | None = None) -> PaperMatcher:
        m = cls(fee, latency_ns=latency_ns, queue_model=queue_model, limits=limits, own_prefix=own_prefix,
                cancel_ahead_pct=cancel_ahead_pct, pacing=pacing)
        if snap.pacer is not None:
            m.pacer = RateLimits.restore(snap.pacer)
        m._held = deque(snap.held)
        m._waking = snap.waking
        if snap.limits is not None:
            m.limits = RateLimits.restore(snap.limits)
        m.books = {k: OrderBook.restore(v) for k, v in snap.books.items()}
        m.orders = {o.client_order_id: msgspec.structs.replace(o) for o in snap.orders}
        for order in m.orders.values():  # resting = live and not yet done; queue order = placement order
            if order.live:
                m._rest(order)
        m._waiting = {i.client_order_id: i for i in snap.waiting}
        m._due = list(snap.due)
        heapq.heapify(m._due)
        m._consumed = {(a, b, c): v for a, b, c, v in snap.consumed}
        m._credit = {(a, b, c): v for a, b, c, v in snap.credit}
        m._closed = set(snap.closed)
        m._scheduled = snap.scheduled
        m._own = {(a, b, c): v for a, b, c, v in snap.own}
        m._behind = {coid: list(sizes) for coid, sizes in snap.behind}
        for info in snap.market_info:
            m._learn(info)
        return m
