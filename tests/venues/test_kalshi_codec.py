"""The Kalshi WebSocket codec: frames to tape events (and back) exactly, with errors that name the field."""

from __future__ import annotations

import msgspec
import pytest

from runtime import events as ev
from runtime.venues.kalshi import codec
from runtime.venues.kalshi import messages as m
from runtime.venues.kalshi.codec import WsDecoder, decode_command, decode_ws, encode_event
from tests.wording import said_by

T = 1_700_000_000_000_000_000  # received_ns


def frame(type_: str, msg: dict, **envelope: object) -> bytes:
    return msgspec.json.encode({"type": type_, **envelope, "msg": msg})


def only_event(raw: bytes, **options: bool) -> ev.Event:
    result = decode_ws(raw, T, **options)
    assert len(result.events) == 1, result
    return result.events[0]


def error_of(raw: bytes | str, **options: bool) -> str:
    event = only_event(raw, **options)  # type: ignore[arg-type]
    assert isinstance(event, ev.MalformedInput), event
    assert event.raw == (raw.encode() if isinstance(raw, str) else raw)
    assert event.source == "kalshi.ws"
    return event.error


def msgspec_on(raw: bytes | str, decoder=m.WS_MESSAGES) -> str:
    """What msgspec says about ``raw``: our errors carry it, whatever its wording (which changes between versions)."""
    return said_by(lambda: decoder.decode(raw))


DELTA = {"market_ticker": "KXA-1", "market_id": "9b0f", "price_dollars": "0.0800", "delta_fp": "-3.50", "side": "yes",
         "ts_ms": 1_700_000_000_123}
FILL = {"trade_id": "t-1", "order_id": "o-1", "client_order_id": "c-1", "market_ticker": "KXA-1", "is_taker": True,
        "yes_price_dollars": "0.4200", "count_fp": "5.00", "fee_cost": "0.081900", "post_position_fp": "-5.00",
        "outcome_side": "no", "book_side": "ask", "side": "yes", "action": "sell", "ts_ms": 7}
ORDER = {"order_id": "o-1", "client_order_id": "c-1", "ticker": "KXA-1", "status": "resting", "side": "bid",
         "yes_price_dollars": "0.3500", "initial_count_fp": "10.00", "fill_count_fp": "0.00",
         "remaining_count_fp": "10.00", "ts_ms": 9}


# -- market data ---------------------------------------------------------------------------------------
def test_a_delta_becomes_a_book_delta_with_its_sid_and_seq():
    """Price and signed size are exact integers; sid, seq, market and venue time are carried."""
    assert only_event(frame("orderbook_delta", DELTA, sid=3, seq=18)) == ev.BookDelta(
        market="KXA-1", side="yes", price=800, delta=-350, sid=3, venue_seq=18, venue_ts_ms=1_700_000_000_123)


def test_a_delta_caused_by_our_order_names_its_client_order_id():
    """The optional client_order_id is kept."""
    event = only_event(frame("orderbook_delta", {**DELTA, "client_order_id": "c-9"}, sid=3, seq=1))
    assert event.client_order_id == "c-9"  # type: ignore[union-attr]


def test_numbers_that_arrive_as_json_numbers_are_read_exactly():
    """0.29 as a JSON number is 2900, not 2899.99…; 3.5 contracts are 350."""
    event = only_event(frame("orderbook_delta", {**DELTA, "price_dollars": 0.29, "delta_fp": 3.5}, sid=1, seq=1))
    assert (event.price, event.delta) == (2900, 350)  # type: ignore[union-attr]


def test_a_snapshot_becomes_a_book_snapshot_and_an_omitted_side_is_empty():
    """Both ladders are bids; a side whose key is missing is empty."""
    raw = frame("orderbook_snapshot", {"market_ticker": "KXA-1", "market_id": "9b0f",
                                       "yes_dollars_fp": [["0.0800", "300.00"], ["0.0900", "1.50"]]}, sid=3, seq=17)
    assert only_event(raw) == ev.BookSnapshot(market="KXA-1", yes_bids=((800, 30_000), (900, 150)), no_bids=(),
                                              sid=3, venue_seq=17)


def test_a_snapshot_under_the_rest_level_names_is_read_too():
    """``yes_dollars`` / ``no_dollars`` are read when the ``_fp`` keys are absent."""
    raw = frame("orderbook_snapshot", {"market_ticker": "KXA-1", "no_dollars": [["0.5500", "2.00"]]}, sid=1, seq=1)
    assert only_event(raw) == ev.BookSnapshot(market="KXA-1", no_bids=((5500, 200),), sid=1, venue_seq=1)


def test_with_use_yes_price_no_levels_are_turned_back_to_the_no_leg():
    """A NO bid quoted at the YES-leg price 0.70 is a NO-leg bid at 0.30, in snapshots and deltas."""
    snap = frame("orderbook_snapshot", {"market_ticker": "KXA-1", "no_dollars_fp": [["0.7000", "1.00"]]}, sid=1, seq=1)
    delta = frame("orderbook_delta", {**DELTA, "side": "no", "price_dollars": "0.7000"}, sid=1, seq=2)
    assert only_event(snap, use_yes_price=True).no_bids == ((3000, 100),)  # type: ignore[union-attr]
    assert only_event(delta, use_yes_price=True).price == 3000  # type: ignore[union-attr]
    assert only_event(delta).price == 7000  # type: ignore[union-attr]


def test_a_trade_becomes_a_public_trade_on_the_yes_leg():
    """The taker side is taker_outcome_side; the YES price is kept, the NO price is its complement."""
    raw = frame("trade", {"trade_id": "t-9", "market_ticker": "KXA-1", "yes_price_dollars": "0.4500",
                          "no_price_dollars": "0.5500", "count_fp": "12.50", "taker_outcome_side": "no",
                          "taker_book_side": "ask", "taker_side": "no", "ts_ms": 5}, sid=4, seq=2)
    assert only_event(raw) == ev.PublicTrade(market="KXA-1", trade_id="t-9", yes_price=4500, count=1250,
                                             taker_side="no", sid=4, venue_seq=2, venue_ts_ms=5)


@pytest.mark.parametrize(("sides", "taker"), [
    ({"taker_book_side": "bid"}, "yes"), ({"taker_book_side": "ask"}, "no"), ({"taker_side": "yes"}, "yes")])
def test_a_trade_without_taker_outcome_side_falls_back_to_book_side_then_taker_side(sides, taker):
    """bid -> yes, ask -> no; the deprecated taker_side last."""
    raw = frame("trade", {"trade_id": "t", "market_ticker": "K", "yes_price_dollars": "0.5", "count_fp": "1", **sides},
                sid=1, seq=1)
    assert only_event(raw).taker_side == taker  # type: ignore[union-attr]


def test_a_lifecycle_message_becomes_market_lifecycle_with_result_and_settlement_value():
    """Settlement value in dollars becomes price units; close_ts (seconds) becomes milliseconds."""
    raw = frame("market_lifecycle_v2", {"market_ticker": "KXA-1", "event_type": "settled", "result": "yes",
                                        "settlement_value": "1.00", "close_ts": 1_700_000_000}, sid=5)
    assert only_event(raw) == ev.MarketLifecycle(market="KXA-1", kind="settled", result="yes", settlement_value=10_000,
                                                 close_ts_ms=1_700_000_000_000)


def test_a_lifecycle_message_without_a_result_has_none():
    """An empty result (not determined yet) is None."""
    raw = frame("market_lifecycle_v2", {"market_ticker": "KXA-1", "event_type": "activated", "result": ""}, sid=5)
    assert only_event(raw) == ev.MarketLifecycle(market="KXA-1", kind="activated")


# -- private channels ----------------------------------------------------------------------------------
def test_a_fill_becomes_order_filled_on_the_yes_leg_with_its_fee_in_micro_dollars():
    """Sell YES is (no, ask): side ask, YES-leg price, fee 0.081900 = 81,900 micro-dollars, signed post position."""
    assert only_event(frame("fill", FILL, sid=9)) == ev.OrderFilled(
        trade_id="t-1", order_id="o-1", client_order_id="c-1", market="KXA-1", side="ask", price=4200, count=500,
        fee=81_900, is_taker=True, post_position=-500, venue_ts_ms=7)


@pytest.mark.parametrize(("sides", "book_side"), [
    ({"outcome_side": "yes"}, "bid"), ({"outcome_side": "no"}, "ask"),
    ({"side": "yes", "action": "buy"}, "bid"), ({"side": "no", "action": "sell"}, "bid"),
    ({"side": "no", "action": "buy"}, "ask"), ({"side": "yes", "action": "sell"}, "ask")])
def test_a_fill_without_book_side_maps_its_direction_per_the_protocol(sides, book_side):
    """buy yes = sell no = bid; buy no = sell yes = ask."""
    msg = {k: v for k, v in FILL.items() if k not in ("outcome_side", "book_side", "side", "action")}
    assert only_event(frame("fill", {**msg, **sides}, sid=9)).side == book_side  # type: ignore[union-attr]


def test_a_fill_without_client_order_id_has_an_empty_one():
    """A fill of an order placed outside tape still decodes; its client order id is ''."""
    msg = {k: v for k, v in FILL.items() if k != "client_order_id"}
    assert only_event(frame("fill", msg, sid=9)).client_order_id == ""  # type: ignore[union-attr]


def test_a_resting_user_order_with_nothing_filled_is_accepted():
    """resting, fill 0 -> OrderAccepted."""
    assert only_event(frame("user_order", ORDER, sid=8)) == ev.OrderAccepted(
        client_order_id="c-1", order_id="o-1", market="KXA-1", venue_ts_ms=9)


def test_a_canceled_user_order_is_canceled_for_what_had_not_filled():
    """canceled -> OrderCanceled of initial - filled, reason 'venue'."""
    msg = {**ORDER, "status": "canceled", "fill_count_fp": "4.00", "remaining_count_fp": "0.00"}
    assert only_event(frame("user_order", msg, sid=8)) == ev.OrderCanceled(
        client_order_id="c-1", order_id="o-1", canceled_count=600, reason="venue", venue_ts_ms=9)


@pytest.mark.parametrize(("status", "filled", "remaining"), [("resting", "4.00", "6.00"), ("executed", "10.00", "0.00")])
def test_other_user_order_states_are_reported_with_their_counts(status, filled, remaining):
    """Resting after fills, and executed, -> OrderStatusReported (fills themselves come from the fill channel)."""
    msg = {**ORDER, "status": status, "fill_count_fp": filled, "remaining_count_fp": remaining}
    assert only_event(frame("user_order", msg, sid=8)) == ev.OrderStatusReported(
        client_order_id="c-1", order_id="o-1", market="KXA-1", status=status, side="bid", price=3500,
        fill_count=int(float(filled) * 100), remaining_count=int(float(remaining) * 100), initial_count=1000,
        venue_ts_ms=9)


def test_a_user_order_in_the_older_side_and_action_shape_is_read_on_the_yes_leg():
    """side no + action buy is an ask."""
    msg = {**ORDER, "status": "executed", "side": "no", "action": "buy"}
    assert only_event(frame("user_order", msg, sid=8)).side == "ask"  # type: ignore[union-attr]


def test_a_market_position_becomes_position_reported():
    """Signed position and money fields in micro-dollars."""
    raw = frame("market_position", {"market_ticker": "KXA-1", "position_fp": "-3.00", "position_cost_dollars": "1.2000",
                                    "realized_pnl_dollars": "-0.050000", "fees_paid_dollars": "0.0210"}, sid=7)
    assert only_event(raw) == ev.PositionReported(market="KXA-1", position=-300, cost=1_200_000, realized_pnl=-50_000,
                                                  fees_paid=21_000)


# -- control replies -----------------------------------------------------------------------------------
def test_a_subscribed_reply_carries_no_event_and_gives_the_client_its_sid():
    """The client learns the channel's sid from ``message`` and ``sid``."""
    result = decode_ws(b'{"id":1,"type":"subscribed","msg":{"channel":"orderbook_delta","sid":4}}', T)
    assert (result.events, result.type, result.sid, result.message) == (
        (), "subscribed", 4, m.Subscribed(id=1, msg=m.SubscribedMsg(channel="orderbook_delta", sid=4)))


def test_an_error_reply_is_a_venue_error_event_and_codes_10_and_25_are_terminal():
    """Error replies are logged; the client resubscribes on a terminal code."""
    result = decode_ws(b'{"id":3,"type":"error","msg":{"code":25,"msg":"Subscription buffer overflow"}}', T)
    assert result.events == (ev.VenueError(where="kalshi.ws", message="Subscription buffer overflow", code=25),)
    assert result.message.msg.code in codec.TERMINAL_ERRORS  # type: ignore[union-attr]
    assert sorted(codec.TERMINAL_ERRORS) == [10, 25]


@pytest.mark.parametrize("raw", [b'{"id":2,"sid":4,"seq":9,"type":"ok","msg":{"market_tickers":["K"]}}',
                                 b'{"id":2,"sid":4,"seq":9,"type":"unsubscribed"}'])
def test_ok_and_unsubscribed_replies_carry_no_event_but_their_sid_and_seq(raw):
    """They are control messages for the client."""
    result = decode_ws(raw, T)
    assert (result.events, result.sid, result.seq) == ((), 4, 9)


def test_unknown_fields_are_ignored():
    """A field Kalshi adds later changes nothing."""
    raw = frame("orderbook_delta", {**DELTA, "new_field": {"x": [1]}}, sid=3, seq=18, extra=True)
    assert only_event(raw) == only_event(frame("orderbook_delta", DELTA, sid=3, seq=18))


# -- bad input -------------------------------------------------------------------------------------------
def test_an_off_grid_price_is_malformed_input_naming_the_field():
    assert error_of(frame("orderbook_delta", {**DELTA, "price_dollars": "0.12345"}, sid=3, seq=1)) == (
        "orderbook_delta.msg.price_dollars: '0.12345' is off the 0.0001 grid")


def test_a_count_off_the_hundredth_grid_is_malformed_input():
    assert error_of(frame("trade", {"trade_id": "t", "market_ticker": "K", "yes_price_dollars": "0.5",
                                    "count_fp": "1.005", "taker_outcome_side": "yes"}, sid=1, seq=1)) == (
        "trade.msg.count_fp: '1.005' is off the 0.01 grid")


def test_a_field_of_the_wrong_type_is_malformed_input_naming_the_path():
    raw = frame("orderbook_delta", {**DELTA, "price_dollars": [1]}, sid=3, seq=1)
    assert error_of(raw) == f"orderbook_delta.msg.price_dollars: {msgspec_on(raw)}"


def test_a_bad_snapshot_level_is_named_by_its_index():
    raw = frame("orderbook_snapshot", {"market_ticker": "K", "yes_dollars_fp": [["0.08", "1"], ["0.09", "-1"]]},
                sid=1, seq=1)
    assert error_of(raw) == "orderbook_snapshot.msg.yes_dollars_fp[1][1]: '-1' is negative"


def test_an_unknown_type_is_malformed_input():
    assert error_of(b'{"type":"orderbook_exploded","sid":1,"msg":{}}') == (
        "frame.type: unknown message type 'orderbook_exploded'")


def test_a_frame_that_is_not_json_is_malformed_input():
    raw = b'{"type": "trade", '
    assert error_of(raw) == f"invalid JSON: {msgspec_on(raw)}"


def test_a_frame_that_is_not_an_object_is_malformed_input():
    assert error_of(b"[1, 2]") == f"frame: {msgspec_on(b'[1, 2]')}"


def test_bytes_that_are_not_utf8_are_malformed_input_naming_the_first_bad_byte():
    """msgspec names no offset in the frame (and words this differently from version to version): we do."""
    raw = b'{"type":"trade","sid":1,"msg":{"trade_id":"\xff"}}'
    assert error_of(raw) == f"invalid JSON: not UTF-8 at byte 43 ({msgspec_on(raw)})"


def test_a_missing_required_field_is_named():
    assert error_of(frame("fill", {k: v for k, v in FILL.items() if k != "fee_cost"}, sid=9)) == (
        "fill.msg.fee_cost: missing")


def test_a_result_outside_the_schema_is_malformed_input():
    raw = frame("market_lifecycle_v2", {"market_ticker": "K", "event_type": "determined", "result": "maybe"}, sid=5)
    assert error_of(raw) == "market_lifecycle_v2.msg.result: 'maybe' is not one of no, scalar, void, yes"


def test_a_malformed_frame_still_tells_the_client_its_sid_and_seq():
    """So a malformed book delta can be treated as a gap and resynced."""
    result = decode_ws(frame("orderbook_delta", {**DELTA, "price_dollars": {"x": 1}}, sid=3, seq=41), T)
    assert (result.malformed, result.type, result.sid, result.seq, result.message) == (
        True, "orderbook_delta", 3, 41, None)


def test_a_text_frame_given_as_str_is_kept_as_its_utf8_bytes():
    """websockets yields text frames as str; the raw kept is the UTF-8 bytes."""
    assert error_of('{"type":"nope","é":1}') == "frame.type: unknown message type 'nope'"


def test_a_huge_number_is_refused_before_it_is_parsed():
    """A 5,000-digit string is named, not parsed (Python's int() would refuse it with a message naming nothing)."""
    assert error_of(frame("orderbook_delta", {**DELTA, "price_dollars": "9" * 5000}, sid=1, seq=1)) == (
        "orderbook_delta.msg.price_dollars: '99999999999999999999'… (5000 characters) is too long for a decimal number")


def test_a_huge_error_is_cut():
    """An error quoting an enormous value is cut to MAX_ERROR_CHARS."""
    error = error_of(frame("orderbook_delta", {**DELTA, "side": "x" * 5000}, sid=1, seq=1))
    assert len(error) == codec.MAX_ERROR_CHARS and error.endswith("…")


# -- legacy ----------------------------------------------------------------------------------------------
LEGACY_DELTA = {"market_ticker": "KXA-1", "price": 8, "delta": -3, "side": "yes"}


def test_legacy_cent_input_is_refused_unless_asked_for():
    assert error_of(frame("orderbook_delta", LEGACY_DELTA, sid=1, seq=1)) == (
        "orderbook_delta.msg.price_dollars: missing (the legacy `price` is read only with legacy=True)")


def test_legacy_cent_deltas_are_read_with_legacy():
    """8 cents is 800 price units; -3 contracts is -300."""
    event = only_event(frame("orderbook_delta", LEGACY_DELTA, sid=1, seq=1), legacy=True)
    assert (event.price, event.delta) == (800, -300)  # type: ignore[union-attr]


def test_legacy_cent_snapshots_are_read_with_legacy():
    raw = frame("orderbook_snapshot", {"market_ticker": "K", "yes": [[8, 300]], "no": [[90, 2]]}, sid=1, seq=1)
    assert only_event(raw, legacy=True) == ev.BookSnapshot(market="K", yes_bids=((800, 30_000),), no_bids=((9000, 200),),
                                                           sid=1, venue_seq=1)


def test_legacy_fills_and_trades_are_read_with_legacy():
    """yes_price in cents, integer counts, no fee (0)."""
    fill = {"trade_id": "t", "order_id": "o", "ticker": "K", "is_taker": False, "yes_price": 42, "count": 5,
            "side": "no", "action": "buy"}
    trade = {"trade_id": "t", "market_ticker": "K", "yes_price": 42, "count": 5, "taker_side": "no"}
    assert only_event(frame("fill", fill, sid=1), legacy=True) == ev.OrderFilled(
        trade_id="t", order_id="o", client_order_id="", market="K", side="ask", price=4200, count=500, fee=0,
        is_taker=False)
    assert only_event(frame("trade", trade, sid=1, seq=1), legacy=True).yes_price == 4200  # type: ignore[union-attr]


def test_a_legacy_cent_price_over_a_dollar_is_malformed():
    raw = frame("orderbook_delta", {**LEGACY_DELTA, "price": 101}, sid=1, seq=1)
    assert error_of(raw, legacy=True) == "orderbook_delta.msg.price: 101 is not a price in whole cents (0-100)"


# -- encoding: the exchange's side ----------------------------------------------------------------------------
SENT = [
    ev.BookSnapshot(market="KXA-1", yes_bids=((800, 30_000), (900, 150)), no_bids=((50, 100),), venue_ts_ms=3),
    ev.BookSnapshot(market="KXA-1"),
    ev.BookDelta(market="KXA-1", side="no", price=9100, delta=-250, client_order_id="c-1", venue_ts_ms=1),
    ev.PublicTrade(market="KXA-1", trade_id="t-9", yes_price=4500, count=1250, taker_side="yes", venue_ts_ms=5),
    ev.OrderFilled(trade_id="t-1", order_id="o-1", client_order_id="c-1", market="KXA-1", side="bid", price=801,
                   count=300, fee=16_800, is_taker=True, post_position=300, venue_ts_ms=8),
    ev.MarketLifecycle(market="KXA-1", kind="settled", result="no", settlement_value=0, close_ts_ms=9_001, venue_ts_ms=10),
    ev.OrderStatusReported(client_order_id="c-1", order_id="o-1", market="KXA-1", status="executed", side="ask",
                           price=4200, fill_count=500, remaining_count=0, initial_count=500, venue_ts_ms=11),
    ev.PositionReported(market="KXA-1", position=-300, cost=2_403_000, realized_pnl=-12_000, fees_paid=16_800),
]


@pytest.mark.parametrize("use_yes_price", [False, True])
@pytest.mark.parametrize("event", SENT, ids=lambda e: ev.event_type(e))
def test_what_the_exchange_encodes_our_client_decodes_to_the_same_event(event, use_yes_price):
    """decode(encode(e)) is e, with the subscription's sid and seq."""
    has_seq = isinstance(event, (ev.BookSnapshot, ev.BookDelta, ev.PublicTrade))
    raw = encode_event(event, sid=6, seq=40, use_yes_price=use_yes_price)
    expected = msgspec.structs.replace(event, sid=6, venue_seq=40) if has_seq else event
    assert decode_ws(raw, T, use_yes_price=use_yes_price).events == (expected,)


def test_a_snapshot_is_encoded_with_an_empty_side_omitted_and_fixed_point_strings():
    """The exact bytes Kalshi would send."""
    raw = encode_event(ev.BookSnapshot(market="KXA-1", yes_bids=((800, 30_000),)), sid=3, seq=17, market_id="9b0f")
    assert raw == (b'{"type":"orderbook_snapshot","sid":3,"seq":17,"msg":{"market_ticker":"KXA-1","market_id":"9b0f",'
                   b'"yes_dollars_fp":[["0.0800","300.00"]]}}')


def test_a_fill_is_encoded_with_a_six_decimal_fee_and_both_side_names():
    raw = encode_event(SENT[4], sid=9)
    assert raw == (b'{"type":"fill","sid":9,"msg":{"trade_id":"t-1","order_id":"o-1","client_order_id":"c-1",'
                   b'"market_ticker":"KXA-1","is_taker":true,"yes_price_dollars":"0.0801","count_fp":"3.00",'
                   b'"fee_cost":"0.016800","post_position_fp":"3.00","outcome_side":"yes","book_side":"bid","ts_ms":8}}')


def test_an_event_no_frame_carries_is_a_type_error():
    with pytest.raises(TypeError, match="no Kalshi WebSocket frame carries a session_ended event"):
        encode_event(ev.SessionEnded(), sid=1)


def test_replies_are_encoded_from_their_structs():
    assert codec.encode(m.Error(id=3, msg=m.ErrorMsg(code=codec.MARKET_TICKER_REQUIRED, msg="Market ticker required"))) == (
        b'{"type":"error","id":3,"msg":{"code":14,"msg":"Market ticker required"}}')


# -- commands ------------------------------------------------------------------------------------------------
def test_subscribe_always_sends_use_yes_price():
    """Even when false (Kalshi's default today, which it says will flip)."""
    assert codec.subscribe(1, ["orderbook_delta", "trade"], ["KXA-1", "KXB-2"], use_yes_price=False) == (
        b'{"cmd":"subscribe","id":1,"params":{"channels":["orderbook_delta","trade"],'
        b'"market_tickers":["KXA-1","KXB-2"],"use_yes_price":false}}')


def test_subscribe_without_markets_names_none():
    assert codec.subscribe(2, ["fill"], use_yes_price=True) == (
        b'{"cmd":"subscribe","id":2,"params":{"channels":["fill"],"use_yes_price":true}}')


def test_update_subscription_names_exactly_one_sid():
    assert codec.update_subscription(5, 4, "get_snapshot") == (
        b'{"cmd":"update_subscription","id":5,"params":{"action":"get_snapshot","sids":[4]}}')


@pytest.mark.parametrize("raw", [
    codec.subscribe(1, ["orderbook_delta"], ["K"], use_yes_price=True), codec.unsubscribe(2, [4, 5]),
    codec.list_subscriptions(3), codec.update_subscription(4, 6, "add_markets", ["K2"])])
def test_our_commands_decode_on_the_exchange(raw):
    """The exchange reads what our client sends, and re-encodes it identically."""
    command = decode_command(raw)
    assert not isinstance(command, codec.BadCommand)
    assert codec.encode(command) == raw


def test_a_third_party_subscribe_without_use_yes_price_means_false():
    command = decode_command(b'{"id":1,"cmd":"subscribe","params":{"channels":["trade"],"market_ticker":"K"}}')
    assert command == m.Subscribe(id=1, params=m.SubscribeParams(channels=["trade"], market_ticker="K"))


def test_update_subscription_lists_every_sid_it_names_so_the_exchange_can_refuse_two():
    command = decode_command(b'{"id":1,"cmd":"update_subscription","params":{"sids":[1,2],"action":"get_snapshot"}}')
    assert command.params.sid_list() == [1, 2]  # type: ignore[union-attr]


def test_an_unknown_command_is_named_with_its_id_for_the_error_reply():
    assert decode_command(b'{"id":7,"cmd":"explode"}') == codec.BadCommand(
        id=7, error="command.cmd: unknown command 'explode'")


@pytest.mark.parametrize(("raw", "cid", "ours"), [
    (b'{"id":8,"cmd":"subscribe","params":{"channels":"trade"}}', 8, "subscribe.params.channels"),
    (b'{"id":9,"cmd":"update_subscription","params":{"sids":[1],"action":"grow"}}', 9,
     "update_subscription.params.action"),
    (b"nonsense", None, "invalid JSON"),
])
def test_a_bad_command_is_named_with_its_id_for_the_error_reply(raw, cid, ours):
    """Our words name the field (or say the JSON is invalid); msgspec's reason follows them."""
    assert decode_command(raw) == codec.BadCommand(id=cid, error=f"{ours}: {msgspec_on(raw, m.WS_COMMANDS)}")


def test_a_command_that_is_not_utf8_is_named_by_its_first_bad_byte():
    raw = b'{"id":10,"cmd":"\xfe"}'
    assert decode_command(raw) == codec.BadCommand(
        id=None, error=f"invalid JSON: not UTF-8 at byte 16 ({msgspec_on(raw, m.WS_COMMANDS)})")


def test_a_decoder_shows_its_options():
    assert repr(WsDecoder(legacy=True)) == "WsDecoder(source='kalshi.ws', legacy=True, use_yes_price=False)"
