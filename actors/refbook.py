"""A deliberately naive order book: the reference :mod:`actors.book` is tested against.

Same API and the same rules (see :mod:`actors.book`), written for obviousness, not speed: each ladder
is a dict {price: count} of the levels that have size, and every read sorts and sums from scratch.
It shares no logic with the fast book, only the state Struct it snapshots to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.events import BookDelta, BookInconsistent, BookSnapshot, Event, SeqGapDetected

from .book import PRICE_MAX, BookState
from .machine import NOTHING

__all__ = ["ReferenceBook"]


class ReferenceBook:
    """One market's book, naive: dicts of levels, everything recomputed on each read."""

    def __init__(self, market: str) -> None:
        self.market = market
        self.stale = True
        self.last_update_seq = 0
        self.ladders: dict[str, dict[int, int]] = {"yes": {}, "no": {}}

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Fold one event of the log."""
        if isinstance(event, BookSnapshot) and event.market == self.market:
            self._replace(event.yes_bids, event.no_bids)
            self.stale = False
            self.last_update_seq = seq
        elif isinstance(event, BookDelta) and event.market == self.market and not self.stale:
            resting = self.ladders[event.side].get(event.price, 0)
            if self.apply_delta(event.side, event.price, event.delta):
                self.last_update_seq = seq
            else:
                self.stale = True
                return [BookInconsistent(market=self.market, side=event.side, price=event.price,
                                         delta=event.delta, resting=resting, cause_seq=seq)]
        elif isinstance(event, SeqGapDetected) and self.market in event.markets:
            self.stale = True
        return NOTHING

    def apply_delta(self, side: str, price: int, delta: int) -> bool:
        """Change one level; False (and no change) if it would go negative. Ignores ``stale``."""
        if side not in self.ladders:
            raise ValueError(f"{self.market}: side must be 'yes' or 'no', got {side!r}")
        if not 0 <= price <= PRICE_MAX:
            raise ValueError(f"{self.market}: price {price} is outside [0, {PRICE_MAX}]")
        ladder = self.ladders[side]
        new = ladder.get(price, 0) + delta
        if new < 0:
            return False
        if new == 0:
            ladder.pop(price, None)
        else:
            ladder[price] = new
        return True

    def apply_deltas(self, side: np.ndarray, price: np.ndarray, delta: np.ndarray,
                     seq: np.ndarray | None = None) -> int:
        """Apply columns of deltas one at a time; the index of the first inconsistent one, or -1."""
        sides, prices, deltas = [int(s) for s in side], [int(p) for p in price], [int(d) for d in delta]
        seqs = [None] * len(deltas) if seq is None else [int(s) for s in seq]
        if not len(sides) == len(prices) == len(deltas) == len(seqs):
            raise ValueError(f"{self.market}: columns differ in length")
        if any(s not in (0, 1) for s in sides):
            raise ValueError(f"{self.market}: column side must hold 0 (yes) or 1 (no)")
        if any(not 0 <= p <= PRICE_MAX for p in prices):
            raise ValueError(f"{self.market}: column price must lie in [0, {PRICE_MAX}]")
        if self.stale:
            return -1
        for i, (s, p, d, q) in enumerate(zip(sides, prices, deltas, seqs, strict=True)):
            if not self.apply_delta("yes" if s == 0 else "no", p, d):
                self.stale = True
                return i
            if q is not None:
                self.last_update_seq = q
        return -1

    def _replace(self, yes_bids: Sequence[tuple[int, int]], no_bids: Sequence[tuple[int, int]]) -> None:
        self.ladders = {"yes": {}, "no": {}}
        for side, levels in (("yes", yes_bids), ("no", no_bids)):
            for price, count in levels:
                if not 0 <= price <= PRICE_MAX or count < 0:
                    raise ValueError(f"{self.market}: snapshot {side} level ({price}, {count}) is outside "
                                     f"price [0, {PRICE_MAX}] or has a negative count")
                if count:
                    self.ladders[side][price] = self.ladders[side].get(price, 0) + count

    # --- reads, all from scratch ------------------------------------------------------------------------
    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        if n is not None and n < 0:
            raise ValueError(f"number of levels must be >= 0 or None (all levels), got {n}")
        levels = sorted(self.ladders["yes"].items(), reverse=True)
        return levels if n is None else levels[:n]

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        if n is not None and n < 0:
            raise ValueError(f"number of levels must be >= 0 or None (all levels), got {n}")
        levels = sorted((PRICE_MAX - q, c) for q, c in self.ladders["no"].items())
        return levels if n is None else levels[:n]

    def best_bid(self) -> int | None:
        levels = self.bids()
        return levels[0][0] if levels else None

    def best_ask(self) -> int | None:
        levels = self.asks()
        return levels[0][0] if levels else None

    def spread(self) -> int | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask - bid

    def mid2(self) -> int | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask + bid

    def bid_size(self, price: int) -> int:
        return dict(self.bids()).get(price, 0)

    def ask_size(self, price: int) -> int:
        return dict(self.asks()).get(price, 0)

    def depth(self, n: int | None = None) -> tuple[int, int]:
        return sum(c for _, c in self.bids(n)), sum(c for _, c in self.asks(n))

    def imbalance(self, n: int | None = None) -> float:
        bid, ask = self.depth(n)
        return 0.0 if bid + ask == 0 else (bid - ask) / (bid + ask)

    # --- state ------------------------------------------------------------------------------------------
    def snapshot(self) -> BookState:
        return BookState(market=self.market, yes_bids=tuple(sorted(self.ladders["yes"].items())),
                         no_bids=tuple(sorted(self.ladders["no"].items())), stale=self.stale,
                         last_update_seq=self.last_update_seq)

    @classmethod
    def restore(cls, state: BookState) -> ReferenceBook:
        book = cls(state.market)
        book._replace(state.yes_bids, state.no_bids)
        book.stale = state.stale
        book.last_update_seq = state.last_update_seq
        return book
