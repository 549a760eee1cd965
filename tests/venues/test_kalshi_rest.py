"""Kalshi REST bodies: V2 order requests, replies to events, both error shapes, and the exchange's replies."""

from __future__ import annotations

import msgspec
import pytest

from runtime import events as ev
from runtime.venues.kalshi import messages as m
from runtime.venues.kalshi import rest
from runtime.venues.kalshi.codec import encode
from tests.wording import said_by

INTENT = ev.OrderIntent(cause_seq=5, client_order_id="c-1", market="KXA-1", side="ask", price=801, count=500, tif="ioc",
                        post_only=True, expiration_ts_ms=1_700_000_000_001)
FILL = {"trade_id": "t-1", "order_id": "o-1", "client_order_id": "c-1", "ticker": "KXA-1", "is_taker": False,
        "yes_price_dollars": "0.5000", "count_fp": "2.00", "fee_cost": "0.004400", "book_side": "bid", "ts_ms": 3}


# -- orders ------------------------------------------------------------------------------------------------
def test_an_intent_becomes_a_v2_create_body_with_full_names_and_fixed_point_strings():
    """side bid/ask on the YES leg, price dollars, count fp, time_in_force by its full name, expiry in seconds."""
    assert encode(rest.create_order(INTENT)) == (
        b'{"ticker":"KXA-1","side":"ask","count":"5.00","price":"0.0801","time_in_force":"immediate_or_cancel",'
        b'"client_order_id":"c-1","self_trade_prevention_type":"taker_at_cross","post_only":true,'
        b'"expiration_ts":1700000001}')


def test_time_in_force_is_always_sent_even_for_good_till_canceled():
    intent = msgspec.structs.replace(INTENT, tif="gtc", expiration_ts_ms=None, post_only=False)
    assert b'"time_in_force":"good_till_canceled"' in encode(rest.create_order(intent))


def test_a_batch_holds_one_create_body_per_intent():
    batch = rest.batch_create_orders([INTENT, msgspec.structs.replace(INTENT, client_order_id="c-2")])
    assert [o.client_order_id for o in batch.orders] == ["c-1", "c-2"]


def test_the_exchange_reads_our_create_body_in_exact_units():
    assert rest.decode_order_request(encode(rest.create_order(INTENT))) == rest.OrderRequest(
        market="KXA-1", side="ask", price=801, count=500, tif="ioc", client_order_id="c-1", post_only=True,
        expiration_ts_ms=1_700_000_001_000, self_trade_prevention="taker_at_cross")


def msgspec_on(raw: bytes, kind: type) -> str:
    """What msgspec says about ``raw`` as a ``kind``: our errors carry it, whatever its wording."""
    return said_by(lambda: msgspec.json.decode(raw, type=kind))


def test_an_off_grid_price_in_a_create_body_is_malformed_input_naming_the_field():
    body = b'{"ticker":"K","side":"bid","count":"1","price":"0.123456","time_in_force":"fill_or_kill"}'
    assert rest.decode_order_request(body) == ev.MalformedInput(
        source="kalshi.rest", raw=body, error="create_order_v2_request.price: '0.123456' is off the 0.0001 grid")


@pytest.mark.parametrize(("body", "ours"), [
    (b'{"ticker":"K","side":"buy","count":"1","price":"0.12","time_in_force":"fill_or_kill"}',
     "create_order_v2_request.side"),
    (b'{"ticker":"K","side":"bid","price":"0.12"}', "create_order_v2_request"),
])
def test_a_bad_create_body_is_malformed_input_naming_the_field(body, ours):
    error = f"{ours}: {msgspec_on(body, m.CreateOrderV2Request)}"
    assert rest.decode_order_request(body) == ev.MalformedInput(source="kalshi.rest", raw=body, error=error)


def test_the_create_reply_is_read_at_the_top_level_or_under_order():
    """Counts in exact units either way."""
    top = rest.decode_body(b'{"order_id":"o","client_order_id":"c","fill_count":"1.00","remaining_count":"4.00","ts_ms":3}',
                           m.CreateOrderV2Response)
    nested = rest.decode_body(b'{"order":{"order_id":"o","client_order_id":"c","fill_count_fp":"1.00",'
                              b'"remaining_count_fp":"4.00","ts_ms":3}}', m.CreateOrderV2Response)
    expected = rest.OrderAck(order_id="o", client_order_id="c", fill_count=100, remaining_count=400, venue_ts_ms=3)
    assert rest.order_ack(top) == rest.order_ack(nested) == expected  # type: ignore[arg-type]


def test_a_third_party_create_body_without_time_in_force_is_good_till_canceled():
    body = b'{"ticker":"K","side":"bid","count":"1","price":"0.12"}'
    assert rest.decode_order_request(body) == rest.OrderRequest(market="K", side="bid", price=1200, count=100, tif="gtc")


def test_the_exchanges_create_reply_reads_back_as_the_same_ack():
    body = rest.created_body("o", "c", fill_count=100, remaining_count=400, ts_ms=3)
    assert rest.order_ack(rest.decode_body(encode(body), m.CreateOrderV2Response)) == rest.OrderAck(  # type: ignore[arg-type]
        order_id="o", client_order_id="c", fill_count=100, remaining_count=400, venue_ts_ms=3)


def test_rest_orders_are_reported_as_they_are_whatever_their_status():
    """Reconciliation compares the venue's report with the order; no transition is replayed."""
    raw = (b'{"orders":[{"order_id":"o","client_order_id":"c","ticker":"K","status":"canceled","side":"bid",'
           b'"yes_price_dollars":"0.35","initial_count_fp":"10","fill_count_fp":"4","remaining_count_fp":"0"}],"cursor":"n"}')
    assert rest.orders(raw) == rest.Page([ev.OrderStatusReported(
        client_order_id="c", order_id="o", market="K", status="canceled", side="bid", price=3500, fill_count=400,
        remaining_count=0, initial_count=1000)], "n")


def test_the_exchanges_orders_reply_reads_back_as_the_same_reports():
    report = ev.OrderStatusReported(client_order_id="c", order_id="o", market="K", status="resting", side="ask",
                                    price=4200, fill_count=0, remaining_count=500, initial_count=500, venue_ts_ms=4)
    assert rest.orders(encode(rest.orders_body([report], cursor="x"))) == rest.Page([report], "x")


# -- fills, positions, balance ---------------------------------------------------------------------------
def test_a_fills_page_becomes_order_filled_events_and_its_cursor():
    raw = msgspec.json.encode({"fills": [FILL], "cursor": "next"})
    assert rest.fills(raw) == rest.Page([ev.OrderFilled(
        trade_id="t-1", order_id="o-1", client_order_id="c-1", market="KXA-1", side="bid", price=5000, count=200,
        fee=4_400, is_taker=False, venue_ts_ms=3)], "next")


def test_a_bad_fill_costs_only_itself_and_is_kept_verbatim():
    """The other fills of the page still decode."""
    bad = b'{"trade_id":"t-2","order_id":"o","ticker":"K","is_taker":true,"yes_price_dollars":"0.55555","count_fp":"1",' \
          b'"fee_cost":"0","book_side":"ask"}'
    raw = b'{"fills":[' + msgspec.json.encode(FILL) + b"," + bad + b",5]}"
    page = rest.fills(raw)
    assert [type(e).__name__ for e in page.events] == ["OrderFilled", "MalformedInput", "MalformedInput"]
    assert page.events[1] == ev.MalformedInput(source="kalshi.rest", raw=bad,
                                               error="fills[1].yes_price_dollars: '0.55555' is off the 0.0001 grid")
    assert page.events[2].error == f"fills[2]: {msgspec_on(b'5', m.FillMsg)}"  # type: ignore[union-attr]


def test_a_fill_that_is_not_utf8_is_named_by_its_first_bad_byte():
    bad = b'{"trade_id":"\xff"}'
    assert rest.fills(b'{"fills":[' + bad + b"]}") == rest.Page([ev.MalformedInput(
        source="kalshi.rest", raw=bad, error=f"invalid JSON: not UTF-8 at byte 13 ({msgspec_on(bad, m.FillMsg)})")], None)


def test_a_page_that_is_not_json_is_one_malformed_input():
    assert rest.fills(b"<html>") == rest.Page([ev.MalformedInput(
        source="kalshi.rest", raw=b"<html>", error=f"invalid JSON: {msgspec_on(b'<html>', object)}")], None)


def test_the_exchanges_fills_reply_reads_back_as_the_same_fills():
    fill = ev.OrderFilled(trade_id="t", order_id="o", client_order_id="c", market="K", side="ask", price=4200, count=300,
                          fee=16_800, is_taker=True, post_position=-300, venue_ts_ms=8)
    assert rest.fills(encode(rest.fills_body([fill]))) == rest.Page([fill], None)


def test_a_positions_page_becomes_position_reported_events():
    """The REST names (``ticker``, ``market_exposure_dollars``) are read."""
    raw = (b'{"market_positions":[{"ticker":"K","position_fp":"-2.00","market_exposure_dollars":"0.9000",'
           b'"realized_pnl_dollars":"0.1","fees_paid_dollars":"0.02"}],"event_positions":[]}')
    assert rest.positions(raw) == rest.Page([ev.PositionReported(
        market="K", position=-200, cost=900_000, realized_pnl=100_000, fees_paid=20_000)], None)


def test_the_exchanges_positions_reply_reads_back_as_the_same_positions():
    position = ev.PositionReported(market="K", position=700, cost=3_500_000, realized_pnl=0, fees_paid=1_000)
    assert rest.positions(encode(rest.positions_body([position]))) == rest.Page([position], None)


@pytest.mark.parametrize(("body", "micros"), [(b'{"balance":12345,"balance_dollars":"123.45"}', 123_450_000),
                                              (b'{"balance":12345}', 123_450_000)])
def test_the_balance_is_read_in_micro_dollars_from_dollars_or_else_cents(body, micros):
    assert rest.balance(rest.decode_body(body, m.BalanceResponse)) == micros  # type: ignore[arg-type]


def test_the_exchanges_balance_reply_carries_both_forms():
    assert encode(rest.balance_body(123_456_789)) == b'{"balance":12345,"balance_dollars":"123.456789"}'


# -- markets and books ------------------------------------------------------------------------------------------
def test_the_rest_order_book_becomes_a_snapshot_of_the_market():
    body = rest.decode_body(b'{"orderbook_fp":{"yes_dollars":[["0.08","3.00"],["0.09","1.00"]],"no_dollars":[["0.9","2"]]}}',
                            m.OrderbookResponse)
    assert rest.book(body, "K") == ev.BookSnapshot(market="K", yes_bids=((800, 300), (900, 100)),  # type: ignore[arg-type]
                                                   no_bids=((9000, 200),))


def test_the_legacy_order_book_in_cents_is_read_only_with_legacy():
    body = rest.decode_body(b'{"orderbook":{"yes":[[8,3]],"no":null}}', m.OrderbookResponse)
    assert rest.book(body, "K", legacy=True) == ev.BookSnapshot(market="K", yes_bids=((800, 300),))  # type: ignore[arg-type]
    assert rest.book(body, "K").error == (  # type: ignore[arg-type, union-attr]
        "orderbook.orderbook_fp: missing (the legacy `orderbook` is read only with legacy=True)")


def test_the_exchanges_order_book_is_ascending_with_the_best_bid_last():
    snap = ev.BookSnapshot(market="K", yes_bids=((900, 100), (800, 300)), no_bids=())
    assert encode(m.OrderbookResponse(orderbook_fp=rest.cv.book_to_rest(snap).orderbook_fp)) == (
        b'{"orderbook_fp":{"yes_dollars":[["0.0800","3.00"],["0.0900","1.00"]],"no_dollars":[]}}')


def test_a_markets_price_ranges_allow_sub_cent_prices_and_whole_cents_everywhere():
    body = rest.decode_body(b'{"market":{"ticker":"K","price_ranges":[{"start":"0.0000","end":"0.1000","step":"0.0010"}]}}',
                            m.MarketResponse)
    grid = rest.price_grid(body.market)  # type: ignore[union-attr]
    assert grid == rest.PriceGrid(((0, 1000, 10),))
    assert [grid.allows(p) for p in (10, 15, 990, 1010, 1100, 9900)] == [True, False, True, False, True, True]


def test_a_price_range_that_is_not_a_range_is_named():
    market = m.Market(ticker="K", price_ranges=[m.PriceRange(start="0.5", end="0.1", step="0.01")])
    with pytest.raises(ValueError, match=r"^market.price_ranges\[0\]: start 0.5000, end 0.1000, step 0.0100 is not a range$"):
        rest.price_grid(market)


# -- errors -------------------------------------------------------------------------------------------------------
def test_the_specified_error_shape_is_read():
    assert rest.api_error(400, b'{"code":"invalid_parameters","message":"bad price","details":"price"}') == (
        rest.ApiError(400, "invalid_parameters", "bad price", "price"))


def test_the_nested_error_shape_is_read():
    assert rest.api_error(409, b'{"error":{"code":"order_already_exists","message":"duplicate client_order_id"}}') == (
        rest.ApiError(409, "order_already_exists", "duplicate client_order_id"))


def test_an_error_body_that_is_not_json_is_kept_as_text():
    assert rest.api_error(502, b"<html>bad gateway</html>\n") == rest.ApiError(502, None, "<html>bad gateway</html>")


def test_an_empty_error_body_still_has_a_message():
    assert rest.api_error(429, b"") == rest.ApiError(429, None, "HTTP 429")


def test_the_exchanges_error_body_is_the_specified_shape():
    assert encode(rest.error_body("order_already_exists", "duplicate client_order_id")) == (
        b'{"code":"order_already_exists","message":"duplicate client_order_id"}')
