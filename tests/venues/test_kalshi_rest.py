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
FILL = {"fill_id": "f-1", "exchange_index": 0, "trade_id": "t-1", "order_id": "o-1", "ticker": "KXA-1",
        "market_ticker": "KXA-1", "outcome_side": "yes", "book_side": "bid", "count_fp": "2.00",
        "yes_price_dollars": "0.5000", "no_price_dollars": "0.5000", "is_taker": False,
        "created_time": "2023-11-14T22:13:20.003000Z", "fee_cost": "0.004400", "ts": 1_700_000_000}


# -- orders ------------------------------------------------------------------------------------------------
def test_an_intent_becomes_a_v2_create_body_with_full_names_and_fixed_point_strings():
    """side bid/ask on the YES leg, price dollars, count fp, time_in_force by its full name, expiry in seconds
    (``expiration_time``, the spec's name, only for good-till-canceled: an IOC order takes none)."""
    assert encode(rest.create_order(INTENT)) == (
        b'{"ticker":"KXA-1","side":"ask","count":"5.00","price":"0.0801","time_in_force":"immediate_or_cancel",'
        b'"client_order_id":"c-1","self_trade_prevention_type":"taker_at_cross","post_only":true}')
    gtc = msgspec.structs.replace(INTENT, tif="gtc")
    assert encode(rest.create_order(gtc)).endswith(b'"post_only":true,"expiration_time":1700000001}')


def test_time_in_force_is_always_sent_even_for_good_till_canceled():
    intent = msgspec.structs.replace(INTENT, tif="gtc", expiration_ts_ms=None, post_only=False)
    assert b'"time_in_force":"good_till_canceled"' in encode(rest.create_order(intent))


def test_a_batch_holds_one_create_body_per_intent():
    batch = rest.batch_create_orders([INTENT, msgspec.structs.replace(INTENT, client_order_id="c-2")])
    assert [o.client_order_id for o in batch.orders] == ["c-1", "c-2"]


def test_the_exchange_reads_our_create_body_in_exact_units():
    gtc = msgspec.structs.replace(INTENT, tif="gtc")
    assert rest.decode_order_request(encode(rest.create_order(gtc))) == rest.OrderRequest(
        market="KXA-1", side="ask", price=801, count=500, tif="gtc", client_order_id="c-1", post_only=True,
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


def test_the_create_reply_is_read_in_exact_units():
    top = rest.decode_body(b'{"order_id":"o","client_order_id":"c","fill_count":"1.00","remaining_count":"4.00","ts_ms":3}',
                           m.CreateOrderV2Response)
    assert rest.order_ack(top) == rest.OrderAck(  # type: ignore[arg-type]
        order_id="o", client_order_id="c", fill_count=100, remaining_count=400, venue_ts_ms=3)


@pytest.mark.parametrize(("body", "field"), [
    (b'{"order":{"order_id":"o","fill_count_fp":"1.00","remaining_count_fp":"4.00","ts_ms":3}}', "order_id"),
    (b'{"order_id":"o","fill_count_fp":"1.00","remaining_count":"4.00","ts_ms":3}', "fill_count"),
    (b'{"order_id":"o","fill_count":"1.00","ts_ms":3}', "remaining_count"),
])
def test_a_create_reply_without_a_field_the_spec_requires_names_it(body, field):
    """Shapes that are not the spec's (nested under ``order``, ``_fp`` counts) are not read: never a silent None."""
    ack = rest.order_ack(rest.decode_body(body, m.CreateOrderV2Response))  # type: ignore[arg-type]
    assert isinstance(ack, ev.MalformedInput) and ack.error == f"create_order_v2_response.{field}: missing"


def test_batch_create_items_are_flat_acks_or_errors():
    body = rest.decode_body(b'{"orders":[{"order_id":"o-1","client_order_id":"c-1","fill_count":"0.00",'
                            b'"remaining_count":"5.00","ts_ms":7},{"client_order_id":"c-2","error":{"code":"invalid_price",'
                            b'"message":"off the grid","details":""}},{"client_order_id":"c-3","order":{"order_id":"o-3"}}]}',
                            m.BatchCreateOrdersV2Response)
    first, second, third = rest.batch_results(body)  # type: ignore[arg-type]
    assert first == rest.OrderAck(order_id="o-1", client_order_id="c-1", fill_count=0, remaining_count=500, venue_ts_ms=7)
    assert second == rest.ApiError(0, "invalid_price", "off the grid")
    assert isinstance(third, ev.MalformedInput) and third.error == "batch_create_orders_v2_response.orders[2].order_id: missing"


def test_the_cancel_reply_says_what_was_taken_off_in_reduced_by():
    body = rest.decode_body(b'{"order_id":"o","client_order_id":"c","reduced_by":"2.50","ts_ms":9}', m.CancelOrderV2Response)
    assert rest.cancel_ack(body, "o") == rest.CancelAck(order_id="o", client_order_id="c", reduced_by=250,  # type: ignore[arg-type]
                                                        venue_ts_ms=9)
    assert encode(rest.canceled_body("o", "c", 250, 9)) == b'{"order_id":"o","client_order_id":"c","reduced_by":"2.50","ts_ms":9}'


def test_a_cancel_reply_without_reduced_by_names_it():
    """``reduced_by_fp`` is not the spec's name: it is not read."""
    body = rest.decode_body(b'{"order_id":"o","reduced_by_fp":"2.50","ts_ms":9}', m.CancelOrderV2Response)
    ack = rest.cancel_ack(body, "o")  # type: ignore[arg-type]
    assert isinstance(ack, ev.MalformedInput) and ack.error == "cancel_order_v2_response.reduced_by: missing"


def test_a_third_party_create_body_without_time_in_force_is_good_till_canceled():
    body = b'{"ticker":"K","side":"bid","count":"1","price":"0.12"}'
    assert rest.decode_order_request(body) == rest.OrderRequest(market="K", side="bid", price=1200, count=100, tif="gtc")


def test_the_exchanges_create_reply_reads_back_as_the_same_ack():
    body = rest.created_body("o", "c", fill_count=100, remaining_count=400, ts_ms=3)
    assert rest.order_ack(rest.decode_body(encode(body), m.CreateOrderV2Response)) == rest.OrderAck(  # type: ignore[arg-type]
        order_id="o", client_order_id="c", fill_count=100, remaining_count=400, venue_ts_ms=3)


def test_rest_orders_are_reported_as_they_are_whatever_their_status():
    """Reconciliation compares the venue's report with the order; no transition is replayed."""
    raw = (b'{"orders":[{"order_id":"o","user_id":"u","client_order_id":"c","ticker":"K","side":"yes","action":"buy",'
           b'"outcome_side":"yes","book_side":"bid","type":"limit","status":"canceled","yes_price_dollars":"0.35",'
           b'"no_price_dollars":"0.65","initial_count_fp":"10","fill_count_fp":"4","remaining_count_fp":"0",'
           b'"taker_fill_cost_dollars":"1.40","maker_fill_cost_dollars":"0","taker_fees_dollars":"0.06",'
           b'"maker_fees_dollars":"0","last_update_time":"2023-11-14T22:13:20.004Z"}],"cursor":"n"}')
    assert rest.orders(raw) == rest.Page([ev.OrderStatusReported(
        client_order_id="c", order_id="o", market="K", status="canceled", side="bid", price=3500, fill_count=400,
        remaining_count=0, initial_count=1000, venue_ts_ms=1_700_000_000_004)], "n")


@pytest.mark.parametrize(("sides", "side"), [(b'"outcome_side":"no"', "ask"), (b'"side":"no","action":"sell"', "bid")])
def test_an_orders_side_on_the_yes_leg_comes_from_outcome_side_or_the_deprecated_side_and_action(sides, side):
    raw = (b'{"orders":[{"order_id":"o","ticker":"K",' + sides + b',"status":"resting","yes_price_dollars":"0.35",'
           b'"initial_count_fp":"1","fill_count_fp":"0","remaining_count_fp":"1"}],"cursor":""}')
    (report,) = rest.orders(raw).events
    assert report.side == side  # type: ignore[union-attr]


@pytest.mark.parametrize(("drop", "error"), [
    ("ticker", "orders[0].ticker: missing"),
    ("book_side", "orders[0].book_side: missing (and no outcome_side, or side with action)"),
    ("initial_count_fp", "orders[0].initial_count_fp: missing"),
])
def test_an_order_without_a_field_the_spec_requires_is_malformed_input_naming_it(drop, error):
    item = {"order_id": "o", "ticker": "K", "book_side": "bid", "status": "resting", "yes_price_dollars": "0.35",
            "initial_count_fp": "1", "fill_count_fp": "0", "remaining_count_fp": "1"}
    del item[drop]
    (event,) = rest.orders(msgspec.json.encode({"orders": [item], "cursor": ""})).events
    assert isinstance(event, ev.MalformedInput) and event.error == error


def test_the_exchanges_orders_reply_reads_back_as_the_same_reports():
    report = ev.OrderStatusReported(client_order_id="c", order_id="o", market="K", status="resting", side="ask",
                                    price=4200, fill_count=0, remaining_count=500, initial_count=500, venue_ts_ms=4)
    assert rest.orders(encode(rest.orders_body([report], cursor="x"))) == rest.Page([report], "x")


def test_an_order_item_buys_yes_for_a_bid_and_no_for_an_ask_with_its_costs_in_dollars():
    report = ev.OrderStatusReported(client_order_id="", order_id="o", market="K", status="executed", side="ask",
                                    price=4200, fill_count=500, remaining_count=0, initial_count=500, venue_ts_ms=4)
    item = rest.order_item(report, user_id="alice", created_ms=2, taker_cost=2_900_000, taker_fees=90_000)
    assert (item.side, item.action, item.outcome_side, item.book_side, item.type) == ("no", "buy", "no", "ask", "limit")
    assert (item.yes_price_dollars, item.no_price_dollars, item.client_order_id, item.user_id) == (
        "0.4200", "0.5800", "", "alice")
    assert (item.taker_fill_cost_dollars, item.maker_fill_cost_dollars, item.taker_fees_dollars) == (
        "2.900000", "0.000000", "0.090000")
    assert (item.created_time, item.last_update_time) == ("1970-01-01T00:00:00.002000Z", "1970-01-01T00:00:00.004000Z")


def test_every_list_reply_has_a_cursor_empty_on_the_last_page():
    assert encode(rest.orders_body([])) == b'{"orders":[],"cursor":""}'
    assert encode(rest.fills_body([])) == b'{"fills":[],"cursor":""}'
    assert encode(rest.positions_body([])) == b'{"market_positions":[],"event_positions":[],"cursor":""}'


# -- fills, positions, balance ---------------------------------------------------------------------------
def test_a_fills_page_becomes_order_filled_events_and_its_cursor():
    """A REST fill names no client_order_id (the client takes it from the order); its time is ``created_time``."""
    raw = msgspec.json.encode({"fills": [FILL], "cursor": "next"})
    assert rest.fills(raw) == rest.Page([ev.OrderFilled(
        trade_id="t-1", order_id="o-1", client_order_id="", market="KXA-1", side="bid", price=5000, count=200,
        fee=4_400, is_taker=False, venue_ts_ms=1_700_000_000_003)], "next")


def test_a_fill_without_a_field_the_runtime_needs_is_malformed_input_naming_it():
    item = {k: v for k, v in FILL.items() if k not in ("ticker", "market_ticker")}
    (event,) = rest.fills(msgspec.json.encode({"fills": [item], "cursor": ""})).events
    assert isinstance(event, ev.MalformedInput) and event.error == "fills[0].market_ticker: missing"


def test_a_bad_fill_costs_only_itself_and_is_kept_verbatim():
    """The other fills of the page still decode."""
    bad = b'{"trade_id":"t-2","order_id":"o","ticker":"K","is_taker":true,"yes_price_dollars":"0.55555","count_fp":"1",' \
          b'"fee_cost":"0","book_side":"ask"}'
    raw = b'{"fills":[' + msgspec.json.encode(FILL) + b"," + bad + b",5]}"
    page = rest.fills(raw)
    assert [type(e).__name__ for e in page.events] == ["OrderFilled", "MalformedInput", "MalformedInput"]
    assert page.events[1] == ev.MalformedInput(source="kalshi.rest", raw=bad,
                                               error="fills[1].yes_price_dollars: '0.55555' is off the 0.0001 grid")
    assert page.events[2].error == f"fills[2]: {msgspec_on(b'5', m.PortfolioFill)}"  # type: ignore[union-attr]


def test_a_fill_that_is_not_utf8_is_named_by_its_first_bad_byte():
    bad = b'{"trade_id":"\xff"}'
    assert rest.fills(b'{"fills":[' + bad + b"]}") == rest.Page([ev.MalformedInput(
        source="kalshi.rest", raw=bad, error=f"invalid JSON: not UTF-8 at byte 13 ({msgspec_on(bad, m.PortfolioFill)})")], None)


def test_a_page_that_is_not_json_is_one_malformed_input():
    assert rest.fills(b"<html>") == rest.Page([ev.MalformedInput(
        source="kalshi.rest", raw=b"<html>", error=f"invalid JSON: {msgspec_on(b'<html>', object)}")], None)


def test_the_exchanges_fills_reply_reads_back_as_the_same_fills():
    """But for what Kalshi's fills do not carry: the client_order_id and the position after the fill."""
    fill = ev.OrderFilled(trade_id="t", order_id="o", client_order_id="c", market="K", side="ask", price=4200, count=300,
                          fee=16_800, is_taker=True, post_position=-300, venue_ts_ms=8)
    assert rest.fills(encode(rest.fills_body([fill]))) == rest.Page(
        [msgspec.structs.replace(fill, client_order_id="", post_position=None)], "")


def test_a_fill_item_has_both_prices_both_sides_and_a_fill_id():
    fill = ev.OrderFilled(trade_id="t", order_id="o", client_order_id="c", market="K", side="ask", price=4200, count=300,
                          fee=16_800, is_taker=True, venue_ts_ms=8_001)
    item = rest.fill_item(fill, "f-1")
    assert (item.fill_id, item.ticker, item.market_ticker, item.outcome_side, item.book_side, item.side) == (
        "f-1", "K", "K", "no", "ask", "no")
    assert (item.yes_price_dollars, item.no_price_dollars, item.fee_cost, item.ts) == ("0.4200", "0.5800", "0.016800", 8)


def test_a_positions_page_becomes_position_reported_events():
    """The REST names (``ticker``, ``market_exposure_dollars``) are read."""
    raw = (b'{"market_positions":[{"ticker":"K","exchange_index":0,"total_traded_dollars":"1.2","position_fp":"-2.00",'
           b'"market_exposure_dollars":"0.9000","realized_pnl_dollars":"0.1","fees_paid_dollars":"0.02",'
           b'"last_updated_ts":"2023-11-14T22:13:20Z"}],"event_positions":[],"cursor":""}')
    assert rest.positions(raw) == rest.Page([ev.PositionReported(
        market="K", position=-200, cost=900_000, realized_pnl=100_000, fees_paid=20_000,
        venue_ts_ms=1_700_000_000_000)], "")


def test_a_positions_reply_without_market_positions_is_malformed_input():
    (event,) = rest.positions(b'{"positions":[],"cursor":""}').events
    assert isinstance(event, ev.MalformedInput) and "market_positions" in event.error


def test_the_exchanges_positions_reply_reads_back_as_the_same_positions():
    position = ev.PositionReported(market="K", position=700, cost=3_500_000, realized_pnl=0, fees_paid=1_000,
                                   venue_ts_ms=5)
    assert rest.positions(encode(rest.positions_body([position]))) == rest.Page([position], "")


@pytest.mark.parametrize(("body", "micros"), [(b'{"balance":12345,"balance_dollars":"123.45"}', 123_450_000),
                                              (b'{"balance":12345}', 123_450_000)])
def test_the_balance_is_read_in_micro_dollars_from_dollars_or_else_cents(body, micros):
    assert rest.balance(rest.decode_body(body, m.BalanceResponse)) == micros  # type: ignore[arg-type]


def test_the_exchanges_balance_reply_carries_both_forms_the_portfolio_value_and_its_time():
    assert encode(rest.balance_body(123_456_789, 5_009_999, 1_700_000_000_999)) == (
        b'{"balance":12345,"balance_dollars":"123.456789","portfolio_value":500,"updated_ts":1700000000}')


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


def test_a_market_without_price_ranges_has_no_grid_and_says_so():
    with pytest.raises(ValueError, match=r"^market.price_ranges: missing$"):
        rest.price_grid(m.Market(ticker="K"))


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


def test_kalshis_rate_limit_body_is_read():
    """A 429 says ``{"error": "too many requests"}``: the text is the message."""
    assert rest.api_error(429, b'{"error":"too many requests"}') == rest.ApiError(429, None, "too many requests")


def test_an_error_body_that_is_not_json_is_kept_as_text():
    assert rest.api_error(502, b"<html>bad gateway</html>\n") == rest.ApiError(502, None, "<html>bad gateway</html>")


def test_an_empty_error_body_still_has_a_message():
    assert rest.api_error(429, b"") == rest.ApiError(429, None, "HTTP 429")


def test_the_exchanges_error_body_is_the_specified_shape():
    assert encode(rest.error_body("order_already_exists", "duplicate client_order_id")) == (
        b'{"code":"order_already_exists","message":"duplicate client_order_id"}')
