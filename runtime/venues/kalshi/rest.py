"""Kalshi REST bodies: our V2 order requests and the replies we read, and the reverse for the exchange.

Every reply has the shape of Kalshi's OpenAPI spec (its SDK ``kalshi-python-sync`` is the oracle: see
``tests/venues/test_kalshi_sdk_conformance.py``); nothing here reads a shape only the local exchange sends.

Client side: :func:`create_order` turns an ``OrderIntent`` into the V2 create body (``client_order_id``,
``side`` bid/ask, ``price`` dollars, ``count`` fp, ``time_in_force`` always sent by its full name);
:func:`decode_body` reads a reply into its wire Struct (:mod:`.messages`), or a ``MalformedInput``;
:func:`order_ack` (the create reply, and each flat item of a batch create), :func:`cancel_ack`
(``reduced_by``), :func:`balance` and :func:`book` turn replies into exact units or events; the list
replies — :func:`fills`, :func:`orders`, :func:`positions` — take the raw body and give a :class:`Page`
with one event per item, each item decoded on its own so that a bad one is one ``MalformedInput``
(verbatim) and costs nothing else; :func:`api_error` reads either error shape, or keeps the text. None of
these raises on bad input. A field the runtime needs that the spec requires and a reply lacks is a
``MalformedInput`` naming it (``cancel_order_v2_response.reduced_by: missing``), never a silent None.

A REST read of an order is reported as it is (``OrderStatusReported``, whatever its status):
reconciliation compares it with the order's state rather than replaying transitions (a ``user_order``
frame, by contrast, becomes the transition it implies: see :mod:`.convert`).

Exchange side: :func:`decode_order_request` reads a create body into an :class:`OrderRequest` in exact
units (``time_in_force`` absent means good-till-canceled); :func:`created_body`, :func:`canceled_body`,
:func:`fills_body` (:func:`fill_item`), :func:`orders_body` (:func:`order_item`), :func:`positions_body`
(:func:`position_item`), :func:`balance_body`, :func:`error_body` and :func:`.convert.book_to_rest` build
the replies, written with :func:`.codec.encode`; :func:`price_grid`
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
    "AmendAck",
    "AmendRequest",
    "ApiError",
    "CancelAck",
    "DecreaseRequest",
    "OrderAck",
    "OrderGroup",
    "OrderRequest",
    "Page",
    "PriceGrid",
    "amend_ack",
    "amend_order",
    "amended_body",
    "api_error",
    "balance",
    "balance_body",
    "batch_create_orders",
    "batch_results",
    "book",
    "cancel_ack",
    "canceled_body",
    "contracts_limit",
    "create_order",
    "created_body",
    "decode_amend_request",
    "decode_body",
    "decode_decrease_request",
    "decode_order_request",
    "decrease_ack",
    "decrease_order",
    "decreased_body",
    "error_body",
    "fill_event",
    "fill_item",
    "fills",
    "fills_body",
    "group_created",
    "order",
    "order_ack",
    "order_group",
    "order_groups",
    "order_item",
    "order_report",
    "order_request",
    "orders",
    "orders_body",
    "position_event",
    "position_item",
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
def create_order(intent: OrderIntent, *, self_trade_prevention: str = DEFAULT_STP,
                 order_group_id: str | None = None) -> m.CreateOrderV2Request:
    """The V2 create body of an intent; ``expiration_time`` is Unix seconds, rounded up from the intent's ms, and
    sent only for good-till-canceled (the spec: an order that never rests takes none); ``order_group_id`` puts
    the order in a group (its contracts limit applies)."""
    exp = None if intent.expiration_ts_ms is None or intent.tif != "gtc" else -(-intent.expiration_ts_ms // 1000)
    return m.CreateOrderV2Request(ticker=intent.market, side=intent.side, count=format_count(intent.count),
                                  price=format_price(intent.price), time_in_force=TIF_WIRE[intent.tif],
                                  client_order_id=intent.client_order_id,
                                  self_trade_prevention_type=self_trade_prevention, post_only=intent.post_only,
                                  reduce_only=intent.reduce_only, expiration_time=exp, order_group_id=order_group_id)


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
    order_group_id: str | None = None


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
                        expiration_ts_ms=None if b.expiration_time is None else b.expiration_time * 1000,
                        self_trade_prevention=b.self_trade_prevention_type, order_group_id=b.order_group_id)


# --- orders: replies -----------------------------------------------------------------------------------
class OrderAck(Struct, frozen=True, kw_only=True):
    """The V2 create reply in tape's units."""

    order_id: str
    client_order_id: str | None
    fill_count: int | None
    remaining_count: int | None
    venue_ts_ms: int | None = None


def order_ack(body: m.CreateOrderV2Response | m.BatchCreateItem, source: str = SOURCE,
              where: str = "create_order_v2_response") -> OrderAck | MalformedInput:
    """The create reply (or a batch create item) in exact units; ``order_id``, ``fill_count`` and
    ``remaining_count`` are required (the spec's)."""
    try:
        return OrderAck(order_id=_required(body.order_id, f"{where}.order_id"), client_order_id=body.client_order_id,
                        fill_count=cv.count(_required(body.fill_count, f"{where}.fill_count"), f"{where}.fill_count"),
                        remaining_count=cv.count(_required(body.remaining_count, f"{where}.remaining_count"),
                                                 f"{where}.remaining_count"),
                        venue_ts_ms=body.ts_ms)
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def batch_results(body: m.BatchCreateOrdersV2Response, source: str = SOURCE) -> list[OrderAck | ApiError | MalformedInput]:
    """The batch create reply, one result per item in its order: an ack (the item's fields, flat), or the item's
    ``error``. An item's error has no HTTP status of its own: its ``ApiError.status`` is 0."""
    out: list[OrderAck | ApiError | MalformedInput] = []
    for i, item in enumerate(body.orders):
        if item.error is not None:
            e = item.error
            details = "" if e.details is None else e.details if isinstance(e.details, str) else msgspec.json.encode(e.details).decode()
            code = None if e.code is None else str(e.code)
            out.append(ApiError(0, code, clip(e.message or code or "refused"), clip(details)))
        else:
            out.append(order_ack(item, source, f"batch_create_orders_v2_response.orders[{i}]"))
    return out


class CancelAck(Struct, frozen=True, kw_only=True):
    """The V2 cancel reply in tape's units; ``reduced_by`` (the count taken off the book) is None only when the
    reply was lost (:meth:`.http.KalshiRest.cancel_order` then reads the order instead)."""

    order_id: str
    client_order_id: str | None = None
    reduced_by: int | None = None
    venue_ts_ms: int | None = None


def cancel_ack(body: m.CancelOrderV2Response, order_id: str, source: str = SOURCE) -> CancelAck | MalformedInput:
    """``DELETE /portfolio/events/orders/{order_id}``'s reply; ``reduced_by`` is required (the spec's)."""
    where = "cancel_order_v2_response"
    try:
        reduced = cv.count(_required(body.reduced_by, f"{where}.reduced_by"), f"{where}.reduced_by")
    except ValueError as exc:
        return _malformed(body, source, str(exc))
    return CancelAck(order_id=body.order_id or order_id, client_order_id=body.client_order_id or None,
                     reduced_by=reduced, venue_ts_ms=body.ts_ms)


def created_body(order_id: str, client_order_id: str | None, fill_count: int, remaining_count: int,
                 ts_ms: int | None = None) -> m.CreateOrderV2Response:
    return m.CreateOrderV2Response(order_id=order_id, client_order_id=client_order_id,
                                   fill_count=format_count(fill_count), remaining_count=format_count(remaining_count),
                                   ts_ms=ts_ms)


def canceled_body(order_id: str, client_order_id: str | None, reduced_by: int, ts_ms: int) -> m.CancelOrderV2Response:
    return m.CancelOrderV2Response(order_id=order_id, client_order_id=client_order_id,
                                   reduced_by=format_count(reduced_by), ts_ms=ts_ms)


# --- amend and decrease ------------------------------------------------------------------------------------
def amend_order(market: str, side: Literal["bid", "ask"], price: int, count: int, *,
                client_order_id: str | None = None, updated_client_order_id: str | None = None,
                expiration_s: int | None = None) -> m.AmendOrderV2Request:
    """The V2 amend body: the order's market and side (unchanged), its new price and its new total ``count``
    (what has filled plus what is to rest, the spec's meaning), exact units in."""
    return m.AmendOrderV2Request(ticker=market, side=side, price=format_price(price), count=format_count(count),
                                 client_order_id=client_order_id, updated_client_order_id=updated_client_order_id,
                                 expiration_time=expiration_s)


def decrease_order(*, reduce_by: int | None = None, reduce_to: int | None = None,
                   market: str | None = None) -> m.DecreaseOrderV2Request:
    """The V2 decrease body: exactly one of ``reduce_by`` and ``reduce_to`` (raises ``ValueError`` otherwise)."""
    if (reduce_by is None) == (reduce_to is None):
        raise ValueError("decrease_order: give exactly one of reduce_by and reduce_to")
    return m.DecreaseOrderV2Request(reduce_by=None if reduce_by is None else format_count(reduce_by),
                                    reduce_to=None if reduce_to is None else format_count(reduce_to),
                                    market_ticker=market)


class AmendRequest(Struct, frozen=True, kw_only=True):
    """A V2 amend body in tape's units, as the exchange acts on it. ``count`` is the new total (filled plus
    resting); ``expiration_ts_ms`` None keeps the expiry, 0 removes it."""

    market: str
    side: Literal["bid", "ask"]
    price: int
    count: int
    client_order_id: str | None = None
    updated_client_order_id: str | None = None
    expiration_ts_ms: int | None = None


def decode_amend_request(raw: bytes | str, source: str = SOURCE) -> AmendRequest | MalformedInput:
    """A client's V2 amend body in exact units, or ``MalformedInput`` naming the bad field."""
    where = "amend_order_v2_request"
    body = decode_body(raw, m.AmendOrderV2Request, source)
    if isinstance(body, MalformedInput):
        return body
    try:
        return AmendRequest(market=body.ticker, side=body.side, price=cv.price(body.price, f"{where}.price"),
                            count=cv.count(body.count, f"{where}.count"), client_order_id=body.client_order_id,
                            updated_client_order_id=body.updated_client_order_id,
                            expiration_ts_ms=None if body.expiration_time is None else body.expiration_time * 1000)
    except ValueError as exc:
        return _malformed(raw, source, str(exc))


class DecreaseRequest(Struct, frozen=True, kw_only=True):
    """A V2 decrease body in tape's units: exactly one of the two is set."""

    reduce_by: int | None = None
    reduce_to: int | None = None


def decode_decrease_request(raw: bytes | str, source: str = SOURCE) -> DecreaseRequest | MalformedInput:
    """A client's V2 decrease body in exact units, or ``MalformedInput`` (a bad count, or not exactly one of
    ``reduce_by`` and ``reduce_to``)."""
    where = "decrease_order_v2_request"
    body = decode_body(raw, m.DecreaseOrderV2Request, source)
    if isinstance(body, MalformedInput):
        return body
    if (body.reduce_by is None) == (body.reduce_to is None):
        return _malformed(raw, source, f"{where}: exactly one of reduce_by and reduce_to must be given")
    try:
        return DecreaseRequest(
            reduce_by=None if body.reduce_by is None else cv.count(body.reduce_by, f"{where}.reduce_by"),
            reduce_to=None if body.reduce_to is None else cv.count(body.reduce_to, f"{where}.reduce_to"))
    except ValueError as exc:
        return _malformed(raw, source, str(exc))


class AmendAck(Struct, frozen=True, kw_only=True):
    """The V2 amend (or decrease) reply in tape's units. ``remaining_count`` is what rests after it; the amend
    reply's ``fill_count`` (the order's filled count) is optional in the spec, and None here when absent."""

    order_id: str
    client_order_id: str | None = None
    remaining_count: int | None = None
    fill_count: int | None = None
    venue_ts_ms: int | None = None


def amend_ack(body: m.AmendOrderV2Response, source: str = SOURCE) -> AmendAck | MalformedInput:
    """``POST .../{order_id}/amend``'s reply; ``order_id`` and ``ts_ms`` are required (the spec's), the counts
    are read when present."""
    where = "amend_order_v2_response"
    try:
        return AmendAck(order_id=_required(body.order_id, f"{where}.order_id"), client_order_id=body.client_order_id,
                        remaining_count=None if body.remaining_count is None else
                        cv.count(body.remaining_count, f"{where}.remaining_count"),
                        fill_count=None if body.fill_count is None else cv.count(body.fill_count, f"{where}.fill_count"),
                        venue_ts_ms=_required(body.ts_ms, f"{where}.ts_ms"))
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def decrease_ack(body: m.DecreaseOrderV2Response, source: str = SOURCE) -> AmendAck | MalformedInput:
    """``POST .../{order_id}/decrease``'s reply; ``order_id``, ``remaining_count`` and ``ts_ms`` are required."""
    where = "decrease_order_v2_response"
    try:
        return AmendAck(order_id=_required(body.order_id, f"{where}.order_id"), client_order_id=body.client_order_id,
                        remaining_count=cv.count(_required(body.remaining_count, f"{where}.remaining_count"),
                                                 f"{where}.remaining_count"),
                        venue_ts_ms=_required(body.ts_ms, f"{where}.ts_ms"))
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def amended_body(order_id: str, client_order_id: str | None, fill_count: int, remaining_count: int,
                 ts_ms: int) -> m.AmendOrderV2Response:
    return m.AmendOrderV2Response(order_id=order_id, client_order_id=client_order_id,
                                  fill_count=format_count(fill_count), remaining_count=format_count(remaining_count),
                                  ts_ms=ts_ms)


def decreased_body(order_id: str, client_order_id: str | None, remaining_count: int,
                   ts_ms: int) -> m.DecreaseOrderV2Response:
    return m.DecreaseOrderV2Response(order_id=order_id, client_order_id=client_order_id,
                                     remaining_count=format_count(remaining_count), ts_ms=ts_ms)


# --- order groups ------------------------------------------------------------------------------------------
class OrderGroup(Struct, frozen=True, kw_only=True):
    """An order group in tape's units: its id, contracts limit (1/100 contract; None when the reply gives none),
    whether it auto-cancels, and its orders' ids (only a single group's read lists them)."""

    order_group_id: str
    contracts_limit: int | None = None
    auto_cancel: bool = True
    orders: tuple[str, ...] = ()


def contracts_limit(whole: int | None, fp: object, where: str) -> int:
    """A group's contracts limit from ``contracts_limit`` (whole contracts) and/or ``contracts_limit_fp``; at
    least one, and they must agree (raises ``ValueError`` naming the field)."""
    if whole is None and fp is None:
        raise cv.WireError(f"{where}.contracts_limit: missing (and no contracts_limit_fp)")
    units = None if fp is None else cv.count(fp, f"{where}.contracts_limit_fp")
    if whole is not None:
        if whole < 1:
            raise cv.WireError(f"{where}.contracts_limit: {whole} is not at least 1")
        if units is not None and units != whole * 100:
            raise cv.WireError(f"{where}.contracts_limit: {whole} disagrees with contracts_limit_fp {fp!r}")
        units = whole * 100
    if units is None or units <= 0:
        raise cv.WireError(f"{where}.contracts_limit_fp: {fp!r} is not positive")
    return units


def order_group(body: m.OrderGroupResponse, order_group_id: str, source: str = SOURCE) -> OrderGroup | MalformedInput:
    """``GET /portfolio/order_groups/{id}``'s reply (``is_auto_cancel_enabled`` and ``orders`` required)."""
    where = "get_order_group_response"
    try:
        return OrderGroup(order_group_id=order_group_id,
                          contracts_limit=None if body.contracts_limit_fp is None else
                          cv.count(body.contracts_limit_fp, f"{where}.contracts_limit_fp"),
                          auto_cancel=_required(body.is_auto_cancel_enabled, f"{where}.is_auto_cancel_enabled"),
                          orders=tuple(_required(body.orders, f"{where}.orders")))
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def order_groups(body: m.OrderGroupsResponse, source: str = SOURCE) -> list[OrderGroup | MalformedInput]:
    """``GET /portfolio/order_groups``'s reply: one group per item (``id`` and ``is_auto_cancel_enabled``
    required), a bad item a ``MalformedInput`` of its own."""
    out: list[OrderGroup | MalformedInput] = []
    for i, g in enumerate(body.order_groups or ()):
        where = f"get_order_groups_response.order_groups[{i}]"
        try:
            out.append(OrderGroup(order_group_id=_required(g.id, f"{where}.id"),
                                  contracts_limit=None if g.contracts_limit_fp is None else
                                  cv.count(g.contracts_limit_fp, f"{where}.contracts_limit_fp"),
                                  auto_cancel=_required(g.is_auto_cancel_enabled, f"{where}.is_auto_cancel_enabled")))
        except ValueError as exc:
            out.append(_malformed(g, source, str(exc)))
    return out


def group_created(body: m.CreateOrderGroupResponse, source: str = SOURCE) -> str | MalformedInput:
    """``POST /portfolio/order_groups/create``'s reply: the new group's id (required)."""
    try:
        return _required(body.order_group_id, "create_order_group_response.order_group_id")
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def orders(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/orders`` -> one ``OrderStatusReported`` (or ``MalformedInput``) per order."""
    return _page(raw, _OrdersPage, "orders", m.PortfolioOrder, lambda b, w: order_report(b, w, legacy=legacy), source)


def order(body: m.OrderResponse, source: str = SOURCE) -> OrderStatusReported | MalformedInput:
    """``GET /portfolio/orders/{order_id}`` -> the venue's report of that order, as it is."""
    try:
        return order_report(body.order, "order_response.order", legacy=False)
    except ValueError as exc:
        return _malformed(body, source, str(exc))


def order_report(b: m.PortfolioOrder, where: str, *, legacy: bool = False) -> OrderStatusReported:
    """A REST order -> the venue's report of it (raises ``ValueError`` naming a missing or bad field). The side
    on the YES leg is ``book_side``, else ``outcome_side`` (yes: bid), else the deprecated ``side`` with ``action``."""
    market = _required(b.ticker, f"{where}.ticker")
    if b.book_side is not None:
        side: Literal["bid", "ask"] = b.book_side
    elif b.outcome_side is not None:
        side = "bid" if b.outcome_side == "yes" else "ask"
    elif b.side is not None and b.action is not None:
        side = "bid" if (b.side == "yes") == (b.action == "buy") else "ask"
    else:
        raise cv.WireError(f"{where}.book_side: missing (and no outcome_side, or side with action)")
    if b.yes_price_dollars is None and b.no_price_dollars is not None:
        yes_price = PRICE_MAX - cv.price(b.no_price_dollars, f"{where}.no_price_dollars")
    else:
        yes_price = cv.pick(b.yes_price_dollars, f"{where}.yes_price_dollars", cv.price, legacy, b.yes_price,
                            f"{where}.yes_price", cv.cents)
    filled = cv.pick(b.fill_count_fp, f"{where}.fill_count_fp", cv.count, legacy, b.fill_count, f"{where}.fill_count")
    remaining = cv.pick(b.remaining_count_fp, f"{where}.remaining_count_fp", cv.count, legacy, b.remaining_count,
                        f"{where}.remaining_count")
    initial = cv.pick(b.initial_count_fp, f"{where}.initial_count_fp", cv.count, legacy, b.initial_count,
                      f"{where}.initial_count")
    if filled > initial:
        raise cv.WireError(f"{where}.fill_count_fp: {format_count(filled)} exceeds the initial count {format_count(initial)}")
    updated = b.last_update_time if b.last_update_time is not None else b.created_time
    what = f"{where}.last_update_time" if b.last_update_time is not None else f"{where}.created_time"
    return OrderStatusReported(client_order_id=b.client_order_id or "", order_id=b.order_id, market=market,
                               status=b.status, side=side, price=yes_price, fill_count=filled,
                               remaining_count=remaining, initial_count=initial,
                               venue_ts_ms=None if updated is None else cv.iso_ms(updated, what))


def order_item(r: OrderStatusReported, *, user_id: str = "", created_ms: int | None = None,
               expiration_ms: int | None = None, self_trade_prevention: str = DEFAULT_STP, taker_cost: int = 0,
               maker_cost: int = 0, taker_fees: int = 0, maker_fees: int = 0,
               order_group_id: str | None = None) -> m.PortfolioOrder:
    """The REST order of an order's report (costs and fees in micro-dollars; times in Unix ms). A bid on the
    YES leg buys YES, an ask buys NO."""
    outcome: m.YesNo = "yes" if r.side == "bid" else "no"
    initial = r.initial_count if r.initial_count is not None else r.fill_count + r.remaining_count
    created = created_ms if created_ms is not None else r.venue_ts_ms
    return m.PortfolioOrder(
        order_id=r.order_id, user_id=user_id, client_order_id=r.client_order_id, ticker=r.market, side=outcome,
        action="buy", outcome_side=outcome, book_side=r.side, type="limit", status=r.status,
        yes_price_dollars=format_price(r.price), no_price_dollars=format_price(PRICE_MAX - r.price),
        fill_count_fp=format_count(r.fill_count), remaining_count_fp=format_count(r.remaining_count),
        initial_count_fp=format_count(initial), taker_fill_cost_dollars=format_money(taker_cost),
        maker_fill_cost_dollars=format_money(maker_cost), taker_fees_dollars=format_money(taker_fees),
        maker_fees_dollars=format_money(maker_fees),
        expiration_time=None if expiration_ms is None else cv.iso_of_ms(expiration_ms),
        created_time=None if created is None else cv.iso_of_ms(created),
        last_update_time=None if r.venue_ts_ms is None else cv.iso_of_ms(r.venue_ts_ms),
        self_trade_prevention_type=self_trade_prevention, order_group_id=order_group_id)


def orders_body(items: Iterable[OrderStatusReported | m.PortfolioOrder], cursor: str | None = None) -> m.OrdersResponse:
    """A page of orders (a report becomes :func:`order_item` with no costs); ``cursor`` is ``""`` on the last page."""
    return m.OrdersResponse(orders=[i if type(i) is m.PortfolioOrder else order_item(i) for i in items],  # type: ignore[arg-type]
                            cursor=cursor or "")


# --- fills, positions, balance ----------------------------------------------------------------------------
def fills(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/fills`` -> one ``OrderFilled`` (or ``MalformedInput``) per fill. A REST fill names no
    ``client_order_id`` (:meth:`.http.KalshiRest.fills` finds it from the order)."""
    return _page(raw, _FillsPage, "fills", m.PortfolioFill, lambda b, w: fill_event(b, w, legacy=legacy), source)


def fill_event(b: m.PortfolioFill, where: str, *, legacy: bool = False) -> OrderFilled:
    """A REST fill -> ``OrderFilled`` (raises ``ValueError`` naming a missing or bad field)."""
    market = _required(b.market_ticker if b.market_ticker is not None else b.ticker, f"{where}.market_ticker")
    if b.book_side is not None:
        side: Literal["bid", "ask"] = b.book_side
    elif b.outcome_side is not None:
        side = "bid" if b.outcome_side == "yes" else "ask"
    elif b.side is not None and b.action is not None:
        side = "bid" if (b.side == "yes") == (b.action == "buy") else "ask"
    else:
        raise cv.WireError(f"{where}.book_side: missing (and no outcome_side, or side with action)")
    yes_price = cv.pick(b.yes_price_dollars, f"{where}.yes_price_dollars", cv.price, legacy, b.yes_price,
                        f"{where}.yes_price", cv.cents)
    n = cv.pick(b.count_fp, f"{where}.count_fp", cv.count, legacy, b.count, f"{where}.count")
    if b.fee_cost is not None:
        fee = cv.money(b.fee_cost, f"{where}.fee_cost")
    elif legacy:
        fee = 0
    else:
        raise cv.WireError(f"{where}.fee_cost: missing")
    if b.created_time is not None:
        ts_ms: int | None = cv.iso_ms(b.created_time, f"{where}.created_time")
    else:
        ts_ms = None if b.ts is None else b.ts * 1000
    return OrderFilled(trade_id=b.trade_id, order_id=b.order_id, client_order_id="", market=market, side=side,
                       price=yes_price, count=n, fee=fee, is_taker=b.is_taker, venue_ts_ms=ts_ms)


def fill_item(e: OrderFilled, fill_id: str | None = None) -> m.PortfolioFill:
    """The REST fill of an ``OrderFilled`` (``fill_id`` defaults to ``<trade_id>/<order_id>``)."""
    outcome: m.YesNo = "yes" if e.side == "bid" else "no"
    ts = e.venue_ts_ms
    return m.PortfolioFill(
        fill_id=fill_id or f"{e.trade_id}/{e.order_id}", exchange_index=0, trade_id=e.trade_id, order_id=e.order_id,
        ticker=e.market, market_ticker=e.market, side=outcome, action="buy", outcome_side=outcome, book_side=e.side,
        count_fp=format_count(e.count), yes_price_dollars=format_price(e.price),
        no_price_dollars=format_price(PRICE_MAX - e.price), is_taker=e.is_taker,
        created_time=None if ts is None else cv.iso_of_ms(ts), fee_cost=format_money(e.fee),
        ts=None if ts is None else ts // 1000)


def fills_body(items: Iterable[OrderFilled | m.PortfolioFill], cursor: str | None = None) -> m.FillsResponse:
    """A page of fills; ``cursor`` is ``""`` on the last page."""
    return m.FillsResponse(fills=[i if type(i) is m.PortfolioFill else fill_item(i) for i in items],  # type: ignore[arg-type]
                           cursor=cursor or "")


def positions(raw: bytes | str, *, legacy: bool = False, source: str = SOURCE) -> Page:
    """``GET /portfolio/positions`` -> one ``PositionReported`` (or ``MalformedInput``) per market."""
    return _page(raw, _PositionsPage, "market_positions", m.PortfolioPosition,
                 lambda b, w: position_event(b, w, legacy=legacy), source)


def position_event(b: m.PortfolioPosition, where: str, *, legacy: bool = False) -> PositionReported:
    """A REST market position -> ``PositionReported`` (its cost is ``market_exposure_dollars``)."""
    pos = cv.pick(b.position_fp, f"{where}.position_fp", cv.signed_count, legacy, b.position, f"{where}.position",
                  cv.signed_count)
    cost = cv.money(_required(b.market_exposure_dollars, f"{where}.market_exposure_dollars"),
                    f"{where}.market_exposure_dollars")
    pnl = cv.money(_required(b.realized_pnl_dollars, f"{where}.realized_pnl_dollars"), f"{where}.realized_pnl_dollars")
    fees = cv.money(_required(b.fees_paid_dollars, f"{where}.fees_paid_dollars"), f"{where}.fees_paid_dollars")
    ts = None if b.last_updated_ts is None else cv.iso_ms(b.last_updated_ts, f"{where}.last_updated_ts")
    return PositionReported(market=b.ticker, position=pos, cost=cost, realized_pnl=pnl, fees_paid=fees, venue_ts_ms=ts)


def position_item(e: PositionReported, *, traded: int = 0) -> m.PortfolioPosition:
    """The REST market position of a report (``traded``: the money traded in the market, micro-dollars)."""
    ts = e.venue_ts_ms
    return m.PortfolioPosition(
        ticker=e.market, exchange_index=0, total_traded_dollars=format_money(traded),
        position_fp=format_count(e.position), market_exposure_dollars=format_money(e.cost or 0),
        realized_pnl_dollars=format_money(e.realized_pnl or 0), fees_paid_dollars=format_money(e.fees_paid or 0),
        last_updated_ts=cv.iso_of_ms(0 if ts is None else ts))


def positions_body(items: Iterable[PositionReported | m.PortfolioPosition], cursor: str | None = None,
                   event_positions: Iterable[m.EventPosition] = ()) -> m.PositionsResponse:
    """A page of positions; ``cursor`` is ``""`` on the last page."""
    return m.PositionsResponse(
        market_positions=[i if type(i) is m.PortfolioPosition else position_item(i) for i in items],  # type: ignore[arg-type]
        event_positions=list(event_positions), cursor=cursor or "")


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


def balance_body(micros: int, portfolio_value: int = 0, updated_ms: int = 0) -> m.BalanceResponse:
    """The balance in both forms (cents rounded down), the positions' value in cents (rounded down), and the
    time of the last change in Unix seconds."""
    cent = MONEY_SCALE // 100
    return m.BalanceResponse(balance=micros // cent, balance_dollars=format_money(micros),
                             portfolio_value=portfolio_value // cent, updated_ts=updated_ms // 1000)


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
    market_positions: list[msgspec.Raw]
    cursor: str | None = None


def _required(value: T | None, what: str) -> T:
    if value is None:
        raise cv.WireError(f"{what}: missing")
    return value


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
    """The market's price grid from its ``price_ranges`` (raises ``ValueError`` naming a bad range, or the
    field when it is missing)."""
    ranges = []
    for i, r in enumerate(_required(market.price_ranges, "market.price_ranges")):
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
    """Read ``{"code", "message", "details"}``, ``{"error": {...}}`` or ``{"error": "text"}``; anything else is kept
    as text."""
    body = decode_body(raw, m.ErrorBody)
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    if isinstance(body, MalformedInput):
        return ApiError(status, None, clip(text.strip()) or f"HTTP {status}")
    if isinstance(body.error, str):  # Kalshi's 429 body
        return ApiError(status, None, clip(body.error.strip() or text.strip() or f"HTTP {status}"))
    detail = body.error if body.error is not None else body
    code = None if detail.code is None else str(detail.code)
    details = detail.details
    details_text = "" if details is None else details if isinstance(details, str) else msgspec.json.encode(details).decode()
    return ApiError(status, code, clip(detail.message or code or text.strip() or f"HTTP {status}"), clip(details_text))


def error_body(code: str, message: str, details: str | None = None) -> m.ErrorBody:
    """The error reply the spec gives: ``{"code", "message", "details"}``."""
    return m.ErrorBody(code=code, message=message, details=details)
