"""Every WebSocket message shape Kalshi documents or has been seen sending, one frame each, decoded exactly —
the events compared in full — and the local exchange sending those shapes where Kalshi would."""

from __future__ import annotations

import json

import aiohttp
import pytest
from websockets.asyncio.client import connect

from runtime.events import (
    BookDelta,
    BookSnapshot,
    EventLifecycle,
    MalformedInput,
    MarketLifecycle,
    OrderFilled,
    PublicTrade,
)
from runtime.venues.kalshi import codec
from runtime.venues.kalshi import messages as m
from runtime.venues.kalshi.convert import iso_ms, iso_of_ms
from runtime.venues.sim import EPOCH_NS
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from tests.venues.test_sim_server import KEY, cross, frames, quiet, serve, subscribe

pytestmark = pytest.mark.timeout(30)

SEEN_ISO = "2025-03-01T18:26:53.361842Z"  # the shape seen on deltas
SEEN_MS = 1_740_853_613_361


def decode(frame: dict, **options) -> codec.WsFrame:
    return codec.decode_ws(json.dumps(frame), 7, **options)


def events(frame: dict, **options) -> tuple:
    return decode(frame, **options).events


def malformed(frame: dict, **options) -> str:
    """The error of the one ``MalformedInput`` the frame becomes (its raw bytes are the frame's)."""
    (event,) = events(frame, **options)
    assert type(event) is MalformedInput and event.raw == json.dumps(frame).encode(), event
    return event.error


def delta(**msg) -> dict:
    return {"type": "orderbook_delta", "sid": 2, "seq": 9,
            "msg": {"market_ticker": "KXA-1", "side": "yes", **msg}}


def trade(**msg) -> dict:
    return {"type": "trade", "sid": 3, "seq": 4,
            "msg": {"trade_id": "t-1", "market_ticker": "KXA-1", "taker_outcome_side": "no", **msg}}


def book_delta(**kw) -> BookDelta:
    return BookDelta(**{"market": "KXA-1", "side": "yes", "price": 4200, "delta": -5000, "sid": 2, "venue_seq": 9,
                        **kw})


# --- timestamps -------------------------------------------------------------------------------------------
def test_ts_as_an_iso_string_with_microseconds_is_the_venue_time_to_the_millisecond():
    assert events(delta(price_dollars="0.4200", delta_fp="-50.00", ts=SEEN_ISO)) == (book_delta(venue_ts_ms=SEEN_MS),)


@pytest.mark.parametrize(("ts", "ms"), [
    ("2025-03-01T18:26:53Z", 1_740_853_613_000),  # no fraction
    ("2025-03-01T19:26:53.361+01:00", SEEN_MS),  # an offset
    ("2025-03-01T17:26:53.3619+0100".replace("+", "-"), SEEN_MS),  # a negative offset without a colon
    ("2025-03-01T18:26:53.999999999Z", 1_740_853_613_999),  # nanoseconds: dropped, never rounded up
    ("1969-12-31T23:59:59.999Z", -1),  # before the epoch
])
def test_every_iso_shape_is_exact(ts, ms):
    assert events(delta(price_dollars="0.4200", delta_fp="-50.00", ts=ts)) == (book_delta(venue_ts_ms=ms),)


def test_ts_in_unix_seconds_is_the_venue_time():
    frame = trade(yes_price_dollars="0.3600", count_fp="1.50", ts=1_694_721_600)
    assert events(frame) == (PublicTrade(market="KXA-1", trade_id="t-1", yes_price=3600, count=150, taker_side="no",
                                         sid=3, venue_seq=4, venue_ts_ms=1_694_721_600_000),)


def test_ts_ms_wins_over_ts():
    frame = trade(yes_price_dollars="0.3600", count_fp="1.50", ts_ms=1_694_721_600_123, ts=1_694_721_600)
    assert events(frame)[0].venue_ts_ms == 1_694_721_600_123


@pytest.mark.parametrize(("ts", "error"), [
    ("2025-03-01T18:26:53.361842", "orderbook_delta.msg.ts: '2025-03-01T18:26:53.361842' is not an ISO-8601 time "
                                   "with a zone (like 2025-03-01T18:26:53.361842Z)"),
    ("yesterday", "orderbook_delta.msg.ts: 'yesterday' is not an ISO-8601 time with a zone (like "
                  "2025-03-01T18:26:53.361842Z)"),
    ("2025-02-30T00:00:00Z", "orderbook_delta.msg.ts: '2025-02-30T00:00:00Z' is not a date of the calendar"),
    ("2025-03-01T24:00:00Z", "orderbook_delta.msg.ts: '2025-03-01T24:00:00Z' is not a time of day"),
    (1.5, "orderbook_delta.msg.ts: Expected `int | str | null`, got `float`"),
])
def test_an_unreadable_ts_is_malformed_input_naming_the_field(ts, error):
    assert malformed(delta(price_dollars="0.4200", delta_fp="-50.00", ts=ts)) == error


def test_the_iso_writer_and_reader_agree():
    for ms in (0, SEEN_MS, 1_694_721_600_000, -1):
        assert iso_ms(iso_of_ms(ms), "ts") == ms
    assert iso_of_ms(SEEN_MS) == "2025-03-01T18:26:53.361000Z"


# --- client_order_id on our own delta ---------------------------------------------------------------------
def test_client_order_id_on_our_own_delta_is_kept():
    frame = delta(price_dollars="0.4200", delta_fp="-50.00", client_order_id="c-7", subaccount=0, ts_ms=5)
    assert events(frame) == (book_delta(client_order_id="c-7", venue_ts_ms=5),)


# --- transition-era frames: integer cents beside the fixed-point fields ----------------------------------
def test_a_transition_delta_reads_the_fixed_point_fields_and_checks_the_cents():
    frame = delta(price=42, price_dollars="0.4200", delta=-50, delta_fp="-50.00", ts_ms=5)
    assert events(frame) == (book_delta(venue_ts_ms=5),)


@pytest.mark.parametrize(("msg", "error"), [
    ({"price": 41, "price_dollars": "0.4200", "delta_fp": "-50.00"},
     "orderbook_delta.msg.price_dollars: '0.4200' disagrees with orderbook_delta.msg.price 41"),
    ({"price_dollars": "0.4200", "delta": -49, "delta_fp": "-50.00"},
     "orderbook_delta.msg.delta_fp: '-50.00' disagrees with orderbook_delta.msg.delta -49"),
])
def test_a_transition_delta_whose_two_shapes_disagree_is_malformed_naming_both(msg, error):
    assert malformed(delta(**msg)) == error


def test_a_delta_with_only_cents_is_read_only_as_legacy():
    """Kalshi stopped sending integer-only frames on 2026-03-12 (kalshi-protocol.md): legacy=True reads them."""
    frame = delta(price=42, delta=-50)
    assert malformed(frame) == ("orderbook_delta.msg.price_dollars: missing (the legacy `price` is read only "
                                "with legacy=True)")
    assert events(frame, legacy=True) == (book_delta(),)


def test_a_transition_snapshot_and_trade_and_fill():
    snapshot = {"type": "orderbook_snapshot", "sid": 2, "seq": 1, "msg": {
        "market_ticker": "KXA-1", "yes": [[8, 300]], "yes_dollars_fp": [["0.0800", "300.00"]],
        "no": [[54, 20]], "no_dollars_fp": [["0.5400", "20.00"]]}}
    assert events(snapshot) == (BookSnapshot(market="KXA-1", yes_bids=((800, 30000),), no_bids=((5400, 2000),),
                                             sid=2, venue_seq=1),)
    old_trade = trade(yes_price=36, yes_price_dollars="0.3600", no_price=64, no_price_dollars="0.6400", count=3,
                      count_fp="3.00", ts=1_694_721_600)
    assert events(old_trade) == (PublicTrade(market="KXA-1", trade_id="t-1", yes_price=3600, count=300,
                                             taker_side="no", sid=3, venue_seq=4, venue_ts_ms=1_694_721_600_000),)
    fill = {"type": "fill", "sid": 5, "msg": {
        "trade_id": "t-1", "order_id": "o-1", "client_order_id": "c-1", "market_ticker": "KXA-1", "is_taker": True,
        "yes_price": 36, "yes_price_dollars": "0.3600", "count": 3, "count_fp": "3.00", "fee_cost": "0.0200",
        "post_position": 3, "post_position_fp": "3.00", "book_side": "bid", "ts": 1_694_721_600}}
    assert events(fill) == (OrderFilled(trade_id="t-1", order_id="o-1", client_order_id="c-1", market="KXA-1",
                                        side="bid", price=3600, count=300, fee=20_000, is_taker=True,
                                        post_position=300, venue_ts_ms=1_694_721_600_000),)


@pytest.mark.parametrize(("frame", "error"), [
    ({"type": "orderbook_snapshot", "sid": 2, "msg": {"market_ticker": "KXA-1", "yes": [[9, 300]],
                                                      "yes_dollars_fp": [["0.0800", "300.00"]]}},
     "orderbook_snapshot.msg.yes_dollars_fp: [('0.0800', '300.00')] disagrees with orderbook_snapshot.msg.yes [(9, 300)]"),
    (trade(yes_price=36, yes_price_dollars="0.3600", no_price=63, no_price_dollars="0.6400", count_fp="3.00"),
     "trade.msg.no_price_dollars: '0.6400' disagrees with trade.msg.no_price 63"),
    (trade(yes_price_dollars="0.3600", count=2, count_fp="3.00"),
     "trade.msg.count_fp: '3.00' disagrees with trade.msg.count 2"),
    ({"type": "market_lifecycle_v2", "sid": 6, "msg": {"market_ticker": "KXA-1", "event_type": "settled",
                                                       "result": "yes", "settlement_value": 99,
                                                       "settlement_value_dollars": "1.0000"}},
     "market_lifecycle_v2.msg.settlement_value_dollars: '1.0000' disagrees with market_lifecycle_v2.msg.settlement_value 99"),
])
def test_every_transition_frame_whose_shapes_disagree_is_malformed(frame, error):
    assert malformed(frame) == error


# --- market_lifecycle_v2 and event_lifecycle ----------------------------------------------------------------
def test_event_lifecycle_as_kalshis_example_writes_it():
    frame = {"type": "event_lifecycle", "sid": 5, "msg": {
        "event_ticker": "INXD-23SEP14", "title": "INX title", "sub_title": "INX subtitle",
        "collateral_return_type": "DIRECNET", "series_ticker": "INXD", "strike_date": 1_694_721_600}}
    got = decode(frame)
    assert (got.type, got.sid, got.seq) == ("event_lifecycle", 5, None)
    assert got.events == (EventLifecycle(event_ticker="INXD-23SEP14", series_ticker="INXD", title="INX title",
                                         subtitle="INX subtitle", collateral_return_type="DIRECNET",
                                         strike_date_ms=1_694_721_600_000),)


def test_event_lifecycle_as_the_spec_writes_it():
    frame = {"type": "event_lifecycle", "sending_ts_ms": 1_669_149_841_234, "sid": 5, "seq": 8, "msg": {
        "event_ticker": "KXQUICKSETTLE-26JAN25H2150", "exchange_index": 0, "title": "What will 1+1 equal?",
        "subtitle": "Jan 25 at 21:50", "collateral_return_type": "MECNET", "series_ticker": "KXQUICKSETTLE",
        "strike_date": "2023-09-14T20:00:00Z", "strike_period": ""}}
    got = decode(frame)
    assert (got.sid, got.seq) == (5, 8)
    assert got.events == (EventLifecycle(event_ticker="KXQUICKSETTLE-26JAN25H2150", series_ticker="KXQUICKSETTLE",
                                         title="What will 1+1 equal?", subtitle="Jan 25 at 21:50",
                                         collateral_return_type="MECNET", strike_date_ms=1_694_721_600_000,
                                         strike_period=""),)


def test_a_bad_event_lifecycle_is_malformed_naming_the_field():
    assert malformed({"type": "event_lifecycle", "sid": 5, "msg": {"title": "x"}}) == (
        "event_lifecycle.msg: Object missing required field `event_ticker`")
    assert malformed({"type": "event_lifecycle", "sid": 5, "msg": {"event_ticker": "E", "strike_date": "soon"}}) == (
        "event_lifecycle.msg.strike_date: 'soon' is not an ISO-8601 time with a zone (like 2025-03-01T18:26:53.361842Z)")


def test_market_lifecycle_as_kalshis_example_writes_it():
    frame = {"type": "market_lifecycle_v2", "sid": 13, "msg": {
        "market_ticker": "INXD-23SEP14-B4487", "event_type": "created", "open_ts": 1_694_635_200,
        "close_ts": 1_694_721_600, "additional_metadata": {"name": "S&P 500", "can_close_early": True}}}
    assert events(frame) == (MarketLifecycle(market="INXD-23SEP14-B4487", kind="created",
                                             close_ts_ms=1_694_721_600_000),)


@pytest.mark.parametrize("kind", ["price_level_structure_updated", "metadata_updated"])
def test_the_specs_other_market_lifecycle_events_are_read_and_give_no_event(kind):
    got = decode({"type": "market_lifecycle_v2", "sid": 13, "msg": {
        "market_ticker": "KXA-1", "event_type": kind, "price_level_structure": "deci_cent"}})
    assert (got.events, got.malformed, type(got.message)) == ((), False, m.MarketLifecycleV2)


# --- ticker ----------------------------------------------------------------------------------------------
TICKER = {"type": "ticker", "sid": 11, "msg": {
    "market_ticker": "KXA-1", "market_id": "9b0f6b43-5b68-4f6b-a0b9-7a1d6c35a1f1", "price_dollars": "0.4800",
    "yes_bid_dollars": "0.4500", "yes_ask_dollars": "0.5300", "volume_fp": "33896.00", "open_interest_fp": "20422.00",
    "dollar_volume": 16948, "dollar_open_interest": 10211, "yes_bid_size_fp": "300.00", "yes_ask_size_fp": "150.00",
    "last_trade_size_fp": "25.00", "ts": 1_669_149_841}}


def test_a_ticker_decodes_and_gives_no_event():
    """The runtime does not subscribe to ``ticker``; its content is derived from the book and trades."""
    got = decode(TICKER)
    assert (got.events, got.type, got.sid, got.seq) == ((), "ticker", 11, None)
    assert got.message == m.Ticker(sid=11, msg=m.TickerMsg(
        market_ticker="KXA-1", market_id="9b0f6b43-5b68-4f6b-a0b9-7a1d6c35a1f1", price_dollars="0.4800",
        yes_bid_dollars="0.4500", yes_ask_dollars="0.5300", yes_bid_size_fp="300.00", yes_ask_size_fp="150.00",
        last_trade_size_fp="25.00", volume_fp="33896.00", open_interest_fp="20422.00", dollar_volume=16948,
        dollar_open_interest=10211, ts=1_669_149_841))


def test_a_transition_ticker_reads_and_a_bad_one_is_malformed():
    old = {**TICKER, "msg": {**TICKER["msg"], "price": 48, "yes_bid": 45, "yes_ask": 53, "volume": 33896,
                             "open_interest": 20422}}
    assert events(old) == ()
    assert malformed({**TICKER, "msg": {**TICKER["msg"], "yes_ask": 52}}) == (
        "ticker.msg.yes_ask_dollars: '0.5300' disagrees with ticker.msg.yes_ask 52")
    assert malformed({**TICKER, "msg": {**TICKER["msg"], "price_dollars": "0.48005"}}).startswith(
        "ticker.msg.price_dollars: '0.48005'")


# --- the local exchange sends those shapes ------------------------------------------------------------------
async def test_the_exchange_sends_client_order_id_on_the_owners_deltas_only():
    """Alice's resting order: her delta names its client_order_id; Bob's copy of the same delta does not."""
    async with serve() as server, connect(server.ws_url, additional_headers={KEY: "alice"}) as alice, \
            connect(server.ws_url, additional_headers={KEY: "bob"}) as bob, aiohttp.ClientSession() as http:
        server.pause()
        ticker = server.exchange.tickers[0]
        for ws in (alice, bob):
            await ws.send(subscribe(1, ["orderbook_delta"], [ticker]))
            await frames(ws, 2)  # subscribed, snapshot
        body = {**cross(server, ticker), "price": "0.0100", "time_in_force": "good_till_canceled",
                "client_order_id": "alice-1"}
        reply = await http.post(f"{server.rest_url}/portfolio/events/orders", json=body, headers={KEY: "alice"})
        assert reply.status == 201, await reply.text()
        (mine,) = await frames(alice, 1)
        (theirs,) = await frames(bob, 1)
        ts_ms = server.exchange.now_ns // 1_000_000
        assert mine["msg"] == {"market_ticker": ticker, "market_id": server.exchange.market_ids[ticker],
                               "price_dollars": "0.0100", "delta_fp": "3.00", "side": "yes",
                               "client_order_id": "alice-1", "ts_ms": ts_ms, "ts": iso_of_ms(ts_ms)}
        assert theirs["msg"] == {k: v for k, v in mine["msg"].items() if k != "client_order_id"}
        assert events(mine) == (BookDelta(market=ticker, side="yes", price=100, delta=300, sid=1, venue_seq=2,
                                          client_order_id="alice-1", venue_ts_ms=ts_ms),)


async def test_the_exchange_sends_trades_with_ts_in_seconds_and_a_ticker_channel():
    async with serve() as server, connect(server.ws_url, additional_headers={KEY: "alice"}) as ws, \
            aiohttp.ClientSession() as http:
        server.pause()
        ticker = server.exchange.tickers[0]
        await ws.send(subscribe(1, ["trade", "ticker"], [ticker]))
        assert [f["msg"]["channel"] for f in await frames(ws, 2)] == ["trade", "ticker"]
        reply = await http.post(f"{server.rest_url}/portfolio/events/orders", json=cross(server, ticker),
                                headers={KEY: "alice"})
        assert reply.status == 201, await reply.text()
        got = await quiet(ws)
        trades = [f for f in got if f["type"] == "trade"]
        tickers = [f for f in got if f["type"] == "ticker"]
        assert trades and all(f["msg"]["ts"] == f["msg"]["ts_ms"] // 1000 for f in trades)
        state = server.exchange.ticker(ticker)
        assert state is not None and state.volume >= 300 and tickers
        last = tickers[-1]
        assert (last["sid"], "seq" in last) == (2, False)
        assert last["msg"]["price_dollars"] == f"{state.last_price / 10_000:.4f}"  # type: ignore[operator]
        assert last["msg"]["volume_fp"] == f"{state.volume / 100:.2f}"
        assert last["msg"]["ts"] == last["msg"]["ts_ms"] // 1000
        assert all(events(f) == () and not decode(f).malformed for f in tickers)


async def test_the_exchange_announces_each_markets_event_before_it_opens():
    """The markets open at the exchange's first tick; a server started paused lets a client subscribe first."""
    server = ExchangeServer(Exchange(2, 5, session_s=36_000.0, start_ns=EPOCH_NS))
    server._paused = True  # paused from the start: not even the opening tick runs
    async with server, connect(server.ws_url) as ws:
        await ws.send(subscribe(1, ["market_lifecycle_v2"]))
        await frames(ws, 1)
        server.resume()
        got = await frames(ws, 4)
        assert [(f["type"], f["msg"].get("market_ticker") or f["msg"]["event_ticker"]) for f in got] == [
            ("event_lifecycle", "KXSIM-000"), ("market_lifecycle_v2", "KXSIM-000"),
            ("event_lifecycle", "KXSIM-001"), ("market_lifecycle_v2", "KXSIM-001")]
        (announced,) = events(got[0])
        (opened,) = events(got[1])
        assert announced == EventLifecycle(event_ticker="KXSIM-000", series_ticker="KXSIM", title="KXSIM-000",
                                           strike_date_ms=opened.close_ts_ms // 1000 * 1000,
                                           venue_ts_ms=opened.venue_ts_ms)
        assert opened.kind == "activated"
