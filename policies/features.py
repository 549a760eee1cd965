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
19      ``signed_volume``   contracts bought by YES takers minus those bought by NO takers in the
                            window (public trades' ``taker_side``): the direction of the flow
20      ``flow_imbalance``  ``signed_volume / traded_volume``; 0.0 without trades
======  ==================  ====================================================================

**Regime samples.** The tracker also samples the market on a fixed grid of event time (multiples of
``regime_every_ns``, 10 s), for the regime filter of :mod:`policies.regimes`: the sample at grid point ``g`` is
``(mid2, spread, updates, trades)`` — twice the mid and the spread (exact integers, None without both sides), and the
book updates and public trades in the window ending at ``g`` — as the market stood after every event up to ``g``. A
grid point is sampled when the first event after it arrives (:meth:`FeatureTracker.advance`, called before the book
folds that event), and :meth:`FeatureTracker.history` adds those a quiet market has passed since, so at event time
``now`` the history holds the samples of the grid points before ``now``, oldest first, the last ``regime_samples``
of them (a bounded window: part of the snapshot). Observations carry it as ``MarketView.history``; nothing reads
it unless a model has a regime filter.

The window holds events with ``now_ns - window_ns < ts_ns <= now_ns``. ``now_ns`` is event time (the
time of the event being decided on, or a timer's due time), never the wall clock, and is at or after
the last event folded. State is integers; floats appear only in the returned vector, computed the same
way on every machine, so the same events and arguments give the same bytes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from functools import lru_cache

import msgspec
import numpy as np

from actors.book import PRICE_MAX, OrderBook
from actors.machine import NOTHING
from runtime.events import BookDelta, BookSnapshot, Event, MarketLifecycle, PublicTrade
from runtime.units import COUNT_SCALE, MONEY_SCALE, PRICE_SCALE

__all__ = ["FEATURE_NAMES", "FeatureSpec", "FeatureTracker", "Sample", "Scaling", "TrackerState"]

FEATURE_NAMES: tuple[str, ...] = (
    "stale", "has_bid", "has_ask", "best_bid", "best_ask", "spread", "mid", "bid_depth", "ask_depth",
    "imbalance", "momentum", "updates", "trades", "traded_volume", "since_update_s", "has_close",
    "to_close_s", "position", "cash", "signed_volume", "flow_imbalance",
)
_NS = 1_000_000_000

Sample = tuple[int | None, int | None, int, int]
"""a regime sample: ``(mid2, spread, updates, trades)`` at a grid point (module docstring)"""


class Scaling(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fixed per-feature scaling of an observation vector, fitted on training data and saved with a model.

    ``apply(x) = clip((x - center) / scale, -clip, clip)`` per position, in float32 (IEEE subtraction, division and
    comparisons only: the same bytes on every machine), for the layout ``names``. :meth:`fit` takes the median as
    the center and the interquartile range / 1.349 (a normal's standard deviation) as the scale, falling back to the
    standard deviation, then 1, where that is 0 (a feature that is nearly constant in the data).
    """

    names: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float = 10.0

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.center) == len(self.scale) or min(self.scale, default=1.0) <= 0:
            raise ValueError(f"scaling: names, center and scale must have one positive scale per name; got {self}")

    def apply(self, vector: np.ndarray) -> np.ndarray:
        """The scaled vector (float32); ``vector`` must have the layout ``names``."""
        if vector.shape[-1] != len(self.names):
            raise ValueError(f"scaling: a vector of {vector.shape[-1]} values for a layout of {len(self.names)}")
        center, scale = _arrays(self.center, self.scale)
        out = (np.asarray(vector, dtype=np.float32) - center) / scale
        return np.clip(out, np.float32(-self.clip), np.float32(self.clip)).astype(np.float32, copy=False)

    @classmethod
    def fit(cls, names: Sequence[str], rows: np.ndarray, clip: float = 10.0) -> Scaling:
        """The scaling of ``rows`` (one observation per row, layout ``names``); an empty sample fits the identity."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(names))
        if not len(rows):
            return cls(names=tuple(names), center=(0.0,) * len(names), scale=(1.0,) * len(names), clip=clip)
        q1, median, q3 = np.percentile(rows, [25, 50, 75], axis=0)
        std = rows.std(axis=0)
        scale = np.where(q3 - q1 > 1e-9, (q3 - q1) / 1.349, np.where(std > 1e-9, std, 1.0))
        return cls(names=tuple(names), center=tuple(float(np.float32(c)) for c in median),
                   scale=tuple(float(np.float32(s)) for s in scale), clip=clip)


@lru_cache(maxsize=64)
def _arrays(center: tuple[float, ...], scale: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(center, dtype=np.float32), np.array(scale, dtype=np.float32)


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How the features look back: part of a model's contract, so fixed for its whole life."""

    levels: int = 5
    """book levels per side summed by ``bid_depth``, ``ask_depth`` and ``imbalance``"""
    momentum_updates: int = 10
    """book updates ``momentum`` looks back over"""
    window_ns: int = 60 * _NS
    """length of the activity window, in nanoseconds of event time"""
    regime_every_ns: int = 10 * _NS
    """the grid of the regime samples (module docstring), in nanoseconds of event time"""
    regime_samples: int = 36
    """how many regime samples the history keeps (:mod:`policies.regimes` filters the last 30 steps between them, each
    step's volatility over the 6 steps up to it)"""

    def __post_init__(self) -> None:
        if min(self.levels, self.momentum_updates, self.window_ns, self.regime_every_ns, self.regime_samples) < 1:
            raise ValueError(f"feature spec: levels, momentum_updates, window_ns, regime_every_ns and regime_samples "
                             f"must be >= 1, got {self}")


class TrackerState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole state of a :class:`FeatureTracker` (its book is snapshotted on its own)."""

    market: str
    spec: FeatureSpec
    mids2: tuple[int | None, ...] = ()
    update_ts: tuple[int, ...] = ()
    trades: tuple[tuple[int, int], ...] = ()  # (ts_ns, traded volume before this trade)
    volume: int = 0
    flow: tuple[int, ...] = ()  # per trade in ``trades``: the signed volume before it (+YES takers, -NO takers)
    signed: int = 0
    last_update_ns: int | None = None
    close_ts_ms: int | None = None
    samples: tuple[Sample, ...] = ()
    """the regime samples kept (module docstring), oldest first"""
    next_sample_ns: int = 0
    """the next grid point to sample; 0 before the first event"""


class FeatureTracker:
    """What one market's features need beyond its book, folded over the same events after the book."""

    def __init__(self, book: OrderBook, spec: FeatureSpec | None = None) -> None:
        self.book = book
        self.spec = spec or FeatureSpec()
        self._mids2: deque[int | None] = deque(maxlen=self.spec.momentum_updates + 1)  # mid2 after each update
        self._updates = _Window()  # ts_ns of book updates in the window
        self._trades = _Window()  # ts_ns of public trades in the window, each with the volume traded before it
        self._volume = 0  # all public volume seen, in 1/100 contract
        self._flow = _Window()  # the same trades, each with the signed volume before it
        self._signed = 0  # all public volume seen, signed by taker side (+YES, -NO)
        self._last_update_ns: int | None = None
        self._close_ts_ms: int | None = None
        self._samples: deque[Sample] = deque(maxlen=self.spec.regime_samples)
        self.next_sample_ns = 0
        """the next grid point to sample (module docstring); 0 before the first event"""
        self.sampled: list[tuple[int, Sample]] | None = None
        """if set to a list, every sample taken is also appended to it with its grid point (fitting, evaluation)"""

    @property
    def market(self) -> str:
        return self.book.market

    @property
    def _update_ts(self) -> list[int]:
        """The times of the book updates in the window, oldest first."""
        return self._updates.times[self._updates.head:]

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Fold one event, after ``self.book`` has folded it. Derives nothing."""
        kind = type(event)
        if ts_ns > self.next_sample_ns and getattr(event, "market", None) == self.book.market:
            self.advance(ts_ns)  # (a book event: the caller should have advanced before the book folded it)
        if kind is BookDelta or kind is BookSnapshot:
            if self.book.last_update_seq == seq and event.market == self.book.market:  # type: ignore[union-attr]
                self.book_updated(ts_ns)  # (else the book did not apply it: stale, or inconsistent)
        elif getattr(event, "market", None) != self.book.market:
            pass
        elif kind is PublicTrade:
            self._trades.append(ts_ns, self._volume)
            self._flow.append(ts_ns, self._signed)
            self._volume += event.count  # type: ignore[union-attr]
            self._signed += event.count if event.taker_side == "yes" else -event.count  # type: ignore[union-attr]
            self._evict(ts_ns)
        elif kind is MarketLifecycle and event.close_ts_ms is not None:  # type: ignore[union-attr]
            self._close_ts_ms = event.close_ts_ms  # type: ignore[union-attr]
        return NOTHING

    def book_updated(self, ts_ns: int) -> None:
        """Fold a snapshot or delta of this market that the book applied at ``ts_ns``: what :meth:`handle` does
        for one once it has checked ``book.last_update_seq`` (the orchestrator's per-delta path checks it itself)."""
        self._mids2.append(self.book.mid2())
        self._last_update_ns = ts_ns
        updates = self._updates
        times = updates.times
        if updates.head < len(times) and ts_ns >= times[-1]:  # the common case of _Window.append, inlined
            times.append(ts_ns)
            updates.values.append(0)
        else:
            updates.append(ts_ns)
        edge = ts_ns - self.spec.window_ns
        if times[updates.head] <= edge:  # (never empty here: one was just appended)
            updates.evict(edge)
        trades = self._trades
        if trades.head < len(trades.times) and trades.times[trades.head] <= edge:
            trades.evict(edge)
            self._flow.evict(edge)

    def advance(self, ts_ns: int) -> None:
        """Sample the grid points before ``ts_ns`` not sampled yet (module docstring): call it before the book folds an
        event of this market at ``ts_ns`` (the orchestrator does; :meth:`handle` does it for the events it folds)."""
        g = self.next_sample_ns
        if ts_ns <= g:
            return
        every = self.spec.regime_every_ns
        if not g:  # the first event: the grid starts at the first point at or after it
            self.next_sample_ns = -(-ts_ns // every) * every
            return
        sampled = self.sampled
        if sampled is None:  # only the last regime_samples are kept: skip what a long quiet spell would drop
            g = max(g, g + ((ts_ns - 1 - g) // every - self.spec.regime_samples + 1) * every)
        while g < ts_ns:
            sample = self._sample(g)
            self._samples.append(sample)
            if sampled is not None:
                sampled.append((g, sample))
            g += every
        self.next_sample_ns = g

    def _sample(self, g: int) -> Sample:
        """The regime sample at grid point ``g``, from the state now (nothing folded since ``g``)."""
        book = self.book
        bid, ask = book.best_bid(), book.best_ask()
        edge = g - self.spec.window_ns
        return (None if bid is None or ask is None else bid + ask, None if bid is None or ask is None else ask - bid,
                self._updates.span(edge, g)[0], self._trades.span(edge, g)[0])

    def history(self, now_ns: int) -> tuple[Sample, ...]:
        """The regime samples of the grid points before ``now_ns``, oldest first, the last ``regime_samples`` (module
        docstring)."""
        out = tuple(self._samples)
        g = self.next_sample_ns
        if not g or g >= now_ns:
            return out
        every = self.spec.regime_every_ns
        g = max(g, g + ((now_ns - 1 - g) // every - self.spec.regime_samples + 1) * every)  # (the last ones only)
        tail = []
        while g < now_ns:
            tail.append(self._sample(g))
            g += every
        return (*out, *tail)[-self.spec.regime_samples:]

    def _evict(self, ts_ns: int) -> None:
        """Drop what is out of the window for every ``now_ns >= ts_ns``."""
        edge = ts_ns - self.spec.window_ns
        self._updates.evict(edge)
        self._trades.evict(edge)
        self._flow.evict(edge)

    def observe(self, position: int, cash: int, now_ns: int, *,
                top: tuple[int | None, int | None, int, int] | None = None) -> np.ndarray:
        """The feature vector (float32, layout :data:`FEATURE_NAMES`) as of event time ``now_ns``.

        ``position`` is the own signed position in 1/100 contract, ``cash`` the free cash in micro-dollars.
        ``top`` is ``(best_bid, best_ask, bid_depth, ask_depth)`` (depth over ``spec.levels``) as the book
        has them now, for a caller that has read them already; by default they are read here.
        """
        book, spec = self.book, self.spec
        if top is None:
            bid, ask, _, _, bid_depth, ask_depth = book.top(spec.levels)
        else:
            bid, ask, bid_depth, ask_depth = top
        bid_p = 0 if bid is None else bid
        ask_p = PRICE_MAX if ask is None else ask
        total = bid_depth + ask_depth
        mids2 = self._mids2
        first, last = (mids2[0], mids2[-1]) if mids2 else (None, None)
        momentum = 0.0 if first is None or last is None else (last - first) / (2 * PRICE_SCALE)

        edge = now_ns - spec.window_ns
        window = self._updates
        if not window.descents:  # ascending: the window is one slice (see _Window)
            times, head = window.times, window.head
            later = len(times) if not times or times[-1] <= now_ns else bisect_right(times, now_ns, head)
            updates = later - bisect_right(times, edge, head)
        else:
            updates = window.span(edge, now_ns)[0]
        window = self._trades
        if not window.descents:
            times, head = window.times, window.head
            later = len(times) if not times or times[-1] <= now_ns else bisect_right(times, now_ns, head)
            first_trade = bisect_right(times, edge, head)
            count = later - first_trade
        else:
            count, first_trade, later = window.span(edge, now_ns)
        volume = signed = 0
        if count:
            befores = window.values
            volume = (befores[later] if later < len(befores) else self._volume) - befores[first_trade]
            flow = self._flow  # the same times, evicted alike: the same indices
            signs = flow.values
            signed = (signs[later] if later < len(signs) else self._signed) - signs[first_trade]
        last_update = self._last_update_ns
        since = 0.0 if last_update is None else max(0, now_ns - last_update) / _NS
        close = self._close_ts_ms
        to_close = 0.0 if close is None else max(0, close * 1_000_000 - now_ns) / _NS
        return np.fromiter([
            1.0 if book.stale else 0.0, 0.0 if bid is None else 1.0, 0.0 if ask is None else 1.0,
            bid_p / PRICE_SCALE, ask_p / PRICE_SCALE, (ask_p - bid_p) / PRICE_SCALE, (ask_p + bid_p) / (2 * PRICE_SCALE),
            bid_depth / COUNT_SCALE, ask_depth / COUNT_SCALE, (bid_depth - ask_depth) / total if total else 0.0,
            momentum, float(updates), float(count), volume / COUNT_SCALE, since,
            0.0 if close is None else 1.0, to_close, position / COUNT_SCALE, cash / MONEY_SCALE,
            signed / COUNT_SCALE, signed / volume if volume else 0.0,
        ], np.float32, len(FEATURE_NAMES))

    def snapshot(self) -> TrackerState:
        """The tracker's whole state (not its book's)."""
        updates, trades = self._updates, self._trades
        return TrackerState(market=self.book.market, spec=self.spec, mids2=tuple(self._mids2),
                            update_ts=tuple(updates.times[updates.head:]),
                            trades=tuple(zip(trades.times[trades.head:], trades.values[trades.head:], strict=True)),
                            volume=self._volume, last_update_ns=self._last_update_ns, close_ts_ms=self._close_ts_ms,
                            flow=tuple(self._flow.values[self._flow.head:]), signed=self._signed,
                            samples=tuple(self._samples), next_sample_ns=self.next_sample_ns)

    @classmethod
    def restore(cls, state: TrackerState, book: OrderBook) -> FeatureTracker:
        """A tracker equal to the one whose ``snapshot()`` was ``state``, reading ``book``."""
        if book.market != state.market:
            raise ValueError(f"tracker state of {state.market} cannot follow the book of {book.market}")
        tracker = cls(book, state.spec)
        tracker._mids2.extend(state.mids2)
        for ts in state.update_ts:
            tracker._updates.append(ts)
        flow = state.flow or (0,) * len(state.trades)  # (a state from before the flow was followed: none)
        for (ts, before), signed in zip(state.trades, flow, strict=True):
            tracker._trades.append(ts, before)
            tracker._flow.append(ts, signed)
        tracker._volume = state.volume
        tracker._signed = state.signed
        tracker._last_update_ns = state.last_update_ns
        tracker._close_ts_ms = state.close_ts_ms
        tracker._samples.extend(state.samples)
        tracker.next_sample_ns = state.next_sample_ns
        return tracker


class _Window:
    """Event times in arrival order, each with a value, read from ``head`` on: a queue that ``observe`` can
    bisect. Eviction advances ``head`` (the dead prefix is dropped once it is the larger half).

    ``descents`` counts the places where a time is below the one before it. At 0 (event time never ran
    backwards inside the window: the normal case) the times ascend and a range of time is one slice, found
    by bisection; otherwise the window is scanned, as the module's definition of it says.
    """

    __slots__ = ("descents", "head", "times", "values")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[int] = []
        self.head = 0
        self.descents = 0

    def append(self, ts: int, value: int = 0) -> None:
        times = self.times
        if self.head == len(times):  # empty: start over
            times.clear()
            self.values.clear()
            self.head = 0
        elif ts < times[-1]:
            self.descents += 1
        times.append(ts)
        self.values.append(value)

    def evict(self, edge: int) -> None:
        """Drop the leading times at or before ``edge``, as popping them from the left one by one would."""
        times, head = self.times, self.head
        n = len(times)
        if head == n or times[head] > edge:
            return
        if not self.descents:
            head = bisect_right(times, edge, head, n)
        else:
            while head < n and times[head] <= edge:
                head += 1
                if head < n and times[head] < times[head - 1]:
                    self.descents -= 1
        if head > 64 and 2 * head > n:
            del times[:head], self.values[:head]
            head = 0
        self.head = head

    def span(self, edge: int, now: int) -> tuple[int, int, int]:
        """``(count, first, later)``: how many entries have ``edge < time <= now``, the index of the first of
        them (meaningful if any), and the index of the first entry later than ``now`` (``len(times)`` if none)."""
        times, head = self.times, self.head
        if not self.descents:
            first, later = bisect_right(times, edge, head), bisect_right(times, now, head)
            return later - first, first, later
        n = len(times)
        inside = [i for i in range(head, n) if edge < times[i] <= now]
        later = next((i for i in range(head, n) if times[i] > now), n)
        return len(inside), inside[0] if inside else head, later
