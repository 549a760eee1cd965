"""Trades of one market, read from a session's records, and what each role contributed to their PnL.

A **trade** runs from a fill that takes the position away from zero until the position is zero again (by
fills, or by the settlement), or to the end of the records (then it is marked at the last mid). Its PnL
splits exactly into the roles' parts, on the YES leg with ``q`` the signed size (+ YES, - NO):

* ``signal`` — the market's move while the trade was on: ``(exit mid - entry mid) x q``, where the entry mid
  is the mid as of the decision that placed the first entry order and the exit mid the mid as of the exit
  decision (or the settlement value, or the last mid for a trade still open);
* ``entry`` — what getting in cost against that mid: ``(entry mid - entry price) x q`` (negative when the
  entry paid the spread, positive when a passive order earned it);
* ``exit`` — the same for getting out: ``(exit price - exit mid) x q``;
* ``fees`` — minus the fees of the trade's fills.

``signal + entry + exit + fees`` is the trade's PnL; prices are volume-weighted over the fills. Sizing
multiplies all of them (it chose ``q``) and is reported as the trades' mean size. Mids are exact (twice the
mid is an integer), so the parts are exact to a half micro-dollar.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

import msgspec

from actors.book import OrderBook
from actors.positions import settlement_value
from runtime.events import BookDelta, BookSnapshot, MarketLifecycle, OrderFilled, OrderIntent, Record, SeqGapDetected

__all__ = ["Trade", "TradeTracker", "trades"]


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    """One round trip (module docstring); money in micro-dollars, sizes in 1/100 contract."""

    market: str
    size: int
    """largest absolute position held"""
    side: int
    """+1 YES, -1 NO"""
    pnl: int
    signal: int
    entry: int
    exit: int
    fees: int
    closed: bool
    """False: still open at the end, marked at the last mid"""
    quantity: int = 0
    """contracts entered in all (1/100 contract): every one of them is exited, settled or marked"""
    entry_cost: int = 0
    """what the entry fills cost on the YES leg (price x count summed), micro-dollars"""
    entry_fees: int = 0
    """the fees of the entry fills (a part of ``-fees``)"""
    decided_seq: int = 0
    """the seq of the decision that placed the trade's first entry order"""
    decided_ns: int = 0
    """that decision's event time"""


class _Open:
    __slots__ = ("decided_ns", "decided_seq", "entry_cost", "entry_fees", "entry_mid2", "entry_qty", "exit_mid2",
                 "exit_proceeds", "exit_qty", "fees", "peak", "side")

    def __init__(self, side: int, entry_mid2: int | None, decided_seq: int, decided_ns: int) -> None:
        self.side = side
        self.entry_mid2 = entry_mid2
        self.decided_seq, self.decided_ns = decided_seq, decided_ns
        self.exit_mid2: int | None = None
        self.entry_cost = self.entry_qty = self.exit_proceeds = self.exit_qty = self.fees = self.peak = 0
        self.entry_fees = 0


def trades(records: Iterable[Record], market: str) -> list[Trade]:
    """Every trade of ours in ``market`` (module docstring)."""
    tracker = TradeTracker(market)
    out = [t for t in map(tracker.fold, records) if t is not None]
    last = tracker.finish()
    return out if last is None else [*out, last]


class TradeTracker:
    """:func:`trades` one record at a time, for a caller that needs each trade as it ends (a training
    environment): :meth:`fold` returns the trade a record closes, :meth:`finish` the one still open at the end."""

    def __init__(self, market: str) -> None:
        self.market = market
        self._book = OrderBook(market)
        self._mid_seqs: list[int] = []
        self._mids: list[int | None] = []  # mid2 after each book update, by seq
        self._cause: dict[str, tuple[int, int]] = {}  # client order id -> (seq, ts) of the decision that placed it
        self.position = 0
        self._trade: _Open | None = None

    def _mid_at(self, seq: int) -> int | None:
        i = bisect_right(self._mid_seqs, seq)
        return self._mids[i - 1] if i else None

    @property
    def open(self) -> bool:
        """A trade is on (a position is held)."""
        return self._trade is not None

    def fold(self, r: Record) -> Trade | None:
        """Fold one record; the trade it ends, if any."""
        event, kind, market = r.event, type(r.event), self.market
        if kind is BookDelta or kind is BookSnapshot or kind is SeqGapDetected:
            book = self._book
            book.handle(r.seq, r.ts_ns, event)
            if book.last_update_seq == r.seq:
                self._mid_seqs.append(r.seq)
                self._mids.append(book.mid2())
        elif kind is OrderIntent and event.market == market:  # type: ignore[union-attr]
            self._cause[event.client_order_id] = (event.cause_seq, r.ts_ns)  # type: ignore[union-attr]
        elif kind is OrderFilled and event.market == market:  # type: ignore[union-attr]
            return self._fill(r, event)  # type: ignore[arg-type]
        elif kind is MarketLifecycle and event.market == market and event.kind == "settled":  # type: ignore[union-attr]
            value = settlement_value(event)  # type: ignore[arg-type]
            trade = self._trade
            if trade is not None and value is not None and self.position:
                trade.exit_proceeds += value * abs(self.position)
                trade.exit_qty += abs(self.position)
                trade.exit_mid2 = 2 * value
                self.position = 0
                self._trade = None
                return _close(trade, market, None)
        return None

    def _fill(self, r: Record, fill: OrderFilled) -> Trade | None:
        sign = 1 if fill.side == "bid" else -1
        decided, decided_ns = self._cause.get(fill.client_order_id, (r.seq, r.ts_ns))
        left = fill.count
        closed = None
        while left:
            trade = self._trade
            if trade is None:
                trade = self._trade = _Open(sign, self._mid_at(decided), decided, decided_ns)
            if sign == trade.side:  # adds to the position
                k = left
                trade.entry_cost += fill.price * k
                trade.entry_qty += k
                fee = fill.fee * k // fill.count if k != fill.count else fill.fee
                trade.entry_fees += fee
            else:  # reduces it, at most to zero (the rest opens the other way)
                k = min(left, abs(self.position))
                trade.exit_proceeds += fill.price * k
                trade.exit_qty += k
                if trade.exit_mid2 is None:
                    trade.exit_mid2 = self._mid_at(decided)
                fee = fill.fee * k // fill.count if k != fill.count else fill.fee
            trade.fees += fee
            self.position += sign * k
            trade.peak = max(trade.peak, abs(self.position))
            left -= k
            if self.position == 0:
                closed = _close(trade, self.market, None)
                self._trade = None
        return closed

    def finish(self) -> Trade | None:
        """The trade still open at the end of the records, marked at the last mid (or at its cost without one)."""
        trade = self._trade
        if trade is None or not self.position:
            return None
        last = self._mids[-1] if self._mids else None
        mark2 = last if last is not None else 2 * (trade.entry_cost // max(trade.entry_qty, 1))
        return _close(trade, self.market, (mark2, abs(self.position)))


def _close(t: _Open, market: str, open_mark: tuple[int, int] | None) -> Trade:
    """The trade's figures, working in twice the money (mids are half ticks)."""
    q = t.entry_qty
    exit_qty = t.exit_qty
    exit_proceeds2 = 2 * t.exit_proceeds
    exit_mid2 = t.exit_mid2
    if open_mark is not None:  # the rest of the position marked at the last mid
        mark2, rest = open_mark
        exit_proceeds2 += mark2 * rest
        exit_qty += rest
        exit_mid2 = mark2
    entry_mid2 = t.entry_mid2 if t.entry_mid2 is not None else 2 * t.entry_cost // max(q, 1)
    exit_mid2 = exit_mid2 if exit_mid2 is not None else entry_mid2
    s = t.side
    # per unit, twice: entry price 2*cost/q, exit price proceeds2/q (all of the entry is exited or marked)
    signal2 = (exit_mid2 - entry_mid2) * q * s
    entry2 = (entry_mid2 * q - 2 * t.entry_cost) * s
    exit2 = (exit_proceeds2 - exit_mid2 * exit_qty) * s
    gross2 = (exit_proceeds2 - 2 * t.entry_cost) * s
    return Trade(market=market, size=t.peak, side=s, pnl=(gross2 - 2 * t.fees) // 2, signal=signal2 // 2,
                 entry=entry2 // 2, exit=exit2 // 2, fees=-t.fees, closed=open_mark is None, quantity=q,
                 entry_cost=t.entry_cost, entry_fees=t.entry_fees, decided_seq=t.decided_seq,
                 decided_ns=t.decided_ns)
