"""The local exchange's REST API (see :mod:`.server` for what it serves): :class:`RestApi`, the handlers that
:class:`.server.ExchangeServer` inherits, and their helpers — JSON and error bodies, query parsing, pagination.

Every reply has the shape of Kalshi's OpenAPI spec, with every field it requires (Kalshi's SDK,
``kalshi-python-sync``, reads each one in ``tests/venues/test_kalshi_sdk_conformance.py``):

* a **market** has its titles (synthetic: the ticker and what it settles on), its times (created, opened and
  updated at the session start; its close; determined/settled times once they happened; the latest
  expiration is the session end), top of book and last price (``"0.0000"`` and size ``"0.00"`` where there
  is none), volume (contracts traded since the open, and in the last 24 hours), open interest (the engine's:
  the long positions from every trade), the previous day's top of book and last price, the price grid
  (``price_ranges``, ``linear_cent`` at a one-cent tick, ``deci_cent`` at a tenth) and its status in
  Kalshi's enum (``settled`` is ``finalized``; the ``status`` filter of ``GET /markets`` still takes
  ``unopened`` / ``open`` / ``closed`` / ``settled``);
* an **order** has ``user_id`` (the account), ``outcome_side`` and ``book_side`` (a bid on the YES leg buys
  YES; an ask buys NO), the deprecated ``side`` (yes/no) with ``action`` ``buy``, ``type`` ``limit``, its
  fill costs and fees as taker and as maker in dollars, and its times;
* a **fill** has ``fill_id``, ``ticker`` and ``market_ticker``, both prices, both sides and its time;
* **positions** are ``market_positions`` and ``event_positions`` (one event: the exchange's prefix);
* the **balance** has ``portfolio_value`` (positions marked at the last price, cents) and ``updated_ts``;
* amend answers ``{order_id, client_order_id, fill_count, remaining_count, ts_ms}`` (``fill_count`` is the
  order's filled count, so the two counts add up to its new total unless self-trade prevention stopped it);
  decrease ``{order_id, client_order_id, remaining_count, ts_ms}``;
* order groups: create answers ``{order_group_id, subaccount}`` (201), a group ``{is_auto_cancel_enabled,
  contracts_limit_fp, orders}``, the list ``{order_groups: [{id, contracts_limit_fp, is_auto_cancel_enabled}]}``
  (every group auto-cancels: its limit is what cancels it), and delete, reset, trigger and limit ``{}``;
* cancel and batch cancel answer ``reduced_by``; a batch create's items are flat (``order_id``, counts,
  ``ts_ms``, or ``error``); every list has ``cursor``, ``""`` on its last page.

A **series** (``GET /series/{series_ticker}``: the exchange's one, its prefix) has its fee terms, ``fee_type`` and
``fee_multiplier``, from the exchange's fee schedule, and the other fields the spec requires.

Market data (``/markets``, a market, its order book, the series) is Kalshi's public data: :func:`is_public` says
which requests need no signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec
from aiohttp import web

from actors.fees import KalshiFees, SeriesFees
from runtime.events import BookSnapshot, MalformedInput
from runtime.logger import get_logger
from runtime.units import PRICE_MAX, format_count, format_money, format_price

from ..kalshi import codec, rest
from ..kalshi import convert as cv
from ..kalshi import info as mi
from ..kalshi import messages as m
from .exchange import CommandResult, Exchange, ExchangeError, MarketInfo, OrderDetail, PositionDetail
from .session import PRICE_LEVEL_STRUCTURE, fee_type, market_rules

_MARKET_STATUS: Final = {"unopened": ("initialized",), "open": ("active",), "closed": ("closed", "determined"),
                         "settled": ("settled",)}
_ORDER_STATUS: Final = frozenset({"resting", "canceled", "executed"})
MAX_LIMIT: Final = 1_000
DEFAULT_LIMIT: Final = 100
MAX_BATCH: Final = 20
_OWNER: Final = web.RequestKey("owner", str)  # the account a request acts for
_WIRE_STATUS: Final = {"settled": "finalized"}  # the exchange's market status -> Kalshi's Market.status enum
_ZERO_PRICE: Final = format_price(0)
_PUBLIC_PREFIX: Final = "/trade-api/v2/markets"
_PUBLIC_SERIES: Final = "/trade-api/v2/series/"


def is_public(method: str, path: str) -> bool:
    """Whether Kalshi serves this request without a signature: reads of market data (``GET /markets``, a
    market, its order book, trades, a series). Every portfolio endpoint needs one."""
    return method in ("GET", "HEAD") and (path == _PUBLIC_PREFIX or path.startswith(_PUBLIC_PREFIX + "/")
                                          or path.startswith(_PUBLIC_SERIES))


def _log() -> Any:
    """The server's logger, looked up when used (so that logging configured after import applies)."""
    return get_logger("exchange.server")


T = TypeVar("T")


class RestApi:
    """The REST handlers of :class:`.server.ExchangeServer`, which inherits them (and provides ``exchange``,
    ``_tick`` and ``_act``)."""

    exchange: Exchange

    if TYPE_CHECKING:
        def _tick(self) -> bool: ...

        def _act(self, command: Callable[[int], CommandResult]) -> CommandResult: ...

    # --- REST: orders ----------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        order = rest.decode_order_request(await request.read())
        if isinstance(order, MalformedInput):
            return _error(400, "bad_request", order.error)
        owner = request[_OWNER]
        result = self._act(lambda now: self.exchange.create_order(owner, order, now))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(rest.created_body(o.order_id, o.client_order_id or None, o.fill_count, o.remaining_count,
                                       o.venue_ts_ms), 201)

    async def _cancel(self, request: web.Request) -> web.Response:
        owner, order_id = request[_OWNER], request.match_info["order_id"]
        result = self._act(lambda now: self.exchange.cancel_order(owner, order_id, now))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(rest.canceled_body(o.order_id, o.client_order_id or None, result.canceled, o.venue_ts_ms or 0))

    async def _amend(self, request: web.Request) -> web.Response:
        amend = rest.decode_amend_request(await request.read())
        if isinstance(amend, MalformedInput):
            return _error(400, "bad_request", amend.error)
        owner, order_id = request[_OWNER], request.match_info["order_id"]
        result = self._act(lambda now: self.exchange.amend_order(owner, order_id, amend, now))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(rest.amended_body(o.order_id, o.client_order_id or None, o.fill_count, o.remaining_count,
                                       o.venue_ts_ms or 0))

    async def _decrease(self, request: web.Request) -> web.Response:
        body = rest.decode_decrease_request(await request.read())
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        owner, order_id = request[_OWNER], request.match_info["order_id"]
        result = self._act(lambda now: self.exchange.decrease_order(owner, order_id, now, reduce_by=body.reduce_by,
                                                                    reduce_to=body.reduce_to))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(rest.decreased_body(o.order_id, o.client_order_id or None, o.remaining_count, o.venue_ts_ms or 0))

    # --- REST: order groups ------------------------------------------------------------------------------
    async def _create_group(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), m.CreateOrderGroupRequest)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        try:
            limit = rest.contracts_limit(body.contracts_limit, body.contracts_limit_fp, "create_order_group_request")
        except ValueError as exc:
            return _error(400, "bad_request", str(exc))
        group = self.exchange.create_order_group(request[_OWNER], limit)
        if isinstance(group, ExchangeError):
            return _refusal(group)
        return _json(m.CreateOrderGroupResponse(order_group_id=group.order_group_id, subaccount=0), 201)

    async def _groups(self, request: web.Request) -> web.Response:
        return _json(m.OrderGroupsResponse(order_groups=[
            m.OrderGroupItem(id=g.order_group_id, contracts_limit_fp=format_count(g.contracts_limit),
                             is_auto_cancel_enabled=True) for g in self.exchange.order_groups(request[_OWNER])]))

    async def _group(self, request: web.Request) -> web.Response:
        group = self.exchange.order_group(request[_OWNER], request.match_info["order_group_id"])
        if isinstance(group, ExchangeError):
            return _refusal(group)
        return _json(m.OrderGroupResponse(is_auto_cancel_enabled=True, contracts_limit_fp=format_count(group.contracts_limit),
                                          orders=list(group.orders)))

    async def _group_limit(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), m.UpdateOrderGroupLimitRequest)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        try:
            limit = rest.contracts_limit(body.contracts_limit, body.contracts_limit_fp, "update_order_group_limit_request")
        except ValueError as exc:
            return _error(400, "bad_request", str(exc))
        group = self.exchange.update_order_group(request[_OWNER], request.match_info["order_group_id"], limit)
        return _refusal(group) if isinstance(group, ExchangeError) else _json(m.EmptyResponse())

    async def _reset_group(self, request: web.Request) -> web.Response:
        group = self.exchange.reset_order_group(request[_OWNER], request.match_info["order_group_id"])
        return _refusal(group) if isinstance(group, ExchangeError) else _json(m.EmptyResponse())

    async def _trigger_group(self, request: web.Request) -> web.Response:
        return self._triggered(request, delete=False)

    async def _delete_group(self, request: web.Request) -> web.Response:
        return self._triggered(request, delete=True)

    def _triggered(self, request: web.Request, *, delete: bool) -> web.Response:
        owner, group_id = request[_OWNER], request.match_info["order_group_id"]
        result = self._act(lambda now: self.exchange.trigger_order_group(owner, group_id, now, delete=delete))
        return _refusal(result.error) if result.error is not None else _json(m.EmptyResponse())

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), m.BatchCreateOrdersV2Request)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        if not 1 <= len(body.orders) <= MAX_BATCH:
            return _error(400, "bad_request", f"orders: {len(body.orders)} orders; a batch holds 1 to {MAX_BATCH}")
        owner = request[_OWNER]
        items = []
        for i, wire in enumerate(body.orders):
            try:
                order = rest.order_request(wire, f"batch_create_orders_v2_request.orders[{i}]")
            except ValueError as exc:
                items.append(m.BatchCreateItem(client_order_id=wire.client_order_id,
                                               error=m.ErrorDetail(code="bad_request", message=codec.clip(str(exc)),
                                                                   details="")))
                continue
            result = self._act(lambda now, order=order: self.exchange.create_order(owner, order, now))
            if result.error is not None:
                e = result.error
                items.append(m.BatchCreateItem(client_order_id=wire.client_order_id,
                                               error=m.ErrorDetail(code=e.code, message=e.message, details="")))
                continue
            o = result.order
            assert o is not None
            items.append(m.BatchCreateItem(order_id=o.order_id, client_order_id=o.client_order_id or None,
                                           fill_count=format_count(o.fill_count),
                                           remaining_count=format_count(o.remaining_count), ts_ms=o.venue_ts_ms))
        return _json(m.BatchCreateOrdersV2Response(orders=items), 201)

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), _BatchCancel)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        ids = [*(body.ids or ()), *(o.order_id for o in body.orders or ())]
        if not 1 <= len(ids) <= MAX_BATCH:
            return _error(400, "bad_request", f"ids: {len(ids)} order ids; a batch cancels 1 to {MAX_BATCH}")
        owner = request[_OWNER]
        items = []
        for order_id in ids:
            result = self._act(lambda now, order_id=order_id: self.exchange.cancel_order(owner, order_id, now))
            if result.error is not None:
                e = result.error
                items.append(m.BatchCancelItem(order_id=order_id, reduced_by=format_count(0),
                                               error=m.ErrorDetail(code=e.code, message=e.message, details="")))
                continue
            o = result.order
            assert o is not None
            items.append(m.BatchCancelItem(order_id=order_id, client_order_id=o.client_order_id or None,
                                           reduced_by=format_count(result.canceled), ts_ms=o.venue_ts_ms))
        return _json(m.BatchCancelOrdersResponse(orders=items))

    async def _orders(self, request: web.Request) -> web.Response:
        q = request.query
        ticker, status = q.get("ticker"), q.get("status")
        if status is not None and status not in _ORDER_STATUS:
            raise _BadRequest(f"status: {status!r} is not one of canceled, executed, resting")
        owner = request[_OWNER]
        items = self.exchange.order_details(owner)
        page, cursor = _newest_first(items, lambda o: (ticker is None or o.report.market == ticker)
                                     and (status is None or o.report.status == status), _limit(q), q.get("cursor"))
        return _json(rest.orders_body([_order_item(owner, o) for o in page], cursor))

    async def _queue_positions(self, request: web.Request) -> web.Response:
        q = request.query
        tickers = [t for t in q.get("market_tickers", "").split(",") if t]
        event = q.get("event_ticker")
        if not tickers and not event:
            raise _BadRequest("market_tickers or event_ticker is required")
        self._tick()
        items = [m.OrderQueuePosition(order_id=oid, market_ticker=ticker, queue_position=ahead // 100,
                                      queue_position_fp=format_count(ahead))
                 for oid, ticker, ahead in self.exchange.queue_positions(request[_OWNER], set(tickers) or None)
                 if not event or ticker.startswith(event + "-")]
        return _json(m.QueuePositionsResponse(queue_positions=items))

    async def _order(self, request: web.Request) -> web.Response:
        order_id, owner = request.match_info["order_id"], request[_OWNER]
        detail = self.exchange.order_detail(owner, order_id)
        if detail is None:
            return _error(404, "not_found", f"order {order_id!r} not found")
        return _json(m.OrderResponse(order=_order_item(owner, detail)))

    async def _fills(self, request: web.Request) -> web.Response:
        q = request.query
        ticker, order_id = q.get("ticker"), q.get("order_id")
        min_ms = _min_ts_ms(q.get("min_ts"))
        items = self.exchange.fills(request[_OWNER])
        page, cursor = _newest_first(items, lambda f: (ticker is None or f.market == ticker)
                                     and (order_id is None or f.order_id == order_id)
                                     and (min_ms is None or (f.venue_ts_ms or 0) >= min_ms), _limit(q), q.get("cursor"))
        return _json(rest.fills_body([rest.fill_item(f, self.exchange.fill_id(f)) for f in page], cursor))

    async def _positions(self, request: web.Request) -> web.Response:
        q = request.query
        ticker = q.get("ticker")
        items = [p for p in self.exchange.position_details(request[_OWNER]) if ticker is None or p.report.market == ticker]
        page, cursor = _by_ticker(items, lambda p: p.report.market, _limit(q), q.get("cursor"))
        return _json(rest.positions_body([rest.position_item(p.report, traded=p.traded) for p in page], cursor,
                                         _event_positions(self.exchange.prefix, page)))

    async def _balance(self, request: web.Request) -> web.Response:
        self._tick()
        p = self.exchange.portfolio(request[_OWNER])
        return _json(rest.balance_body(p.balance, p.positions_value, p.updated_ms))

    # --- REST: markets ---------------------------------------------------------------------------------
    async def _markets(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status")
        if status is not None and status not in _MARKET_STATUS:
            raise _BadRequest(f"status: {status!r} is not one of {', '.join(_MARKET_STATUS)}")
        wanted = None if not q.get("tickers") else set(q["tickers"].split(","))
        self._tick()
        items = [i for i in self.exchange.markets() if (wanted is None or i.ticker in wanted)
                 and (status is None or i.status in _MARKET_STATUS[status])]
        page, cursor = _by_ticker(items, lambda i: i.ticker, _limit(q), q.get("cursor"))
        return _json(m.MarketsResponse(markets=[self._market_body(i) for i in page], cursor=cursor))

    async def _market(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        self._tick()
        info = self.exchange.market(ticker)
        if info is None:
            return _error(404, "not_found", f"market {ticker!r} not found")
        return _json(m.MarketResponse(market=self._market_body(info)))

    async def _orderbook(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        depth = _int_query(request.query, "depth", 0, 0, PRICE_MAX)
        self._tick()
        book = self.exchange.book(ticker)
        if book is None:
            return _error(404, "not_found", f"market {ticker!r} not found")
        if depth:
            book = BookSnapshot(book.market, tuple(sorted(book.yes_bids)[-depth:]), tuple(sorted(book.no_bids)[-depth:]))
        return _json(cv.book_to_rest(book))

    async def _series(self, request: web.Request) -> web.Response:
        ticker = request.match_info["series_ticker"]
        prefix = self.exchange.prefix
        if ticker != prefix:
            return _error(404, "not_found", f"series {ticker!r} not found")
        fees = self.exchange.fees
        terms = fees.terms(prefix) if isinstance(fees, KalshiFees) else SeriesFees()
        whole, part = divmod(terms.multiplier_ppm, 1_000_000)
        multiplier = whole if not part else terms.multiplier_ppm / 1_000_000  # a JSON number, as the spec has it
        return _json(mi.SeriesResponse(series=mi.Series(
            ticker=prefix, frequency="custom", title="Synthetic markets of the local exchange", category="Synthetic",
            categories=["Synthetic"], tags=[], settlement_sources=[], contract_url="", contract_terms_url="",
            fee_type=fee_type(terms), fee_multiplier=multiplier, additional_prohibitions=[])))

    def _market_body(self, i: MarketInfo) -> m.Market:
        """The spec's ``Market`` of what the exchange knows (see the module docstring)."""
        tick = i.tick
        grid = m.PriceRange(start=format_price(tick), end=format_price(PRICE_MAX - tick), step=format_price(tick))
        number = i.ticker.rsplit("-", 1)[-1]
        settled = i.settlement_value is not None
        return m.Market(
            ticker=i.ticker, event_ticker=self.exchange.prefix, market_type="binary",
            title=f"Synthetic market {number} of the local exchange", subtitle="",
            yes_sub_title="Yes", no_sub_title="No",
            created_time=_iso(i.open_ns), updated_time=_iso(i.open_ns), open_time=_iso(i.open_ns),
            close_time=_iso(i.close_ns),
            expiration_time=None if i.determined_ns is None else _iso(i.determined_ns),
            latest_expiration_time=_iso(i.latest_expiration_ns), settlement_timer_seconds=i.settle_after_s,
            status=_WIRE_STATUS.get(i.status, i.status),
            yes_bid_dollars=_price(i.yes_bid), yes_bid_size_fp=format_count(i.yes_bid_size),
            yes_ask_dollars=_price(i.yes_ask), yes_ask_size_fp=format_count(i.yes_ask_size),
            no_bid_dollars=_price(None if i.yes_ask is None else PRICE_MAX - i.yes_ask),
            no_ask_dollars=_price(None if i.yes_bid is None else PRICE_MAX - i.yes_bid),
            last_price_dollars=_price(i.last_price), volume_fp=format_count(i.volume),
            volume_24h_fp=format_count(i.volume_24h), result=i.result or "", can_close_early=False,
            open_interest_fp=format_count(i.open_interest), notional_value_dollars=format_price(PRICE_MAX),
            previous_yes_bid_dollars=_price(i.previous_yes_bid), previous_yes_ask_dollars=_price(i.previous_yes_ask),
            previous_price_dollars=_price(i.previous_price),
            settlement_value_dollars=format_price(i.settlement_value) if settled else None,  # type: ignore[arg-type]
            settlement_ts=None if i.settled_ns is None else _iso(i.settled_ns),
            settlement_bounds_type="default",
            expiration_value=format_price(i.settlement_value) if settled else "",  # type: ignore[arg-type]
            rules_primary=market_rules(i.ticker)[0], rules_secondary=market_rules(i.ticker)[1],
            price_level_structure=PRICE_LEVEL_STRUCTURE.get(tick, "custom"), price_ranges=[grid])


# --- helpers -------------------------------------------------------------------------------------------------
class _BadRequest(Exception):
    """A query parameter that cannot be read: a 400 naming it."""


class _OrderId(msgspec.Struct, frozen=True):
    order_id: str


class _BatchCancel(msgspec.Struct, frozen=True, kw_only=True):
    """``DELETE /portfolio/events/orders/batched``: ``orders`` of ``{"order_id"}`` (the spec's), or ``ids``
    (the older shape)."""

    ids: list[str] | None = None
    orders: list[_OrderId] | None = None


def _order_item(owner: str, d: OrderDetail) -> m.PortfolioOrder:
    return rest.order_item(d.report, user_id=owner, created_ms=d.created_ms, expiration_ms=d.expiration_ms,
                           self_trade_prevention=d.self_trade_prevention, taker_cost=d.taker_cost,
                           maker_cost=d.maker_cost, taker_fees=d.taker_fees, maker_fees=d.maker_fees,
                           order_group_id=d.order_group_id)


def _event_positions(event_ticker: str, page: Sequence[PositionDetail]) -> list[m.EventPosition]:
    """The page's markets are all of one event (the exchange's prefix): their sums."""
    if not page:
        return []
    return [m.EventPosition(
        event_ticker=event_ticker, total_cost_dollars=format_money(sum(p.traded for p in page)),
        total_cost_shares_fp=format_count(sum(p.traded_count for p in page)),
        event_exposure_dollars=format_money(sum(p.report.cost or 0 for p in page)),
        realized_pnl_dollars=format_money(sum(p.report.realized_pnl or 0 for p in page)),
        fees_paid_dollars=format_money(sum(p.report.fees_paid or 0 for p in page)))]


def _price(units: int | None) -> str:
    """A price in dollars; ``"0.0000"`` where there is none (no bid, no trade yet), as Kalshi sends it."""
    return _ZERO_PRICE if units is None else format_price(units)


def _json(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=codec.encode(body), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(rest.error_body(code, codec.clip(message)), status)


def _refusal(error: ExchangeError) -> web.Response:
    return _error(error.status, error.code, error.message)


def _iso(ns: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond // 1000:03d}Z" if moment.microsecond else "Z")


def _int_query(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or not lo <= int(text) <= hi:
        raise _BadRequest(f"{name}: {text[:40]!r} is not a whole number from {lo} to {hi}")
    return int(text)


def _limit(query: Any) -> int:
    return _int_query(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def _min_ts_ms(text: str | None) -> int | None:
    """``min_ts`` in Unix seconds (Kalshi's unit), or milliseconds when it is above 10^12."""
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _BadRequest(f"min_ts: {text[:40]!r} is not Unix seconds (or milliseconds)")
    value = int(text)
    return value if value > 10**12 else value * 1000


def _newest_first(items: Sequence[T], keep: Callable[[T], bool], limit: int, cursor: str | None) -> tuple[list[T], str]:
    """A page of ``items`` (oldest first) taken newest first. The cursor is the index below which the next
    page starts, so items added meanwhile (at the end) never shift a page."""
    start = len(items)
    if cursor:
        if not cursor.isascii() or not cursor.isdigit() or int(cursor) > len(items):
            raise _BadRequest(f"cursor: {cursor[:40]!r} is not a cursor of this list")
        start = int(cursor)
    page: list[T] = []
    i = start - 1
    while i >= 0 and len(page) < limit:
        if keep(items[i]):
            page.append(items[i])
        i -= 1
    more = any(keep(items[j]) for j in range(i, -1, -1))
    return page, str(i + 1) if more else ""


def _by_ticker(items: Sequence[T], key: Callable[[T], str], limit: int, cursor: str | None) -> tuple[list[T], str]:
    """A page of ``items`` in ticker order after the cursor (the last ticker of the previous page)."""
    ordered = sorted(items, key=key)
    if cursor:
        ordered = [i for i in ordered if key(i) > cursor]
    page = ordered[:limit]
    return page, key(page[-1]) if len(ordered) > limit else ""
