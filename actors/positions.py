"""Positions and PnL per market, in Kalshi's signed convention (+YES / −NO), as a pure state machine.

All accounting is on the YES leg, so one rule serves both sides. A bid fill buys YES (or closes NO), an
ask fill sells YES (buys NO, or closes YES). A position is a queue of lots ``(price, count)`` on one
side, closed first in, first out, so every amount is an exact integer:

* ``cost_basis`` = Σ ``sign × lot price × lot count`` (negative for a NO position: on the YES leg it was
  sold at that price; the cash it tied up is ``$1 × |position| + cost_basis``);
* closing ``k`` of a lot bought at ``p`` by a fill at ``q`` realizes ``sign × (q − p) × k``;
* unrealized at a mid ``m`` is ``position × m − cost_basis``;
* settlement at a YES value ``v`` (``$1`` for yes, ``0`` for no, or the market's settlement value)
  closes everything: it realizes ``position × v − cost_basis``.

Realized PnL is before fees; ``fees`` is the sum of the fills' ``fee`` per market. A fill whose
``trade_id`` was applied before, or that is too old to tell (:mod:`actors.dedupe`: the trade ids are remembered
in bounded generations; a fill older than what was forgotten is refused as stale), changes nothing and is
recorded as ``FillDuplicated``. Every change is recorded as ``PositionChanged``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import msgspec

from runtime.events import Event, FillDuplicated, MarketLifecycle, OrderFilled, PositionChanged
from runtime.units import PRICE_MAX

from .dedupe import FillWindow, FillWindowSnapshot, Verdict
from .machine import NOTHING

__all__ = ["MarketPosition", "Positions", "PositionsSnapshot", "settlement_value"]

_RESULT_VALUE = {"yes": PRICE_MAX, "no": 0}


def settlement_value(event: MarketLifecycle) -> int | None:
    """What one YES contract pays at this settlement (price units), or None when the event does not say."""
    if event.settlement_value is not None:
        return event.settlement_value
    return _RESULT_VALUE.get(event.result or "")


class MarketPosition(msgspec.Struct, frozen=True):
    """One market's position: its lots (oldest first, all on the side of ``position``) and running PnL."""

    market: str
    position: int
    cost_basis: int
    realized_pnl: int
    fees: int
    lots: tuple[tuple[int, int], ...] = ()


class PositionsSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    markets: tuple[MarketPosition, ...]  # by market ticker
    seen_trades: tuple[str, ...]  # sorted: the fill window's current generation
    seen_window: FillWindowSnapshot | None = None  # and the rest of it (actors.dedupe)


class _Book(msgspec.Struct, gc=False):
    """One market's mutable state (the machine's own)."""

    position: int = 0
    cost_basis: int = 0
    realized_pnl: int = 0
    fees: int = 0
    lots: deque[list[int]] = msgspec.field(default_factory=deque)  # [price, count], count > 0


class Positions:
    """Positions, cost basis, realized PnL and fees per market, folded from fills and settlements."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self._fills = FillWindow()  # the trade ids applied (actors.dedupe)

    # -- queries --------------------------------------------------------------------------------
    def get(self, market: str) -> MarketPosition:
        """The market's position (all zero for a market never traded)."""
        b = self._books.get(market) or _Book()
        return MarketPosition(market, b.position, b.cost_basis, b.realized_pnl, b.fees,
                              tuple((p, c) for p, c in b.lots))

    def marks(self, market: str) -> tuple[int, int, int]:
        """``(position, cost basis, realized PnL - fees)`` of ``market``: what marking it needs, without a copy."""
        b = self._books.get(market)
        return (0, 0, 0) if b is None else (b.position, b.cost_basis, b.realized_pnl - b.fees)

    def value2(self, market: str, mid2: int | None) -> int:
        """Twice ``market``'s PnL net of fees with the open position marked at the mid (``mid2`` = bid + ask, so
        a mid between ticks stays exact; at cost without one): what ``tape paper``, training and evaluation mark."""
        position, cost_basis, net = self.marks(market)
        return 2 * net + (0 if mid2 is None or not position else position * mid2 - 2 * cost_basis)

    def unrealized(self, market: str, mid: int) -> int:
        """The open position's PnL marked at ``mid`` (YES price units), in micro-dollars."""
        b = self._books.get(market)
        return 0 if b is None else b.position * mid - b.cost_basis

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        if type(event) is OrderFilled:
            return self._fill(seq, event)
        if type(event) is MarketLifecycle and event.kind == "settled":
            return self._settle(seq, event)
        return NOTHING

    def _fill(self, seq: int, fill: OrderFilled) -> Sequence[Event]:
        if self._fills.admit(fill) is not Verdict.NEW:
            return (FillDuplicated(trade_id=fill.trade_id, cause_seq=seq),)
        b = self._books.get(fill.market)
        if b is None:
            b = self._books[fill.market] = _Book()
        sign = 1 if fill.side == "bid" else -1
        left = fill.count
        while left and b.position * sign < 0:  # the fill closes the opposite side first, oldest lot first
            lot = b.lots[0]
            k = min(left, lot[1])
            b.realized_pnl += -sign * (fill.price - lot[0]) * k
            b.cost_basis += sign * lot[0] * k
            b.position += sign * k
            left -= k
            lot[1] -= k
            if not lot[1]:
                b.lots.popleft()
        if left:
            b.lots.append([fill.price, left])
            b.cost_basis += sign * fill.price * left
            b.position += sign * left
        b.fees += fill.fee
        return (self._changed(fill.market, b, seq),)

    def _settle(self, seq: int, event: MarketLifecycle) -> Sequence[Event]:
        value = settlement_value(event)
        b = self._books.get(event.market)
        if value is None or b is None or not b.position:
            return NOTHING
        b.realized_pnl += b.position * value - b.cost_basis
        b.position = b.cost_basis = 0
        b.lots.clear()
        return (self._changed(event.market, b, seq),)

    @staticmethod
    def _changed(market: str, b: _Book, seq: int) -> PositionChanged:
        return PositionChanged(market=market, position=b.position, cost_basis=b.cost_basis,
                               realized_pnl=b.realized_pnl, fees=b.fees, cause_seq=seq)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> PositionsSnapshot:
        seen, window = self._fills.snapshot_parts()
        return PositionsSnapshot(markets=tuple(self.get(m) for m in sorted(self._books)), seen_trades=seen,
                                 seen_window=window)

    @classmethod
    def restore(cls, snap: PositionsSnapshot) -> Positions:
        """A machine equal to the one whose ``snapshot()`` was ``snap``."""
        machine = cls()
        for p in snap.markets:
            machine._books[p.market] = _Book(p.position, p.cost_basis, p.realized_pnl, p.fees,
                                             deque([price, count] for price, count in p.lots))
        machine._fills = FillWindow.restore(snap.seen_trades, snap.seen_window)
        return machine
