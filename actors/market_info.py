"""What a ``MarketInfo`` in the log means to the state machines: a market's price grid, and the cash pool's fees.

A ``MarketInfo`` (:class:`runtime.events.MarketInfo`) is the venue's definition of a market, logged as an input
when the session subscribes to it. Three machines fold it:

* the paper matcher and the orchestrator check an order's price with :func:`on_grid` against the grid of its
  market's latest ``MarketInfo`` (whole cents, and the steps of its ``price_ranges``), and charge or reserve its
  fees by :class:`~actors.fees.MarketFees`; a market without one keeps the rules it had before the event existed
  (the matcher: any price in 1..9,999; the orchestrator: its ``tick``);
* the cash pool reserves by the same fees. The pool itself folds no ``MarketInfo``: :class:`InformedCashPool`
  wraps it, learns the fees into the schedule the pool holds, and hands it every other event.

Snapshots stay what they were until a ``MarketInfo`` arrives: a session without one snapshots byte for byte as
before (the cash pool's is then its plain :class:`~actors.cash.CashSnapshot`), so old logs' checkpoints still
verify.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runtime.events import Event, MarketInfo
from runtime.units import PRICE_MAX, format_price

from .cash import CashPool, CashSnapshot
from .fees import CENT, FeeSchedule, MarketFees
from .machine import NOTHING

__all__ = ["InformedCashPool", "InformedCashSnapshot", "grid_text", "on_grid"]

_CENT_PRICE = 100  # one cent in 1/10,000 dollar


def on_grid(info: MarketInfo, price: int) -> bool:
    """Whether ``price`` is a valid price of ``info``'s market: a whole cent from 1¢ to 99¢ (valid on every Kalshi
    market), or a step of one of its ``price_ranges`` (ends inclusive)."""
    if price % _CENT_PRICE == 0 and _CENT_PRICE <= price <= PRICE_MAX - _CENT_PRICE:
        return True
    return any(lo <= price <= hi and (price - lo) % step == 0 for lo, hi, step in info.price_ranges if step > 0)


def grid_text(info: MarketInfo) -> str:
    """The grid in words, for a rejection's detail (``"whole cents, 0.0010 to 0.9990 by 0.0010"``)."""
    ranges = ", ".join(f"{format_price(lo)} to {format_price(hi)} by {format_price(step)}"
                       for lo, hi, step in info.price_ranges)
    return "whole cents" + (f", {ranges}" if ranges else "")


class InformedCashSnapshot(CashSnapshot, frozen=True):
    """A cash pool's snapshot with the ``MarketInfo`` its fees were learned from; the bytes of a plain
    :class:`~actors.cash.CashSnapshot` decode as one with none."""

    market_info: tuple[MarketInfo, ...] = ()


class InformedCashPool:
    """The cash pool of a session whose log may hold ``MarketInfo``: it learns each into ``fees`` (the
    :class:`~actors.fees.MarketFees` the pool reserves by) and hands every other event to :attr:`pool`."""

    def __init__(self, base: FeeSchedule, *, precision: int = CENT) -> None:
        self.fees = MarketFees(base)
        self.pool = CashPool(self.fees, precision=precision)

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        if type(event) is MarketInfo:
            self.fees.learn(event)
            return NOTHING
        return self.pool.handle(seq, ts_ns, event)

    def snapshot(self) -> CashSnapshot:
        """The pool's own snapshot while no ``MarketInfo`` is learned (an old session's bytes, whatever fields the
        pool's snapshot gains later), else an :class:`InformedCashSnapshot`."""
        snap = self.pool.snapshot()
        if not self.fees.infos:
            return snap
        return InformedCashSnapshot(**msgspec.structs.asdict(snap), market_info=self.fees.learned())

    @classmethod
    def restore(cls, snap: InformedCashSnapshot, base: FeeSchedule, *, precision: int = CENT) -> InformedCashPool:
        """The pool whose ``snapshot()`` was ``snap`` (a plain ``CashSnapshot``'s bytes decode as one too)."""
        machine = cls(base, precision=precision)
        for info in snap.market_info:
            machine.fees.learn(info)
        machine.pool = CashPool.restore(snap, machine.fees, precision=precision)
        return machine
