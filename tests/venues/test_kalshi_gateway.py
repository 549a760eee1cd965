"""The order gateway against the real local exchange (in-process, loopback sockets), end to end:
intents -> reservations (a folded :class:`CashPool`) -> :class:`Router` -> :class:`OrderGateway` -> exchange ->
acceptance events back in the log. Fills come from a :class:`KalshiFeed`, never from the create reply.

The log here is a sequencer in miniature (:class:`Session`): one list, events numbered as they are appended,
every machine folded in seq order, derived events logged after their cause.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.router import Router
from runtime import events as ev
from runtime.units import MONEY_SCALE
from runtime.venues.kalshi.auth import Signer
from runtime.venues.kalshi.gateway import OrderGateway, reject_reason
from runtime.venues.kalshi.http import KalshiApiError, KalshiRest
from runtime.venues.kalshi.rest import ApiError
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import FAULTS_HEADER, ExchangeServer

pytestmark = pytest.mark.timeout(30)

KEY_ID = "gateway-key"
TRUST = "trust"  # the account of unsigned requests in trust mode
CASH = 10_000 * MONEY_SCALE


@pytest.fixture(scope="module")
def signer(private_key) -> Signer:
    return Signer(KEY_ID, private_key)


class Session:
    """One log with the cash pool and the router folded over it; the gateway's ``submit`` appends to it."""

    def __init__(self, cash: int = CASH) -> None:
        self.log: list[ev.Record] = []
        self.pool = CashPool(KalshiFees())
        self.router = Router()
        self.gateway: OrderGateway | None = None
        self.append(0, ev.SessionStarted(session_id="s", mode="demo", venue="kalshi-demo", seed=1, config_hash="h",
                                         code_version="test", starting_cash=cash))

    def append(self, ts_ns: int, event: ev.Event) -> None:
        queue = deque([event])
        while queue:
            e = queue.popleft()
            seq = len(self.log) + 1
            self.log.append(ev.Record(seq, ts_ns, e))
            queue.extend(self.pool.handle(seq, ts_ns, e))
            queue.extend(self.router.handle(seq, ts_ns, e))
        if self.gateway is not None:
            self.gateway.wake()

    async def submit(self, batch: list[tuple[int, ev.Event]]) -> None:
        for ts_ns, event in batch:
            self.append(ts_ns, event)

    def decide(self, coid: str, market: str, side: str, price: int, count: int, tif: str = "gtc") -> None:
        self.append(time.time_ns(), ev.OrderIntent(cause_seq=1, client_order_id=coid, market=market, side=side,  # type: ignore[arg-type]
                                                   price=price, count=count, tif=tif))  # type: ignore[arg-type]

    def of(self, kind: type, coid: str | None = None) -> list:
        return [r.event for r in self.log
                if type(r.event) is kind and (coid is None or getattr(r.event, "client_order_id", None) == coid)]


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def exchange(**kw) -> Exchange:
    return Exchange(2, 11, start_ns=time.time_ns(), session_s=36_000.0, **kw)


def best_ask(server: ExchangeServer, ticker: str) -> int:
    ex = server.exchange
    ask = ex.flows[ex.tickers.index(ticker)].engine.best_ask()
    assert ask is not None
    return ask


def faulty_session(fault: Callable[[int], str | None]) -> aiohttp.ClientSession:
    """An HTTP session whose n-th order create (from 1) gets ``fault(n)``: ``"drop"`` (the venue acts, the
    connection breaks before its reply arrives), a ``X-Tape-Faults`` spec (``slow_ms=...``), or None."""
    creates = 0

    async def middleware(request: aiohttp.ClientRequest,
                         handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]) -> aiohttp.ClientResponse:
        nonlocal creates
        if request.method != "POST":
            return await handler(request)
        creates += 1
        what = fault(creates)
        if what == "drop":
            response = await handler(request)
            await response.read()
            response.close()
            raise aiohttp.ServerDisconnectedError()
        if what is not None:
            request.headers[FAULTS_HEADER] = what
        return await handler(request)

    return aiohttp.ClientSession(middlewares=(middleware,))


# --- the happy paths --------------------------------------------------------------------------------------
async def test_an_ioc_that_crosses_is_accepted_and_its_fill_arrives_on_the_feed_not_from_the_reply():
    s = Session()
    async with ExchangeServer(exchange()) as server, KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            KalshiFeed(server.ws_url, server.exchange.tickers, channels=("fill",), rest=rest, backoff_s=0.01) as feed, \
            OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        ask = best_ask(server, ticker)

        async def consume() -> None:
            async for batch in feed:
                await s.submit(batch)

        consumer = asyncio.create_task(consume())
        s.decide("ioc-1", ticker, "bid", ask, 100, tif="ioc")
        await until(lambda: s.of(ev.OrderFilled, "ioc-1"), "the fill arrived on the feed")
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    (venue_fill,) = server.exchange.fills(TRUST)
    (accepted,) = s.of(ev.OrderAccepted, "ioc-1")
    fills = s.of(ev.OrderFilled, "ioc-1")
    assert [f.trade_id for f in fills] == [venue_fill.trade_id]  # once, though the reply also said it filled
    assert (fills[0].price, fills[0].count, fills[0].order_id) == (ask, 100, accepted.order_id) == (
        venue_fill.price, venue_fill.count, venue_fill.order_id)
    assert accepted.cause_seq is None and accepted.market == ticker  # an input, stamped at the edge
    assert [o.client_order_id for o in server.exchange.orders(TRUST)] == ["ioc-1"]
    assert not s.router.is_open("ioc-1") and s.pool.reserved == 0


async def test_a_gtc_rests_then_is_canceled_by_a_cancel_request_signed(signer):
    s = Session()
    async with ExchangeServer(exchange(), verifier=signer.verifier()) as server, \
            KalshiRest(server.rest_url, signer=signer, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[1]
        s.decide("gtc-1", ticker, "bid", 100, 250)
        await until(lambda: s.of(ev.OrderAccepted, "gtc-1"), "the order was accepted")
        (accepted,) = s.of(ev.OrderAccepted, "gtc-1")
        assert server.exchange.order(KEY_ID, accepted.order_id).status == "resting"
        assert s.pool.reserved > 0 and s.router.pending_sends() == []
        s.append(time.time_ns(), ev.CancelRequested(cause_seq=len(s.log), client_order_id="gtc-1"))
        await until(lambda: s.of(ev.OrderCanceled, "gtc-1"), "the order was canceled")

    (canceled,) = s.of(ev.OrderCanceled, "gtc-1")
    assert (canceled.order_id, canceled.canceled_count, canceled.reason) == (accepted.order_id, 250, "requested")
    assert server.exchange.order(KEY_ID, accepted.order_id).status == "canceled"
    assert s.pool.reserved == 0 and not s.router.is_open("gtc-1") and s.router.pending_cancels() == []
    assert gateway.stats["creates"] == 1 and gateway.stats["cancels"] == 1


# --- refusals ---------------------------------------------------------------------------------------------
async def test_a_price_off_the_grid_and_too_little_venue_balance_are_rejections_saying_why():
    s = Session()  # our ledger says $10,000; the venue's account holds $1
    async with ExchangeServer(exchange(starting_balance=MONEY_SCALE)) as server, \
            KalshiRest(server.rest_url, backoff_s=0.01) as rest, OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        s.decide("off-grid", ticker, "bid", 150, 100)
        s.decide("too-big", ticker, "bid", 5_000, 1_000)
        await until(lambda: len(s.of(ev.OrderRejected)) == 2, "both were rejected")

    venue = CashPool(KalshiFees())  # the venue's ledger is the same machine: its words, exactly
    venue.handle(1, 0, ev.SessionStarted(session_id="v", mode="demo", venue="sim", seed=0, config_hash="",
                                         code_version="", starting_cash=MONEY_SCALE))
    (short,) = venue.handle(2, 0, ev.OrderIntent(cause_seq=1, client_order_id="x", market=ticker, side="bid",
                                                  price=5_000, count=1_000))
    (off,), (big,) = s.of(ev.OrderRejected, "off-grid"), s.of(ev.OrderRejected, "too-big")
    assert (off.reason, off.detail) == ("invalid_price", f"price 0.0150 is off {ticker}'s grid (0.0100 to 0.9900 in "
                                                         "steps of 0.0100)")
    assert (big.reason, big.detail) == ("insufficient_cash", f"the order {short.detail}")
    assert off.cause_seq is None and big.cause_seq is None  # inputs
    assert server.exchange.orders(TRUST) == [] and s.pool.reserved == 0
    assert s.router.pending_sends() == [] and len(s.of(ev.CashReleased)) == 2


# --- faults: never an order twice -------------------------------------------------------------------------
async def test_slow_replies_and_dropped_connections_are_retried_without_ever_doubling_an_order(signer):
    """1st create: its reply is slower than the client waits (the venue acted), the retry is refused as a
    duplicate and the order is found. 2nd: the connection drops after the venue acted, likewise. 3rd and 4th:
    every attempt times out — uncertain, so a ``VenueError``, then the gateway finds the order by its id."""
    faults = {1: "slow_ms=400", 3: "slow_ms=400", 4: "slow_ms=400", 5: "drop", 6: "drop"}
    s = Session()
    async with ExchangeServer(exchange(), verifier=signer.verifier()) as server, \
            faulty_session(faults.get) as http, \
            KalshiRest(server.rest_url, signer=signer, session=http, timeout_s=0.2, max_attempts=2,
                       backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit, retry_s=0.05) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        s.decide("slow", ticker, "bid", 100, 100)  # creates 1 (slow), 2 (409: found)
        await until(lambda: s.of(ev.OrderAccepted, "slow"), "the slow order was accepted")
        s.decide("lost", ticker, "bid", 100, 100)  # creates 3, 4: both slow -> uncertain -> found
        await until(lambda: s.of(ev.OrderAccepted, "lost"), "the lost order was found")
        s.decide("dropped", ticker, "bid", 100, 100)  # creates 5, 6: both dropped -> uncertain -> found
        await until(lambda: s.of(ev.OrderAccepted, "dropped"), "the dropped order was found")

    orders = server.exchange.orders(KEY_ID)
    assert sorted(o.client_order_id for o in orders) == ["dropped", "lost", "slow"]  # each exactly once
    for coid in ("slow", "lost", "dropped"):
        (accepted,) = s.of(ev.OrderAccepted, coid)
        assert accepted.order_id == next(o.order_id for o in orders if o.client_order_id == coid)
    errors = s.of(ev.VenueError)
    assert [e.where for e in errors] == ["kalshi.gateway create lost", "kalshi.gateway create dropped"]
    assert "may have reached the venue" in errors[0].message and "'lost'" in errors[0].message
    assert [r.status for r in s.of(ev.OrderStatusReported)] == ["resting", "resting"]  # what the venue showed
    assert s.of(ev.OrderRejected) == [] and gateway.stats["recovered"] == 2


async def test_a_restarted_gateway_resends_with_the_same_client_order_id_and_finds_the_order():
    """The first gateway sends and stops before the reply is logged; the second, folding the same log, sends
    the same client_order_id again: refused as a duplicate, the order is found and accepted — never two."""
    s = Session()
    lost: list = []

    async def crash(batch: list[tuple[int, ev.Event]]) -> None:
        lost.extend(batch)  # the reply reached a gateway that died before the sequencer logged it

    async with ExchangeServer(exchange()) as server, KalshiRest(server.rest_url, backoff_s=0.01) as rest:
        server.pause()
        ticker = server.exchange.tickers[0]
        async with OrderGateway(rest, s.router, crash):
            s.decide("again", ticker, "bid", 100, 100)
            await until(lambda: lost, "the first gateway got its reply")
        assert s.of(ev.OrderAccepted) == [] and [i.client_order_id for i in s.router.pending_sends()] == ["again"]
        restarted = Router()
        for record in s.log:
            restarted.handle(record.seq, record.ts_ns, record.event)
        s.router = restarted
        async with OrderGateway(rest, restarted, s.submit) as gateway:
            s.gateway = gateway
            await until(lambda: s.of(ev.OrderAccepted, "again"), "the restarted gateway accepted it")

    (first,) = [e for _, e in lost if type(e) is ev.OrderAccepted]
    (accepted,) = s.of(ev.OrderAccepted, "again")
    assert accepted.order_id == first.order_id
    assert [o.client_order_id for o in server.exchange.orders(TRUST)] == ["again"]
    assert s.router.pending_sends() == [] and gateway.stats["recovered"] == 1


async def test_the_gateway_never_blocks_its_caller_and_bounds_its_calls():
    """``wake`` returns at once, even with the venue slow; no more than ``max_in_flight`` calls run."""
    s = Session()
    async with ExchangeServer(exchange()) as server, \
            faulty_session(lambda n: "slow_ms=150") as http, \
            KalshiRest(server.rest_url, session=http, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit, max_in_flight=2) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        started = time.monotonic()
        for n in range(5):
            s.decide(f"b-{n}", ticker, "bid", 100, 100)
        assert time.monotonic() - started < 0.05
        peak = 0

        def settled() -> bool:
            nonlocal peak
            peak = max(peak, gateway.in_flight)
            return len(s.of(ev.OrderAccepted)) == 5

        await until(settled, "every order was accepted")
    assert peak == 2
    assert sorted(o.client_order_id for o in server.exchange.orders(TRUST)) == [f"b-{n}" for n in range(5)]


async def test_a_cancel_the_venue_cannot_do_reports_the_order_as_the_venue_has_it():
    """The order executed at once (its fills not logged yet: no feed here); the cancel is refused with 404,
    the gateway reads the order and logs its status, and the router forgets it."""
    s = Session()
    async with ExchangeServer(exchange()) as server, KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        s.decide("gone", ticker, "bid", best_ask(server, ticker), 100, tif="ioc")
        await until(lambda: s.of(ev.OrderAccepted, "gone"), "the order was accepted")
        assert s.router.is_open("gone")  # its fill has not been logged
        s.append(time.time_ns(), ev.CancelRequested(cause_seq=len(s.log), client_order_id="gone"))
        await until(lambda: s.of(ev.OrderStatusReported, "gone"), "the order's status was logged")

    (report,) = s.of(ev.OrderStatusReported, "gone")
    assert (report.status, report.fill_count, report.remaining_count) == ("executed", 100, 0)
    assert s.of(ev.OrderCanceled) == [] and not s.router.is_open("gone") and s.router.pending_cancels() == []


@pytest.mark.parametrize(("status", "code", "reason"), [
    (400, "invalid_price", "invalid_price"),
    (400, "insufficient_balance", "insufficient_cash"),
    (400, "some_new_code", "venue_rejected"),
    (404, None, "unknown_market"),
    (429, None, "rate_limited"),
    (403, "forbidden", "venue_rejected"),
])
def test_a_refusal_is_read_by_its_code_then_its_status(status, code, reason):
    error = KalshiApiError("POST", "/portfolio/events/orders", ApiError(status, code, "no"))
    assert reject_reason(error) == reason


# --- amends -----------------------------------------------------------------------------------------------
def amend_request(s: Session, coid: str, price: int, count: int) -> None:
    s.append(time.time_ns(), ev.AmendRequested(cause_seq=len(s.log), client_order_id=coid, price=price, count=count))


async def test_an_amend_goes_out_on_the_pools_verdict_and_comes_back_as_order_amended():
    """A resting bid moved from 0.01 to 0.02 and up to 3 contracts, then down to 1 (a decrease, the same price):
    each is applied at the venue and logged as ``OrderAmended``; the pool holds the new terms."""
    s = Session()
    async with ExchangeServer(exchange()) as server, KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[1]
        s.decide("m-1", ticker, "bid", 100, 250)
        await until(lambda: s.of(ev.OrderAccepted, "m-1"), "the order was accepted")
        (accepted,) = s.of(ev.OrderAccepted, "m-1")
        amend_request(s, "m-1", 200, 300)
        await until(lambda: s.of(ev.OrderAmended, "m-1"), "the amend was applied")
        venue = server.exchange.order(TRUST, accepted.order_id)
        assert (venue.price, venue.initial_count, venue.remaining_count) == (200, 300, 300)
        held = s.pool.hold("m-1")
        amend_request(s, "m-1", 200, 100)
        await until(lambda: len(s.of(ev.OrderAmended, "m-1")) == 2, "the decrease was applied")

    first, second = s.of(ev.OrderAmended, "m-1")
    assert (first.order_id, first.price, first.count, first.remaining_count) == (accepted.order_id, 200, 300, 300)
    assert (second.price, second.count, second.remaining_count) == (200, 100, 100)
    assert first.cause_seq is None and first.venue_ts_ms is not None  # an input, stamped at the edge
    assert server.exchange.order(TRUST, accepted.order_id).remaining_count == 100
    assert s.pool.hold("m-1") < held and s.of(ev.CashReleased, "m-1")
    assert s.router.pending_amends() == [] and s.router.is_open("m-1")
    assert (gateway.stats["amends"], gateway.stats["amended"]) == (2, 2)


async def test_an_amend_whose_replies_are_lost_is_sent_again_and_never_applied_twice():
    """Both attempts of the first amend reach the venue and lose their reply (uncertain: a ``VenueError``);
    the gateway sends the same absolute amend again: the venue finds the order already so (the total count
    is a total), and one ``OrderAmended`` is logged."""
    faults = {2: "drop", 3: "drop"}  # POST 1 is the create
    s = Session()
    async with ExchangeServer(exchange()) as server, faulty_session(faults.get) as http, \
            KalshiRest(server.rest_url, session=http, max_attempts=2, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit, retry_s=0.05) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[1]
        s.decide("m-2", ticker, "bid", 100, 250)
        await until(lambda: s.of(ev.OrderAccepted, "m-2"), "the order was accepted")
        amend_request(s, "m-2", 200, 400)
        await until(lambda: s.of(ev.OrderAmended, "m-2"), "the amend was applied")

    (accepted,) = s.of(ev.OrderAccepted, "m-2")
    venue = server.exchange.order(TRUST, accepted.order_id)
    assert (venue.price, venue.initial_count, venue.remaining_count) == (200, 400, 400)
    assert [e.where for e in s.of(ev.VenueError)] == ["kalshi.gateway amend m-2"]
    assert len(s.of(ev.OrderAmended, "m-2")) == 1 and gateway.stats["amends"] == 2


async def test_an_amend_of_an_order_that_no_longer_rests_reports_it_and_is_refused():
    """The order executed at once (its fills not logged: no feed here); the amend gets 404, the gateway logs
    the order's status (the router forgets it) and ``AmendRejected(order_not_open)``."""
    s = Session()
    async with ExchangeServer(exchange()) as server, KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            OrderGateway(rest, s.router, s.submit) as gateway:
        s.gateway = gateway
        server.pause()
        ticker = server.exchange.tickers[0]
        s.decide("gone", ticker, "bid", best_ask(server, ticker), 100, tif="ioc")
        await until(lambda: s.of(ev.OrderAccepted, "gone"), "the order was accepted")
        amend_request(s, "gone", best_ask(server, ticker), 200)
        await until(lambda: s.of(ev.AmendRejected, "gone") and s.of(ev.AmendRejected, "gone")[-1].cause_seq is None,
                    "the venue's refusal was logged")

    (report,) = s.of(ev.OrderStatusReported, "gone")
    (refused,) = [e for e in s.of(ev.AmendRejected, "gone") if e.cause_seq is None]
    assert report.status == "executed" and refused.reason == "order_not_open" and "executed" in refused.detail
    assert not s.router.is_open("gone") and gateway.stats["amends_rejected"] == 1
