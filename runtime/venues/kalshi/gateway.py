"""The order gateway: the live execution node's edge, sending the router's work list to Kalshi and turning the
replies into input events.

::

    router = Router()                     # folded over the log by the execution actor
    async with OrderGateway(rest, router, sequencer.submit) as gateway:
        ...                               # after each round folded into the router:
        gateway.wake()                    # never blocks: the gateway runs as its own task

**What it sends.** After every :meth:`~OrderGateway.wake` (and when a retry falls due) it reads the router's
work list — :meth:`~actors.router.Router.pending_sends` and :meth:`~actors.router.Router.pending_cancels`, a
pure function of the log prefix — and starts a call for each item not already in flight, not already answered
(its outcome submitted but not yet folded back) and not waiting for a retry; at most ``max_in_flight`` calls
at once. The router must be read on the gateway's event loop, between folds (or be a copy of the state).

**Replies become input events**, stamped with ``clock_ns()`` when the reply arrived, handed to ``submit``
(the sequencer's append: it logs them, and the router learns the outcome by folding them):

* a create's ack -> ``OrderAccepted(client_order_id, order_id, market, venue_ts_ms)``. A fill reported in
  the ack (``fill_count``) is **not** a fill event: fills come from the WebSocket ``fill`` channel and REST
  reconciliation (:class:`.ws.KalshiFeed`), with trade id, price and fee, deduplicated by trade id
  downstream; making one here would count it twice. Likewise the unfilled rest of an IOC is reported
  canceled by the ``user_orders`` channel, not here.
* a refusal -> ``OrderRejected(reason, detail)``, the reason read from the venue's error code (the
  exchange's codes are tape's :data:`~runtime.events.RejectReason` names; a few other spellings are mapped
  in :data:`REASONS`), else from the status (404 ``unknown_market``, 429 after every retry ``rate_limited``),
  else ``venue_rejected``; the detail is the venue's message.
* a 409 (the ``client_order_id`` was used): the order is looked for in ``/portfolio/orders``; found, it is
  accepted, with an ``OrderStatusReported`` of what the venue shows (a retry, or a restarted gateway,
  re-sent an order that had landed), else
  ``OrderRejected(duplicate_client_order_id)``.
* an **uncertain** failure (an attempt may have landed: the connection broke after sending, a 5xx, a reply
  that could not be read) is not a rejection: a ``VenueError`` input records it, then the order is looked for
  by its ``client_order_id``; found, it is accepted (with an ``OrderStatusReported`` of what the venue
  shows), else it is sent again later — with the same ``client_order_id``, so never twice. A failure that
  certainly sent nothing (no connection) is a ``VenueError`` and a retry later.
* a cancel's ack -> ``OrderCanceled(canceled_count = what it took off the book)`` (read from the order when
  the ack does not say: an earlier attempt canceled it and its reply was lost). A cancel the venue cannot
  do (404: the order is no longer resting) reads the order and submits its ``OrderStatusReported``
  (``executed``: the router forgets the order; its fills come from the feed). Other failures: a
  ``VenueError`` and a retry later (a cancel is safe to repeat).

* an amend (:meth:`~actors.router.Router.pending_amends`: the pool has reserved for it) is sent to Kalshi's
  amend endpoint — the new price and the new total count, the spec's meaning — and its ack becomes
  ``OrderAmended(price, count, remaining_count)``. An amend is absolute, so sending it again until its outcome
  is logged (after a transport error, a 5xx, a restart) can never apply it twice: the venue finds the order
  as the first attempt left it. The decrease endpoint is not used: ``reduce_by`` would double on such a
  retry, and ``reduce_to`` counts what rests, which a fill racing the request changes; an amend at the same
  price with a smaller count is a decrease (it keeps the order's place) without either problem. A 404 (the
  order no longer rests) reads the order, submits its ``OrderStatusReported`` and ``AmendRejected``
  (``order_not_open``); another refusal is ``AmendRejected`` with the reason read as for a create; other
  failures are a ``VenueError`` and a retry later.

Retries back off from ``retry_s`` doubling to ``max_retry_s``, per item. :class:`KalshiRest` does its own
retries inside each call first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal, Protocol, get_args

from structlog.typing import FilteringBoundLogger

from actors.router import AmendWork, CancelWork
from runtime.events import (
    AmendRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderIntent,
    OrderRejected,
    OrderStatusReported,
    RejectReason,
    VenueError,
)
from runtime.logger import get_logger

from .http import DUPLICATE, KalshiApiError, KalshiError, KalshiMalformedReply, KalshiRest, KalshiUnavailable

__all__ = ["REASONS", "OrderGateway", "RouterView", "Submit", "reject_reason"]

Submit = Callable[[list[tuple[int, Event]]], Awaitable[object]]
_Key = tuple[Literal["send", "cancel", "amend"], str]

# the venue's error code -> tape's reason. The local exchange uses tape's names; the other spellings are
# ones Kalshi is reported to use (its error codes are not fully documented: unknown codes are venue_rejected)
REASONS: Final[dict[str, RejectReason]] = {
    **{r: r for r in get_args(RejectReason)},
    "insufficient_balance": "insufficient_cash",
    "market_not_found": "unknown_market",
    "market_not_open": "market_closed",
    "market_inactive": "market_closed",
    "order_already_exists": "duplicate_client_order_id",
    "too_many_requests": "rate_limited",
}
_BY_STATUS: Final[dict[int, RejectReason]] = {404: "unknown_market", 409: "duplicate_client_order_id",
                                              429: "rate_limited"}
_TERMINAL: Final = frozenset({"canceled", "executed"})


def _log() -> FilteringBoundLogger:
    """The logger, taken when used: logging is configured after this module is imported."""
    return get_logger("kalshi.gateway")


class RouterView(Protocol):
    """What the gateway reads: the work list of :class:`actors.router.Router`."""

    def pending_sends(self) -> Sequence[OrderIntent]: ...

    def pending_cancels(self) -> Sequence[CancelWork]: ...

    def pending_amends(self) -> Sequence[AmendWork]: ...


def reject_reason(error: KalshiApiError) -> RejectReason:
    """Tape's reason for a venue refusal: by its code, else its status, else ``venue_rejected``."""
    code = error.error.code
    if code is not None and code in REASONS:
        return REASONS[code]
    return _BY_STATUS.get(error.status, "venue_rejected")


def _detail(error: KalshiApiError) -> str:
    e = error.error
    return f"{e.message} ({e.details})" if e.details else e.message


class OrderGateway:
    """Sends the router's orders and cancels to Kalshi; replies come back as input events (module docstring)."""

    def __init__(self, rest: KalshiRest, router_view: RouterView, submit: Submit, *,
                 clock_ns: Callable[[], int] = time.time_ns, max_in_flight: int = 8, retry_s: float = 0.5,
                 max_retry_s: float = 10.0) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if retry_s < 0 or max_retry_s < 0:
            raise ValueError(f"retry_s {retry_s} and max_retry_s {max_retry_s} must be >= 0")
        self.rest = rest
        self.view = router_view
        self.submit = submit
        self.clock_ns = clock_ns
        self.max_in_flight = max_in_flight
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._calls: dict[_Key, asyncio.Task[None]] = {}  # in flight
        self._answered: set[_Key] = set()  # outcome submitted, not yet folded into the router
        self._retry_at: dict[_Key, float] = {}  # monotonic time of the next attempt
        self._failures: dict[_Key, int] = {}
        self.stats: dict[str, int] = {"creates": 0, "cancels": 0, "accepted": 0, "rejected": 0, "canceled": 0,
                                      "recovered": 0, "venue_errors": 0, "amends": 0, "amended": 0,
                                      "amends_rejected": 0}

    def __repr__(self) -> str:
        return f"OrderGateway({self.rest!r}, in_flight={len(self._calls)})"

    # --- life ----------------------------------------------------------------------------------------
    async def __aenter__(self) -> OrderGateway:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the gateway's task (``async with`` does it); it reads the work list at once."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(), name="kalshi-order-gateway")
            self._wake.set()

    def wake(self) -> None:
        """The router has folded more of the log: look at its work list again. Never blocks."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    async def close(self) -> None:
        """Stop: cancel the loop and every call in flight, and wait for them (the log resumes them on restart)."""
        self._closing = True
        tasks = [t for t in (self._task, *self._calls.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            now = time.monotonic()
            due = self._dispatch(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if due is None else max(0.0, due - now))

    def _dispatch(self, now: float) -> float | None:
        """Start a call for each item of the work list that needs one; the next retry time, if any."""
        sends = self.view.pending_sends()
        cancels = self.view.pending_cancels()
        work: dict[_Key, OrderIntent | CancelWork | AmendWork] = {("send", i.client_order_id): i for i in sends}
        work.update((("cancel", c.client_order_id), c) for c in cancels)
        work.update((("amend", f"{a.client_order_id}@{a.requested_seq}"), a) for a in self.view.pending_amends())
        self._answered &= work.keys()  # folded: the router no longer lists them
        for table in (self._retry_at, self._failures):
            for key in [k for k in table if k not in work and k not in self._calls]:
                del table[key]
        due: float | None = None
        for key, item in work.items():
            if len(self._calls) >= self.max_in_flight:
                break
            if key in self._calls or key in self._answered:
                continue
            at = self._retry_at.get(key, 0.0)
            if at > now:
                due = at if due is None else min(due, at)
                continue
            self._calls[key] = asyncio.create_task(self._call(key, item), name=f"kalshi-{key[0]} {key[1]}")
        return due

    async def _call(self, key: _Key, item: OrderIntent | CancelWork | AmendWork) -> None:
        """Run one call; ``True`` from it means its outcome was submitted (else it is retried later)."""
        try:
            if isinstance(item, OrderIntent):
                answered = await self._create(item)
            elif isinstance(item, CancelWork):
                answered = await self._cancel(item)
            else:
                answered = await self._amend(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, or submit failing: never lose the item, try again later
            _log().exception("order gateway call failed", kind=key[0], client_order_id=key[1])
            await self._error(f"{key[0]} {key[1]}", f"{type(exc).__name__}: {exc}", None, swallow=True)
            answered = False
        finally:
            self._calls.pop(key, None)
            self._wake.set()
        if answered:
            self._answered.add(key)
            self._failures.pop(key, None)
            self._retry_at.pop(key, None)
        else:
            n = self._failures[key] = self._failures.get(key, 0) + 1
            self._retry_at[key] = time.monotonic() + min(self.max_retry_s, self.retry_s * 2 ** (n - 1))

    async def _emit(self, *events: Event) -> None:
        ts = self.clock_ns()
        await self.submit([(ts, e) for e in events])

    async def _error(self, where: str, message: str, code: int | None, *, swallow: bool = False) -> None:
        self.stats["venue_errors"] += 1
        try:
            await self._emit(VenueError(where=f"kalshi.gateway {where}", message=message, code=code))
        except Exception:
            if not swallow:
                raise
            _log().exception("order gateway could not submit a venue error", where=where)

    # --- orders --------------------------------------------------------------------------------------
    async def _create(self, intent: OrderIntent) -> bool:
        coid = intent.client_order_id
        self.stats["creates"] += 1
        try:
            ack = await self.rest.create_order(intent)
        except KalshiApiError as exc:
            if exc.status == DUPLICATE and not exc.uncertain:
                return await self._find(intent, duplicate=exc)
            if exc.uncertain:
                return await self._uncertain(intent, exc, exc.status)
            self.stats["rejected"] += 1
            await self._emit(OrderRejected(client_order_id=coid, market=intent.market, reason=reject_reason(exc),
                                           detail=_detail(exc)))
            return True
        except KalshiUnavailable as exc:
            if exc.uncertain:
                return await self._uncertain(intent, exc, None)
            await self._error(f"create {coid}", str(exc), None)  # nothing was sent: send again later
            return False
        except KalshiMalformedReply as exc:  # taken (2xx) but not listed: look again later
            return await self._uncertain(intent, exc, None)
        except KalshiError as exc:
            await self._error(f"create {coid}", str(exc), None)
            return False
        self.stats["accepted"] += 1
        await self._emit(OrderAccepted(client_order_id=coid, order_id=ack.order_id, market=intent.market,
                                       venue_ts_ms=ack.venue_ts_ms))
        return True

    async def _uncertain(self, intent: OrderIntent, exc: KalshiError, code: int | None) -> bool:
        await self._error(f"create {intent.client_order_id}", str(exc), code)
        return await self._find(intent)

    async def _find(self, intent: OrderIntent, *, duplicate: KalshiApiError | None = None) -> bool:
        """Look for the order by its client_order_id: accepted if found; else a duplicate is rejected, and an
        uncertain send is sent again later (``False``)."""
        coid = intent.client_order_id
        try:
            reports = await self.rest.orders(ticker=intent.market)
        except KalshiError as exc:
            await self._error(f"find {coid}", str(exc), getattr(exc, "status", None))
            return False
        found = next((r for r in reports if type(r) is OrderStatusReported and r.client_order_id == coid), None)
        if found is not None:
            self.stats["accepted"] += 1
            self.stats["recovered"] += 1
            _log().info("order found by client_order_id", client_order_id=coid, order_id=found.order_id,
                        status=found.status)
            await self._emit(OrderAccepted(client_order_id=coid, order_id=found.order_id, market=intent.market,
                                           venue_ts_ms=found.venue_ts_ms), found)
            return True
        if duplicate is None:
            return False
        self.stats["rejected"] += 1
        await self._emit(OrderRejected(client_order_id=coid, market=intent.market, reason="duplicate_client_order_id",
                                       detail=f"{_detail(duplicate)}; /portfolio/orders lists no order with "
                                              f"client_order_id {coid!r} on {intent.market}"))
        return True

    # --- cancels -------------------------------------------------------------------------------------
    async def _cancel(self, work: CancelWork) -> bool:
        coid, order_id = work.client_order_id, work.order_id
        self.stats["cancels"] += 1
        try:
            ack = await self.rest.cancel_order(order_id)
        except KalshiApiError as exc:
            if exc.status != 404:
                await self._error(f"cancel {coid}", str(exc), exc.status)
                return False
            return await self._report(work, str(exc))
        except KalshiError as exc:
            await self._error(f"cancel {coid}", str(exc), getattr(exc, "status", None))
            return False
        count = ack.reduced_by
        if count is None:  # an earlier attempt canceled it and its reply was lost: read what was left
            try:
                report = await self.rest.order(order_id)
            except KalshiError as exc:
                await self._error(f"cancel {coid}", f"canceled, but the count is unknown: {exc}", None)
                return False
            count = max(0, (report.initial_count or work.count) - report.fill_count)
        self.stats["canceled"] += 1
        await self._emit(OrderCanceled(client_order_id=coid, order_id=order_id, canceled_count=count,
                                       venue_ts_ms=ack.venue_ts_ms))
        return True

    async def _report(self, work: CancelWork, why: str) -> bool:
        """The venue cannot cancel the order: submit its status (done: the router forgets it)."""
        try:
            report = await self.rest.order(work.order_id)
        except KalshiError as exc:
            await self._error(f"cancel {work.client_order_id}", f"{why}; reading the order: {exc}", None)
            return False
        if report.status not in _TERMINAL:
            await self._error(f"cancel {work.client_order_id}", f"{why}; but the order is {report.status}", 404)
            await self._emit(report)
            return False
        await self._emit(report)
        return True

    # --- amends --------------------------------------------------------------------------------------
    async def _amend(self, work: AmendWork) -> bool:
        coid = work.client_order_id
        self.stats["amends"] += 1
        try:
            ack = await self.rest.amend_order(work.order_id, market=work.market, side=work.side,  # type: ignore[arg-type]
                                              price=work.price, count=work.count)
        except KalshiApiError as exc:
            if exc.status == 404:
                return await self._not_resting(work, str(exc))
            if exc.status >= 500 or exc.status in (401, 403, DUPLICATE, 429):  # not about the amend: again later
                await self._error(f"amend {coid}", str(exc), exc.status)
                return False
            self.stats["amends_rejected"] += 1
            await self._emit(AmendRejected(client_order_id=coid, reason=reject_reason(exc), detail=_detail(exc)))
            return True
        except KalshiError as exc:  # no reply, or one that cannot be read: the amend is safe to send again
            await self._error(f"amend {coid}", str(exc), getattr(exc, "status", None))
            return False
        self.stats["amended"] += 1
        await self._emit(OrderAmended(client_order_id=coid, order_id=work.order_id, price=work.price, count=work.count,
                                      remaining_count=ack.remaining_count, venue_ts_ms=ack.venue_ts_ms))
        return True

    async def _not_resting(self, work: AmendWork, why: str) -> bool:
        """The venue has no resting order to amend: submit what it shows of the order, and the refusal."""
        try:
            report = await self.rest.order(work.order_id)
        except KalshiError as exc:
            await self._error(f"amend {work.client_order_id}", f"{why}; reading the order: {exc}", None)
            return False
        self.stats["amends_rejected"] += 1
        await self._emit(report, AmendRejected(client_order_id=work.client_order_id, reason="order_not_open",
                                               detail=f"{why}; the order is {report.status}"))
        return True

