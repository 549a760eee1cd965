"""Market-agnostic observation features: computed here only, used identically by training and trading.

A :class:`FeatureTracker` follows one market. It reads that market's :class:`~actors.book.OrderBook`
and folds the same events after the book has folded them (``book.handle(...)`` then
``tracker.handle(...)``), keeping what the book does not: recent mids, activity in a sliding window
of event time, the last update's time and the market's close time. ``observe(position, cash, now_ns)``
then returns one float32 vector in the fixed layout :data:`FEATURE_NAMES`:

======  ==================  ====================================================================
index   name                value
======  ==================  ====================================================================
0       ``stale``           1.0 if the book is stale (it must not be traded on), else 0.0
1       ``has_bid``         1.0 if there is a bid, else 0.0
2       ``has_ask``         1.0 if there is an ask, else 0.0
3       ``best_bid``        best bid in dollars; 0.0 without a bid
4       ``best_ask``        best ask in dollars; 1.0 without an ask
5       ``spread``          ``best_ask - best_bid`` in dollars, with the defaults above
6       ``mid``             ``(best_bid + best_ask) / 2`` in dollars, with the defaults above
7       ``bid_depth``       contracts bid over the top ``levels`` levels
8       ``ask_depth``       contracts offered over the top ``levels`` levels
9       ``imbalance``       ``(bid_depth - ask_depth) / (bid_depth + ask_depth)``; 0.0 if both are 0
10      ``momentum``        mid now minus the mid ``momentum_updates`` book updates ago (or the
                            oldest one kept), in dollars; 0.0 if either side had no mid
11      ``updates``         book updates (snapshots, deltas) in the last ``window_ns`` of event time
12      ``trades``          public trades in the window
13      ``traded_volume``   contracts traded publicly in the window
14      ``since_update_s``  seconds since the last book update; 0.0 before the first one
15      ``has_close``       1.0 if the close time is known, else 0.0
16      ``to_close_s``      seconds until the close time, floored at 0.0; 0.0 if unknown
17      ``position``        own signed position in contracts (+YES / -NO), as passed in
18      ``cash``            own free cash in dollars, as passed in
======  ==================  ====================================================================

The window holds events with ``now_ns - window_ns < ts_ns <= now_ns``. ``now_ns`` is event time (the
time of the event being decided on, or a timer's due time), never the wall clock, and is at or after
the last event folded. State is integers; floats appear only in the returned vector, computed the same
way on every machine, so the same events and arguments give the same bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import msgspec
import numpy as np

from actors.book import PRICE_MAX, OrderBook
from actors.machine import NOTHING
from runtime.events import BookDelta, BookSnapshot, Event, MarketLifecycle, PublicTrade
from runtime.units import COUNT_SCALE, MONEY_SCALE, PRICE_SCALE

__all__ = ["FEATURE_NAMES", "FeatureSpec", "FeatureTracker", "TrackerState"]

FEATURE_NAMES: tuple[str, ...] = (
    "stale", "has_bid", "has_ask", "best_bid", "best_ask", "spread", "mid", "bid_depth", "ask_depth",
    "imbalance", "momentum", "updates", "trades", "traded_volume", "since_update_s", "has_close",
    "to_close_s", "position", "cash",
)
_NS = 1_000_000_000


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How the features look back: part of a model's contract, so fixed for its whole life."""

    levels: int = 5
    """book levels per side summed by ``bid_depth``, ``ask_depth`` and ``imbalance``"""
    momentum_updates: int = 10
    """book updates ``momentum`` looks back over"""
    window_ns: int = 60 * _NS
    """length of the activity window, in nanoseconds of event time"""

    def __post_init__(self) -> None:
        if self.levels < 1 or self.momentum_updates < 1 or self.window_ns < 1:
            raise ValueError(f"feature spec: levels, momentum_updates and window_ns must be >= 1, got {self}")


class TrackerState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole state of a :class:`FeatureTracker` (its book is snapshotted on its own)."""

    market: str
    spec: FeatureSpec
    mids2: tuple[int | None, ...] = ()
    update_ts: tuple[int, ...] = ()
    trades: tuple[tuple[int, int], ...] = ()  # (ts_ns, traded volume before this trade)
    volume: int = 0
    last_update_ns: int | None = None
    close_ts_ms: int | None = None


class FeatureTracker:
    """What one market's features need beyond its book, folded over the same events after the book."""

    def __init__(self, book: OrderBook, spec: FeatureSpec | None = None) -> None:
        self.book = book
        self.spec = spec or FeatureSpec()
        self._mids2: deque[int | None] = deque(maxlen=self.spec.momentum_updates + 1)  # mid2 after each update
        self._update_ts: deque[int] = deque()  # ts_ns of book updates in the window
        self._trades: deque[tuple[int, int]] = deque()  # (ts_ns, volume traded before it) in the window
        self._volume = 0  # all public volume seen, in 1/100 contract
        self._last_update_ns: int | None = None
        self._close_ts_ms: int | None = None

    @property
    def market(self) -> str:
        return self.book.market

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Fold one event, after ``self.book`` has folded it. Derives nothing."""
        if getattr(event, "market", None) != self.book.market:
            return NOTHING
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            if self.book.last_update_seq != seq:  # the book did not apply it (stale, or inconsistent)
                return NOTHING
            self._mids2.append(self.book.mid2())
            self._update_ts.append(ts_ns)
            self._last_update_ns = ts_ns
            self._evict(ts_ns)
        elif kind is PublicTrade:
            self._trades.append((ts_ns, self._volume))
            self._volume += event.count  # type: ignore[union-attr]
            self._evict(ts_ns)
        elif kind is MarketLifecycle and event.close_ts_ms is not None:  # type: ignore[union-attr]
            self._close_ts_ms = event.close_ts_ms  # type: ignore[union-attr]
        return NOTHING

    def _evict(self, ts_ns: int) -> None:
        """Drop what is out of the window for every ``now_ns >= ts_ns``."""
        edge = ts_ns - self.spec.window_ns
        while self._update_ts and self._update_ts[0] <= edge:
            self._update_ts.popleft()
        while self._trades and self._trades[0][0] <= edge:
            self._trades.popleft()

    def observe(self, position: int, cash: int, now_ns: int) -> np.ndarray:
        """The feature vector (float32, layout :data:`FEATURE_NAMES`) as of event time ``now_ns``.

        ``position`` is the own signed position in 1/100 contract, ``cash`` the free cash in micro-dollars.
        """
        book, spec = self.book, self.spec
        bid, ask = book.best_bid(), book.best_ask()
        bid_p = 0 if bid is None else bid
        ask_p = PRICE_MAX if ask is None else ask
        bid_depth, ask_depth = book.depth(spec.levels)
        total = bid_depth + ask_depth
        first, last = (self._mids2[0], self._mids2[-1]) if self._mids2 else (None, None)
        momentum = 0.0 if first is None or last is None else (last - first) / (2 * PRICE_SCALE)

        edge = now_ns - spec.window_ns
        updates = sum(1 for ts in self._update_ts if edge < ts <= now_ns)
        in_window = [(ts, before) for ts, before in self._trades if edge < ts <= now_ns]
        volume = 0
        if in_window:
            later = next((before for ts, before in self._trades if ts > now_ns), self._volume)
            volume = later - in_window[0][1]
        since = 0.0 if self._last_update_ns is None else max(0, now_ns - self._last_update_ns) / _NS
        close = self._close_ts_ms
        to_close = 0.0 if close is None else max(0, close * 1_000_000 - now_ns) / _NS
        return np.array([
            float(book.stale), float(bid is not None), float(ask is not None),
            bid_p / PRICE_SCALE, ask_p / PRICE_SCALE, (ask_p - bid_p) / PRICE_SCALE, (ask_p + bid_p) / (2 * PRICE_SCALE),
            bid_depth / COUNT_SCALE, ask_depth / COUNT_SCALE, (bid_depth - ask_depth) / total if total else 0.0,
            momentum, float(updates), float(len(in_window)), volume / COUNT_SCALE, since,
            float(close is not None), to_close, position / COUNT_SCALE, cash / MONEY_SCALE,
        ], dtype=np.float32)

    def snapshot(self) -> TrackerState:
        """The tracker's whole state (not its book's)."""
        return TrackerState(market=self.book.market, spec=self.spec, mids2=tuple(self._mids2),
                            update_ts=tuple(self._update_ts), trades=tuple(self._trades), volume=self._volume,
                            last_update_ns=self._last_update_ns, close_ts_ms=self._close_ts_ms)

    @classmethod
    def restore(cls, state: TrackerState, book: OrderBook) -> FeatureTracker:
        """A tracker equal to the one whose ``snapshot()`` was ``state``, reading ``book``."""
        if book.market != state.market:
            raise ValueError(f"tracker state of {state.market} cannot follow the book of {book.market}")
        tracker = cls(book, state.spec)
        tracker._mids2.extend(state.mids2)
        tracker._update_ts.extend(state.update_ts)
        tracker._trades.extend(state.trades)
        tracker._volume = state.volume
        tracker._last_update_ns = state.last_update_ns
        tracker._close_ts_ms = state.close_ts_ms
        return tracker
