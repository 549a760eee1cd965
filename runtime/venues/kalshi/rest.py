"""Kalshi REST bodies: our V2 order requests and the replies we read, and the reverse for the exchange.

Client side: :func:`create_order` turns an ``OrderIntent`` into the V2 create body (``client_order_id``,
``side`` bid/ask, ``price`` dollars, ``count`` fp, ``time_in_force`` always sent by its full name);
:func:`decode_body` reads a reply into its wire Struct (:mod:`.messages`), or a ``MalformedInput``;
:func:`order_ack`, :func:`balance` and :func:`book` turn replies into exact units or events; the list
replies — :func:`fills`, :func:`orders`, :func:`positions` — take the raw body and give a :class:`Page`
with one event per item, each item decoded on its own so that a bad one is one ``MalformedInput``
(verbatim) and costs nothing else; :func:`api_error` reads either error shape, or keeps the text. None of
these raises on bad input.

A REST read of an order is reported as it is (``OrderStatusReported``, whatever its status):
reconciliation compares it with the order's state rather than replaying transitions (a ``user_order``
frame, by contrast, becomes the transition it implies: see :mod:`.convert`).

Exchange side: :func:`decode_order_request` reads a create body into an :class:`OrderRequest` in exact
units (``time_in_force`` absent means good-till-canceled); :func:`created_body`, :func:`fills_body`,
:func:`orders_body`, :func:`positions_body`, :func:`balance_body`, :func:`error_body` and
:func:`.convert.book_to_rest` build the replies, written with :func:`.codec.encode`; :func:`price_grid`
says which prices a market's ``price_ranges`` allow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Literal, NamedTuple, TypeVar

import msgspec
from msgspec import Struct

from runtime.events import (
    BookSnapshot,
    Event,
    MalformedInput,
    OrderFilled,
    OrderIntent,
    OrderStatusReported,
    PositionReported,
    TimeInForce,
)
from runtime.units import MONEY_SCALE, PRICE_MAX, UnitError, format_count, format_money, format_price

from . import convert as cv
from . import messages as m
from .codec import DECODE_ERRORS, clip, describe

__all__ = [
    "SOURCE",
    "ApiError",
    "CancelAck",
    "OrderAck",
    "OrderRequest",
    "Page",
    "PriceGrid",
    "api_error",
    "balance",
    "balance_body",
    "batch_create_orders",
    "batch_results",
    "book",
    "cancel_ack",
    "create_order",
    "created_body",
    "decode_body",
    "decode_order_request",
    "error_body",
    "fills",
    "fills_body",
    "order",
    "order_ack",
    "order_request",
    "orders",
    "orders_body",
    "positions",
    "positions_body",
    "price_grid",
]

SOURCE: Final = "kalshi.rest"
T = TypeVar("T")

TIF_WIRE: Final[dict[str, m.TimeInForceWire]] = {
    "gtc": "good_till_canceled", "ioc": "immediate_or_cancel", "fok": "fill_or_kill"}
TIF_TAPE: Final[dict[str, TimeInForce]] = {v: k for k, v in TIF_WIRE.items()}  # type: ignore[misc]
DEFAULT_STP: Final = "taker_at_cross"

_DECODERS: dict[type, msgspec.json.Decoder] = {}


def decode_body(raw: bytes | str, kind: type[T], source: str = SOURCE) -> T | MalformedInput:
    """A reply body as its wire Struct (``kind``, from :mod:`.messages`), or ``MalformedInput``."""
    try:
        return _decoder(kind).decode(raw)
    except DECODE_ERRORS as exc:
        return _malformed(raw, source, describe(exc, _snake(kind.__name__), raw))


def _decoder(kind: type) -> msgspec.json.Decoder:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _malformed(raw: bytes | str | Struct, source: str, error: str) -> MalformedInput:
    data = msgspec.json.encode(raw) if isinstance(raw, Struct) else raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return MalformedInput(source=source, raw=data, error=clip(error))


# --- orders: requests ------------------------------------------------------------------------------------
def create_order(intent: OrderIntent, *, self_trade_prevention: str = DEFAULT_STP) -> m.CreateOrderV2Request:
    """The V2 create body of an intent; ``expiration_ts`` is Unix seconds, rounded up from the intent's ms."""
    exp = None if intent.expiration_ts_ms is None else -(-intent.expiration_ts_ms // 1000)
    return m.CreateOrderV2Request(ticker=intent.market, side=intent.side, count=format_count(intent.count),
                                  price=format_price(intent.price), time_in_force=TIF_WIRE[intent.tif],
                                  client_order_id=intent.client_order_id,
                                  self_trade_prevention_type=self_trade_prevention, post_only=intent.post_only,
                                  reduce_only=intent.reduce_only, expiration_ts=exp)


def batch_create_orders(intents: Iterable[OrderIntent]) -> m.BatchCreateOrdersV2Request:
    return m.BatchCreateOrdersV2Request(orders=[create_order(i) for i in intents])


class OrderRequest(Struct, frozen=True, kw_only=True):
    """A V2 create body in tape's units, as the exchange acts on it."""

    market: str
    side: Literal["bid", "ask"]
    price: int
    count: int
    tif: TimeInForce
    client_order_id: str | None = None
    post_only: bool = False
    reduce_only: bool = False
    expiration_ts_ms: int | None = None
    self_trade_prevention: str | None = None


def decode_order_request(raw: bytes | str, source: str = SOURCE) -> OrderRequest | MalformedInput:
    """A client's V2 create body in exact units, or ``MalformedInput`` naming the bad field."""
    body = decode_body(raw, m.CreateOrderV2Request, source)
    if isinstance(body, MalformedInput):
        return body
    try:
        return order_request(body)
    except ValueError as exc:
        return _malformed(raw, source, str(exc))


def order_request(b: m.CreateOrderV2Request, where: str = "create_order_v2_request") -> OrderRequest:
    """A decoded create body in exact units (raises ``ValueError`` naming the field)."""
    return OrderRequest(market=b.ticker, side=b.side, price=cv.price(b.price, f"{where}.price"),
                        count=cv.count(b.count, f"{where}.count"),
                        tif="gtc" if b.time_in_force is msgspec.UNSET else TIF_TAPE[b.time_in_force],
                        client_order_id=b.client_order_id, post_only=b.post_only, reduce_only=b.reduce_only,
                        expiration_ts_ms=None if b.expiration_ts is None else b.expiration_ts * 1000,
                        self_trade_prevention=b.self_trade_prevention_type)


# --- orders: replies -----------------------------------------------------------------------------------
class OrderAck(Struct, frozen=True, kw_only=True):
    """The V2 create reply in tape's units."""

    order_id: str
    client_order_id: str | None
    fill_count: int | None
    remaining_count: int | None
    venue_ts_ms: int | None = None


def order_ack(body: m.CreateOrderV2Response, source: str = SOURCE) -> OrderAck | MalformedInput:
    """The create reply (top level, or nested under ``order``) in exact units."""
    r: m.CreateOrderV2Response | m.CreateOrderV2Result = body.order if body.order is not None else body
    where = "create_order_v2_response" + (".order" if body.order is not None else "")
    try:
        if r.order_id is None:
            raise cv.WireError(f"{where}.order_id: missing")
        fill = r.fill_count if r.fill_count is not None else r.fill_count_fp
        rest = r.remaining_count if r.remaining_count is not None else r.remaining_count_fp
        return OrderAck(order_id=r.order_id, client_order_id=r.client_order_id,
                        fill_count=None if fill is None else cv.count(fill, f"{where}.fill_count"),
                        remaining_count=None if rest is None else cv.count(rest, f"{where}.remaining_count"),
                        venue_ts_ms=r.ts_ms)
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def batch_results(body: m.BatchCreateOrdersV2Response, source: str = SOURCE) -> list[OrderAck | ApiError | MalformedInput]:
    """The batch create reply, one result per item in its order: an ack, or the item's error. An item's
    error has no HTTP status of its own: its ``ApiError.status`` is 0."""
    out: list[OrderAck | ApiError | MalformedInput] = []
    for i, item in enumerate(body.orders):
        if item.order is not None:
            out.append(order_ack(m.CreateOrderV2Response(order=item.order), source))
        elif item.error is not None:
            e = item.error
            details = "" if e.details is None else e.details if isinstance(e.details, str) else msgspec.json.encode(e.details).decode()
            code = None if e.code is None else str(e.code)
            out.append(ApiError(0, code, clip(e.message or code or "refused"), clip(details)))
        else:
            out.append(_malformed(item, source, f"batch_create_orders_v2_response.orders[{i}]: neither order nor error"))
    return out


class CancelAck(Struct, frozen=True, kw_only=True):
    """The V2 cancel reply in tape's units; ``reduced_by`` (the count taken off the book) is None when the
    reply does not say."""

    order_id: str
    client_order_id: str | None = None
    reduced_by: int | None = None
    venue_ts_ms: int | None = None


def cancel_ack(body: m.CancelOrderV2Response, order_id: str, source: str = SOURCE) -> CancelAck | MalformedInput:
    """``DELETE /portfolio/events/orders/{order_id}``'s reply (``order_id`` is the one asked for, if it omits it)."""
    where = "cancel_order_v2_response"
    order = body.order
    try:
        reduced = None if body.reduced_by_fp is None else cv.count(body.reduced_by_fp, f"{where}.reduced_by_fp")
    except ValueError as exc:
        return _malformed(body, source, str(exc))
    return CancelAck(order_id=body.order_id or (order.order_id if order is not None else order_id),
                     client_order_id=body.client_order_id or (order.client_order_id if order is not None else None),
                     reduced_by=reduced, venue_ts_ms=body.ts_ms)


def created_body(order_id: str, client_order_id: str | None, fill_count: int, remaining_count: int,
                 ts_ms: int | None = None) -> m.CreateOrderV2Response:
    return m.CreateOrderV2Response(order_id=order_id, client_order_id=client_order_id,
                                   fill_count=format_count(fill_count), remaining_count=format_count(remaining_count),
                                   ts_ms=ts_ms)


def orders(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/orders`` -> one ``OrderStatusReported`` (or ``MalformedInput``) per order."""
    return _page(raw, _OrdersPage, "orders", m.UserOrderMsg, lambda b, w: cv.order_report(b, w, legacy=legacy), source)


def order(body: m.OrderResponse, source: str = SOURCE) -> OrderStatusReported | MalformedInput:
    """``GET /portfolio/orders/{order_id}`` -> the venue's report of that order, as it is."""
    try:
        return cv.order_report(body.order, "order_response.order", legacy=False)
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def orders_body(reports: Iterable[OrderStatusReported], cursor: str | None = None) -> m.OrdersResponse:
    return m.OrdersResponse(orders=[cv.order_msg(r) for r in reports], cursor=cursor)


# --- fills, positions, balance ----------------------------------------------------------------------------
def fills(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/fills`` -> one ``OrderFilled`` (or ``MalformedInput``) per fill."""
    return _page(raw, _FillsPage, "fills", m.FillMsg, lambda b, w: cv.fill_event(b, w, legacy=legacy), source)


def fills_body(events: Iterable[OrderFilled], cursor: str | None = None) -> m.FillsResponse:
    return m.FillsResponse(fills=[cv.fill_msg(e, rest=True) for e in events], cursor=cursor)


def positions(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/positions`` -> one ``PositionReported`` (or ``MalformedInput``) per market."""
    return _page(raw, _PositionsPage, "market_positions", m.MarketPositionMsg,
                 lambda b, w: cv.position_event(b, w, legacy=legacy), source)


def positions_body(events: Iterable[PositionReported], cursor: str | None = None) -> m.PositionsResponse:
    return m.PositionsResponse(market_positions=[cv.position_msg(e, rest=True) for e in events], cursor=cursor)


def balance(body: m.BalanceResponse, source: str = SOURCE) -> int | MalformedInput:
    """``GET /portfolio/balance`` in micro-dollars (``balance_dollars``, else ``balance`` in cents)."""
    try:
        if body.balance_dollars is not None:
            return cv.money(body.balance_dollars, "balance.balance_dollars")
        if body.balance is not None:
            return body.balance * (MONEY_SCALE // 100)
        raise cv.WireError("balance.balance_dollars: missing (and no balance in cents)")
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def balance_body(micros: int) -> m.BalanceResponse:
    """Both forms, the cents one rounded down to the cent."""
    return m.BalanceResponse(balance=micros // (MONEY_SCALE // 100), balance_dollars=format_money(micros))


class Page(NamedTuple):
    """One page of a list reply: an event per item (``MalformedInput`` for a bad one), and the cursor."""

    events: list[Event]
    cursor: str | None


class _FillsPage(Struct, frozen=True):
    fills: list[msgspec.Raw]
    cursor: str | None = None


class _OrdersPage(Struct, frozen=True):
    orders: list[msgspec.Raw]
    cursor: str | None = None


class _PositionsPage(Struct, frozen=True):
    market_positions: list[msgspec.Raw] = []
    cursor: str | None = None


def _page(raw: bytes | str, page: type, key: str, item: type[T], convert: Callable[[T, str], Event],
          source: str) -> Page:
    """Each item is decoded on its own, so one bad item costs only itself (kept verbatim)."""
    body = decode_body(raw, page, source)
    if isinstance(body, MalformedInput):
        return Page([body], None)
    out: list[Event] = []
    for i, blob in enumerate(getattr(body, key)):
        where = f"{key}[{i}]"
        try:
            decoded = _decoder(item).decode(blob)
        except DECODE_ERRORS as exc:
            out.append(_malformed(bytes(blob), source, describe(exc, where, bytes(blob))))
            continue
        try:
            out.append(convert(decoded, where))
        except ValueError as exc:  # WireError and UnitError name the field
            out.append(_malformed(bytes(blob), source, str(exc)))
    return Page(out, body.cursor)


# --- markets and books ----------------------------------------------------------------------------------
def book(body: m.OrderbookResponse, market: str, *, legacy: bool = False, source: str = SOURCE) -> BookSnapshot | MalformedInput:
    """``GET /markets/{ticker}/orderbook`` -> the market's whole book as a ``BookSnapshot``."""
    try:
        return cv.book_from_rest(body, market, legacy=legacy)
    except ValueError as exc:
        return _malformed(body, source, str(exc))


class PriceGrid(Struct, frozen=True):
    """A market's valid prices: whole cents from 1 to 99 everywhere, plus its ``price_ranges``
    (``(start, end, step)`` in 1/10,000 dollar, ends inclusive)."""

    ranges: tuple[tuple[int, int, int], ...] = ()

    def allows(self, price: int) -> bool:
        if price % 100 == 0 and 100 <= price <= PRICE_MAX - 100:
            return True
        return any(lo <= price <= hi and (price - lo) % step == 0 for lo, hi, step in self.ranges)


def price_grid(market: m.Market) -> PriceGrid:
    """The market's price grid from its ``price_ranges`` (raises ``ValueError`` naming a bad range)."""
    ranges = []
    for i, r in enumerate(market.price_ranges or ()):
        where = f"market.price_ranges[{i}]"
        lo, hi, step = cv.price(r.start, f"{where}.start"), cv.price(r.end, f"{where}.end"), cv.price(r.step, f"{where}.step")
        if step <= 0 or lo > hi:
            raise UnitError(f"{where}: start {format_price(lo)}, end {format_price(hi)}, step {format_price(step)} "
                            "is not a range")
        ranges.append((lo, hi, step))
    return PriceGrid(tuple(ranges))


# --- errors -----------------------------------------------------------------------------------------------
class ApiError(Struct, frozen=True):
    """An error reply, whichever shape it came in; ``message`` is never empty."""

    status: int
    code: str | None
    message: str
    details: str = ""


def api_error(status: int, raw: bytes | str) -> ApiError:
    """Read ``{"code", "message", "details"}`` or ``{"error": {...}}``; anything else is kept as text."""
    body = decode_body(raw, m.ErrorBody)
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    if isinstance(body, MalformedInput):
        return ApiError(status, None, clip(text.strip()) or f"HTTP {status}")
    detail = body.error if body.error is not None else body
    code = None if detail.code is None else str(detail.code)
    details = detail.details
    details_text = "" if details is None else details if isinstance(details, str) else msgspec.json.encode(details).decode()
    return ApiError(status, code, clip(detail.message or code or text.strip() or f"HTTP {status}"), clip(details_text))


def error_body(code: str, message: str, details: str | None = None) -> m.ErrorBody:
    """The error reply the spec gives: ``{"code", "message", "details"}``."""
    return m.ErrorBody(code=code, message=message, details=details)
