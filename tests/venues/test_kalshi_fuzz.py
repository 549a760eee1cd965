"""Fuzzed frames never crash the codec: whatever arrives, only valid events come out (issue 4's acceptance)."""

from __future__ import annotations

import copy

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import events as ev
from runtime.venues.kalshi import rest
from runtime.venues.kalshi.codec import BadCommand, WsFrame, decode_command, decode_ws
from runtime.venues.kalshi.messages import WsCommand

RECORD = msgspec.msgpack.Decoder(ev.Record)
EVENT_CLASSES = frozenset(ev.EVENT_TYPES.values())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
tricky = st.sampled_from(["0.12345", "-1", "-0.01", "1e5", "", " ", ".", "NaN", "Infinity", "1.00001", "0." + "0" * 70 + "1",
                          "9" * 5000, "٠.٥", "+0.5", 1e308, -0.0, 0.1 + 0.2, 2**64, -(2**63), True, None, [], {},
                          [["0.5", "1"]], [[1, 2, 3]], "yes", "no", "bid", "ask", "resting", "canceled"])

VALID: list[dict] = [
    {"type": "orderbook_snapshot", "sid": 1, "seq": 3, "msg": {"market_ticker": "K", "market_id": "m",
     "yes_dollars_fp": [["0.0800", "300.00"], ["0.09", "1"]], "no_dollars_fp": [["0.5000", "2.50"]]}},
    {"type": "orderbook_snapshot", "sid": 1, "seq": 3, "msg": {"market_ticker": "K", "yes": [[8, 300]], "no": [[50, 2]]}},
    {"type": "orderbook_delta", "sid": 1, "seq": 4, "msg": {"market_ticker": "K", "market_id": "m", "price_dollars": "0.0800",
     "delta_fp": "-3.00", "side": "no", "client_order_id": "c", "ts_ms": 5}},
    {"type": "orderbook_delta", "sid": 1, "seq": 4, "msg": {"market_ticker": "K", "price": 8, "delta": -3, "side": "yes"}},
    {"type": "trade", "sid": 2, "seq": 1, "msg": {"trade_id": "t", "market_ticker": "K", "yes_price_dollars": "0.45",
     "no_price_dollars": "0.55", "count_fp": "1.25", "taker_outcome_side": "yes", "taker_book_side": "bid",
     "taker_side": "yes", "ts_ms": 6}},
    {"type": "fill", "sid": 3, "msg": {"trade_id": "t", "order_id": "o", "client_order_id": "c", "market_ticker": "K",
     "is_taker": True, "yes_price_dollars": "0.42", "count_fp": "5.00", "fee_cost": "0.081900",
     "post_position_fp": "-5.00", "outcome_side": "no", "book_side": "ask", "side": "yes", "action": "sell", "ts_ms": 7}},
    {"type": "user_order", "sid": 4, "msg": {"order_id": "o", "client_order_id": "c", "ticker": "K", "status": "canceled",
     "side": "bid", "yes_price_dollars": "0.35", "initial_count_fp": "10.00", "fill_count_fp": "4.00",
     "remaining_count_fp": "0.00"}},
    {"type": "user_order", "sid": 4, "msg": {"order_id": "o", "ticker": "K", "status": "resting", "side": "no",
     "action": "buy", "no_price_dollars": "0.65", "fill_count_fp": "0", "remaining_count_fp": "3"}},
    {"type": "market_position", "sid": 5, "msg": {"market_ticker": "K", "position_fp": "-3.00",
     "position_cost_dollars": "1.20", "realized_pnl_dollars": "-0.05", "fees_paid_dollars": "0.02"}},
    {"type": "market_lifecycle_v2", "sid": 6, "msg": {"market_ticker": "K", "event_type": "settled", "result": "yes",
     "settlement_value": "1.00", "close_ts": 1_700_000_000}},
    {"type": "subscribed", "id": 1, "msg": {"channel": "trade", "sid": 2}},
    {"type": "ok", "id": 2, "sid": 2, "seq": 7, "msg": {"market_tickers": ["K"]}},
    {"type": "unsubscribed", "id": 3, "sid": 2},
    {"type": "error", "id": 4, "msg": {"code": 25, "msg": "Subscription buffer overflow"}},
]


def assert_only_valid_events(frame: WsFrame, raw: bytes) -> None:
    """A WsFrame whose events are schema events that the log can write and read back exactly."""
    assert isinstance(frame, WsFrame)
    for event in frame.events:
        assert type(event) in EVENT_CLASSES
        record = ev.Record(1, 0, event)
        assert RECORD.decode(msgspec.msgpack.encode(record)) == record
    if frame.malformed:
        (event,) = frame.events
        assert event.raw == raw and event.error  # type: ignore[union-attr]


def paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a JSON value."""
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out.extend(paths(child, (*prefix, key)))
    return out


@st.composite
def mutated_frames(draw: st.DrawFn) -> dict:
    """A valid frame with one to three fields deleted or replaced by tricky or random values."""
    frame = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        where = paths(frame)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = frame
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(tricky | json_values))  # never share a mutable constant
    return frame


@FUZZ
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_random_bytes_become_events_only(raw, legacy, use_yes_price):
    assert_only_valid_events(decode_ws(raw, 1, legacy=legacy, use_yes_price=use_yes_price), raw)


@FUZZ
@given(json_values)
def test_random_json_becomes_events_only(value):
    raw = msgspec.json.encode(value)
    assert_only_valid_events(decode_ws(raw, 1), raw)


@FUZZ
@given(st.sampled_from(VALID), json_values)
def test_a_random_msg_under_a_known_type_becomes_events_only(frame, msg):
    raw = msgspec.json.encode({**frame, "msg": msg})
    assert_only_valid_events(decode_ws(raw, 1), raw)


@FUZZ
@given(mutated_frames(), st.booleans(), st.booleans())
def test_valid_frames_with_mutated_fields_become_events_only(frame, legacy, use_yes_price):
    raw = msgspec.json.encode(frame)
    assert_only_valid_events(decode_ws(raw, 1, legacy=legacy, use_yes_price=use_yes_price), raw)


@FUZZ
@given(mutated_frames())
def test_a_truncated_valid_frame_becomes_events_only(frame):
    raw = msgspec.json.encode(frame)
    for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 1):
        assert_only_valid_events(decode_ws(raw[:cut], 1), raw[:cut])


def test_every_valid_frame_decodes_without_malformed_input():
    """The fuzz seeds are themselves valid (legacy ones with legacy=True)."""
    for frame in VALID:
        result = decode_ws(msgspec.json.encode(frame), 1, legacy=True)
        assert not result.malformed, result


def test_deeply_nested_json_is_malformed_input_not_a_recursion_error():
    raw = b'{"type":"ok","msg":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert decode_ws(raw, 1).events[0].error == "invalid JSON: nested too deeply"  # type: ignore[union-attr]


@FUZZ
@given(st.binary(max_size=200) | json_values.map(msgspec.json.encode)
       | st.fixed_dictionaries({"id": json_values, "cmd": st.sampled_from(["subscribe", "unsubscribe", "list_subscriptions",
                                                                           "update_subscription", "x"]),
                                "params": json_values}).map(msgspec.json.encode))
def test_fuzzed_commands_decode_to_a_command_or_a_bad_command(raw):
    result = decode_command(raw)
    assert isinstance(result, (BadCommand, *WsCommand.__args__))  # type: ignore[attr-defined]


@FUZZ
@given(json_values.map(msgspec.json.encode) | st.binary(max_size=100)
       | st.lists(mutated_frames().map(lambda f: f.get("msg")), max_size=3).map(
           lambda items: msgspec.json.encode({"fills": items, "orders": items, "market_positions": items})))
def test_fuzzed_rest_pages_become_events_only(raw):
    for read in (rest.fills, rest.orders, rest.positions):
        page = read(raw)
        for event in page.events:
            record = ev.Record(1, 0, event)
            assert RECORD.decode(msgspec.msgpack.encode(record)) == record
    assert isinstance(rest.api_error(400, raw), rest.ApiError)
