"""The order book of one Kalshi market, fast enough to be folded millions of times (DESIGN §6).

Kalshi sends two bid ladders: YES bids and NO bids. Together they are one book on the YES leg: a YES
bid at ``p`` is a bid at ``p``; a NO bid at ``q`` is an ask at ``10000 - q`` (prices in 1/10,000
dollar, counts in 1/100 contract, both exact integers).

Representation, chosen for the per-event path (one decoded :class:`BookDelta` at a time):

* Each ladder is kept **as Kalshi sends it** (both are bids, best = highest price), so applying a
  delta needs no price conversion and no branch per leg; asks are derived only when read.
* Per ladder, a ``dict`` from price to resting count holds the levels that have size (a level leaves
  it at zero): an update is one lookup and one store, and a small int is its own hash. A 10,001-slot
  ``list`` indexed by price is about 60 ns faster per delta on its own, but a replay or an actor holds
  hundreds of books (three per market in one process: the book node's, the orchestrator's and the paper
  matcher's): 160 KB of pointers each, which every garbage collection that meets a young book walks
  slot by slot, and which scatter the hot levels over far more cache. The dict holds tens of entries
  and, holding ints only, is never tracked by the collector: ``tape replay verify`` on 300 markets ran
  faster with it than with either the list or an ``array("q")``. (A numpy array would box a scalar on
  every access and is several times slower one element at a time.)
* Per ladder, a sorted ``list`` of the prices that have size. A level appears or disappears far less
  often than it changes size, and then ``bisect`` finds it in C (a book has tens of levels, so the
  memmove is a few cache lines). The best price is the last element, and the top ``n`` levels are a
  slice: every read is O(n) in the levels asked for, never a scan of the price grid.

A book costs a few KB: its levels, twice (the dict and the sorted prices).

The batch path (:meth:`OrderBook.apply_deltas`, :func:`apply_deltas_by_market`) takes columns, for bulk
replay. Its semantics are exactly those of feeding the same deltas one by one through :meth:`handle`,
including the exact detection of the first delta that would make a level negative: the deltas are
keyed by ``ladder * 10001 + price`` (an int16, so numpy's stable argsort is a radix sort), a cumulative
sum over the sorted deltas minus each level's offset gives every level's running size in stream order
(a segmented cumulative sum), and the earliest negative running size in stream order is the first
inconsistent delta. Only the levels the batch touched are written back.

Rules (the same in :mod:`actors.refbook`, the naive reference this book is tested against):

* A new book is **stale** until its first snapshot: it has never seen the market's state.
* :class:`BookSnapshot` replaces both ladders (levels at one price are summed; zero-count levels are
  absent) and clears stale. :class:`BookDelta` changes one level by a signed count; the level
  disappears at zero. A delta that would make a level negative changes nothing, marks the book stale
  and emits :class:`BookInconsistent` (never a silent clamp).
* :class:`SeqGapDetected` listing the market marks it stale. A stale book ignores deltas (they apply
  to a state it does not know) until a snapshot replaces it. :class:`BookResynced` is the gateway's
  marker that a resync finished; the snapshot it logged before it already cleared stale, so the
  marker changes nothing (the book trusts data, not markers).
* ``last_update_seq`` is the seq of the last snapshot or delta that was applied (zero deltas too).
* Crossed and locked books are kept as they are: the book reports what the venue sent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

import msgspec
import numpy as np

from runtime.events import (
    BookDelta,
    BookInconsistent,
    BookSnapshot,
    Event,
    Level,
    SeqGapDetected,
)
from runtime.units import PRICE_MAX

from .machine import NOTHING

__all__ = ["NO", "PRICE_MAX", "YES", "BookState", "OrderBook", "apply_deltas_by_market"]

_SLOTS = PRICE_MAX + 1
YES, NO = 0, 1  # ladder codes of the batch path's ``side`` column


class BookState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole state of one market's book: both ladders as Kalshi sends them (bids, ascending price)."""

    market: str
    yes_bids: tuple[Level, ...] = ()
    no_bids: tuple[Level, ...] = ()
    stale: bool = True
    last_update_seq: int = 0


def _check_n(n: int | None) -> None:
    if n is not None and n < 0:
        raise ValueError(f"number of levels must be >= 0 or None (all levels), got {n}")


class OrderBook:
    """One market's book on the YES leg, folded over the log (``handle``) or fed columns (``apply_deltas``)."""

    __slots__ = ("_ladders", "_no", "_no_prices", "_yes", "_yes_prices", "last_update_seq", "market", "stale")

    def __init__(self, market: str) -> None:
        self.market = market
        self.stale = True
        self.last_update_seq = 0
        self._yes: dict[int, int] = {}  # resting count by YES bid price, levels with size only
        self._no: dict[int, int] = {}  # resting count by NO bid price, levels with size only
        self._yes_prices: list[int] = []  # YES bid prices with size, ascending
        self._no_prices: list[int] = []  # NO bid prices with size, ascending
        self._ladders = {"yes": (self._yes, self._yes_prices), "no": (self._no, self._no_prices)}

    # --- the state machine ------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Fold one event of the log; returns ``(BookInconsistent,)`` for a delta that would go negative."""
        if type(event) is BookDelta:  # the hot path: apply_delta, inlined
            if self.stale or event.market != self.market:
                return NOTHING
            ladder = self._ladders.get(event.side)
            price = event.price
            if ladder is None or not 0 <= price <= PRICE_MAX:
                self.apply_delta(event.side, price, event.delta)  # raises its ValueError
                return NOTHING
            sizes, prices = ladder
            old = sizes.get(price, 0)
            new = old + event.delta
            if new > 0:
                sizes[price] = new
                if not old:
                    insort(prices, price)
            elif new == 0:
                if old:
                    del sizes[price]
                    del prices[bisect_left(prices, price)]
            else:
                self.stale = True
                return (BookInconsistent(market=self.market, side=event.side, price=price, delta=event.delta,
                                         resting=old, cause_seq=seq),)
            self.last_update_seq = seq
            return NOTHING
        if type(event) is BookSnapshot:
            if event.market == self.market:
                self._replace(event.yes_bids, event.no_bids)
                self.stale = False
                self.last_update_seq = seq
            return NOTHING
        if type(event) is SeqGapDetected:
            if self.market in event.markets:
                self.stale = True
            return NOTHING
        return NOTHING  # BookResynced (see the module docstring) and every other event

    def apply_delta(self, side: str, price: int, delta: int) -> bool:
        """Change the ``side`` ('yes'/'no') bid level at ``price`` by ``delta``; False (and no change) if it
        would go negative. The raw operation: it neither consults nor sets ``stale``."""
        try:
            sizes, prices = self._ladders[side]
        except KeyError:
            raise ValueError(f"{self.market}: side must be 'yes' or 'no', got {side!r}") from None
        if not 0 <= price <= PRICE_MAX:
            raise ValueError(f"{self.market}: price {price} is outside [0, {PRICE_MAX}]")
        old = sizes.get(price, 0)
        new = old + delta
        if new > 0:
            sizes[price] = new
            if not old:
                insort(prices, price)
        elif new == 0:
            if old:
                del sizes[price]
                del prices[bisect_left(prices, price)]
        else:
            return False
        return True

    def _replace(self, yes_bids: Sequence[Level], no_bids: Sequence[Level]) -> None:
        for name, levels in (("yes", yes_bids), ("no", no_bids)):
            for price, count in levels:
                if not 0 <= price <= PRICE_MAX or count < 0:
                    raise ValueError(f"{self.market}: snapshot {name} level ({price}, {count}) is outside "
                                     f"price [0, {PRICE_MAX}] or has a negative count")
        for sizes, prices, levels in ((self._yes, self._yes_prices, yes_bids), (self._no, self._no_prices, no_bids)):
            sizes.clear()
            for price, count in levels:
                if count:
                    sizes[price] = sizes.get(price, 0) + count
            prices[:] = sorted(sizes)

    # --- the batch path ---------------------------------------------------------------------------
    def apply_deltas(self, side: np.ndarray, price: np.ndarray, delta: np.ndarray,
                     seq: np.ndarray | None = None) -> int:
        """Apply columns of deltas in order, exactly as ``handle`` would one by one.

        ``side`` holds :data:`YES` (0) or :data:`NO` (1), ``price`` the ladder's price, ``delta`` the signed
        count change, ``seq`` (optional) each delta's log seq, which sets ``last_update_seq``. Returns the
        index of the first delta that would have made a level negative, or -1. The deltas before it are
        applied; it and those after it are not, and the book is then stale (the caller logs the
        :class:`BookInconsistent` if it wants the event). A stale book applies nothing and returns -1.
        """
        key, delta, seq = _columns(side, price, delta, seq, self.market)
        if self.stale:
            return -1
        bad = self._apply_keyed(key, delta)
        applied = len(delta) if bad < 0 else bad
        if seq is not None and applied:
            self.last_update_seq = int(seq[applied - 1])
        return bad

    def _apply_keyed(self, key: np.ndarray, delta: np.ndarray) -> int:
        """The batch core: ``key`` is ``ladder * 10001 + price`` (int16). Returns the first bad row or -1;
        on a bad row, applies the rows before it and marks the book stale."""
        n = len(delta)
        if n == 0:
            return -1
        order = np.argsort(key, kind="stable")  # a radix sort for int16: rows grouped by level, in stream order
        ks = key[order]
        ds = delta[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(ks[1:], ks[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        keys = ks[starts].tolist()
        yes, no = self._yes, self._no
        before = [yes.get(k, 0) if k < _SLOTS else no.get(k - _SLOTS, 0) for k in keys]
        running = np.cumsum(ds)
        offset = running[starts] - ds[starts] - np.array(before, dtype=np.int64)
        running -= np.repeat(offset, np.diff(starts, append=n))  # each level's size after each of its deltas
        negative = running < 0
        if negative.any():
            bad = int(order[negative].min())
            self._apply_keyed(key[:bad], delta[:bad])  # no level goes negative before ``bad``
            self.stale = True
            return bad
        after = running[np.append(starts[1:], n) - 1].tolist()
        added: tuple[list[int], list[int]] = ([], [])
        removed = [False, False]
        for k, old, new in zip(keys, before, after, strict=True):
            ladder, p = (0, k) if k < _SLOTS else (1, k - _SLOTS)
            sizes = yes if ladder == 0 else no
            if new:
                sizes[p] = new
                if not old:
                    added[ladder].append(p)
            elif old:
                del sizes[p]
                removed[ladder] = True
        for ladder, (sizes, prices) in enumerate(((yes, self._yes_prices), (no, self._no_prices))):
            if removed[ladder]:
                prices[:] = [p for p in prices if p in sizes]
            if added[ladder]:
                prices.extend(added[ladder])
                prices.sort()
        return -1

    # --- reads (YES leg) ----------------------------------------------------------------------------
    def best_bid(self) -> int | None:
        """The highest YES bid, or None."""
        prices = self._yes_prices
        return prices[-1] if prices else None

    def best_ask(self) -> int | None:
        """The lowest ask on the YES leg (10000 - the highest NO bid), or None."""
        prices = self._no_prices
        return PRICE_MAX - prices[-1] if prices else None

    def spread(self) -> int | None:
        """Best ask - best bid (0 when locked, negative when crossed), or None if a side is empty."""
        if self._yes_prices and self._no_prices:
            return PRICE_MAX - self._no_prices[-1] - self._yes_prices[-1]
        return None

    def mid2(self) -> int | None:
        """Best bid + best ask (twice the mid, an exact integer), or None if a side is empty."""
        if self._yes_prices and self._no_prices:
            return self._yes_prices[-1] + PRICE_MAX - self._no_prices[-1]
        return None

    def bid_size(self, price: int) -> int:
        """The count bid at YES price ``price`` (0 if none)."""
        return self._yes.get(price, 0)

    def ask_size(self, price: int) -> int:
        """The count offered at YES price ``price`` (NO bids at ``10000 - price``; 0 if none)."""
        return self._no.get(PRICE_MAX - price, 0)

    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        """The top ``n`` bid levels (all if None) as (YES price, count), best (highest) first."""
        _check_n(n)
        sizes, prices = self._yes, self._yes_prices
        top = prices[::-1] if n is None else prices[: -n - 1 : -1]
        return [(p, sizes[p]) for p in top]

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        """The top ``n`` ask levels (all if None) as (YES price, count), best (lowest) first."""
        _check_n(n)
        sizes, prices = self._no, self._no_prices
        top = prices[::-1] if n is None else prices[: -n - 1 : -1]
        return [(PRICE_MAX - q, sizes[q]) for q in top]

    def depth(self, n: int | None = None) -> tuple[int, int]:
        """(total bid count, total ask count) over the top ``n`` levels of each side (all if None)."""
        _check_n(n)
        yes, no, yp, np_ = self._yes, self._no, self._yes_prices, self._no_prices
        top_yes = yp if n is None else yp[-n:] if n else ()
        top_no = np_ if n is None else np_[-n:] if n else ()
        return sum(map(yes.__getitem__, top_yes)), sum(map(no.__getitem__, top_no))

    def top(self, n: int) -> tuple[int | None, int | None, int, int, int, int]:
        """``(best_bid(), best_ask(), size at the best bid, size at the best ask, *depth(n))`` for ``n >= 1`` in one
        call: what a decision reads from the book."""
        if n < 1:
            raise ValueError(f"number of levels must be >= 1, got {n}")
        bid = ask = None
        bid_size = ask_size = bid_depth = ask_depth = 0
        prices = self._yes_prices
        if prices:
            sizes = self._yes
            bid = prices[-1]
            bid_size = sizes[bid]
            for p in prices[-n:]:
                bid_depth += sizes[p]
        prices = self._no_prices
        if prices:
            sizes = self._no
            best = prices[-1]
            ask, ask_size = PRICE_MAX - best, sizes[best]
            for q in prices[-n:]:
                ask_depth += sizes[q]
        return bid, ask, bid_size, ask_size, bid_depth, ask_depth

    def imbalance(self, n: int | None = None) -> float:
        """(bid - ask) / (bid + ask) of ``depth(n)``, in [-1, 1]; 0.0 for an empty book."""
        bid, ask = self.depth(n)
        total = bid + ask
        return (bid - ask) / total if total else 0.0

    # --- state ----------------------------------------------------------------------------------------
    def snapshot(self) -> BookState:
        """The whole state, as a msgspec Struct (ladders ascending by price, as Kalshi sends them)."""
        yes, no = self._yes, self._no
        return BookState(market=self.market, yes_bids=tuple((p, yes[p]) for p in self._yes_prices),
                         no_bids=tuple((q, no[q]) for q in self._no_prices), stale=self.stale,
                         last_update_seq=self.last_update_seq)

    @classmethod
    def restore(cls, state: BookState) -> OrderBook:
        """A book equal to the one whose ``snapshot()`` was ``state``."""
        book = cls(state.market)
        book._replace(state.yes_bids, state.no_bids)
        book.stale = state.stale
        book.last_update_seq = state.last_update_seq
        return book

    def __repr__(self) -> str:
        return (f"OrderBook({self.market!r}, bid={self.best_bid()}, ask={self.best_ask()}, "
                f"levels={len(self._yes_prices)}/{len(self._no_prices)}, stale={self.stale})")


def _columns(side: np.ndarray, price: np.ndarray, delta: np.ndarray, seq: np.ndarray | None,
             where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate the batch path's columns; returns (level key int16, delta int64, seq or None)."""
    side, price, delta = np.asarray(side), np.asarray(price), np.asarray(delta)
    columns = {"side": side, "price": price, "delta": delta}
    if seq is not None:
        seq = np.asarray(seq)
        columns["seq"] = seq
    for name, column in columns.items():
        if column.ndim != 1 or not (np.issubdtype(column.dtype, np.integer) or column.size == 0):
            raise ValueError(f"{where}: column {name} must be a 1-D integer array, got {column.ndim}-D {column.dtype}")
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: columns differ in length: {lengths}")
    if side.size:
        if side.min() < YES or side.max() > NO:
            raise ValueError(f"{where}: column side must hold {YES} (yes) or {NO} (no), "
                             f"found values in [{side.min()}, {side.max()}]")
        if price.min() < 0 or price.max() > PRICE_MAX:
            raise ValueError(f"{where}: column price must lie in [0, {PRICE_MAX}], "
                             f"found values in [{price.min()}, {price.max()}]")
    key = side.astype(np.int16) * np.int16(_SLOTS) + price.astype(np.int16)  # < 2 * 10001: fits int16
    return key, delta.astype(np.int64, copy=False), seq


def apply_deltas_by_market(books: Sequence[OrderBook], market: np.ndarray, side: np.ndarray, price: np.ndarray,
                           delta: np.ndarray, seq: np.ndarray | None = None) -> np.ndarray:
    """Apply columns of deltas for several markets: ``market[i]`` indexes ``books``.

    Each book gets its own deltas in stream order, with :meth:`OrderBook.apply_deltas`'s semantics.
    Returns, per book, the index (into these columns) of its first inconsistent delta, or -1.
    """
    key, delta, seq = _columns(side, price, delta, seq, "apply_deltas_by_market")
    market = np.asarray(market)
    if market.ndim != 1 or len(market) != len(delta) or not (np.issubdtype(market.dtype, np.integer) or market.size == 0):
        raise ValueError(f"apply_deltas_by_market: column market must be a 1-D integer array of length {len(delta)}")
    if market.size and (market.min() < 0 or market.max() >= len(books)):
        raise ValueError(f"apply_deltas_by_market: market indexes must lie in [0, {len(books)}), "
                         f"found values in [{market.min()}, {market.max()}]")
    first_bad = np.full(len(books), -1, dtype=np.int64)
    if not market.size:
        return first_bad
    narrow = np.int16 if len(books) <= np.iinfo(np.int16).max else np.int64
    order = np.argsort(market.astype(narrow, copy=False), kind="stable")  # a radix sort for up to 32,767 books
    bounds = np.concatenate(([0], np.cumsum(np.bincount(market, minlength=len(books))))).tolist()
    key, delta = key[order], delta[order]
    for i, book in enumerate(books):
        lo, hi = bounds[i], bounds[i + 1]
        if lo == hi or book.stale:
            continue
        bad = book._apply_keyed(key[lo:hi], delta[lo:hi])
        if bad >= 0:
            first_bad[i] = order[lo + bad]
        applied = hi - lo if bad < 0 else bad
        if seq is not None and applied:
            book.last_update_seq = int(seq[order[lo + applied - 1]])
    return first_bad
