"""Our Kalshi REST client against a scripted Kalshi REST server on loopback (``aiohttp.web``).

The server keeps one account's orders and checks every request's signature with ``auth.Verifier``; each
create is answered by the next scripted outcome (429, 503, accept-then-drop the connection, ...), so the
tests can watch what the client sends on each attempt and that no order is ever placed twice.
"""

from __future__ import annotations

import io
import socket
import time

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from config import LoggingSettings
from runtime import events as ev
from runtime.logger import configure_logging
from runtime.venues.kalshi import messages as m
from runtime.venues.kalshi import rest
from runtime.venues.kalshi.auth import Signer
from runtime.venues.kalshi.codec import encode
from runtime.venues.kalshi.http import (
    HOSTS,
    KalshiApiError,
    KalshiMalformedReply,
    KalshiRest,
    KalshiUnavailable,
)
from runtime.venues.kalshi.rest import ApiError, CancelAck, OrderAck
from tests.wording import said_by

KEY_ID = "rest-key-0001"
BASE = "/trade-api/v2"
A, B = "KXA-1", "KXB-1"


def intent(coid: str = "c-1", market: str = A, price: int = 4_200, count: int = 500) -> ev.OrderIntent:
    return ev.OrderIntent(cause_seq=1, client_order_id=coid, market=market, side="bid", price=price, count=count)


@pytest.fixture(scope="module")
def signer(pem) -> Signer:
    return Signer.from_pem(KEY_ID, pem)


def secrets_of(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if "-----" not in line]


def json_reply(body, status: int = 200) -> web.Response:
    data = encode(body) if isinstance(body, msgspec.Struct) else msgspec.json.encode(body)
    return web.Response(status=status, body=data, content_type="application/json")


class Exchange:
    """One account's orders behind Kalshi's REST paths, with scripted outcomes for creates."""

    def __init__(self, signer: Signer | None = None, outcomes: list[str] | None = None, page_size: int = 2) -> None:
        self.verifier = signer.verifier() if signer is not None else None
        self.outcomes = list(outcomes or [])
        self.page_size = page_size
        self.orders: dict[str, ev.OrderStatusReported] = {}  # by client_order_id
        self.creates: list[bytes] = []  # every create body received, in order
        self.requests: list[tuple[str, str, dict]] = []  # method, path, query
        self.refused: list[str] = []  # why a signature was refused
        self.fill_items: list[m.PortfolioFill] | None = None  # when set, the fills list is exactly these wire items
        self.fills = [ev.OrderFilled(trade_id=f"t-{i}", order_id="o-1", client_order_id="c-1", market=A, side="bid",
                                     price=4_200, count=100, fee=17_500, is_taker=True, venue_ts_ms=1_000 + i)
                      for i in range(5)]
        app = web.Application(middlewares=[self.authenticate])
        app.router.add_post(f"{BASE}/portfolio/events/orders", self.create)
        app.router.add_post(f"{BASE}/portfolio/events/orders/batched", self.batch)
        app.router.add_delete(f"{BASE}/portfolio/events/orders/{{order_id}}", self.cancel)
        app.router.add_get(f"{BASE}/portfolio/orders", self.list_orders)
        app.router.add_get(f"{BASE}/portfolio/orders/{{order_id}}", self.get_order)
        app.router.add_get(f"{BASE}/portfolio/fills", self.list_fills)
        app.router.add_get(f"{BASE}/portfolio/positions", self.list_positions)
        app.router.add_get(f"{BASE}/portfolio/balance", self.balance)
        app.router.add_get(f"{BASE}/markets", self.markets)
        app.router.add_get(f"{BASE}/markets/{{ticker}}", self.market)
        app.router.add_get(f"{BASE}/markets/{{ticker}}/orderbook", self.orderbook)
        self.server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> Exchange:
        await self.server.start_server()
        self.url = str(self.server.make_url(BASE))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    @web.middleware
    async def authenticate(self, request: web.Request, handler):
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.verifier is not None:
            why = self.verifier.check(request.headers, request.method, request.path, now_ms=time.time_ns() // 10**6)
            if why is not None:
                self.refused.append(why)
                return json_reply(rest.error_body("unauthorized", why), 401)
        return await handler(request)

    # --- orders ----------------------------------------------------------------------------------------------
    def place(self, body: m.CreateOrderV2Request) -> ev.OrderStatusReported:
        order = ev.OrderStatusReported(client_order_id=body.client_order_id or "", order_id=f"o-{len(self.orders) + 1}",
                                       market=body.ticker, status="resting", side=body.side,
                                       price=rest.order_request(body).price, fill_count=0,
                                       remaining_count=rest.order_request(body).count, venue_ts_ms=77)
        self.orders[order.client_order_id] = order
        return order

    async def create(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.creates.append(raw)
        body = msgspec.json.decode(raw, type=m.CreateOrderV2Request)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "429":
            return json_reply({"code": "too_many_requests", "message": "slow down"}, 429)
        if outcome == "503":
            return web.Response(status=503, text="Service Unavailable")
        if outcome == "cut":  # the connection breaks before the order is placed
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=201)
        if body.client_order_id in self.orders:
            return json_reply({"error": {"code": "order_already_exists", "message": "client_order_id is taken"}}, 409)
        order = self.place(body)
        if outcome == "drop":  # accepted, but the reply never reaches the client
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=201)
        if outcome == "garbled":
            return web.Response(status=201, body=b'{"order_id": 5}', content_type="application/json")
        return json_reply(rest.created_body(order.order_id, order.client_order_id, 0, order.remaining_count, 77), 201)

    async def batch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = msgspec.json.decode(raw, type=m.BatchCreateOrdersV2Request)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        items = []
        for o in body.orders:
            if o.client_order_id in self.orders:
                items.append({"client_order_id": o.client_order_id,
                              "error": {"code": "order_already_exists", "message": "client_order_id is taken"}})
            elif o.price == "0.0000":
                items.append({"client_order_id": o.client_order_id,
                              "error": {"code": "invalid_price", "message": "price must be in [0.01, 0.99]"}})
            else:
                order = self.place(o)
                items.append({"client_order_id": o.client_order_id, "order": {
                    "order_id": order.order_id, "client_order_id": o.client_order_id, "fill_count": "0.00",
                    "remaining_count": o.count}})
        if outcome == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=201)
        return json_reply({"orders": items}, 201)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        for coid, order in list(self.orders.items()):
            if order.order_id == order_id and order.status == "resting":
                self.orders[coid] = msgspec.structs.replace(order, status="canceled", remaining_count=0)
                if outcome == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=200)
                return json_reply({"order_id": order_id, "client_order_id": coid,
                                   "reduced_by": rest.format_count(order.remaining_count), "ts_ms": 9})
        return json_reply({"code": "not_found", "message": f"order {order_id} not found"}, 404)

    # --- reads ------------------------------------------------------------------------------------------------
    def page(self, request: web.Request, items: list):
        """Items from the cursor on, ``page_size`` at a time; the cursor is the next index (empty at the end)."""
        start = int(request.query.get("cursor") or 0)
        end = start + self.page_size
        return items[start:end], (str(end) if end < len(items) else "")

    async def list_orders(self, request: web.Request) -> web.Response:
        orders = [o for o in self.orders.values() if request.query.get("ticker") in (None, o.market)]
        items, cursor = self.page(request, orders)
        return json_reply(rest.orders_body(items, cursor))

    async def get_order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        for order in self.orders.values():
            if order.order_id == order_id:
                return json_reply(m.OrderResponse(order=rest.order_item(order)))
        return json_reply(rest.error_body("not_found", f"order {order_id} not found"), 404)

    async def list_fills(self, request: web.Request) -> web.Response:
        if self.fill_items is not None:
            return json_reply(m.FillsResponse(fills=self.fill_items, cursor=""))
        since_ms = int(request.query.get("min_ts", 0)) * 1000
        items, cursor = self.page(request, [f for f in self.fills if f.venue_ts_ms >= since_ms])
        return json_reply(rest.fills_body(items, cursor))

    async def list_positions(self, request: web.Request) -> web.Response:
        return json_reply(rest.positions_body([ev.PositionReported(A, 300), ev.PositionReported(B, -100)]))

    async def balance(self, request: web.Request) -> web.StreamResponse:
        if self.outcomes and self.outcomes[0] == "503":
            self.outcomes.pop(0)
            return web.Response(status=503, text="Service Unavailable")
        return json_reply(rest.balance_body(12_345_678))

    async def markets(self, request: web.Request) -> web.Response:
        items, cursor = self.page(request, [{"ticker": t, "status": "open"} for t in ("KXA-1", "KXB-1", "KXC-1")])
        return json_reply({"markets": items, "cursor": cursor})

    async def market(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        if ticker != A:
            return json_reply(rest.error_body("not_found", f"market {ticker} not found", "check the ticker"), 404)
        return json_reply({"market": {"ticker": A, "status": "open"}})

    async def orderbook(self, request: web.Request) -> web.Response:
        if request.match_info["ticker"] == "KXBAD-1":
            return web.Response(body=b"<html>oops</html>", content_type="text/html")
        return json_reply({"orderbook_fp": {"yes_dollars": [["0.4000", "5.00"], ["0.4100", "2.00"]],
                                            "no_dollars": [["0.5500", "3.00"]]}})


def client(exchange: Exchange, signer: Signer | None = None, **options) -> KalshiRest:
    options = {"backoff_s": 0.001, "max_backoff_s": 0.01, **options}
    return KalshiRest(exchange.url, signer=signer, **options)


@pytest.fixture
def captured_logs():
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="debug", format="json"), stream=buffer)
    yield buffer
    structlog.configure(**saved)


# --- hosts and signing ------------------------------------------------------------------------------------------
def test_the_hosts_are_kalshis_production_and_demo_urls():
    assert HOSTS["kalshi"] == ("https://external-api.kalshi.com/trade-api/v2",
                               "wss://external-api-ws.kalshi.com/trade-api/ws/v2")
    assert HOSTS["kalshi-demo"] == ("https://external-api.demo.kalshi.co/trade-api/v2",
                                    "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2")


async def test_every_request_is_signed_over_its_path_without_the_query(signer):
    """The exchange verifies each one with auth.Verifier; a query string (min_ts, cursor) is not signed."""
    async with Exchange(signer) as exchange, client(exchange, signer) as kalshi:
        await kalshi.create_order(intent())
        await kalshi.fills(min_ts_s=0)
        await kalshi.balance()
    # create, three pages of fills, the orders (a REST fill names no client_order_id), balance
    assert exchange.refused == [] and len(exchange.requests) == 6
    assert exchange.requests[2][2] == {"min_ts": "0", "limit": "200", "cursor": "2"}


async def test_an_unsigned_client_is_refused_with_an_error_that_says_what_to_check(signer):
    async with Exchange(signer) as exchange, client(exchange) as kalshi:
        with pytest.raises(KalshiApiError) as info:
            await kalshi.balance()
    assert str(info.value) == ("GET /portfolio/balance: HTTP 401 unauthorized: missing header KALSHI-ACCESS-KEY, "
                               "KALSHI-ACCESS-TIMESTAMP, KALSHI-ACCESS-SIGNATURE — check the API key id and private "
                               "key (KALSHI_API_KEY_ID, KALSHI_PRIVATE_KEY_PATH) and that they are for this host: demo "
                               "and production keys are separate")
    assert info.value.attempts == 1  # a 4xx is not retried


# --- orders ---------------------------------------------------------------------------------------------------
async def test_an_order_is_created_and_acked_in_exact_units(signer):
    async with Exchange(signer) as exchange, client(exchange, signer) as kalshi:
        ack = await kalshi.create_order(intent())
    assert ack == OrderAck(order_id="o-1", client_order_id="c-1", fill_count=0, remaining_count=500, venue_ts_ms=77)
    assert msgspec.json.decode(exchange.creates[0]) == {
        "ticker": A, "side": "bid", "count": "5.00", "price": "0.4200", "time_in_force": "good_till_canceled",
        "client_order_id": "c-1", "self_trade_prevention_type": "taker_at_cross"}


async def test_429_is_retried_with_backoff_and_the_same_client_order_id(signer, captured_logs, pem):
    """Kalshi's 429 has no Retry-After: the client backs off on its own."""
    async with Exchange(signer, outcomes=["429", "429"]) as exchange, client(exchange, signer) as kalshi:
        ack = await kalshi.create_order(intent())
    assert ack.order_id == "o-1" and len(exchange.orders) == 1
    assert len(exchange.creates) == 3 and len(set(exchange.creates)) == 1  # the very same body, so the same id
    logs = captured_logs.getvalue()
    assert logs.count("request retried") == 2 and "HTTP 429: slow down" in logs
    assert not [s for s in secrets_of(pem) if s in logs] and "KALSHI-ACCESS-SIGNATURE" not in logs


async def test_5xx_is_retried(signer):
    async with Exchange(signer, outcomes=["503", "503"]) as exchange, client(exchange, signer) as kalshi:
        assert (await kalshi.create_order(intent())).order_id == "o-1"
    assert len(exchange.creates) == 3


async def test_an_order_accepted_before_the_connection_dropped_is_recovered_not_placed_twice(signer, captured_logs):
    """The retry gets 409 (the id is taken): the first attempt landed, so its order is read back."""
    async with Exchange(signer, outcomes=["drop"]) as exchange, client(exchange, signer) as kalshi:
        ack = await kalshi.create_order(intent())
    assert ack == OrderAck(order_id="o-1", client_order_id="c-1", fill_count=0, remaining_count=500, venue_ts_ms=77)
    assert len(exchange.orders) == 1 and len(exchange.creates) == 2
    assert exchange.requests[-1][:2] == ("GET", f"{BASE}/portfolio/orders")
    assert exchange.requests[-1][2]["ticker"] == A
    assert "order recovered after a retry" in captured_logs.getvalue()


async def test_a_409_after_nothing_but_429s_is_a_real_duplicate():
    """No earlier attempt could have landed, so the order with that id was placed before: an error."""
    async with Exchange(outcomes=["429"]) as exchange, client(exchange) as kalshi:
        await kalshi.create_order(intent())
        exchange.outcomes = ["429"]
        with pytest.raises(KalshiApiError) as info:
            await kalshi.create_order(intent())
    assert info.value.status == 409 and info.value.error.code == "order_already_exists"
    assert "a client_order_id can be used once: give the order a new one" in str(info.value)
    assert len(exchange.orders) == 1


async def test_a_create_reply_that_cannot_be_read_is_recovered_from_the_orders_list():
    async with Exchange(outcomes=["garbled"]) as exchange, client(exchange) as kalshi:
        ack = await kalshi.create_order(intent())
    assert ack.order_id == "o-1" and len(exchange.orders) == 1


async def test_a_batch_gives_one_result_per_intent_and_recovers_what_landed_before_a_drop():
    async with Exchange(outcomes=["drop"]) as exchange, client(exchange) as kalshi:
        results = await kalshi.batch_create([intent("c-1"), intent("c-2", market=B), intent("c-3", price=0)])
    assert results == [
        OrderAck(order_id="o-1", client_order_id="c-1", fill_count=0, remaining_count=500, venue_ts_ms=77),
        OrderAck(order_id="o-2", client_order_id="c-2", fill_count=0, remaining_count=500, venue_ts_ms=77),
        ApiError(0, "invalid_price", "price must be in [0.01, 0.99]")]
    assert len(exchange.orders) == 2


async def test_cancel_returns_what_was_taken_off():
    async with Exchange() as exchange, client(exchange) as kalshi:
        ack = await kalshi.create_order(intent("c-1"))
        assert await kalshi.cancel_order(ack.order_id) == CancelAck(order_id="o-1", client_order_id="c-1",
                                                                     reduced_by=500, venue_ts_ms=9)


async def test_a_cancel_whose_reply_was_lost_is_still_a_cancel():
    """The venue canceled and the connection dropped; the retry (ours, or aiohttp's own: DELETE is idempotent)
    finds the order gone, and reading the order shows it canceled. How much was taken off was in the lost reply."""
    async with Exchange() as exchange, client(exchange) as kalshi:
        ack = await kalshi.create_order(intent("c-1"))
        exchange.outcomes = ["drop"]
        assert await kalshi.cancel_order(ack.order_id) == CancelAck(order_id="o-1", client_order_id="c-1")


async def test_cancelling_an_executed_or_unknown_order_says_why_it_cannot():
    async with Exchange() as exchange, client(exchange) as kalshi:
        ack = await kalshi.create_order(intent("c-1"))
        exchange.orders["c-1"] = msgspec.structs.replace(exchange.orders["c-1"], status="executed")
        with pytest.raises(KalshiApiError, match=r"^DELETE /portfolio/events/orders/o-1: HTTP 404 not_found: order o-1 "
                                                 r"not found — the order is executed: there is nothing to cancel$"):
            await kalshi.cancel_order(ack.order_id)
        with pytest.raises(KalshiApiError, match=r"^DELETE /portfolio/events/orders/o-9: HTTP 404 not_found: order "
                                                 r"o-9 not found — not found: check the ticker or order id$"):
            await kalshi.cancel_order("o-9")


# --- errors ------------------------------------------------------------------------------------------------------
async def test_both_error_shapes_are_read():
    """The spec's flat {code, message, details} and the nested {"error": {...}} seen in the wild."""
    async with Exchange() as exchange, client(exchange) as kalshi:
        with pytest.raises(KalshiApiError) as flat:
            await kalshi.market("KXNOPE")
        await kalshi.create_order(intent())
        with pytest.raises(KalshiApiError) as nested:
            await kalshi.create_order(intent())
    assert flat.value.error == ApiError(404, "not_found", "market KXNOPE not found", "check the ticker")
    assert str(flat.value).startswith("GET /markets/KXNOPE: HTTP 404 not_found: market KXNOPE not found (check the "
                                      "ticker)")
    assert nested.value.error == ApiError(409, "order_already_exists", "client_order_id is taken")


async def test_5xx_on_every_attempt_gives_up_saying_so():
    async with Exchange(outcomes=["503"] * 3) as exchange, client(exchange, max_attempts=3) as kalshi:
        with pytest.raises(KalshiApiError) as info:
            await kalshi.create_order(intent())
        exchange.outcomes = ["503"] * 3
        with pytest.raises(KalshiApiError, match=r"^GET /portfolio/balance: HTTP 503 after 3 attempts: Service "
                                                 r"Unavailable — the venue kept failing: try again later$"):
            await kalshi.balance()
    assert str(info.value) == (
        "POST /portfolio/events/orders: HTTP 503 after 3 attempts: Service Unavailable — an attempt may have reached "
        "the venue: look for client_order_id 'c-1' in /portfolio/orders (ticker KXA-1) before placing the order "
        "again, and reuse that id if you do")


def names_a_client_error(reason: str) -> bool:
    """The reason carries aiohttp's failure (``ClientConnectorError: …``), whatever aiohttp calls it."""
    kind = getattr(aiohttp, reason.partition(":")[0], None)
    return isinstance(kind, type) and issubclass(kind, aiohttp.ClientError)


async def test_an_order_that_could_not_even_connect_is_known_not_to_exist():
    """No connection was made, so nothing was sent: the plain hint, not "it may have reached the venue"."""
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with KalshiRest(f"http://127.0.0.1:{port}{BASE}", max_attempts=2, backoff_s=0.001) as kalshi:
        with pytest.raises(KalshiUnavailable, match=r"no reply after 2 attempts \(last: .+\) — "
                                                    r"check the network and the base URL, or raise max_attempts$") as info:
            await kalshi.create_order(intent())
    assert names_a_client_error(info.value.reason)


async def test_an_order_whose_connection_broke_after_sending_says_it_may_exist():
    """From the client's side a cut before and after the venue acted look alike."""
    async with Exchange(outcomes=["cut", "cut"]) as exchange, client(exchange, max_attempts=2) as kalshi:
        with pytest.raises(KalshiUnavailable) as info:
            await kalshi.create_order(intent())
    assert info.value.uncertain and "an attempt may have reached the venue: look for client_order_id 'c-1'" in str(info.value)


async def test_no_reply_at_all_is_retried_then_reported_without_key_material(signer, pem, captured_logs):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kalshi = KalshiRest(f"http://127.0.0.1:{port}{BASE}", signer=signer, max_attempts=3, backoff_s=0.001)
    async with kalshi:
        with pytest.raises(KalshiUnavailable) as info:
            await kalshi.balance()
    text = str(info.value) + repr(kalshi) + captured_logs.getvalue()
    assert str(info.value).startswith(f"GET /portfolio/balance: no reply after 3 attempts (last: {info.value.reason}) — ")
    assert names_a_client_error(info.value.reason)
    assert captured_logs.getvalue().count("request retried") == 2
    assert not [s for s in secrets_of(pem) if s in text]


# --- reads -----------------------------------------------------------------------------------------------------
async def test_list_reads_follow_the_cursor_to_the_end():
    async with Exchange() as exchange, client(exchange) as kalshi:
        fills = await kalshi.fills()
        since = await kalshi.fills(min_ts_s=1)  # fills at 1,000 ms and later
        markets = await kalshi.markets(status="open")
        for i in range(3):
            await kalshi.create_order(intent(f"c-{i}"))
        orders = await kalshi.orders(ticker=A)
    assert [f.trade_id for f in fills] == [f"t-{i}" for i in range(5)] == [f.trade_id for f in since]
    assert [mk.ticker for mk in markets] == ["KXA-1", "KXB-1", "KXC-1"]
    assert [o.client_order_id for o in orders] == ["c-0", "c-1", "c-2"]
    assert all(type(o) is ev.OrderStatusReported for o in orders)


async def test_positions_balance_market_order_and_orderbook_in_exact_units():
    async with Exchange() as exchange, client(exchange) as kalshi:
        assert await kalshi.positions() == [ev.PositionReported(A, 300, 0, 0, 0, venue_ts_ms=0),
                                            ev.PositionReported(B, -100, 0, 0, 0, venue_ts_ms=0)]
        assert await kalshi.balance() == 12_345_678
        assert (await kalshi.market(A)).ticker == A
        ack = await kalshi.create_order(intent())
        assert await kalshi.order(ack.order_id) == ev.OrderStatusReported(
            client_order_id="c-1", order_id="o-1", market=A, status="resting", side="bid", price=4_200, fill_count=0,
            remaining_count=500, initial_count=500, venue_ts_ms=77)
        assert await kalshi.orderbook(A) == ev.BookSnapshot(market=A, yes_bids=((4_000, 500), (4_100, 200)),
                                                             no_bids=((5_500, 300),))


async def test_a_malformed_reply_is_an_error_naming_what_could_not_be_read_never_a_msgspec_traceback():
    async with Exchange() as exchange, client(exchange) as kalshi:
        with pytest.raises(KalshiMalformedReply) as info:
            await kalshi.orderbook("KXBAD-1")
    error = f"invalid JSON: {said_by(lambda: msgspec.json.decode(b'<html>oops</html>'))}"
    assert str(info.value) == f"GET /markets/KXBAD-1/orderbook: the reply could not be read: {error}"
    assert info.value.event == ev.MalformedInput(source="kalshi.rest", raw=b"<html>oops</html>", error=error)
    assert info.value.__cause__ is None and info.value.__context__ is None


async def test_a_bad_item_of_a_list_is_returned_as_malformed_input_and_the_rest_still_read():
    async with Exchange() as exchange, client(exchange) as kalshi:
        good = rest.fills_body(exchange.fills[:1]).fills[0]
        exchange.fill_items = [good, msgspec.structs.replace(good, trade_id="t-bad", yes_price_dollars="0.12345")]
        events = await kalshi.fills()
    assert [type(e).__name__ for e in events] == ["OrderFilled", "MalformedInput"]
    assert events[1].error == "fills[1].yes_price_dollars: '0.12345' is off the 0.0001 grid"


@pytest.mark.parametrize("legacy", [True, False])
async def test_legacy_integer_cent_replies_are_read_only_when_asked(legacy):
    async with Exchange() as exchange, client(exchange, legacy=legacy) as kalshi:
        good = rest.fills_body(exchange.fills[:1]).fills[0]
        exchange.fill_items = [msgspec.structs.replace(good, yes_price_dollars=None, count_fp=None, yes_price=42,
                                                       count=3)]
        (event,) = await kalshi.fills()
    if legacy:
        assert isinstance(event, ev.OrderFilled) and (event.price, event.count) == (4_200, 300)
    else:
        assert isinstance(event, ev.MalformedInput) and "legacy" in event.error
