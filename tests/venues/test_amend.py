"""Amend, decrease and order groups on the local exchange, as a specification: the exchange's core (priority,
cash, the book and private events), then the same through its REST API with our client, :class:`KalshiRest`."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.events import BookDelta, OrderAccepted, OrderFilled, OrderIntent, OrderStatusReported
from runtime.units import MONEY_SCALE
from runtime.venues.kalshi import messages as m
from runtime.venues.kalshi import rest as r
from runtime.venues.kalshi.codec import encode
from runtime.venues.kalshi.http import KalshiApiError, KalshiRest
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim import EPOCH_NS
from runtime.venues.sim.exchange import GROUP_WINDOW_NS, PUBLIC, Exchange
from runtime.venues.sim.server import ExchangeServer

S = 1_000_000_000
OWNER = "acct"


def order(market: str, side: str, price: int, count: int, tif: str = "gtc", **kw) -> r.OrderRequest:
    return r.OrderRequest(market=market, side=side, price=price, count=count, tif=tif, **kw)  # type: ignore[arg-type]


def amend(market: str, side: str, price: int, count: int, **kw) -> r.AmendRequest:
    return r.AmendRequest(market=market, side=side, price=price, count=count, **kw)  # type: ignore[arg-type]


def opened(seed: int = 5) -> tuple[Exchange, str, int, int]:
    """An exchange past its open, and a market whose spread is at least four ticks: (ex, ticker, bid, ask)."""
    ex = Exchange(3, seed, session_s=900.0, start_ns=EPOCH_NS)
    ex.advance(EPOCH_NS + S)
    for ticker, flow in zip(ex.tickers, ex.flows, strict=True):
        bid, ask = flow.engine.best_bid(), flow.engine.best_ask()
        if bid is not None and ask is not None and ask - bid >= 4 * ex.config.tick:
            return ex, ticker, bid, ask
    raise AssertionError("no wide market")


def place(ex: Exchange, req: r.OrderRequest, owner: str = OWNER) -> OrderStatusReported:
    result = ex.create_order(owner, req, ex.now_ns)
    assert result.error is None and result.order is not None, result.error
    return result.order


def private(entries, owner: str = OWNER) -> list:
    return [e for _, audience, events in entries if audience == owner for e in events]


def deltas(entries) -> list[BookDelta]:
    return [e for _, audience, events in entries if audience == PUBLIC for e in events if type(e) is BookDelta]


# --- the exchange's core ------------------------------------------------------------------------------------
def test_a_decrease_keeps_the_place_and_releases_the_cash_it_no_longer_needs():
    ex, ticker, bid, _ = opened()
    first = place(ex, order(ticker, "bid", bid + 100, 1_000, client_order_id="a"))
    second = place(ex, order(ticker, "bid", bid + 100, 500), owner="other")
    reserved = ex.account(OWNER).reserved
    result = ex.amend_order(OWNER, first.order_id, amend(ticker, "bid", bid + 100, 400), ex.now_ns)
    assert result.error is None and result.canceled == 600
    assert (result.order.remaining_count, result.order.initial_count) == (400, 400)  # type: ignore[union-attr]
    assert ex.queue_ahead(first.order_id) == 0 and ex.queue_ahead(second.order_id) == 400
    assert deltas(result.events) == [BookDelta(ticker, "yes", bid + 100, -600, client_order_id="a",
                                               venue_ts_ms=ex.now_ns // 1_000_000)]
    assert 0 < ex.account(OWNER).reserved < reserved and ex.account(OWNER).available >= 0
    (report,) = private(result.events)
    assert (report.status, report.price, report.remaining_count) == ("resting", bid + 100, 400)


def test_a_new_price_loses_the_place_and_reserves_for_the_new_worst_case():
    ex, ticker, bid, _ = opened()
    other = place(ex, order(ticker, "bid", bid + 200, 500), owner="other")
    mine = place(ex, order(ticker, "bid", bid + 100, 1_000, client_order_id="m"))
    before = ex.account(OWNER).reserved
    result = ex.amend_order(OWNER, mine.order_id, amend(ticker, "bid", bid + 200, 1_000), ex.now_ns)
    assert result.error is None and result.order.price == bid + 200  # type: ignore[union-attr]
    assert ex.queue_ahead(mine.order_id) == 500 and ex.queue_ahead(other.order_id) == 0
    assert [(d.price, d.delta, d.client_order_id) for d in deltas(result.events)] == [
        (bid + 100, -1_000, "m"), (bid + 200, 1_000, "m")]
    assert ex.account(OWNER).reserved > before  # a higher bid may cost more


def test_an_amend_through_the_spread_trades_first_with_fees_and_fills_on_the_private_channel():
    ex, ticker, bid, ask = opened()
    mine = place(ex, order(ticker, "bid", bid + 100, 100))
    result = ex.amend_order(OWNER, mine.order_id, amend(ticker, "bid", ask, 100), ex.now_ns)
    assert result.error is None
    fills = [e for e in private(result.events) if type(e) is OrderFilled]
    assert fills and all(f.is_taker and f.price == ask and f.fee > 0 for f in fills)
    report = result.order
    assert report is not None and report.fill_count == sum(f.count for f in fills)
    assert report.fill_count + report.remaining_count == 100
    view = ex.account(OWNER)
    assert view.available >= 0 and view.fees_paid == sum(f.fee for f in fills)
    if report.status == "executed":
        assert view.reserved == 0


def test_a_larger_count_is_the_total_with_what_has_filled():
    """count is filled + resting: after 30 filled, amending to 130 leaves 100 resting."""
    ex, ticker, bid, _ = opened()
    mine = place(ex, order(ticker, "ask", bid + 200, 100))
    taker = place(ex, order(ticker, "bid", bid + 200, 30, tif="ioc"), owner="other")
    assert taker.fill_count == 30
    result = ex.amend_order(OWNER, mine.order_id, amend(ticker, "ask", bid + 200, 130), ex.now_ns)
    assert result.error is None
    assert (result.order.fill_count, result.order.remaining_count, result.order.initial_count) == (30, 100, 130)  # type: ignore[union-attr]


def test_refused_amends_change_nothing_and_say_why():
    ex, ticker, bid, _ = opened()
    mine = place(ex, order(ticker, "bid", bid + 100, 100, client_order_id="c"))
    place(ex, order(ticker, "bid", bid + 100, 100, client_order_id="taken"))
    cases = [
        (amend(ticker, "ask", bid + 100, 100), 400, "bad_request"),
        (amend(ex.tickers[0] if ex.tickers[0] != ticker else ex.tickers[1], "bid", bid + 100, 100), 400, "bad_request"),
        (amend(ticker, "bid", bid + 150, 100), 400, "invalid_price"),
        (amend(ticker, "bid", bid + 100, 0), 400, "invalid_count"),
        (amend(ticker, "bid", bid + 100, 100, client_order_id="nope"), 400, "bad_request"),
        (amend(ticker, "bid", bid + 100, 100, updated_client_order_id="taken"), 409, "duplicate_client_order_id"),
        (amend(ticker, "bid", bid + 100, 10**9), 400, "insufficient_cash"),
    ]
    for req, status, code in cases:
        result = ex.amend_order(OWNER, mine.order_id, req, ex.now_ns)
        assert result.error is not None and (result.error.status, result.error.code) == (status, code), req
    assert ex.order(OWNER, mine.order_id) == mine
    missing = ex.amend_order(OWNER, "no-such-order", amend(ticker, "bid", bid, 100), ex.now_ns)
    assert missing.error is not None and (missing.error.status, missing.error.code) == (404, "not_found")
    theirs = ex.amend_order("someone", mine.order_id, amend(ticker, "bid", bid, 100), ex.now_ns)
    assert theirs.error is not None and theirs.error.status == 404


def test_an_amend_can_rename_the_order_and_move_its_expiry():
    ex, ticker, bid, _ = opened()
    now_s = ex.now_ns // S
    mine = place(ex, order(ticker, "bid", bid + 100, 100, client_order_id="old", expiration_ts_ms=(now_s + 5) * 1000))
    result = ex.amend_order(OWNER, mine.order_id, amend(ticker, "bid", bid + 100, 100, client_order_id="old",
                                                        updated_client_order_id="new",
                                                        expiration_ts_ms=(now_s + 60) * 1000), ex.now_ns)
    assert result.error is None and result.order.client_order_id == "new"  # type: ignore[union-attr]
    ex.advance(ex.now_ns + 10 * S)  # past the old expiry: still resting
    assert ex.order(OWNER, mine.order_id).status == "resting"  # type: ignore[union-attr]
    ex.advance((now_s + 61) * S)
    assert ex.order(OWNER, mine.order_id).status == "canceled"  # type: ignore[union-attr]


def test_decrease_by_or_to_and_to_zero_cancels():
    ex, ticker, bid, _ = opened()
    mine = place(ex, order(ticker, "bid", bid + 100, 1_000))
    by = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_by=300)
    assert by.error is None and (by.canceled, by.order.remaining_count) == (300, 700)  # type: ignore[union-attr]
    again = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_to=700)
    assert again.error is None and again.canceled == 0  # reduce_to is safe to repeat
    up = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_to=800)
    assert up.error is not None and (up.error.status, up.error.code) == (400, "invalid_count")
    both = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_by=1, reduce_to=1)
    assert both.error is not None and both.error.code == "bad_request"
    gone = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_to=0)
    assert gone.error is None and gone.order.status == "canceled" and gone.canceled == 700  # type: ignore[union-attr]
    assert ex.account(OWNER).reserved == 0
    late = ex.decrease_order(OWNER, mine.order_id, ex.now_ns, reduce_to=0)
    assert late.error is not None and late.error.status == 404


# --- order groups ---------------------------------------------------------------------------------------------
def test_an_order_group_cancels_its_orders_when_its_limit_is_matched_and_refuses_new_ones_until_reset():
    ex, ticker, bid, ask = opened()
    group = ex.create_order_group(OWNER, 200)
    assert group.contracts_limit == 200  # type: ignore[union-attr]
    gid = group.order_group_id  # type: ignore[union-attr]
    resting = place(ex, order(ticker, "bid", bid + 100, 500, order_group_id=gid))
    taker = ex.create_order(OWNER, order(ticker, "bid", ask, 200, tif="ioc", order_group_id=gid), ex.now_ns)
    assert taker.error is None and taker.order.fill_count == 200  # type: ignore[union-attr]
    assert ex.order(OWNER, resting.order_id).status == "canceled"  # type: ignore[union-attr]
    assert ex.order_group(OWNER, gid).triggered  # type: ignore[union-attr]
    refused = ex.create_order(OWNER, order(ticker, "bid", bid, 100, order_group_id=gid), ex.now_ns)
    assert refused.error is not None and refused.error.code == "order_group_triggered"
    ex.reset_order_group(OWNER, gid)
    place(ex, order(ticker, "bid", bid, 100, order_group_id=gid))
    assert ex.order_group(OWNER, gid).orders[-1] and not ex.order_group(OWNER, gid).triggered  # type: ignore[union-attr]


def test_an_order_groups_window_is_fifteen_seconds():
    ex, ticker, _, ask = opened()
    gid = ex.create_order_group(OWNER, 150).order_group_id  # type: ignore[union-attr]
    place(ex, order(ticker, "bid", ask, 100, tif="ioc", order_group_id=gid))
    ex.advance(ex.now_ns + GROUP_WINDOW_NS)
    ask = ex.flows[ex.tickers.index(ticker)].engine.best_ask()
    place(ex, order(ticker, "bid", ask, 100, tif="ioc", order_group_id=gid))  # type: ignore[arg-type]
    assert not ex.order_group(OWNER, gid).triggered  # type: ignore[union-attr]


def test_triggering_or_deleting_a_group_cancels_its_resting_orders():
    ex, ticker, bid, _ = opened()
    gid = ex.create_order_group(OWNER, 10_000).order_group_id  # type: ignore[union-attr]
    a = place(ex, order(ticker, "bid", bid, 100, order_group_id=gid))
    result = ex.trigger_order_group(OWNER, gid, ex.now_ns, delete=True)
    assert result.error is None and result.canceled == 100
    assert ex.order(OWNER, a.order_id).status == "canceled"  # type: ignore[union-attr]
    assert ex.order_group(OWNER, gid).code == "not_found"  # type: ignore[union-attr]
    assert ex.create_order(OWNER, order(ticker, "bid", bid, 100, order_group_id=gid), ex.now_ns).error.status == 404  # type: ignore[union-attr]


# --- through REST, with our client ------------------------------------------------------------------------------
def test_the_amend_and_decrease_bodies_and_replies_read_back_in_exact_units():
    body = r.amend_order("KX", "bid", 4_200, 1_000, client_order_id="c", updated_client_order_id="d")
    assert encode(body) == (b'{"ticker":"KX","side":"bid","price":"0.4200","count":"10.00","client_order_id":"c",'
                            b'"updated_client_order_id":"d"}')
    assert r.decode_amend_request(encode(body)) == amend("KX", "bid", 4_200, 1_000, client_order_id="c",
                                                         updated_client_order_id="d")
    assert r.amend_ack(r.amended_body("o", "c", 300, 700, 5)) == r.AmendAck(order_id="o", client_order_id="c",
                                                                             remaining_count=700, fill_count=300,
                                                                             venue_ts_ms=5)
    with pytest.raises(ValueError, match="exactly one"):
        r.decrease_order(reduce_by=1, reduce_to=2)


@pytest.mark.parametrize(("body", "field"), [({"ts_ms": 1}, "order_id"), ({"order_id": "o"}, "ts_ms")])
def test_an_amend_reply_without_a_field_the_spec_requires_names_it(body, field):
    bad = r.amend_ack(m.AmendOrderV2Response(**body))
    assert bad.error == f"amend_order_v2_response.{field}: missing"  # type: ignore[union-attr]


def test_a_decrease_reply_without_remaining_count_names_it():
    bad = r.decrease_ack(m.DecreaseOrderV2Response(order_id="o", ts_ms=1))
    assert bad.error == "decrease_order_v2_response.remaining_count: missing"  # type: ignore[union-attr]


@pytest.mark.timeout(30)
async def test_kalshi_rest_amends_decreases_and_runs_order_groups_on_the_local_exchange():
    ex = Exchange(2, 11, start_ns=time.time_ns(), session_s=36_000.0, starting_balance=1_000 * MONEY_SCALE)
    async with ExchangeServer(ex) as server, KalshiRest(server.rest_url, backoff_s=0.01) as client:
        server.pause()
        ticker = ex.tickers[0]
        engine = ex.flows[0].engine
        bid = engine.best_bid()
        assert bid is not None
        gid = await client.create_order_group(500)
        ack = await client.create_order(OrderIntent(cause_seq=1, client_order_id="r-1", market=ticker, side="bid", price=bid, count=300))
        amended = await client.amend_order(ack.order_id, market=ticker, side="bid", price=bid - 100, count=400)
        assert (amended.order_id, amended.client_order_id, amended.remaining_count, amended.fill_count) == (
            ack.order_id, "r-1", 400, 0)
        decreased = await client.decrease_order(ack.order_id, reduce_by=100)
        assert decreased.remaining_count == 300
        assert (await client.order(ack.order_id)).price == bid - 100
        with pytest.raises(KalshiApiError) as refused:
            await client.amend_order(ack.order_id, market=ticker, side="ask", price=bid, count=400)
        assert (refused.value.status, refused.value.error.code) == (400, "bad_request")
        gone = await client.decrease_order(ack.order_id, reduce_to=0)
        assert gone.remaining_count == 0
        with pytest.raises(KalshiApiError) as missing:
            await client.amend_order(ack.order_id, market=ticker, side="bid", price=bid, count=400)
        assert missing.value.status == 404
        group = await client.order_group(gid)
        assert (group.contracts_limit, group.auto_cancel, group.orders) == (500, True, ())
        await client.update_order_group_limit(gid, 700)
        await client.reset_order_group(gid)
        await client.trigger_order_group(gid)
        (listed,) = await client.order_groups()
        assert listed == r.OrderGroup(order_group_id=gid, contracts_limit=700, auto_cancel=True)
        await client.delete_order_group(gid)
        assert await client.order_groups() == []
        with pytest.raises(KalshiApiError) as no_group:
            await client.order_group(gid)
        assert no_group.value.status == 404


@pytest.mark.timeout(30)
async def test_an_amend_reaches_the_websocket_as_deltas_naming_our_order_and_its_new_state():
    """Through the server: the book deltas of a moved order carry its client_order_id (to its owner), and
    user_orders reports the order again after the amend (resting, nothing filled: read as an acknowledgement)."""
    ex = Exchange(2, 11, start_ns=time.time_ns(), session_s=36_000.0)
    ticker = ex.tickers[1]
    got: list = []
    async with ExchangeServer(ex) as server, KalshiRest(server.rest_url, backoff_s=0.01) as client, \
            KalshiFeed(server.ws_url, [ticker], channels=("orderbook_delta", "user_orders"), backoff_s=0.01) as feed:
        server.pause()

        async def consume() -> None:
            async for batch in feed:
                got.extend(e for _, e in batch)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.2)  # subscribed
        ack = await client.create_order(OrderIntent(cause_seq=1, client_order_id="ws-1", market=ticker, side="bid",
                                                    price=100, count=300))
        await client.amend_order(ack.order_id, market=ticker, side="bid", price=200, count=500)
        async with asyncio.timeout(10):
            while not any(type(e) is BookDelta and e.client_order_id == "ws-1" and e.price == 200 for e in got) or \
                    len([e for e in got if type(e) is OrderAccepted]) < 2:
                await asyncio.sleep(0.02)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    ours = [(e.price, e.delta) for e in got if type(e) is BookDelta and e.client_order_id == "ws-1"]
    assert ours == [(100, 300), (100, -300), (200, 500)]
    assert [e.order_id for e in got if type(e) is OrderAccepted] == [ack.order_id, ack.order_id]
    venue = ex.order("trust", ack.order_id)
    assert (venue.price, venue.remaining_count) == (200, 500)  # type: ignore[union-attr]
