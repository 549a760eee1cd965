"""Live execution: which of our orders and cancels are still to be sent to the venue, as a pure state machine.

In paper mode the execution node is the :class:`~actors.matcher.PaperMatcher`; trading live (demo or
production) it is this router plus the gateway at the edge (:class:`runtime.venues.kalshi.gateway.OrderGateway`).
The router emits nothing: the log already holds the commands. An ``OrderIntent`` whose ``CashReserved``
has been logged *is* the order to send, and a ``CancelRequested`` is the cancel to send, so the gateway's
work list is a pure function of the log prefix — :meth:`Router.pending_sends` and
:meth:`Router.pending_cancels` — and a restarted gateway, folding the same log, resumes exactly: an order
that was in flight when it stopped is sent again with the same ``client_order_id`` (the venue refuses a
duplicate, and the gateway then finds the order that landed), and a cancel in flight is sent again.

**Admission** (as the paper matcher): an ``OrderIntent`` waits for the cash pool's verdict; ``CashReserved``
makes it an open order to send, an ``OrderRejected`` drops it. A later ``CashReserved`` for an open order (a
fill's rebate) changes nothing.

**To send** until the venue has shown it the order: an ``OrderAccepted``, ``OrderRejected``,
``OrderCanceled``, ``OrderExpired``, ``OrderFilled`` or ``OrderStatusReported`` naming its client order id
(the private WebSocket channels may report an order before the create reply arrives).

**To cancel** once a ``CancelRequested`` names an open order and its venue ``order_id`` is known (from the
request itself, an acknowledgement, a fill or a status report): a cancel requested while the order is
still on its way waits for it. A cancel of an order that is done, or was never routed, is nothing to send.
A second request for the same order is the same cancel.

**Done** (forgotten): ``OrderRejected``, ``OrderCanceled``, ``OrderExpired``, an ``OrderStatusReported``
with status ``canceled`` or ``executed``, or fills (deduplicated by trade id) adding up to the order's count.

**To amend** once an ``AmendRequested`` (a new price and a new total count) names an open order, the cash pool
has answered it with a ``CashReserved`` caused by it (``cause_seq`` = the amend's seq; the amount may be 0),
and the order's venue id is known: :meth:`Router.pending_amends`. One amend per order at a time (the pool
refuses a second while one is on its way: ``amend_pending``); ``OrderAmended`` applies its terms (the order's
price and count are now the amend's, so fills up to the new count are what completes it), ``AmendRejected``
drops it. While an amend is on its way, fills complete the order only once they reach the larger of the two
counts. An order with a cancel requested is not amended (the cancel wins). An amend is absolute, so the
gateway may send it again until its outcome is logged; it never doubles. (The paper matcher never sees an
amend: a paper session's orchestrator emits none.)

Both lists are in log order (an order's place is its reservation; a cancel's, its first request; an amend's,
its request).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runtime.events import (
    AmendRejected,
    AmendRequested,
    CancelRequested,
    CashReserved,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatusReported,
)

from .machine import NOTHING

__all__ = ["AmendWork", "CancelWork", "Router", "RouterSnapshot"]


class CancelWork(msgspec.Struct, frozen=True):
    """A cancel to send: the order (both ids, its market and count) and the seq of its ``CancelRequested``."""

    client_order_id: str
    order_id: str
    market: str
    count: int
    requested_seq: int


class AmendWork(msgspec.Struct, frozen=True):
    """An amend to send: the order (both ids, its market and side), its new price and new total count (filled
    plus resting), and the seq of its ``AmendRequested``."""

    client_order_id: str
    order_id: str
    market: str
    side: str
    price: int
    count: int
    requested_seq: int


class _Open(msgspec.Struct, gc=False):
    """One reserved order the venue has not finished with (mutable: the router's own state)."""

    intent: OrderIntent
    order_id: str | None = None
    landed: bool = False  # the venue has shown it has the order: nothing more to send
    filled: int = 0
    trades: list[str] = []
    cancel_seq: int | None = None
    count: int = 0  # the order's total count after an amend (0: the intent's)
    price: int = 0  # its price after an amend (0: the intent's)
    amend: AmendRequested | None = None  # the amend on its way, and its seq
    amend_seq: int = 0
    amend_ok: bool = False  # the cash pool reserved for it: to send

    @property
    def total(self) -> int:
        """What may fill in all: the order's count, or an amend's on its way if larger."""
        count = self.count or self.intent.count
        return max(count, self.amend.count) if self.amend is not None else count


class RouterSnapshot(msgspec.Struct, frozen=True):
    waiting: tuple[OrderIntent, ...]  # in log order
    open: tuple[_Open, ...]  # in reservation order


_TERMINAL_STATUS = frozenset({"canceled", "executed"})


class Router:
    """The live execution node's state: reserved orders not yet sent, cancels not yet done (module docstring)."""

    def __init__(self) -> None:
        self._waiting: dict[str, OrderIntent] = {}  # intents waiting for the cash pool
        self._open: dict[str, _Open] = {}  # reserved, not done; insertion = reservation order

    # -- the work list --------------------------------------------------------------------------
    def pending_sends(self) -> list[OrderIntent]:
        """Reserved orders the venue has not shown it has, in reservation order: each to be created."""
        return [o.intent for o in self._open.values() if not o.landed]

    def pending_cancels(self) -> list[CancelWork]:
        """Cancels requested for orders still open at the venue, whose order id is known, in request order."""
        work = [CancelWork(o.intent.client_order_id, o.order_id, o.intent.market, o.intent.count, o.cancel_seq)
                for o in self._open.values() if o.cancel_seq is not None and o.order_id is not None]
        work.sort(key=lambda w: w.requested_seq)
        return work

    def pending_amends(self) -> list[AmendWork]:
        """Amends the cash pool has answered, of orders still open whose venue id is known and that no cancel
        is for, in request order."""
        work = [AmendWork(o.intent.client_order_id, o.order_id, o.intent.market, o.intent.side, o.amend.price,
                          o.amend.count, o.amend_seq)
                for o in self._open.values()
                if o.amend is not None and o.amend_ok and o.order_id is not None and o.cancel_seq is None]
        work.sort(key=lambda w: w.requested_seq)
        return work

    def venue_order_ids(self) -> list[str]:
        """The venue ids of every open order the venue has acknowledged, in reservation order (for a last-resort
        cancel when the log can no longer record one)."""
        return [o.order_id for o in self._open.values() if o.order_id is not None]

    def is_open(self, client_order_id: str) -> bool:
        """Whether the order is reserved and not yet done."""
        return client_order_id in self._open

    # -- the fold -------------------------------------------------------------------------------
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        match event:
            case OrderIntent(client_order_id=coid):
                self._waiting[coid] = event
            case CashReserved(client_order_id=coid, cause_seq=cause):
                intent = self._waiting.pop(coid, None)
                if intent is not None:
                    self._open[coid] = _Open(intent)
                elif (o := self._open.get(coid)) is not None and o.amend is not None and cause == o.amend_seq:
                    o.amend_ok = True
            case AmendRequested(client_order_id=coid, order_id=order_id):
                o = self._open.get(coid)
                if o is not None and o.amend is None:
                    o.amend, o.amend_seq, o.amend_ok = event, seq, False
                    if o.order_id is None:
                        o.order_id = order_id
            case OrderAmended(client_order_id=coid, price=price, count=count):
                o = self._open.get(coid)
                if o is not None:
                    o.price, o.count = price, count
                    o.amend, o.amend_seq, o.amend_ok = None, 0, False
                    if o.filled >= count:
                        self._done(coid)
            case AmendRejected(client_order_id=coid, cause_seq=cause):
                o = self._open.get(coid)
                if o is not None and o.amend is not None and cause in (None, o.amend_seq):
                    o.amend, o.amend_seq, o.amend_ok = None, 0, False
            case CancelRequested(client_order_id=coid, order_id=order_id):
                o = self._open.get(coid)
                if o is not None and o.cancel_seq is None:
                    o.cancel_seq = seq
                    if o.order_id is None:
                        o.order_id = order_id
            case OrderAccepted(client_order_id=coid, order_id=order_id):
                self._landed(coid, order_id)
            case OrderFilled():
                self._fill(event)
            case OrderStatusReported(client_order_id=coid, order_id=order_id, status=status):
                if status in _TERMINAL_STATUS:
                    self._done(coid)
                else:
                    self._landed(coid, order_id)
            case OrderRejected(client_order_id=coid):
                self._waiting.pop(coid, None)
                self._done(coid)
            case OrderCanceled(client_order_id=coid) | OrderExpired(client_order_id=coid):
                self._done(coid)
        return NOTHING

    def _landed(self, coid: str, order_id: str) -> None:
        o = self._open.get(coid)
        if o is not None:
            o.landed = True
            if order_id:
                o.order_id = order_id

    def _fill(self, fill: OrderFilled) -> None:
        o = self._open.get(fill.client_order_id)
        if o is None or fill.trade_id in o.trades:
            return
        self._landed(fill.client_order_id, fill.order_id)
        o.trades.append(fill.trade_id)
        o.filled += fill.count
        if o.filled >= o.total:
            self._done(fill.client_order_id)

    def _done(self, coid: str) -> None:
        self._open.pop(coid, None)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> RouterSnapshot:
        return RouterSnapshot(waiting=tuple(self._waiting.values()),
                              open=tuple(msgspec.structs.replace(o, trades=list(o.trades)) for o in self._open.values()))

    @classmethod
    def restore(cls, snap: RouterSnapshot) -> Router:
        """A router equal to the one whose ``snapshot()`` was ``snap``."""
        router = cls()
        router._waiting = {i.client_order_id: i for i in snap.waiting}
        router._open = {o.intent.client_order_id: msgspec.structs.replace(o, trades=list(o.trades)) for o in snap.open}
        return router
