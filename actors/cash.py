"""The cash pool: one balance across all markets and a reservation per open order, as a pure state machine.

**Balance.** ``SessionStarted.starting_cash`` opens it and ``CashDeposited`` adds to it. A fill buys a leg
(YES at the price for a bid, NO at 1 − the price for an ask); where it meets an opposite position the
YES + NO pair is worth exactly $1 and is paid out at once (that is how selling what one holds works on a
one-book venue). The fill's trade fee (``OrderFilled.fee``) and the leg's cost then move the balance by
Kalshi's rounding (:func:`actors.fees.round_fill`): floored to ``precision``, the rounding fee kept in the
order's accumulator and paid back a cent at a time. A fee that already includes the rounding (a net fee
from the venue) passes through unchanged, since its balance change is already on the grid.
``MarketLifecycle(kind="settled")`` pays $1 per winning contract (``CashSettled``).

**Reservations.** An ``OrderIntent`` reserves, for its whole count, as if every contract opened a new
position (an order that would close one reserves the same; the $1 per closed pair comes back at the
fill — simple, and never short, at the price of holding cash for exits)::

    hold = remaining × worst_unit_outlay + ALLOWANCE − carry

``worst_unit_outlay`` is the most one count unit can cost, price plus taker fee, at any price no worse
than the limit and in the smallest pieces (the schedule's :meth:`~actors.fees.FeeSchedule.worst_unit_outlay`);
``ALLOWANCE`` is one cent, the most the order's rounding accumulator (``carry``) can ever hold back. So
every fill is paid out of what it releases, and available cash never goes negative. If available cash
is short the intent gets ``OrderRejected(reason="insufficient_cash")``, else ``CashReserved``. A fill
shrinks the hold to the formula's value for what remains (``CashReleased``; the last fill releases
everything), and ``OrderRejected``, ``OrderCanceled`` and ``OrderExpired`` release the rest.

**Amends.** An ``AmendRequested`` (a new limit price and a new total count: filled plus resting) may reach
the venue at any moment from now until its answer, and the order may fill under either terms meanwhile, so
the hold is the larger of the two until then: the formula at the old limit for what remains, and at the new
limit for the new count less what has filled. The difference is reserved at once (``CashReserved`` with the
amend's seq as ``cause_seq``; 0 when nothing more is needed — the router sends the amend on that verdict),
or, if available cash is short, the amend is refused: ``AmendRejected(insufficient_cash)``. So is an amend
of an order with no reservation (``order_not_open``), one that would not leave anything to rest
(``invalid_count``), and a second amend while one is on its way (``amend_pending``). ``OrderAmended``
applies the new terms (a decrease releases the difference: ``CashReleased``); ``AmendRejected`` from the
venue returns to the old terms. An order is done only when nothing remains under either terms.

A fill whose ``trade_id`` was applied before, or that is too old to tell (:mod:`actors.dedupe`: the trade ids are
remembered in bounded generations), is ignored (the positions machine records the duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runtime.events import (
    AmendRejected,
    AmendRequested,
    CashDeposited,
    CashReleased,
    CashReserved,
    CashSettled,
    Event,
    MarketLifecycle,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    RejectReason,
    SessionStarted,
)
from runtime.units import PRICE_MAX, format_count, format_money

from .dedupe import FillWindow, FillWindowSnapshot, Verdict
from .fees import CENT, REBATE, FeeSchedule, leg_cost, leg_price, round_fill
from .machine import NOTHING
from .positions import settlement_value

__all__ = ["ALLOWANCE", "CashPool", "CashSnapshot", "Reservation"]

ALLOWANCE = REBATE  # the order's accumulator stays below one rebate, so one cent covers its rounding


class Reservation(msgspec.Struct, gc=False):
    """The cash held for one open order."""

    client_order_id: str
    market: str
    side: str
    unit: int  # worst_unit_outlay at the order's limit, micro-dollars per count unit
    remaining: int
    carry: int = 0  # the order's fee-rounding accumulator
    filled: int = 0  # what has filled, over every fill
    pending_unit: int | None = None  # an amend on its way: the unit outlay at its limit
    pending_count: int = 0  # and its new total count (filled + resting)
    pending_seq: int = 0  # and the seq of its AmendRequested

    @property
    def hold(self) -> int:
        need = self.remaining * self.unit
        if self.pending_unit is not None:
            need = max(need, max(0, self.pending_count - self.filled) * self.pending_unit)
        return need + ALLOWANCE - self.carry

    @property
    def done(self) -> bool:
        """Nothing can fill any more, under the order's terms or those of an amend on its way."""
        return not self.remaining and (self.pending_unit is None or self.pending_count <= self.filled)


class CashSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    cash: int
    rounding_paid: int
    reservations: tuple[Reservation, ...]  # by client order id
    positions: tuple[tuple[str, int], ...]  # signed count by market
    seen_trades: tuple[str, ...]  # sorted: the fill window's current generation
    seen_window: FillWindowSnapshot | None = None  # and the rest of it (actors.dedupe)


class CashPool:
    """The session's cash: balance, reservations per open order, and the rounding it has paid."""

    def __init__(self, fees: FeeSchedule, *, precision: int = CENT) -> None:
        if precision <= 0 or CENT % precision:
            raise ValueError(f"precision must divide one cent ({CENT} micro-dollars), got {precision}")
        self.fees = fees
        self.precision = precision
        self.cash = 0
        self.reserved = 0
        self.rounding_paid = 0  # rounding fees less rebates, over all fills: kept by the venue
        self._reservations: dict[str, Reservation] = {}
        self._positions: dict[str, int] = {}  # signed count: the YES + NO pairs a fill closes pay $1
        self._fills = FillWindow()  # the trade ids applied (actors.dedupe)

    @property
    def available(self) -> int:
        return self.cash - self.reserved

    def hold(self, client_order_id: str) -> int:
        """What is reserved for the order (0 once it is done)."""
        r = self._reservations.get(client_order_id)
        return 0 if r is None else r.hold

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        kind = type(event)
        if kind is OrderIntent:
            return self._reserve(seq, event)  # type: ignore[arg-type]
        if kind is OrderFilled:
            return self._fill(seq, event)  # type: ignore[arg-type]
        if kind is OrderCanceled or kind is OrderExpired or kind is OrderRejected:
            return self._release(seq, event.client_order_id)  # type: ignore[union-attr]
        if kind is MarketLifecycle:
            return self._settle(seq, event) if event.kind == "settled" else NOTHING  # type: ignore[union-attr]
        if kind is AmendRequested:
            return self._amend(seq, event)  # type: ignore[arg-type]
        if kind is OrderAmended:
            return self._amended(seq, event)  # type: ignore[arg-type]
        if kind is AmendRejected:
            return self._unamend(seq, event)  # type: ignore[arg-type]
        if kind is CashDeposited:
            self.cash += event.amount  # type: ignore[union-attr]
        elif kind is SessionStarted:
            self.cash += event.starting_cash  # type: ignore[union-attr]
        return NOTHING

    def _reserve(self, seq: int, intent: OrderIntent) -> Sequence[Event]:
        cid = intent.client_order_id
        if cid in self._reservations:
            raise ValueError(f"cash pool: order {cid!r} is already open (client order ids must be unique)")
        unit = self.fees.worst_unit_outlay(intent.market, leg_price(intent.side, intent.price))
        r = Reservation(cid, intent.market, intent.side, unit, intent.count)
        need = r.hold
        if need > self.available:
            return (OrderRejected(client_order_id=cid, market=intent.market, reason="insufficient_cash",
                                  detail=f"needs ${format_money(need)}, has ${format_money(self.available)} available",
                                  cause_seq=seq),)
        self._reservations[cid] = r
        self.reserved += need
        return (CashReserved(client_order_id=cid, amount=need, cause_seq=seq),)

    def _amend(self, seq: int, a: AmendRequested) -> Sequence[Event]:
        cid = a.client_order_id
        r = self._reservations.get(cid)
        if r is None:
            return _refused(a, seq, "order_not_open", f"order {cid!r} holds no reservation: it is not open")
        if r.pending_unit is not None:
            return _refused(a, seq, "amend_pending", f"order {cid!r} has an amend on its way (seq {r.pending_seq})")
        if a.count <= r.filled:
            return _refused(a, seq, "invalid_count", f"count {format_count(a.count)} leaves nothing to rest: "
                                                     f"{format_count(r.filled)} has filled")
        before = r.hold
        r.pending_unit = self.fees.worst_unit_outlay(r.market, leg_price(r.side, a.price))
        r.pending_count, r.pending_seq = a.count, seq
        extra = r.hold - before
        if extra > self.available:
            r.pending_unit, r.pending_count, r.pending_seq = None, 0, 0
            return _refused(a, seq, "insufficient_cash", f"the amend needs ${format_money(extra)} more, has "
                                                         f"${format_money(self.available)} available")
        self.reserved += extra
        return (CashReserved(client_order_id=cid, amount=extra, cause_seq=seq),)

    def _amended(self, seq: int, a: OrderAmended) -> Sequence[Event]:
        r = self._reservations.get(a.client_order_id)
        if r is None:
            return NOTHING
        before = r.hold
        r.unit = self.fees.worst_unit_outlay(r.market, leg_price(r.side, a.price))
        r.remaining = max(0, a.count - r.filled)
        r.pending_unit, r.pending_count, r.pending_seq = None, 0, 0
        return self._rehold(seq, r, before)

    def _unamend(self, seq: int, a: AmendRejected) -> Sequence[Event]:
        r = self._reservations.get(a.client_order_id)
        if r is None or r.pending_unit is None or a.cause_seq not in (None, r.pending_seq):
            return NOTHING  # our own refusal of an amend (it never became pending), or another amend's
        before = r.hold
        r.pending_unit, r.pending_count, r.pending_seq = None, 0, 0
        return self._rehold(seq, r, before)

    def _rehold(self, seq: int, r: Reservation, before: int) -> Sequence[Event]:
        """The reservation's terms changed: hold what they need now (all released once the order is done)."""
        if r.done:
            after = 0
            del self._reservations[r.client_order_id]
        else:
            after = r.hold
        self.reserved += after - before
        if before > after:
            return (CashReleased(client_order_id=r.client_order_id, amount=before - after, cause_seq=seq),)
        if after > before:
            return (CashReserved(client_order_id=r.client_order_id, amount=after - before, cause_seq=seq),)
        return NOTHING

    def _release(self, seq: int, cid: str) -> Sequence[Event]:
        r = self._reservations.pop(cid, None)
        if r is None:
            return NOTHING
        self.reserved -= r.hold
        return (CashReleased(client_order_id=cid, amount=r.hold, cause_seq=seq),)

    def _fill(self, seq: int, fill: OrderFilled) -> Sequence[Event]:
        if self._fills.admit(fill) is not Verdict.NEW:
            return NOTHING
        held = self._positions.get(fill.market, 0)
        sign = 1 if fill.side == "bid" else -1
        closed = min(fill.count, max(0, -sign * held))  # opposite contracts this fill pairs off
        self._positions[fill.market] = held + sign * fill.count
        r = self._reservations.get(fill.client_order_id)
        revenue = closed * PRICE_MAX - leg_cost(fill.side, fill.price, fill.count)
        charge = round_fill(revenue, fill.fee, 0 if r is None else r.carry, self.precision)
        self.cash += charge.balance_change
        self.rounding_paid += charge.rounding_fee - charge.rebate
        if r is None:
            return NOTHING
        before = r.hold
        r.carry = charge.carry
        r.remaining -= min(fill.count, r.remaining)
        r.filled += fill.count
        return self._rehold(seq, r, before)  # more held only for a rebate while the unit outlay is nothing

    def _settle(self, seq: int, event: MarketLifecycle) -> Sequence[Event]:
        value = settlement_value(event)
        held = self._positions.get(event.market, 0)
        if value is None or not held:
            return NOTHING
        del self._positions[event.market]
        amount = held * value if held > 0 else -held * (PRICE_MAX - value)
        self.cash += amount
        return (CashSettled(market=event.market, amount=amount, cause_seq=seq),)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> CashSnapshot:
        seen, window = self._fills.snapshot_parts()
        return CashSnapshot(
            cash=self.cash,
            rounding_paid=self.rounding_paid,
            reservations=tuple(msgspec.structs.replace(self._reservations[c]) for c in sorted(self._reservations)),
            positions=tuple((m, n) for m, n in sorted(self._positions.items()) if n),
            seen_trades=seen, seen_window=window,
        )

    @classmethod
    def restore(cls, snap: CashSnapshot, fees: FeeSchedule, *, precision: int = CENT) -> CashPool:
        """A pool equal to the one whose ``snapshot()`` was ``snap`` (the fee schedule is configuration)."""
        pool = cls(fees, precision=precision)
        pool.cash = snap.cash
        pool.rounding_paid = snap.rounding_paid
        pool._reservations = {r.client_order_id: msgspec.structs.replace(r) for r in snap.reservations}
        pool.reserved = sum(r.hold for r in pool._reservations.values())
        pool._positions = dict(snap.positions)
        pool._fills = FillWindow.restore(snap.seen_trades, snap.seen_window)
        return pool


def _refused(a: AmendRequested, seq: int, reason: RejectReason, detail: str) -> Sequence[Event]:
    return (AmendRejected(client_order_id=a.client_order_id, reason=reason, detail=detail, cause_seq=seq),)
