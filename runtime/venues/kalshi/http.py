"""Our Kalshi REST client: signed requests, retries that cannot double an order, exact units out.

:class:`KalshiRest` speaks the V2 order endpoints and the portfolio and market reads of
``kalshi-protocol.md`` over one ``aiohttp`` session. Bodies are built and read by :mod:`.rest`; this module
adds the transport:

* **Signing.** Every attempt is signed afresh (``KALSHI-ACCESS-*`` headers over ``timestamp + METHOD +
  path``, the path without the query string) when a :class:`~.auth.Signer` is given.
* **Pacing.** The client paces itself to its account's rate-limit tier (``tier``, :mod:`actors.limits`: a read
  and a write token bucket, each request's cost by its endpoint, batches per order), so a burst is spread within
  what Kalshi accepts instead of being refused: attempts queue per bucket, each waits until our model of the
  bucket holds its cost, and takes it. Requests reach the venue later than they leave, and by varying delays,
  so the model is kept no fuller than the venue's: a bucket that starts draining from full counts its refill
  from the first reply the venue gives (by then the venue has started refilling), not from the first send; and
  it keeps ``pace_margin_s`` of refill in hand for the rest of the jitter. A 429 empties our bucket (the venue
  holds less than we thought: another client on the key, or a restart) before the retry queues again.
  ``tier=None`` does not pace.
* **Retries.** A transport error (connection refused or reset, a timeout), a 5xx and a 429 are retried
  up to ``max_attempts`` with exponential backoff and jitter (Kalshi's 429 carries no ``Retry-After``).
  Any other 4xx is not retried: it raises :class:`KalshiApiError` carrying the :class:`~.rest.ApiError`
  (status, code, message; either error shape).
* **Orders are never doubled.** A create is retried with the very same body, so the same
  ``client_order_id``. If a retry is refused with 409 (that id exists) after an earlier attempt *may* have
  been carried out (a transport error or a 5xx: the request may have reached the venue), the first attempt
  landed: the order is read back from ``/portfolio/orders`` by its ``client_order_id`` and its ack
  returned. A 409 after nothing but 429s is a real duplicate and raises. A create reply that cannot be read
  is recovered the same way (the venue accepted the order).
* **Amends are never doubled either**: an amend is absolute (a new price and a new total count), so a retry
  finds the order as the first attempt left it; a decrease by ``reduce_to`` is the same, and one by
  ``reduce_by`` that was answered after an attempt that may have landed raises instead of guessing. Order groups
  (create, read, list, limit, reset, trigger, delete) are plain calls.
* **Malformed replies** never escape as a msgspec traceback: list reads return a ``MalformedInput`` event
  per bad item (or for a bad page, which ends the read), and single-object reads raise
  :class:`KalshiMalformedReply` holding the ``MalformedInput``.
* List reads follow ``cursor`` to the end. No header, and so no key material, is ever logged or put in
  an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
from structlog.typing import FilteringBoundLogger

from actors.limits import BucketName, Cost, RateLimits, Tier, request_cost
from runtime.events import BookSnapshot, Event, MalformedInput, OrderFilled, OrderIntent, OrderStatusReported
from runtime.logger import get_logger
from runtime.units import format_count, parse_count

from . import messages as m
from . import rest
from .auth import Signer
from .codec import encode
from .info import Series, SeriesResponse
from .rest import AmendAck, ApiError, CancelAck, OrderAck, OrderGroup

__all__ = [
    "HOSTS",
    "Host",
    "KalshiApiError",
    "KalshiError",
    "KalshiMalformedReply",
    "KalshiRest",
    "KalshiUnavailable",
]

T = TypeVar("T")


class Host(NamedTuple):
    rest: str
    ws: str


HOSTS: Final[dict[str, Host]] = {
    "kalshi": Host(rest="https://external-api.kalshi.com/trade-api/v2",
                   ws="wss://external-api-ws.kalshi.com/trade-api/ws/v2"),
    "kalshi-demo": Host(rest="https://external-api.demo.kalshi.co/trade-api/v2",
                        ws="wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"),
}

PAGE_LIMIT: Final = 200  # items per page asked for (the most every portfolio list accepts)
DUPLICATE: Final = 409
_RETRIED_STATUS: Final = 429  # and every 5xx
_NOT_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)  # no connection: nothing was sent

_HINTS: Final[dict[int, str]] = {
    400: "the venue refused the request as invalid; correct what the message names",
    401: "check the API key id and private key (KALSHI_API_KEY_ID, KALSHI_PRIVATE_KEY_PATH) and that they are "
         "for this host: demo and production keys are separate",
    403: "the key is not allowed to do this; check its permissions on Kalshi",
    404: "not found: check the ticker or order id",
    409: "a client_order_id can be used once: give the order a new one",
    429: "rate limited on every attempt: send fewer requests, check the client's tier against the account's "
         "([venue] tier), or raise max_attempts / backoff_s",
}


def _log() -> FilteringBoundLogger:
    """The logger, taken when used: logging is configured after this module is imported."""
    return get_logger("kalshi.rest")


# --- errors -----------------------------------------------------------------------------------------------
class KalshiError(Exception):
    """A Kalshi REST request failed; the message names the request and says what to do next."""


class KalshiApiError(KalshiError):
    """The venue answered with an error status. ``error`` is the reply read from either error shape;
    ``attempts`` how many attempts were made; ``uncertain`` whether an earlier attempt may have been
    carried out (it ended with a transport error or a 5xx)."""

    def __init__(self, method: str, path: str, error: ApiError, *, attempts: int = 1, uncertain: bool = False,
                 hint: str | None = None) -> None:
        self.method, self.path, self.error, self.attempts, self.uncertain = method, path, error, attempts, uncertain
        code = f" {error.code}" if error.code else ""
        details = f" ({error.details})" if error.details else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        hint = hint if hint is not None else _HINTS.get(error.status, "the venue kept failing: try again later"
                                                         if error.status >= 500 else "see the venue's message")
        super().__init__(f"{method} {path}: HTTP {error.status}{code}{tries}: {error.message}{details} — {hint}")

    @property
    def status(self) -> int:
        return self.error.status


class KalshiUnavailable(KalshiError):
    """No reply at all (connection refused or reset, timeout) on every attempt; ``uncertain`` when some attempt
    was sent (the connection broke or timed out after it), so it may have been carried out."""

    def __init__(self, method: str, path: str, attempts: int, reason: str, *, uncertain: bool = False,
                 hint: str | None = None) -> None:
        self.method, self.path, self.attempts, self.reason, self.uncertain = method, path, attempts, reason, uncertain
        hint = hint or "check the network and the base URL, or raise max_attempts"
        super().__init__(f"{method} {path}: no reply after {attempts} attempts (last: {reason}) — {hint}")


class KalshiMalformedReply(KalshiError):
    """A success reply that could not be read; ``event`` is the ``MalformedInput`` holding it verbatim."""

    def __init__(self, method: str, path: str, event: MalformedInput, hint: str = "") -> None:
        self.method, self.path, self.event = method, path, event
        tail = f" — {hint}" if hint else ""
        super().__init__(f"{method} {path}: the reply could not be read: {event.error}{tail}")


class _Reply(NamedTuple):
    status: int
    raw: bytes
    attempts: int
    uncertain: bool  # an earlier attempt may have been carried out


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the client -------------------------------------------------------------------------------------------
class KalshiRest:
    """A signed, retrying client of Kalshi's REST API (an async context manager; see the module docstring).

    ``session``: an ``aiohttp.ClientSession`` to use (its owner closes it); without one the client opens
    its own and closes it on exit. ``rng`` draws the backoff jitter (seed it for reproducible timing).
    ``legacy`` also accepts the pre-2026 integer-cent fields in replies. ``tier`` is the account's rate-limit
    tier the client paces itself to (a name of :data:`actors.limits.TIERS`, a :class:`~actors.limits.Tier`, or
    None for no pacing); ``pace_margin_s`` the refill it keeps in hand against network jitter.
    """

    def __init__(self, base_url: str, *, signer: Signer | None = None, session: aiohttp.ClientSession | None = None,
                 max_attempts: int = 5, backoff_s: float = 0.2, max_backoff_s: float = 5.0, timeout_s: float = 10,
                 rng: random.Random | None = None, source: str = rest.SOURCE, legacy: bool = False,
                 tier: Tier | str | None = "basic", pace_margin_s: float = 0.05) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if pace_margin_s < 0:
            raise ValueError(f"pace_margin_s must be >= 0, got {pace_margin_s}")
        if backoff_s < 0 or max_backoff_s < 0 or timeout_s <= 0:
            raise ValueError(f"backoff_s {backoff_s} and max_backoff_s {max_backoff_s} must be >= 0, "
                             f"timeout_s {timeout_s} > 0")
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.source = source
        self.legacy = legacy  # also accept pre-2026 integer-cent fields in replies
        self._session = session
        self._owns_session = session is None
        self._rng = rng or random.Random()
        self._base_path = urlsplit(self.base_url).path
        self.limits = None if tier is None else RateLimits(tier)  # our model of the account's buckets
        self._margin_ns = round(pace_margin_s * 1e9)
        self.paced = 0  # attempts that waited for their tokens
        self.paced_s = 0.0  # how long they waited, in all
        self._locks: dict[BucketName, asyncio.Lock] = {}  # attempts queue per bucket (of the loop in _locks_of)
        self._locks_of: asyncio.AbstractEventLoop | None = None
        self._full_until: dict[BucketName, int] = {}  # when a bucket last began draining from full, until a reply

    def __repr__(self) -> str:
        tier = None if self.limits is None else self.limits.tier.name
        return f"KalshiRest({self.base_url!r}, signer={self.signer!r}, tier={tier!r})"

    async def __aenter__(self) -> KalshiRest:
        self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # --- orders -------------------------------------------------------------------------------------
    async def create_order(self, intent: OrderIntent) -> OrderAck:
        """Place one V2 order. Retries send the same ``client_order_id``; a 409 on a retry after an attempt
        that may have landed returns the landed order's ack (never a second order)."""
        path = "/portfolio/events/orders"
        body = encode(rest.create_order(intent))
        try:
            reply = await self._call("POST", path, body=body)
        except KalshiApiError as exc:
            if exc.status == DUPLICATE and exc.uncertain:
                return await self._recovered(intent, exc)
            if exc.uncertain:
                raise KalshiApiError(exc.method, exc.path, exc.error, attempts=exc.attempts, uncertain=True,
                                     hint=_may_have_landed(intent)) from None
            raise
        except KalshiUnavailable as exc:
            if exc.uncertain:
                raise KalshiUnavailable(exc.method, exc.path, exc.attempts, exc.reason, uncertain=True,
                                        hint=_may_have_landed(intent)) from None
            raise
        decoded = rest.decode_body(reply.raw, m.CreateOrderV2Response, self.source)
        ack = decoded if isinstance(decoded, MalformedInput) else rest.order_ack(decoded, self.source)
        if isinstance(ack, MalformedInput):  # the venue took the order (2xx): find it rather than lose it
            found = (await self._find_orders([intent])).get(intent.client_order_id)
            if found is not None:
                return found
            raise KalshiMalformedReply("POST", path, ack, f"the venue accepted the order (HTTP {reply.status}) but "
                                       f"does not list client_order_id {intent.client_order_id!r}: check the "
                                       "account's orders before placing it again")
        return ack

    async def _recovered(self, intent: OrderIntent, exc: KalshiApiError) -> OrderAck:
        found = (await self._find_orders([intent])).get(intent.client_order_id)
        if found is None:
            raise KalshiApiError(exc.method, exc.path, exc.error, attempts=exc.attempts, uncertain=True,
                                 hint=f"a retry was refused as a duplicate, but /portfolio/orders lists no order "
                                      f"with client_order_id {intent.client_order_id!r} on {intent.market}: check "
                                      "the account's orders before placing it again") from None
        _log().info("order recovered after a retry", client_order_id=intent.client_order_id,
                    order_id=found.order_id, attempts=exc.attempts)
        return found

    async def batch_create(self, intents: Iterable[OrderIntent]) -> list[OrderAck | ApiError]:
        """Place several V2 orders at once; one result per intent, in order: its ack, or the venue's error
        for it (an item's error has ``status`` 0). Retried like :meth:`create_order`: after an attempt that
        may have landed, an intent refused on the retry is looked up and its order's ack returned."""
        intents = list(intents)
        if not intents:
            return []
        path = "/portfolio/events/orders/batched"
        body = encode(rest.batch_create_orders(intents))
        try:
            reply = await self._call("POST", path, body=body, items=len(intents))
        except KalshiApiError as exc:
            if not (exc.status == DUPLICATE and exc.uncertain):
                raise
            found = await self._find_orders(intents)
            return [found.get(i.client_order_id, exc.error) for i in intents]
        decoded = rest.decode_body(reply.raw, m.BatchCreateOrdersV2Response, self.source)
        if isinstance(decoded, MalformedInput):
            found = await self._find_orders(intents)
            if len(found) == len(intents):
                return [found[i.client_order_id] for i in intents]
            raise KalshiMalformedReply("POST", path, decoded, "the venue accepted the batch but its reply cannot be "
                                       "read and not every order is listed: check the account's orders")
        items = rest.batch_results(decoded, self.source)
        coids = [item.client_order_id for item in decoded.orders]
        results = _align(intents, coids, items)
        refused = [i for i, r in zip(intents, results, strict=True) if not isinstance(r, OrderAck)]
        if refused and reply.uncertain:
            found = await self._find_orders(refused)
            results = [found.get(i.client_order_id, r) if not isinstance(r, OrderAck) else r
                       for i, r in zip(intents, results, strict=True)]
        out: list[OrderAck | ApiError] = []
        for intent, result in zip(intents, results, strict=True):
            if isinstance(result, MalformedInput):
                result = ApiError(0, None, f"the reply for client_order_id {intent.client_order_id!r} could not be "
                                           f"read: {result.error}")
            out.append(result)
        return out

    async def cancel_order(self, order_id: str) -> CancelAck:
        """Cancel one order (V2). A 404 is checked against ``GET /portfolio/orders/{order_id}``: if the order
        is canceled, an earlier attempt (ours, or the transport's own silent retry of a DELETE) canceled it, and
        the ack has ``reduced_by`` None (the count was in the lost reply)."""
        path = f"/portfolio/events/orders/{quote(order_id, safe='')}"
        try:
            reply = await self._call("DELETE", path)
        except KalshiApiError as exc:
            if exc.status != 404:
                raise
            try:
                order = await self.order(order_id)
            except KalshiApiError as missing:
                if missing.status == 404:
                    raise exc from None
                raise
            if order.status == "canceled":
                return CancelAck(order_id=order_id, client_order_id=order.client_order_id or None)
            raise KalshiApiError(exc.method, exc.path, exc.error, attempts=exc.attempts, uncertain=exc.uncertain,
                                 hint=f"the order is {order.status}: there is nothing to cancel") from None
        decoded = rest.decode_body(reply.raw, m.CancelOrderV2Response, self.source)
        ack = decoded if isinstance(decoded, MalformedInput) else rest.cancel_ack(decoded, order_id, self.source)
        if isinstance(ack, MalformedInput):
            raise KalshiMalformedReply("DELETE", path, ack, "the order was canceled (the venue said so), but how much "
                                       "was taken off is unknown: read /portfolio/orders")
        return ack

    async def amend_order(self, order_id: str, *, market: str, side: Literal["bid", "ask"], price: int, count: int,
                          client_order_id: str | None = None, updated_client_order_id: str | None = None,
                          expiration_s: int | None = None) -> AmendAck:
        """Amend one order (V2): its new price and its new total ``count`` (filled plus resting, the spec's
        meaning), with its market and side (unchanged). The amend is absolute, so the retries of a call that may
        have landed cannot apply it twice: the second finds the order as the first left it. A 404 (no longer
        resting) and a 400 raise :class:`KalshiApiError`; the ack's counts are None when the reply omits them
        (the spec makes them optional)."""
        path = f"/portfolio/events/orders/{quote(order_id, safe='')}/amend"
        body = encode(rest.amend_order(market, side, price, count, client_order_id=client_order_id,
                                       updated_client_order_id=updated_client_order_id, expiration_s=expiration_s))
        reply = await self._call("POST", path, body=body)
        decoded = rest.decode_body(reply.raw, m.AmendOrderV2Response, self.source)
        ack = decoded if isinstance(decoded, MalformedInput) else rest.amend_ack(decoded, self.source)
        return _read("POST", path, ack, "the venue took the amend (2xx); read the order for its state")

    async def decrease_order(self, order_id: str, *, reduce_by: int | None = None, reduce_to: int | None = None,
                             market: str | None = None) -> AmendAck:
        """Decrease one order (V2), keeping its place: ``reduce_to`` leaves that many resting (0 cancels; safe to
        repeat), ``reduce_by`` takes that many off (exactly one). ``reduce_by`` is not safe to repeat: if an
        earlier attempt may have landed before the one that answered, the call raises :class:`KalshiError` saying
        so (the count may have come off twice: read the order, then decrease with ``reduce_to``)."""
        path = f"/portfolio/events/orders/{quote(order_id, safe='')}/decrease"
        body = encode(rest.decrease_order(reduce_by=reduce_by, reduce_to=reduce_to, market=market))
        reply = await self._call("POST", path, body=body)
        decoded = rest.decode_body(reply.raw, m.DecreaseOrderV2Response, self.source)
        ack = decoded if isinstance(decoded, MalformedInput) else rest.decrease_ack(decoded, self.source)
        if reply.uncertain and reduce_by is not None:
            raise KalshiError(f"POST {path}: attempt {reply.attempts} answered after an earlier one that may have "
                              f"landed, so reduce_by may have been applied twice — read order {order_id} and "
                              "decrease it with reduce_to")
        return _read("POST", path, ack, "the venue took the decrease (2xx); read the order for its state")

    # --- order groups -------------------------------------------------------------------------------
    async def create_order_group(self, contracts_limit: int) -> str:
        """A new order group whose orders may match at most ``contracts_limit`` (1/100 contract; Kalshi takes
        ``contracts_limit_fp``) in a rolling 15 seconds; its id (pass it to :meth:`create_order`'s intents'
        orders through ``rest.create_order(..., order_group_id=...)``)."""
        path = "/portfolio/order_groups/create"
        body = encode(m.CreateOrderGroupRequest(contracts_limit_fp=format_count(contracts_limit)))
        reply = await self._call("POST", path, body=body)
        decoded = rest.decode_body(reply.raw, m.CreateOrderGroupResponse, self.source)
        return _read("POST", path, decoded if isinstance(decoded, MalformedInput) else
                     rest.group_created(decoded, self.source))

    async def order_group(self, order_group_id: str) -> OrderGroup:
        """``GET /portfolio/order_groups/{id}``: its limit, whether it auto-cancels, and its orders' ids."""
        path = f"/portfolio/order_groups/{quote(order_group_id, safe='')}"
        body = self._decode(await self._call("GET", path), m.OrderGroupResponse, path)
        return _read("GET", path, rest.order_group(body, order_group_id, self.source))

    async def order_groups(self) -> list[OrderGroup | MalformedInput]:
        """``GET /portfolio/order_groups``: every group of the account (a bad item is its ``MalformedInput``)."""
        path = "/portfolio/order_groups"
        return rest.order_groups(self._decode(await self._call("GET", path), m.OrderGroupsResponse, path), self.source)

    async def update_order_group_limit(self, order_group_id: str, contracts_limit: int) -> None:
        path = f"/portfolio/order_groups/{quote(order_group_id, safe='')}/limit"
        await self._call("PUT", path, body=encode(m.UpdateOrderGroupLimitRequest(
            contracts_limit_fp=format_count(contracts_limit))))

    async def reset_order_group(self, order_group_id: str) -> None:
        """Zero the group's matched count: its orders may be placed again after its limit was hit."""
        await self._call("PUT", f"/portfolio/order_groups/{quote(order_group_id, safe='')}/reset", body=b"{}")

    async def trigger_order_group(self, order_group_id: str) -> None:
        """Cancel every order of the group and refuse new ones until it is reset."""
        await self._call("PUT", f"/portfolio/order_groups/{quote(order_group_id, safe='')}/trigger", body=b"{}")

    async def delete_order_group(self, order_group_id: str) -> None:
        """Cancel every order of the group and remove it."""
        await self._call("DELETE", f"/portfolio/order_groups/{quote(order_group_id, safe='')}")

    async def _find_orders(self, intents: list[OrderIntent]) -> dict[str, OrderAck]:
        """Our orders by client_order_id, for those intents (read from ``/portfolio/orders``)."""
        wanted = {i.client_order_id for i in intents}
        tickers = {i.market for i in intents}
        reports = await self.orders(ticker=next(iter(tickers)) if len(tickers) == 1 else None)
        found: dict[str, OrderAck] = {}
        for r in reports:
            if type(r) is OrderStatusReported and r.client_order_id in wanted:
                found[r.client_order_id] = OrderAck(order_id=r.order_id, client_order_id=r.client_order_id,
                                                    fill_count=r.fill_count, remaining_count=r.remaining_count,
                                                    venue_ts_ms=r.venue_ts_ms)
        return found

    # --- portfolio reads ----------------------------------------------------------------------------
    async def order(self, order_id: str) -> OrderStatusReported:
        """``GET /portfolio/orders/{order_id}``: the venue's report of one of our orders."""
        path = f"/portfolio/orders/{quote(order_id, safe='')}"
        body = self._decode(await self._call("GET", path), m.OrderResponse, path)
        return _read("GET", path, rest.order(body, self.source))

    async def queue_positions(self, tickers: Iterable[str]) -> list[tuple[str, str, int]]:
        """``GET /portfolio/orders/queue_positions``: ``(order_id, ticker, ahead)`` of each of our resting orders in
        ``tickers`` — the count (1/100 contract) that must trade or cancel before it fills."""
        path = "/portfolio/orders/queue_positions"
        body = self._decode(await self._call("GET", path, params={"market_tickers": ",".join(tickers)}),
                            m.QueuePositionsResponse, path)
        out = []
        for q in body.queue_positions or ():
            try:
                ahead = parse_count(q.queue_position_fp) if q.queue_position_fp is not None else q.queue_position * 100
            except ValueError as exc:
                raise KalshiError(f"GET {path}: order {q.order_id}: {exc}") from None
            out.append((q.order_id, q.market_ticker, ahead))
        return out

    async def orders(self, ticker: str | None = None, status: str | None = None) -> list[Event]:
        """``GET /portfolio/orders``, every page: an ``OrderStatusReported`` (or ``MalformedInput``) per order."""
        return await self._paged("/portfolio/orders", _params(ticker=ticker, status=status),
                                 lambda raw: rest.orders(raw, legacy=self.legacy, source=self.source))

    async def fills(self, min_ts_s: int | None = None, ticker: str | None = None) -> list[Event]:
        """``GET /portfolio/fills`` since ``min_ts_s`` (Unix seconds), every page: an ``OrderFilled`` (or
        ``MalformedInput``) per fill. Kalshi's fills name no ``client_order_id``: each fill's is its order's,
        from one read of ``/portfolio/orders`` (when there are fills)."""
        events = await self._paged("/portfolio/fills", _params(min_ts=min_ts_s, ticker=ticker),
                                   lambda raw: rest.fills(raw, legacy=self.legacy, source=self.source))
        if not any(type(e) is OrderFilled and not e.client_order_id for e in events):
            return events
        coids = {r.order_id: r.client_order_id for r in await self.orders(ticker=ticker)
                 if type(r) is OrderStatusReported}
        return [msgspec.structs.replace(e, client_order_id=coids.get(e.order_id, ""))  # type: ignore[attr-defined]
                if type(e) is OrderFilled and not e.client_order_id else e for e in events]

    async def positions(self) -> list[Event]:
        """``GET /portfolio/positions``, every page: a ``PositionReported`` (or ``MalformedInput``) per market."""
        return await self._paged("/portfolio/positions", {}, lambda raw: rest.positions(raw, legacy=self.legacy, source=self.source))

    async def balance(self) -> int:
        """``GET /portfolio/balance`` in micro-dollars."""
        path = "/portfolio/balance"
        body = self._decode(await self._call("GET", path), m.BalanceResponse, path)
        return _read("GET", path, rest.balance(body, self.source))

    # --- markets ------------------------------------------------------------------------------------
    async def markets(self, *, status: str | None = None, event_ticker: str | None = None,
                      tickers: Iterable[str] = ()) -> list[m.Market]:
        """``GET /markets``, every page (Kalshi's filters: ``status``, ``event_ticker``, ``tickers``)."""
        params = _params(status=status, event_ticker=event_ticker, tickers=",".join(tickers) or None)

        def read(raw: bytes) -> tuple[list[m.Market], str | None]:
            page = _read("GET", "/markets", rest.decode_body(raw, m.MarketsResponse, self.source))
            return page.markets, page.cursor

        return await self._paged("/markets", params, read)

    async def market(self, ticker: str) -> m.Market:
        """``GET /markets/{ticker}``."""
        path = f"/markets/{quote(ticker, safe='')}"
        return self._decode(await self._call("GET", path), m.MarketResponse, path).market

    async def series(self, ticker: str) -> Series:
        """``GET /series/{series_ticker}``: its fee type and multiplier (:mod:`.info`)."""
        path = f"/series/{quote(ticker, safe='')}"
        return self._decode(await self._call("GET", path), SeriesResponse, path).series

    async def orderbook(self, ticker: str) -> BookSnapshot:
        """``GET /markets/{ticker}/orderbook``: the market's whole book."""
        path = f"/markets/{quote(ticker, safe='')}/orderbook"
        body = self._decode(await self._call("GET", path), m.OrderbookResponse, path)
        return _read("GET", path, rest.book(body, ticker, legacy=self.legacy, source=self.source))

    # --- plumbing -----------------------------------------------------------------------------------
    def _decode(self, reply: _Reply, kind: type[T], path: str) -> T:
        return _read("GET", path, rest.decode_body(reply.raw, kind, self.source))

    async def _paged(self, path: str, params: dict[str, str],
                     read: Callable[[bytes], tuple[list[T], str | None]]) -> list[T]:
        """Every page of a list read, following ``cursor`` until the venue gives none (or an empty one)."""
        out: list[T] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = {**params, "limit": str(PAGE_LIMIT)}
            if cursor:
                query["cursor"] = cursor
            items, cursor = read((await self._call("GET", path, params=query)).raw)
            out.extend(items)
            if not cursor:
                return out
            if cursor in seen:
                raise KalshiError(f"GET {path}: cursor {cursor!r} came back twice, so the listing would never end "
                                  "— report it to the venue")
            seen.add(cursor)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the capped step, plus up to half again at random."""
        step = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return step / 2 + self._rng.random() * step / 2

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                    body: bytes | None = None, items: int = 1) -> _Reply:
        """One request, paced, signed and retried; a 2xx reply, else :class:`KalshiApiError` /
        :class:`KalshiUnavailable`. ``items``: the orders of a batch (its cost is per order)."""
        session = self._open()
        url = self.base_url + path
        sign_path = self._base_path + path
        cost = request_cost(method, path, items)
        uncertain = False
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            await self._pace(cost)
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if self.signer is not None:
                headers.update(self.signer.headers(method, sign_path, time.time_ns() // 1_000_000))
            try:
                async with session.request(method, url, params=params, data=body, headers=headers,
                                           timeout=self.timeout) as response:
                    raw = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = _transport_reason(exc)
                uncertain |= not isinstance(exc, _NOT_SENT)  # a request that was sent may have been carried out
                if attempt == self.max_attempts:
                    raise KalshiUnavailable(method, path, attempt, reason, uncertain=uncertain) from None
                await self._wait(method, path, attempt, reason)
                continue
            if status != _RETRIED_STATUS and status < 500:
                self._admitted(cost)
            if status < 300:
                return _Reply(status, raw, attempt, uncertain)
            error = rest.api_error(status, raw)
            if status == _RETRIED_STATUS and self.limits is not None:
                self.limits.drain(time.monotonic_ns(), cost.bucket)  # the venue's bucket is emptier than ours
            if status != _RETRIED_STATUS and status < 500:
                raise KalshiApiError(method, path, error, attempts=attempt, uncertain=uncertain)
            if attempt == self.max_attempts:
                raise KalshiApiError(method, path, error, attempts=attempt, uncertain=uncertain or status >= 500)
            uncertain |= status >= 500
            await self._wait(method, path, attempt, f"HTTP {status}: {error.message}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pace(self, cost: Cost) -> None:
        """Wait, in turn, until our model of the account's bucket holds the attempt's cost; take it."""
        if self.limits is None:
            return
        loop = asyncio.get_running_loop()
        if self._locks_of is not loop:
            self._locks, self._locks_of = {"read": asyncio.Lock(), "write": asyncio.Lock()}, loop
        bucket = self.limits.buckets[cost.bucket]
        async with self._locks[cost.bucket]:
            waited = 0
            while wait_ns := bucket.wait_ns(now := time.monotonic_ns(), cost.tokens, self._margin_ns):
                waited += wait_ns
                await asyncio.sleep(wait_ns / 1e9)
            if bucket.full(now):
                self._full_until[cost.bucket] = now
            bucket.take(now, cost.tokens)
        if waited:
            self.paced += 1
            self.paced_s += waited / 1e9

    def _admitted(self, cost: Cost) -> None:
        """The venue took an attempt's cost (it answered, not 429): if our bucket began draining from full before
        this first reply, the venue's began no later than now, so refill before now is not counted."""
        if self.limits is not None and (began := self._full_until.pop(cost.bucket, None)) is not None:
            self.limits.buckets[cost.bucket].withhold(time.monotonic_ns() - began)

    async def _wait(self, method: str, path: str, attempt: int, reason: str) -> None:
        delay = self._delay(attempt)
        _log().warning("request retried", method=method, path=path, attempt=attempt, of=self.max_attempts,
                       reason=reason, retry_in_s=round(delay, 3))
        await asyncio.sleep(delay)


def _may_have_landed(intent: OrderIntent) -> str:
    return (f"an attempt may have reached the venue: look for client_order_id {intent.client_order_id!r} in "
            f"/portfolio/orders (ticker {intent.market}) before placing the order again, and reuse that id if you do")


def _read(method: str, path: str, value: T | MalformedInput, hint: str = "") -> T:
    if isinstance(value, MalformedInput):
        raise KalshiMalformedReply(method, path, value, hint)
    return value


def _params(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _align(intents: list[OrderIntent], coids: list[str | None], items: list[T]) -> list[T | MalformedInput]:
    """A batch reply's items in the order of the intents: by client_order_id when every item names one, else
    by position. An intent without an item gets a ``MalformedInput`` saying so."""
    if all(coids) and len(set(coids)) == len(coids):
        by_coid = dict(zip(coids, items, strict=True))
        return [by_coid.get(i.client_order_id) or _missing_item(i) for i in intents]
    return [items[k] if k < len(items) else _missing_item(i) for k, i in enumerate(intents)]


def _missing_item(intent: OrderIntent) -> MalformedInput:
    return MalformedInput(source=rest.SOURCE, raw=b"", error=f"batch_create_orders_v2_response.orders: no item for "
                                                             f"client_order_id {intent.client_order_id!r}")

