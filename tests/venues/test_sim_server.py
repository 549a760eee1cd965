"""The local exchange over real sockets on loopback: Kalshi's WebSocket protocol (replies, snapshots, seq,
error codes), REST (orders, portfolio, markets, pagination, errors), authentication, the slow-client
guard, and every fault hook — driven by raw ``websockets`` and ``aiohttp`` clients, not ours."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import aiohttp
import msgspec
import pytest
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from config import LoggingSettings
from runtime.events import BookSnapshot, MalformedInput
from runtime.logger import configure_logging
from runtime.units import PRICE_MAX, format_count, format_price
from runtime.venues.kalshi import codec, rest
from runtime.venues.kalshi.auth import Signer
from runtime.venues.kalshi.messages import CreateOrderV2Request, WsCommand
from runtime.venues.sim import EPOCH_NS
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from tests.wording import said_by

pytestmark = pytest.mark.timeout(30)

KEY = "KALSHI-ACCESS-KEY"


@asynccontextmanager
async def serve(markets: int = 3, seed: int = 5, **kw) -> AsyncIterator[ExchangeServer]:
    exchange = Exchange(markets, seed, session_s=36_000.0, start_ns=EPOCH_NS)
    async with ExchangeServer(exchange, **kw) as server:
        yield server


async def recv(ws: ClientConnection, timeout: float = 3.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def frames(ws: ClientConnection, n: int, timeout: float = 5.0) -> list[dict]:
    async with asyncio.timeout(timeout):
        return [json.loads(await ws.recv()) for _ in range(n)]


async def quiet(ws: ClientConnection, seconds: float = 0.3) -> list[dict]:
    """Every frame that arrives within ``seconds``."""
    out = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                out.append(json.loads(await ws.recv()))
    return out


def subscribe(id: int, channels: list[str], markets: list[str] | tuple[str, ...] = (), **params) -> str:
    body: dict = {"channels": channels, **params}
    if markets:
        body["market_tickers"] = list(markets)
    return json.dumps({"id": id, "cmd": "subscribe", "params": body})


def snapshot_of(frame: dict, use_yes_price: bool = False) -> BookSnapshot:
    (event,) = codec.decode_ws(json.dumps(frame), 0, use_yes_price=use_yes_price).events
    assert type(event) is BookSnapshot, event
    return event


def cross(server: ExchangeServer, ticker: str) -> dict:
    """A V2 create body that takes the whole best ask of ``ticker`` (an IOC bid at it)."""
    engine = server.exchange.flows[server.exchange.tickers.index(ticker)].engine
    ask = engine.best_ask()
    assert ask is not None
    return {"ticker": ticker, "side": "bid", "price": f"{ask / PRICE_MAX:.4f}", "count": "3.00",
            "time_in_force": "immediate_or_cancel"}


# --- the WebSocket protocol ---------------------------------------------------------------------------
async def test_a_book_subscription_replies_then_sends_one_snapshot_per_market_equal_to_the_engines():
    async with serve() as server, connect(server.ws_url) as ws:
        server.pause()
        tickers = server.exchange.tickers
        await ws.send(subscribe(1, ["orderbook_delta", "trade"], tickers[:2]))
        got = await frames(ws, 4)
        assert got[0] == {"type": "subscribed", "id": 1, "msg": {"channel": "orderbook_delta", "sid": 1}}
        assert [(f["type"], f["sid"], f["seq"]) for f in got[1:3]] == [("orderbook_snapshot", 1, 1),
                                                                        ("orderbook_snapshot", 1, 2)]
        for frame, ticker in zip(got[1:3], tickers[:2], strict=True):
            book = server.exchange.book(ticker)
            assert frame["msg"]["market_id"] == server.exchange.market_ids[ticker]
            assert (snapshot_of(frame).yes_bids, snapshot_of(frame).no_bids) == (book.yes_bids, book.no_bids)  # type: ignore[union-attr]
        assert got[3] == {"type": "subscribed", "id": 1, "msg": {"channel": "trade", "sid": 2}}


async def test_seq_counts_per_subscription_on_book_and_trade_frames_only():
    async with serve(speed=400.0) as server, connect(server.ws_url) as ws:
        tickers = server.exchange.tickers
        await ws.send(subscribe(1, ["orderbook_delta", "trade", "market_lifecycle_v2"], tickers))
        seqs: dict[int, list[int]] = {1: [], 2: []}
        async with asyncio.timeout(10):
            while len(seqs[1]) < 60 or len(seqs[2]) < 3:
                f = json.loads(await ws.recv())
                if f["type"] in ("orderbook_snapshot", "orderbook_delta", "trade"):
                    assert f["sid"] == (1 if f["type"] != "trade" else 2)
                    seqs[f["sid"]].append(f["seq"])
                elif f["type"] == "market_lifecycle_v2":
                    assert "seq" not in f and f["sid"] == 3
        for sid, got in seqs.items():
            assert got == list(range(1, len(got) + 1)), sid


async def test_use_yes_price_quotes_the_no_levels_at_the_yes_price():
    async with serve() as server, connect(server.ws_url) as ws:
        server.pause()
        ticker = server.exchange.tickers[0]
        await ws.send(subscribe(1, ["orderbook_delta"], [ticker], use_yes_price=False))
        await ws.send(subscribe(2, ["orderbook_delta"], [ticker], use_yes_price=True))
        no_leg, _, yes_leg = (await frames(ws, 4))[1:]
        book = server.exchange.book(ticker)
        assert [float(p) for p, _ in no_leg["msg"]["no_dollars_fp"]] == [p / PRICE_MAX for p, _ in book.no_bids]  # type: ignore[union-attr]
        assert [round(1 - float(p), 4) for p, _ in yes_leg["msg"]["no_dollars_fp"]] == [p / PRICE_MAX for p, _ in book.no_bids]  # type: ignore[union-attr]
        assert snapshot_of(yes_leg, use_yes_price=True).no_bids == book.no_bids  # type: ignore[union-attr]


def carried(ours: str, raw: str | bytes, kind: type) -> str:
    """Our words, then what msgspec says about ``raw`` as a ``kind`` (whatever its wording)."""
    return f"{ours}: {said_by(lambda: msgspec.json.decode(raw, type=kind))}"


NOT_JSON = b"not json at all"
CHANNELS_NOT_A_LIST = '{"id": 8, "cmd": "subscribe", "params": {"channels": "trade"}}'
BAD_COMMANDS = [
    (NOT_JSON, 1, carried("invalid JSON", NOT_JSON, WsCommand)),
    ('{"id": 1, "cmd": "dance"}', 5, "command.cmd: unknown command 'dance'"),
    ('{"id": 2, "cmd": "subscribe"}', 2, None),
    ('{"id": 3, "cmd": "subscribe", "params": {}}', 3, None),
    ('{"id": 4, "cmd": "subscribe", "params": {"channels": []}}', 3, "Channels required"),
    ('{"id": 5, "cmd": "subscribe", "params": {"channels": ["ticker_v9"], "market_tickers": ["KXSIM-000"]}}', 8,
     "Unknown channel name 'ticker_v9'"),
    ('{"id": 6, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}', 14,
     "Market ticker required: orderbook_delta needs market tickers"),
    ('{"id": 7, "cmd": "subscribe", "params": {"channels": ["trade"], "market_tickers": ["KXNOPE"]}}', 11,
     "market ticker 'KXNOPE' not found"),
    (CHANNELS_NOT_A_LIST, 11, carried("subscribe.params.channels", CHANNELS_NOT_A_LIST, WsCommand)),
    ('{"id": 9, "cmd": "unsubscribe", "params": {"sids": [42]}}', 7, "Unknown subscription ID 42"),
    ('{"id": 10, "cmd": "unsubscribe", "params": {}}', 4, None),
    ('{"id": 11, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "get_snapshot"}}', 12,
     "Exactly one subscription ID is required, got 2"),
    ('{"id": 12, "cmd": "update_subscription", "params": {"sids": [1]}}', 15, None),
    ('{"id": 13, "cmd": "update_subscription", "params": {"sids": [99], "action": "get_snapshot"}}', 7,
     "Unknown subscription ID 99"),
    ('[1, 2, 3]', 1, None),
]


@pytest.mark.parametrize(("raw", "code", "message"), BAD_COMMANDS)
async def test_a_bad_command_gets_an_error_with_kalshis_code(raw, code, message):
    async with serve() as server, connect(server.ws_url) as ws:
        await ws.send(raw)
        reply = await recv(ws)
        assert reply["type"] == "error" and reply["msg"]["code"] == code, reply
        if message is not None:
            assert reply["msg"]["msg"] == message
        if isinstance(raw, str) and raw.startswith("{"):
            assert reply["id"] == json.loads(raw)["id"]


async def test_garbage_never_breaks_the_connection_or_the_server():
    """Random bytes, deep nesting, huge numbers, wrong types, text and binary frames: each gets an error
    reply, and the connection then subscribes as if nothing happened."""
    rng = random.Random(7)
    junk: list[str | bytes] = [
        "[" * 50_000 + "]" * 50_000, '{"id": 1e400, "cmd": "subscribe"}', '{"id": 99999999999999999999999}',
        '{"cmd": null}', '{"id": 1, "cmd": "subscribe", "params": {"channels": [1, 2]}}', "\x00\x01", "",
        '{"id": 1, "cmd": "update_subscription", "params": {"sid": "x", "action": "nope"}}', "{" * 10, "💥",
        '{"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"], "market_ticker": 7}}',
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)),
    ]
    async with serve() as server, connect(server.ws_url) as ws:
        for raw in junk:
            await ws.send(raw)
            reply = await recv(ws)
            assert reply["type"] == "error" and reply["msg"]["code"] in (1, 2, 3, 5, 11), (raw[:40], reply)
        await ws.send(subscribe(2, ["trade"], server.exchange.tickers[:1]))
        assert await recv(ws) == {"type": "subscribed", "id": 2, "msg": {"channel": "trade", "sid": 1}}


async def test_update_subscription_adds_and_deletes_markets_and_resends_snapshots():
    async with serve() as server, connect(server.ws_url) as ws:
        server.pause()
        a, b, _ = server.exchange.tickers
        await ws.send(subscribe(1, ["orderbook_delta"], [a]))
        await frames(ws, 2)
        await ws.send(json.dumps({"id": 2, "cmd": "update_subscription",
                                  "params": {"sids": [1], "action": "add_markets", "market_tickers": [b]}}))
        ok, snap = await frames(ws, 2)
        assert ok == {"type": "ok", "id": 2, "sid": 1, "msg": {"market_tickers": [a, b]}}
        assert (snap["type"], snap["seq"], snap["msg"]["market_ticker"]) == ("orderbook_snapshot", 2, b)
        await ws.send(json.dumps({"id": 3, "cmd": "update_subscription",
                                  "params": {"sid": 1, "action": "delete_markets", "market_tickers": [a]}}))
        assert await recv(ws) == {"type": "ok", "id": 3, "sid": 1, "msg": {"market_tickers": [b]}}
        await ws.send(json.dumps({"id": 4, "cmd": "update_subscription", "params": {"sids": [1], "action": "get_snapshot"}}))
        ok, snap = await frames(ws, 2)
        assert ok["type"] == "ok" and (snap["seq"], snap["msg"]["market_ticker"]) == (3, b)
        await ws.send(json.dumps({"id": 5, "cmd": "list_subscriptions"}))
        assert await recv(ws) == {"type": "ok", "id": 5, "msg": [{"channel": "orderbook_delta", "sid": 1, "market_tickers": [b]}]}
        await ws.send(json.dumps({"id": 6, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
        await recv(ws)
        await ws.send(json.dumps({"id": 7, "cmd": "update_subscription", "params": {"sids": [2], "action": "get_snapshot"}}))
        assert (await recv(ws))["msg"] == {"code": 13, "msg": "get_snapshot is for orderbook_delta, not trade"}
        await ws.send(json.dumps({"id": 8, "cmd": "unsubscribe", "params": {"sids": [1, 2]}}))
        assert await frames(ws, 2) == [{"type": "unsubscribed", "id": 8, "sid": 1, "seq": 3},
                                       {"type": "unsubscribed", "id": 8, "sid": 2, "seq": 0}]
        assert await quiet(ws, 0.2) == []


async def test_private_channels_carry_only_the_owners_events():
    """Alice's order fills: her fill, user_order and market_position frames reach her connection — with
    the exchange's fill exactly — and Bob, subscribed to the same channels, sees nothing."""
    async with serve() as server, connect(server.ws_url, additional_headers={KEY: "alice"}) as alice, \
            connect(server.ws_url, additional_headers={KEY: "bob"}) as bob, aiohttp.ClientSession() as http:
        server.pause()
        for ws in (alice, bob):
            await ws.send(subscribe(1, ["fill", "user_order", "market_positions"]))
            assert [f["msg"]["channel"] for f in await frames(ws, 3)] == ["fill", "user_orders", "market_positions"]
        ticker = server.exchange.tickers[0]
        reply = await http.post(f"{server.rest_url}/portfolio/events/orders", json=cross(server, ticker),
                                headers={KEY: "alice"})
        assert reply.status == 201, await reply.text()
        got = await frames(alice, 3)
        assert [f["type"] for f in got] == ["fill", "user_order", "market_position"]
        (fill,) = codec.decode_ws(json.dumps(got[0]), 0).events
        assert fill == server.exchange.fills("alice")[0]
        assert "seq" not in got[0] and got[2]["msg"]["position_fp"] == "3.00"
        assert await quiet(bob) == []


async def test_the_server_pings_with_heartbeat():
    async with serve(ping_interval_s=0.05) as server, aiohttp.ClientSession() as http, \
            http.ws_connect(server.ws_url, autoping=False) as ws:
        msg = await ws.receive(timeout=2)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PING, b"heartbeat")


async def test_a_slow_client_loses_its_subscription_with_error_25_and_the_exchange_goes_on():
    """A connection whose frames go out 50 ms apart overflows its 20-frame queue: its book subscription ends
    with error 25 (naming the sid) and nothing more comes on it; a fast connection meanwhile gets every
    frame, and the market's time keeps moving."""
    async with serve(speed=500.0, queue_limit=20) as server, connect(f"{server.ws_url}?faults=slow_ms=20") as slow, \
            connect(server.ws_url) as fast:
        tickers = server.exchange.tickers
        await slow.send(subscribe(1, ["orderbook_delta"], tickers))
        await fast.send(subscribe(1, ["orderbook_delta"], tickers))
        started = server.exchange.now_ns
        async with asyncio.timeout(10):
            while (f := json.loads(await slow.recv()))["type"] != "error":
                pass
        assert f == {"type": "error", "sid": 1, "msg": {"code": 25, "msg": "Subscription buffer overflow: the client reads too slowly"}}
        assert [x for x in await quiet(slow, 0.5) if x.get("sid") == 1] == []
        seqs = [x["seq"] for x in await quiet(fast, 0.3) if "seq" in x]
        assert len(seqs) > 20 and seqs == list(range(1, len(seqs) + 1))
        assert server.exchange.now_ns > started


async def test_pause_stops_the_markets_time_and_resume_goes_on_from_there():
    async with serve(speed=1_000.0) as server:
        await asyncio.sleep(0.05)
        server.pause()
        stood = server.exchange.now_ns
        await asyncio.sleep(0.1)
        assert server.exchange.now_ns == stood and server.paused
        server.resume()
        await asyncio.sleep(0.1)
        assert stood < server.exchange.now_ns < stood + 10**9 * 1_000  # no jump over the paused wall time


# --- REST --------------------------------------------------------------------------------------------------
async def test_an_order_goes_through_rest_from_create_to_cancel_and_fill():
    async with serve() as server, aiohttp.ClientSession(headers={KEY: "carol"}) as http:
        server.pause()
        base, ex = server.rest_url, server.exchange
        ticker = ex.tickers[0]
        created = await http.post(f"{base}/portfolio/events/orders", json={
            "ticker": ticker, "side": "bid", "price": "0.0100", "count": "2.50", "client_order_id": "r-1",
            "time_in_force": "good_till_canceled"})
        body = await created.json()
        assert created.status == 201 and body["client_order_id"] == "r-1"
        assert (body["fill_count"], body["remaining_count"]) == ("0.00", "2.50")
        order_id = body["order_id"]
        listed = rest.orders(await (await http.get(f"{base}/portfolio/orders?status=resting")).read())
        assert listed.events == [ex.order("carol", order_id)] and listed.cursor == ""
        one = (await (await http.get(f"{base}/portfolio/orders/{order_id}")).json())["order"]
        assert (one["remaining_count_fp"], one["user_id"], one["outcome_side"], one["book_side"], one["side"]) == (
            "2.50", "carol", "yes", "bid", "yes")
        assert (one["type"], one["taker_fill_cost_dollars"], one["maker_fees_dollars"]) == ("limit", "0.000000", "0.000000")
        balance = await (await http.get(f"{base}/portfolio/balance")).json()
        assert balance["balance_dollars"] == f"{ex.balance('carol') / 1e6:.6f}" and ex.balance("carol") < 10**10
        assert balance["portfolio_value"] == 0 and balance["updated_ts"] == ex.now_ns // 10**9
        canceled = await http.delete(f"{base}/portfolio/events/orders/{order_id}", json={})
        assert canceled.status == 200 and await canceled.json() == {
            "order_id": order_id, "client_order_id": "r-1", "reduced_by": "2.50", "ts_ms": ex.now_ns // 10**6}
        assert ex.order("carol", order_id).status == "canceled"  # type: ignore[union-attr]
        again = await http.delete(f"{base}/portfolio/events/orders/{order_id}")
        assert again.status == 404 and (await again.json())["code"] == "not_found"
        filled = await http.post(f"{base}/portfolio/events/orders", json=cross(server, ticker))
        assert filled.status == 201 and (await filled.json())["fill_count"] == "3.00"
        fills = rest.fills(await (await http.get(f"{base}/portfolio/fills")).read())
        assert fills.events == [msgspec.structs.replace(f, client_order_id="", post_position=None)
                                for f in reversed(ex.fills("carol"))]  # what a REST fill carries
        raw_fill = (await (await http.get(f"{base}/portfolio/fills")).json())["fills"][0]
        assert raw_fill["fill_id"] == ex.fill_id(ex.fills("carol")[-1]) and raw_fill["market_ticker"] == ticker
        positions = rest.positions(await (await http.get(f"{base}/portfolio/positions")).read())
        assert [(p.market, p.position) for p in positions.events] == [(ticker, 300)]  # type: ignore[union-attr]
        body = await (await http.get(f"{base}/portfolio/positions")).json()
        (event,) = body["event_positions"]
        assert event["event_ticker"] == ex.prefix and event["total_cost_shares_fp"] == "3.00"
        assert body["market_positions"][0]["total_traded_dollars"] == event["total_cost_dollars"] != "0.000000"
        executed = (await (await http.get(f"{base}/portfolio/orders", params={"status": "executed"})).json())["orders"]
        assert executed[0]["taker_fill_cost_dollars"] == event["total_cost_dollars"]
        assert executed[0]["taker_fees_dollars"] == event["fees_paid_dollars"] != "0.000000"


async def test_queue_positions_are_the_engines_true_price_time_priority():
    """GET /portfolio/orders/queue_positions (Kalshi's shape: whole contracts and the _fp count) names each resting
    order of the caller's with the count ahead of it at its price; our REST client reads it back exactly."""
    from runtime.events import OrderIntent
    from runtime.venues.kalshi.http import KalshiRest

    async with serve() as server, aiohttp.ClientSession(headers={KEY: "carol"}) as http, \
            KalshiRest(server.rest_url) as client:
        server.pause()
        base, ex = server.rest_url, server.exchange
        ticker = ex.tickers[0]
        bid = ex.market(ticker).yes_bid  # type: ignore[union-attr]
        acks = [await client.create_order(OrderIntent(cause_seq=1, client_order_id=f"q-{i}", market=ticker, side="bid",
                                                      price=bid, count=250)) for i in range(2)]
        ahead = ex.queue_positions("trust", {ticker})
        assert [a for _, _, a in ahead] == [ahead[0][2], ahead[0][2] + 250] and ahead[0][2] > 0
        assert await client.queue_positions([ticker]) == [(a.order_id, ticker, n) for a, (_, _, n) in zip(acks, ahead, strict=True)]
        body = await (await http.get(f"{base}/portfolio/orders/queue_positions",
                                     params={"market_tickers": ticker}, headers={KEY: "trust"})).json()
        assert body["queue_positions"][1] == {"order_id": acks[1].order_id, "market_ticker": ticker,
                                              "queue_position": (ahead[0][2] + 250) // 100,
                                              "queue_position_fp": format_count(ahead[0][2] + 250)}
        assert (await (await http.get(f"{base}/portfolio/orders/queue_positions",
                                      params={"market_tickers": ticker})).json()) == {"queue_positions": []}  # carol's: none
        missing = await http.get(f"{base}/portfolio/orders/queue_positions")
        assert missing.status == 400 and (await missing.json())["message"] == "market_tickers or event_ticker is required"


async def test_cursors_page_through_every_item_once_even_as_new_ones_arrive():
    async with serve(markets=5) as server, aiohttp.ClientSession(headers={KEY: "dave"}) as http:
        server.pause()
        base, ex = server.rest_url, server.exchange
        ids = []
        for k in range(7):
            r = await http.post(f"{base}/portfolio/events/orders", json={
                "ticker": ex.tickers[k % 5], "side": "bid", "price": "0.0100", "count": "1.00"})
            ids.append((await r.json())["order_id"])
        seen, cursor, pages = [], None, 0
        while True:
            page = rest.orders(await (await http.get(f"{base}/portfolio/orders", params={
                "limit": "3", **({"cursor": cursor} if cursor else {})})).read())
            seen += [e.order_id for e in page.events]  # type: ignore[union-attr]
            pages += 1
            if pages == 1:  # a new order meanwhile does not shift the pages
                await http.post(f"{base}/portfolio/events/orders", json={
                    "ticker": ex.tickers[0], "side": "bid", "price": "0.0200", "count": "1.00"})
            if not page.cursor:
                break
            cursor = page.cursor
        assert seen == list(reversed(ids)) and pages == 3
        tickers, cursor = [], None
        while True:
            body = await (await http.get(f"{base}/markets", params={"limit": "2", **({"cursor": cursor} if cursor else {})})).json()
            tickers += [m["ticker"] for m in body["markets"]]
            if not body.get("cursor"):
                break
            cursor = body["cursor"]
        assert tickers == list(ex.tickers)
        only = await (await http.get(f"{base}/portfolio/orders", params={"ticker": ex.tickers[1]})).json()
        assert [o["ticker"] for o in only["orders"]] == [ex.tickers[1]] * 2


async def test_fills_filter_by_min_ts_in_seconds_or_milliseconds():
    async with serve(speed=100.0) as server, aiohttp.ClientSession() as http:
        base, ex = server.rest_url, server.exchange
        ticker = ex.tickers[0]
        for _ in range(2):
            server.pause()
            assert (await http.post(f"{base}/portfolio/events/orders", json=cross(server, ticker))).status == 201
            server.resume()
            await asyncio.sleep(0.05)
        first, second = (f.venue_ts_ms for f in ex.fills("trust"))
        assert first // 1000 < second // 1000  # five market seconds apart at least
        for min_ts in (str(second // 1000), str(second)):
            got = rest.fills(await (await http.get(f"{base}/portfolio/fills", params={"min_ts": min_ts})).read())
            assert [f.venue_ts_ms for f in got.events] == [second]  # type: ignore[union-attr]
        everything = rest.fills(await (await http.get(f"{base}/portfolio/fills", params={"min_ts": "0", "limit": "1"})).read())
        assert len(everything.events) == 1 and everything.cursor


async def test_batch_create_and_batch_cancel():
    async with serve() as server, aiohttp.ClientSession() as http:
        server.pause()
        base, ticker = server.rest_url, server.exchange.tickers[0]
        reply = await http.post(f"{base}/portfolio/events/orders/batched", json={"orders": [
            {"ticker": ticker, "side": "bid", "price": "0.0100", "count": "1.00", "client_order_id": "b1"},
            {"ticker": ticker, "side": "bid", "price": "0.0150", "count": "1.00", "client_order_id": "b2"},
            {"ticker": ticker, "side": "bid", "price": "0.0100", "count": "1.00", "client_order_id": "b1"},
            {"ticker": ticker, "side": "bid", "price": "abc", "count": "1.00", "client_order_id": "b3"}]})
        items = (await reply.json())["orders"]
        assert reply.status == 201
        assert items[0]["client_order_id"] == "b1" and "order" not in items[0]  # flat, as the spec has them
        assert (items[0]["fill_count"], items[0]["remaining_count"]) == ("0.00", "1.00")
        assert items[1]["error"]["code"] == "invalid_price"
        assert (items[2]["error"]["code"], items[3]["error"]["code"]) == ("duplicate_client_order_id", "bad_request")
        assert items[3]["error"]["message"] == "batch_create_orders_v2_request.orders[3].price: 'abc' is not a decimal number"
        order_id = items[0]["order_id"]
        reply = await http.delete(f"{base}/portfolio/events/orders/batched",
                                  json={"orders": [{"order_id": order_id}, {"order_id": "nope"}]})
        items = (await reply.json())["orders"]
        assert reply.status == 200 and items[0]["reduced_by"] == "1.00" and items[1]["error"]["code"] == "not_found"
        assert items[0]["client_order_id"] == "b1" and items[1]["reduced_by"] == "0.00"
        typed = rest.decode_body(json.dumps({"orders": items}), rest.m.BatchCancelOrdersResponse)  # the codec's shape
        assert [i.order_id for i in typed.orders] == [order_id, "nope"]  # type: ignore[union-attr]


async def test_markets_and_order_books_read_like_kalshis():
    async with serve() as server, aiohttp.ClientSession() as http:
        server.pause()
        base, ex = server.rest_url, server.exchange
        ticker = ex.tickers[1]
        market = (await (await http.get(f"{base}/markets/{ticker}")).json())["market"]
        assert market["status"] == "active" and market["price_ranges"] == [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}]
        assert market["close_time"].startswith("2026-01-01T") and market["open_time"] == "2026-01-01T00:00:00Z"
        info = ex.market(ticker)
        assert info is not None and info.yes_bid is not None and info.yes_ask is not None
        assert (market["yes_bid_dollars"], market["yes_ask_dollars"]) == (format_price(info.yes_bid), format_price(info.yes_ask))
        assert market["no_bid_dollars"] == format_price(10_000 - info.yes_ask)
        assert (market["volume_fp"], market["open_interest_fp"]) == (format_count(info.volume), format_count(info.open_interest))
        assert (market["market_type"], market["result"], market["price_level_structure"]) == ("binary", "", "linear_cent")
        book = rest.decode_body(await (await http.get(f"{base}/markets/{ticker}/orderbook")).read(), rest.m.OrderbookResponse)
        snap = rest.book(book, ticker)  # type: ignore[arg-type]
        expected = ex.book(ticker)
        assert (snap.yes_bids, snap.no_bids) == (expected.yes_bids, expected.no_bids)  # type: ignore[union-attr]
        top = await (await http.get(f"{base}/markets/{ticker}/orderbook", params={"depth": "1"})).json()
        assert top["orderbook_fp"]["yes_dollars"] == [[f"{expected.yes_bids[-1][0] / 1e4:.4f}", f"{expected.yes_bids[-1][1] / 100:.2f}"]]  # type: ignore[union-attr]
        opened = await (await http.get(f"{base}/markets", params={"status": "open", "tickers": f"{ticker},KXNOPE"})).json()
        assert [m["ticker"] for m in opened["markets"]] == [ticker]


NO_TICKER = b'{"side": "bid", "count": "1", "price": "0.5"}'
SIDE_UP = b'{"ticker": "KXSIM-000", "side": "up", "count": "1", "price": "0.5"}'


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "message"), [
    ("POST", "/portfolio/events/orders", b"{not json", 400, "bad_request", "invalid JSON: "),
    ("POST", "/portfolio/events/orders", NO_TICKER, 400, "bad_request",
     carried("create_order_v2_request", NO_TICKER, CreateOrderV2Request)),
    ("POST", "/portfolio/events/orders", SIDE_UP, 400, "bad_request",
     carried("create_order_v2_request.side", SIDE_UP, CreateOrderV2Request)),
    ("POST", "/portfolio/events/orders", b'{"ticker": "KXSIM-000", "side": "bid", "count": "1.234", "price": "0.5"}',
     400, "bad_request", "create_order_v2_request.count: '1.234' is off the 0.01 grid"),
    ("POST", "/portfolio/events/orders", b'{"ticker": "KXSIM-000", "side": "bid", "count": 1e400, "price": "0.5"}',
     400, "bad_request", None),
    ("POST", "/portfolio/events/orders", b'{"ticker": "KXNOPE", "side": "bid", "count": "1", "price": "0.5"}', 404,
     "unknown_market", "market 'KXNOPE' does not exist"),
    ("GET", "/portfolio/orders?limit=0", None, 400, "bad_request", "limit: '0' is not a whole number from 1 to 1000"),
    ("GET", "/portfolio/orders?status=open", None, 400, "bad_request",
     "status: 'open' is not one of canceled, executed, resting"),
    ("GET", "/portfolio/fills?cursor=abc", None, 400, "bad_request", "cursor: 'abc' is not a cursor of this list"),
    ("GET", "/portfolio/fills?min_ts=yesterday", None, 400, "bad_request",
     "min_ts: 'yesterday' is not Unix seconds (or milliseconds)"),
    ("GET", "/markets/KXNOPE", None, 404, "not_found", "market 'KXNOPE' not found"),
    ("GET", "/nowhere", None, 404, "not_found", f"GET /trade-api/v2/nowhere: {HTTPStatus(404).phrase}"),
    ("PUT", "/portfolio/balance", None, 405, "bad_request", f"PUT /trade-api/v2/portfolio/balance: {HTTPStatus(405).phrase}"),
    ("POST", "/portfolio/events/orders/batched", b'{"orders": []}', 400, "bad_request",
     "orders: 0 orders; a batch holds 1 to 20"),
])
async def test_a_bad_request_gets_an_error_body_naming_what_is_wrong(method, path, body, status, code, message):
    async with serve() as server, aiohttp.ClientSession() as http:
        reply = await http.request(method, server.rest_url + path, data=body)
        got = await reply.json()
        assert reply.status == status and got["code"] == code, got
        if message is not None:
            assert got["message"].startswith(message), got
        assert (await http.get(f"{server.rest_url}/portfolio/balance")).status == 200  # still serving


async def test_random_bodies_never_crash_the_server():
    """Junk of every kind to the order endpoints: each gets a 4xx JSON error body, and the server serves on."""
    rng = random.Random(11)
    base = {"ticker": "KXSIM-000", "side": "bid", "count": "1.00", "price": "0.0100"}
    bodies: list[bytes] = [b"", b"null", b"[]", b"{}", b"[" * 100_000, b'"' + b"x" * 100_000 + b'"', b"\xff\xfe"]
    for key in base:
        for value in (None, 1e308, -1, "", "NaN", "1e5", [1], {"a": 1}, True, "0." + "1" * 70, "９"):
            bodies.append(json.dumps({**base, key: value}).encode())
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(20)]
    async with serve() as server, aiohttp.ClientSession() as http:
        for path in ("/portfolio/events/orders", "/portfolio/events/orders/batched"):
            for body in bodies:
                wrapped = body if path.endswith("orders") else b'{"orders": [' + body + b"]}"
                reply = await http.post(server.rest_url + path, data=wrapped)
                got = await reply.json()
                assert 400 <= reply.status < 500 or (reply.status == 201 and path.endswith("batched")), (body[:60], got)
                assert "code" in got or "orders" in got, got
        assert (await http.get(f"{server.rest_url}/portfolio/balance")).status == 200


# --- authentication ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signer(private_key) -> Signer:
    return Signer("key-1234", private_key)


async def test_with_a_verifier_every_request_and_the_upgrade_must_be_signed(signer):
    async with serve(verifier=signer.verifier()) as server, aiohttp.ClientSession() as http:
        path = "/trade-api/v2/portfolio/balance"
        unsigned = await http.get(server.rest_url + "/portfolio/balance")
        assert unsigned.status == 401 and await unsigned.json() == {
            "code": "unauthorized",
            "message": "missing header KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP, KALSHI-ACCESS-SIGNATURE"}
        now = int(time.time() * 1000)
        forged = {**signer.headers("GET", "/trade-api/v2/markets", now)}
        refused = await http.get(server.rest_url + "/portfolio/balance", headers=forged)
        assert refused.status == 401 and (await refused.json())["message"] == "signature does not verify"
        stale = signer.headers("GET", path, now - 120_000)
        assert (await http.get(server.rest_url + "/portfolio/balance", headers=stale)).status == 401
        signed = await http.get(server.rest_url + "/portfolio/balance?x=1", headers=signer.headers("GET", path, now))
        assert signed.status == 200  # the query is not signed
        order = {"ticker": server.exchange.tickers[0], "side": "bid", "price": "0.0100", "count": "1.00"}
        created = await http.post(server.rest_url + "/portfolio/events/orders", json=order,
                                  headers=signer.headers("POST", "/trade-api/v2/portfolio/events/orders", now))
        assert created.status == 201 and len(server.exchange.orders("key-1234")) == 1
        with pytest.raises(InvalidStatus) as refused_ws:
            async with connect(server.ws_url):
                pass
        assert refused_ws.value.response.status_code == 401
        async with connect(server.ws_url, additional_headers=signer.ws_headers(int(time.time() * 1000))) as ws:
            await ws.send(subscribe(1, ["user_orders"]))
            assert (await recv(ws))["type"] == "subscribed"


async def test_the_log_records_refusals_and_connections_but_no_signature_or_key(signer):
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="debug", format="json"), stream=buffer)
    try:
        async with serve(verifier=signer.verifier()) as server, aiohttp.ClientSession() as http:
            now = int(time.time() * 1000)
            good = signer.headers("GET", "/trade-api/v2/portfolio/balance", now)
            bad = {**good, "KALSHI-ACCESS-SIGNATURE": "A" * 40 + good["KALSHI-ACCESS-SIGNATURE"][40:]}
            assert (await http.get(server.rest_url + "/portfolio/balance", headers=good)).status == 200
            assert (await http.get(server.rest_url + "/portfolio/balance", headers=bad)).status == 401
            headers = signer.ws_headers(now)
            async with connect(server.ws_url, additional_headers=headers) as ws:
                await ws.send("garbage")
                await recv(ws)
    finally:
        structlog.configure(**saved)
    text = buffer.getvalue()
    assert '"request refused"' in text and '"websocket connected"' in text and '"bad websocket command"' in text
    for secret in (good["KALSHI-ACCESS-SIGNATURE"], bad["KALSHI-ACCESS-SIGNATURE"], headers["KALSHI-ACCESS-SIGNATURE"]):
        assert secret not in text and secret[:24] not in text


# --- faults --------------------------------------------------------------------------------------------------
async def book_frames(server: ExchangeServer, faults: str, n: int, **headers: str) -> tuple[ClientConnection, list[dict]]:
    ws = await connect(f"{server.ws_url}?faults={faults}", additional_headers=headers)
    await ws.send(subscribe(1, ["orderbook_delta", "trade"], server.exchange.tickers))
    got = await frames(ws, n, timeout=15)
    return ws, got


async def test_gap_loses_every_nth_delta_or_trade_frame_and_get_snapshot_resyncs():
    """gap=5: of each subscription's delta and trade frames, the 5th, 10th, … never come (their seq is used
    up); snapshots always come. get_snapshot then sends fresh snapshots, numbered on."""
    async with serve(speed=500.0) as server:
        ws, got = await book_frames(server, "gap=5", 90)
        async with ws:
            data = [f for f in got if f["type"] != "subscribed"]
            book = [f["seq"] for f in data if f["sid"] == 1]
            assert book[:3] == [1, 2, 3]  # three snapshots
            deltas = book[3:]  # the 5th delta has seq 3 + 5, the 10th 3 + 10, …
            assert deltas == [s for s in range(4, deltas[-1] + 1) if (s - 3) % 5]
            await ws.send(json.dumps({"id": 9, "cmd": "update_subscription", "params": {"sids": [1], "action": "get_snapshot"}}))
            async with asyncio.timeout(5):
                while (f := json.loads(await ws.recv())).get("id") != 9:
                    pass
            assert f["type"] == "ok"
            snaps = []
            while len(snaps) < 3:
                f = json.loads(await ws.recv())
                if f["type"] == "orderbook_snapshot":
                    snaps.append(f)
            assert [s["msg"]["market_ticker"] for s in snaps] == list(server.exchange.tickers)


async def test_error25_ends_one_subscription_after_n_data_frames():
    async with serve(speed=500.0) as server:
        ws, got = await book_frames(server, "error25=30", 60)
        async with ws:
            data = [f for f in got if f["type"] not in ("subscribed",)]
            errors = [i for i, f in enumerate(data) if f["type"] == "error"]
            assert len(errors) == 1
            error = data[errors[0]]
            assert errors[0] == 30 and error["msg"]["code"] == 25 and error["sid"] == data[29]["sid"]
            assert not [f for f in data[31:] if f.get("sid") == error["sid"]]


async def test_drop_closes_the_connection_abruptly_after_n_data_frames():
    async with serve(speed=500.0) as server:
        ws = await connect(f"{server.ws_url}?faults=drop=25")
        await ws.send(subscribe(1, ["orderbook_delta", "trade"], server.exchange.tickers))
        received = []
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(10):
                while True:
                    received.append(json.loads(await ws.recv()))
        assert len([f for f in received if f["type"] != "subscribed"]) == 25
        assert closed.value.rcvd is None  # no close frame: the socket was cut


async def test_dup_fills_sends_every_fill_frame_twice():
    async with serve() as server, connect(f"{server.ws_url}?faults=dup_fills=1", additional_headers={KEY: "erin"}) as ws, \
            aiohttp.ClientSession(headers={KEY: "erin"}) as http:
        server.pause()
        await ws.send(subscribe(1, ["fill"]))
        await recv(ws)
        assert (await http.post(f"{server.rest_url}/portfolio/events/orders", json=cross(server, server.exchange.tickers[0]))).status == 201
        got = await quiet(ws, 0.3)
        trade_ids = [f["msg"]["trade_id"] for f in got]
        assert trade_ids == [t for f in server.exchange.fills("erin") for t in (f.trade_id, f.trade_id)]
        assert got[0] == got[1]


async def test_malformed_follows_every_nth_data_frame_with_a_frame_the_codec_refuses():
    """malformed=7: after data frames 7, 14, … comes one the codec turns into MalformedInput — truncated
    JSON or a field of the wrong type (the seeded choice gives both)."""
    async with serve(speed=500.0) as server, connect(f"{server.ws_url}?faults=malformed=7,seed=3") as ws:
        await ws.send(subscribe(1, ["orderbook_delta", "trade"], server.exchange.tickers))
        texts = [await asyncio.wait_for(ws.recv(), 5) for _ in range(82)]
    data = [t for t in texts if not t.startswith('{"type":"subscribed"')]
    bad = [i for i, t in enumerate(data) if codec.decode_ws(t, 0).malformed]
    assert bad == [8 * k - 1 for k in range(1, len(bad) + 1)] and len(bad) >= 9
    assert {type(codec.decode_ws(data[i], 0).events[0]) for i in bad} == {MalformedInput}
    truncated = [i for i in bad if not data[i].endswith("}")]
    assert truncated and len(truncated) < len(bad)


async def test_slow_ms_delays_rest_replies_and_bad_fault_specs_are_refused():
    async with serve() as server, aiohttp.ClientSession() as http:
        started = time.perf_counter()
        slow = await http.get(f"{server.rest_url}/portfolio/balance", headers={"X-Tape-Faults": "slow_ms=200"})
        assert slow.status == 200 and time.perf_counter() - started >= 0.2
        bad = await http.get(f"{server.rest_url}/portfolio/balance", headers={"X-Tape-Faults": "slow=1"})
        assert bad.status == 400 and (await bad.json())["message"] == (
            "X-Tape-Faults: unknown fault 'slow' (faults: gap, error25, drop, dup_fills, malformed, slow_ms, seed)")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{server.ws_url}?faults=gap=x"):
                pass
        assert refused.value.response.status_code == 400


def test_fault_specs_parse_and_print_back():
    from runtime.venues.sim.faults import FaultError, Faults

    spec = "gap=50,error25=400,drop=300,dup_fills=1,malformed=97,slow_ms=200,seed=3"
    faults = Faults.parse(spec)
    assert (faults.gap, faults.error25, faults.drop, faults.dup_fills, faults.malformed, faults.slow_ms, faults.seed) == (
        50, 400, 300, True, 97, 200, 3)
    assert str(faults) == spec and Faults.parse(str(faults)) == faults and Faults.parse(" ") == Faults()
    for bad, message in [("gap", "'gap' is not key=value"), ("gap=-1", "gap='-1' is not a whole number"),
                         ("dup_fills=2", "dup_fills='2' must be 0 or 1"), ("gap=1,gap=2", "gap is given twice"),
                         ("lag=1", "unknown fault 'lag'")]:
        with pytest.raises(FaultError, match=message):
            Faults.parse(bad)


async def test_the_benchmark_runs_the_server_in_a_process_and_reports_its_rate():
    """measure_server is a figure to print (tape bench venue), never asserted on; here it only has to run."""
    from runtime.venues.sim.bench import measure_server

    figures = await measure_server(0.3, markets=4, speed=2_000.0, warmup_s=0.1)
    assert figures["server_mps"] > 0 and figures["frames"] > 0 and figures["bytes_per_frame"] > 50
    print(f"\nserver_mps (a smoke run, not the benchmark): {figures}")
