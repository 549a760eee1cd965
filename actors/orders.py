"""The order lifecycle as a literal transition table, and the state machine that follows it per order.

States: ``intent`` (decided, not yet acknowledged) -> ``accepted`` -> ``partially_filled`` -> one of the
terminal ``filled``, ``canceled``, ``rejected``, ``expired``. :data:`TRANSITIONS` lists every move
allowed; :func:`transition` raises :class:`IllegalTransition`, naming both states, for any other.

An order can skip states: a fill, a cancel or an expiry may be logged before the venue's acknowledgement
(the private fill channel races the REST reply), so ``intent`` may move straight to any of them.

Who raises: our own events are trusted, so a second ``OrderIntent`` with a client order id already used
is a bug and raises. Venue events (accepted, rejected, canceled, expired, filled) are inputs, and by the
state-machine convention bad input never raises: one that the table refuses — a cancel after the last
fill, a fill beyond the remaining count, an event for an order never placed — is recorded as
``OrderTransitionRefused`` and not applied (the order stays as it was; reconciliation is the remedy).
A fill whose ``trade_id`` was applied before, or that is too old to tell (:mod:`actors.dedupe`: the trade ids are
remembered in bounded generations), is ignored (the positions machine records the duplicate).
An acknowledgement of an order the venue already showed us (accepted again — the order gateway and the
``user_orders`` channel both report it — or after a fill or cancel that raced it) changes nothing and is
not refused, unless it names another venue order id.

Amends change an order's terms, not its state: ``AmendRequested`` notes the new total count on its way (fills
up to the larger of the two counts are then allowed, and only the larger completes the order);
``OrderAmended`` sets the price and the count (an order whose fills already reach the new count is
``filled``; an order the venue amends before we saw it accepted is ``accepted``); ``AmendRejected`` drops
the amend on its way. ``OrderAmended`` for an order that is done, or was never placed, is refused
(``to_state`` ``"amended"``) like any other venue event the table does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from runtime.events import (
    AmendRejected,
    AmendRequested,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderTransitionRefused,
)
from runtime.units import format_count

from .dedupe import FillWindow, FillWindowSnapshot, Verdict
from .machine import NOTHING

__all__ = ["TRANSITIONS", "IllegalTransition", "OrderRecord", "OrderState", "Orders", "OrdersSnapshot", "transition"]

OrderState = Literal["intent", "accepted", "partially_filled", "filled", "canceled", "rejected", "expired"]

# from state            -> the states it may move to
TRANSITIONS: Final[Mapping[OrderState, frozenset[OrderState]]] = {
    "intent":           frozenset({"accepted", "rejected", "partially_filled", "filled", "canceled", "expired"}),
    "accepted":         frozenset({"partially_filled", "filled", "canceled", "expired"}),
    "partially_filled": frozenset({"partially_filled", "filled", "canceled", "expired"}),
    "filled":           frozenset(),
    "canceled":         frozenset(),
    "rejected":         frozenset(),
    "expired":          frozenset(),
}  # fmt: skip


class IllegalTransition(Exception):
    """A move the lifecycle table does not allow."""


def transition(client_order_id: str, state: OrderState, to: OrderState) -> OrderState:
    """``to``, if the table allows ``state -> to``; else raise :class:`IllegalTransition` naming both."""
    if to not in TRANSITIONS[state]:
        raise IllegalTransition(f"order {client_order_id!r}: illegal transition {state} -> {to}")
    return to


class OrderRecord(msgspec.Struct, gc=False):
    """One order's lifecycle: its terms, its state and how much of it has filled."""

    client_order_id: str
    market: str
    side: str
    price: int
    count: int
    state: OrderState = "intent"
    filled: int = 0
    order_id: str | None = None
    pending_count: int = 0  # the total count of an amend on its way (0: none)
    pending_seq: int = 0  # and its seq

    @property
    def remaining(self) -> int:
        """What may still fill: nothing once the order is done."""
        return 0 if not TRANSITIONS[self.state] else self.count - self.filled


class OrdersSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    orders: tuple[OrderRecord, ...]  # by client order id
    seen_trades: tuple[str, ...]  # sorted: the fill window's current generation
    seen_window: FillWindowSnapshot | None = None  # and the rest of it (actors.dedupe)


_TARGET: Final[dict[type, OrderState]] = {
    OrderAccepted: "accepted",
    OrderRejected: "rejected",
    OrderCanceled: "canceled",
    OrderExpired: "expired",
}


class Orders:
    """Every order of the session, by client order id, moved through :data:`TRANSITIONS` by the log."""

    def __init__(self) -> None:
        self._orders: dict[str, OrderRecord] = {}
        self._fills = FillWindow()  # the trade ids applied (actors.dedupe)

    def get(self, client_order_id: str) -> OrderRecord | None:
        """A copy of the order's record, or None if it was never placed."""
        o = self._orders.get(client_order_id)
        return None if o is None else msgspec.structs.replace(o)

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        kind = type(event)
        if kind is OrderIntent:
            self._place(event)  # type: ignore[arg-type]
            return NOTHING
        if kind is OrderFilled:
            return self._fill(seq, event)  # type: ignore[arg-type]
        if kind is AmendRequested or kind is OrderAmended or kind is AmendRejected:
            return self._amend(seq, event)  # type: ignore[arg-type]
        to = _TARGET.get(kind)
        if to is None:
            return NOTHING
        cid = event.client_order_id  # type: ignore[union-attr]
        o = self._orders.get(cid)
        if kind is OrderAccepted and o is not None and o.state not in ("intent", "rejected") \
                and o.order_id in (None, event.order_id):  # type: ignore[union-attr]
            o.order_id = event.order_id  # type: ignore[union-attr]
            return NOTHING  # a repeated or late acknowledgement of the same order: nothing new
        if o is None or to not in TRANSITIONS[o.state]:
            return (self._refused(cid, o, to, seq),)
        o.state = to
        if kind is OrderAccepted:
            o.order_id = event.order_id  # type: ignore[union-attr]
        return NOTHING

    def _place(self, intent: OrderIntent) -> None:
        cid = intent.client_order_id
        existing = self._orders.get(cid)
        if existing is not None:
            transition(cid, existing.state, "intent")  # never allowed: raises, naming the states
        self._orders[cid] = OrderRecord(cid, intent.market, intent.side, intent.price, intent.count)

    def _amend(self, seq: int, event: AmendRequested | OrderAmended | AmendRejected) -> Sequence[Event]:
        o = self._orders.get(event.client_order_id)
        if type(event) is AmendRequested:
            if o is not None and TRANSITIONS[o.state] and not o.pending_count:
                o.pending_count, o.pending_seq = event.count, seq
            return NOTHING
        if type(event) is AmendRejected:
            if o is not None and event.cause_seq in (None, o.pending_seq):
                o.pending_count = o.pending_seq = 0
            return NOTHING
        assert type(event) is OrderAmended
        if o is None or not TRANSITIONS[o.state]:
            return (OrderTransitionRefused(
                client_order_id=event.client_order_id, from_state="unknown" if o is None else o.state,
                to_state="amended", cause_seq=seq, detail="no such order" if o is None else f"the order is {o.state}"),)
        o.price, o.count = event.price, event.count
        o.pending_count = o.pending_seq = 0
        if o.order_id is None:
            o.order_id = event.order_id
        if o.filled >= o.count:
            o.state = "filled"
        elif o.state == "intent":
            o.state = "accepted"
        return NOTHING

    def _fill(self, seq: int, fill: OrderFilled) -> Sequence[Event]:
        if self._fills.admit(fill) is not Verdict.NEW:
            return NOTHING
        cid = fill.client_order_id
        o = self._orders.get(cid)
        filled = (o.filled if o else 0) + fill.count
        total = 0 if o is None else max(o.count, o.pending_count)
        to: OrderState = "filled" if o is None or filled >= total else "partially_filled"
        if o is None or to not in TRANSITIONS[o.state]:
            return (self._refused(cid, o, to, seq),)
        if filled > total:
            return (self._refused(cid, o, to, seq, f"a fill of {format_count(fill.count)} exceeds the remaining "
                                                    f"{format_count(total - o.filled)}"),)
        o.state = to
        o.filled = filled
        if o.order_id is None:
            o.order_id = fill.order_id
        return NOTHING

    @staticmethod
    def _refused(cid: str, o: OrderRecord | None, to: OrderState, seq: int, detail: str = "") -> OrderTransitionRefused:
        if not detail:
            detail = "no such order" if o is None else f"illegal transition {o.state} -> {to}"
        return OrderTransitionRefused(client_order_id=cid, from_state="unknown" if o is None else o.state,
                                      to_state=to, cause_seq=seq, detail=detail)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> OrdersSnapshot:
        seen, window = self._fills.snapshot_parts()
        return OrdersSnapshot(orders=tuple(msgspec.structs.replace(self._orders[c]) for c in sorted(self._orders)),
                              seen_trades=seen, seen_window=window)

    @classmethod
    def restore(cls, snap: OrdersSnapshot) -> Orders:
        """A machine equal to the one whose ``snapshot()`` was ``snap``."""
        machine = cls()
        machine._orders = {o.client_order_id: msgspec.structs.replace(o) for o in snap.orders}
        machine._fills = FillWindow.restore(snap.seen_trades, snap.seen_window)
        return machine
