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

__all__ = ["Trade", "trades"]


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


class _Open:
    __slots__ = ("entry_cost", "entry_mid2", "entry_qty", "exit_mid2", "exit_proceeds", "exit_qty", "fees", "peak",
                 "side")

    def __init__(self, side: int, entry_mid2: int | None) -> None:
        self.side = side
        self.entry_mid2 = entry_mid2
        self.exit_mid2: int | None = None
        self.entry_cost = self.entry_qty = self.exit_proceeds = self.exit_qty = self.fees = self.peak = 0


def trades(records: Iterable[Record], market: str) -> list[Trade]:
    """Every trade of ours in ``market`` (module docstring)."""
    book = OrderBook(market)
    mid_seqs: list[int] = []
    mids: list[int | None] = []  # mid2 after each book update, by seq

    def mid_at(seq: int) -> int | None:
        i = bisect_right(mid_seqs, seq)
        return mids[i - 1] if i else None

    cause: dict[str, int] = {}  # client order id -> the seq of the decision that placed it
    exits: dict[str, bool] = {}  # client order id -> reduce-only
    out: list[Trade] = []
    position = 0
    trade: _Open | None = None
    for r in records:
        event, kind = r.event, type(r.event)
        if kind is BookDelta or kind is BookSnapshot or kind is SeqGapDetected:
            book.handle(r.seq, r.ts_ns, event)
            if book.last_update_seq == r.seq:
                mid_seqs.append(r.seq)
                mids.append(book.mid2())
        elif kind is OrderIntent and event.market == market:  # type: ignore[union-attr]
            cause[event.client_order_id] = event.cause_seq  # type: ignore[union-attr]
            exits[event.client_order_id] = event.reduce_only  # type: ignore[union-attr]
        elif kind is OrderFilled and event.market == market:  # type: ignore[union-attr]
            fill: OrderFilled = event  # type: ignore[assignment]
            sign = 1 if fill.side == "bid" else -1
            decided = cause.get(fill.client_order_id, r.seq)
            left = fill.count
            while left:
                if trade is None:
                    trade = _Open(sign, mid_at(decided))
                if sign == trade.side:  # adds to the position
                    k = left
                    trade.entry_cost += fill.price * k
                    trade.entry_qty += k
                else:  # reduces it, at most to zero (the rest opens the other way)
                    k = min(left, abs(position))
                    trade.exit_proceeds += fill.price * k
                    trade.exit_qty += k
                    if trade.exit_mid2 is None:
                        trade.exit_mid2 = mid_at(decided)
                trade.fees += fill.fee * k // fill.count if k != fill.count else fill.fee
                position += sign * k
                trade.peak = max(trade.peak, abs(position))
                left -= k
                if position == 0:
                    out.append(_close(trade, market, None))
                    trade = None
        elif kind is MarketLifecycle and event.market == market and event.kind == "settled":  # type: ignore[union-attr]
            value = settlement_value(event)  # type: ignore[arg-type]
            if trade is not None and value is not None and position:
                trade.exit_proceeds += value * abs(position)
                trade.exit_qty += abs(position)
                trade.exit_mid2 = 2 * value
                position = 0
                out.append(_close(trade, market, None))
                trade = None
    if trade is not None and position:
        last = mids[-1] if mids else None
        mark2 = last if last is not None else 2 * (trade.entry_cost // max(trade.entry_qty, 1))
        out.append(_close(trade, market, (mark2, abs(position))))
    return out


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
                 entry=entry2 // 2, exit=exit2 // 2, fees=-t.fees, closed=open_mark is None)
