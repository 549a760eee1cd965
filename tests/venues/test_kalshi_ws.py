"""Our Kalshi WebSocket client against scripted Kalshi servers on loopback: what it sends, what it yields.

Each test's server runs one script per connection (``websockets.serve`` on 127.0.0.1); the script answers
the client's subscribes and sends the frames of the scenario, and records the commands it receives.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from websockets.asyncio.server import ServerConnection, serve

from config import LoggingSettings
from runtime import events as ev
from runtime.logger import configure_logging
from runtime.units import format_count, format_price
from runtime.venues.kalshi import rest
from runtime.venues.kalshi.auth import Signer
from runtime.venues.kalshi.codec import encode
from runtime.venues.kalshi.http import KalshiRest
from runtime.venues.kalshi.tracker import ENDED
from runtime.venues.kalshi.ws import KalshiFeed, KalshiFeedError

T = 1_700_000_000_000_000_000
A, B = "KXA-1", "KXB-1"
CHANNELS = ("orderbook_delta", "trade", "fill", "user_orders", "market_positions", "market_lifecycle_v2")
KEY_ID = "feed-key-0001"
WS_PATH = "/trade-api/ws/v2"


@pytest.fixture(scope="module")
def signer(pem) -> Signer:
    return Signer.from_pem(KEY_ID, pem)


def clock() -> Callable[[], int]:
    """A receive clock that ticks 1 µs per reading, so each frame's stamp is distinct."""
    ticks = itertools.count(T, 1_000)
    return lambda: next(ticks)


# --- frames --------------------------------------------------------------------------------------------------
def frame(type_: str, msg: object = None, **envelope: object) -> bytes:
    return msgspec.json.encode({"type": type_, **envelope, "msg": msg})


def snapshot(sid: int, seq: int, market: str, yes: tuple = (), no: tuple = ()) -> bytes:
    levels = {}
    if yes:
        levels["yes_dollars_fp"] = [[format_price(p), format_count(c)] for p, c in yes]
    if no:
        levels["no_dollars_fp"] = [[format_price(p), format_count(c)] for p, c in no]
    return frame("orderbook_snapshot", {"market_ticker": market, **levels}, sid=sid, seq=seq)


def delta(sid: int, seq: int, market: str, price: str = "0.4000", change: str = "1.00") -> bytes:
    return frame("orderbook_delta", {"market_ticker": market, "price_dollars": price, "delta_fp": change,
                                     "side": "yes"}, sid=sid, seq=seq)


def fill(sid: int, trade_id: str, ts_ms: int = 1_700_000_000_500) -> bytes:
    return frame("fill", {"trade_id": trade_id, "order_id": "o-1", "market_ticker": A, "is_taker": True,
                          "yes_price_dollars": "0.4000", "count_fp": "1.00", "fee_cost": "0.016800",
                          "book_side": "bid", "ts_ms": ts_ms}, sid=sid)


# --- the scripted server ---------------------------------------------------------------------------------------
class Conn:
    """One client connection as the script sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.headers = ws.request.headers  # case-insensitive
        self.commands: list[dict] = []
        self.sids: dict[str, int] = {}

    async def command(self) -> dict:
        cmd = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        self.commands.append(cmd)
        return cmd

    async def subscribe(self, first_sid: int = 1, channels: int = len(CHANNELS)) -> dict[str, int]:
        """Answer the client's subscribes: sids from ``first_sid`` in the order they come."""
        for sid in range(first_sid, first_sid + channels):
            cmd = await self.command()
            assert cmd["cmd"] == "subscribe", cmd
            channel = cmd["params"]["channels"][0]
            self.sids[channel] = sid
            await self.send(frame("subscribed", {"channel": channel, "sid": sid}, id=cmd["id"]))
        return self.sids

    async def send(self, data: bytes) -> None:
        await self.ws.send(data.decode())


Script = Callable[[Conn], Awaitable[None]]


class Venue:
    """A Kalshi WebSocket server on loopback running one script per connection (then idling)."""

    def __init__(self, *scripts: Script, process_request=None) -> None:
        self.scripts = list(scripts)
        self.conns: list[Conn] = []
        self.process_request = process_request
        self.done = asyncio.Event()  # set when the last script has run

    async def __aenter__(self) -> Venue:
        self.server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None,
                                  process_request=self.process_request)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}{WS_PATH}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        self.conns.append(conn)
        script = self.scripts[len(self.conns) - 1] if len(self.conns) <= len(self.scripts) else None
        if script is not None:
            await script(conn)
            if len(self.conns) == len(self.scripts):
                self.done.set()
        await ws.wait_closed()


async def take(feed: KalshiFeed, until: Callable[[list[ev.Event]], bool], timeout: float = 5.0) -> list[ev.Event]:
    """Events from the feed until ``until(events so far)`` holds."""
    got: list[ev.Event] = []
    async with asyncio.timeout(timeout):
        async for batch in feed:
            got.extend(e for _, e in batch)
            if until(got):
                return got
    raise AssertionError(f"the feed ended early: {got}")


def kinds(events: list[ev.Event]) -> list[str]:
    return [ev.event_type(e) for e in events]


def count(kind: str, n: int = 1) -> Callable[[list[ev.Event]], bool]:
    return lambda events: kinds(events).count(kind) >= n


# --- subscribing, signing, pings -------------------------------------------------------------------------------
async def test_the_upgrade_is_signed_and_every_channel_is_subscribed_with_use_yes_price_explicit(signer):
    """Book and trade subscriptions name the tickers; the signature verifies over GET /trade-api/ws/v2."""
    async def script(c: Conn) -> None:
        await c.subscribe()
        await c.send(snapshot(c.sids["orderbook_delta"], 1, A))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A, B], signer=signer, clock_ns=clock()) as feed:
        await take(feed, count("book_snapshot"))
    (conn,) = venue.conns
    assert [c["params"] for c in conn.commands] == [
        {"channels": ["orderbook_delta"], "market_tickers": [A, B], "use_yes_price": False},
        {"channels": ["trade"], "market_tickers": [A, B], "use_yes_price": False},
        *({"channels": [c], "use_yes_price": False} for c in CHANNELS[2:])]
    headers = conn.headers
    assert headers["KALSHI-ACCESS-KEY"] == KEY_ID
    assert signer.verifier().verify(headers["KALSHI-ACCESS-TIMESTAMP"], "GET", WS_PATH,
                                    headers["KALSHI-ACCESS-SIGNATURE"])


async def test_use_yes_price_is_sent_as_asked_and_no_levels_come_back_on_the_no_leg():
    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(snapshot(1, 1, A, no=((6_000, 100),)))  # quoted at the YES price 0.60: a NO bid at 0.40

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"],
                                                  use_yes_price=True) as feed:
        events = await take(feed, count("book_snapshot"))
    assert venue.conns[0].commands[0]["params"]["use_yes_price"] is True
    assert events == [ev.BookSnapshot(market=A, no_bids=((4_000, 100),), sid=1, venue_seq=1)]


async def test_a_heartbeat_ping_from_the_venue_is_answered():
    pongs: list[float] = []

    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        waiter = await c.ws.ping(b"heartbeat")
        pongs.append(await asyncio.wait_for(waiter, 2))
        await c.send(snapshot(1, 1, A))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"]) as feed:
        await take(feed, count("book_snapshot"))
    assert len(pongs) == 1


# --- gaps and resyncs ------------------------------------------------------------------------------------------
async def test_a_seq_gap_is_announced_before_the_frame_and_resynced_with_get_snapshot():
    """Each stale book leaves stale with its new snapshot (BookResynced); events keep their receive stamps."""
    async def script(c: Conn) -> None:
        book = (await c.subscribe())["orderbook_delta"]
        for data in (snapshot(book, 40, A, yes=((4_000, 500),)), snapshot(book, 41, B), delta(book, 42, A),
                     delta(book, 44, A)):  # 43 is lost
            await c.send(data)
        cmd = await c.command()
        await c.send(frame("ok", id=cmd["id"], sid=book))
        await c.send(snapshot(book, 45, A, yes=((4_000, 700),)))
        await c.send(snapshot(book, 46, B))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A, B], clock_ns=clock()) as feed:
        got: list[tuple[int, ev.Event]] = []
        async with asyncio.timeout(5):
            async for batch in feed:
                got.extend(batch)
                if kinds([e for _, e in got]).count("book_resynced") == 2:
                    break
        assert feed.stale == frozenset() and feed.stats.gaps == 1 and feed.stats.resyncs == 1
    events = [e for _, e in got]
    assert kinds(events) == ["book_snapshot", "book_snapshot", "book_delta", "seq_gap_detected", "book_delta",
                             "book_snapshot", "book_resynced", "book_snapshot", "book_resynced"]
    assert events[3] == ev.SeqGapDetected(sid=1, expected=43, received=44, markets=(A, B))
    stamps = [ns for ns, _ in got]
    assert stamps[3] == stamps[4] and stamps[5] == stamps[6]  # a frame's events share its receive time
    assert stamps[2] < stamps[3] < stamps[5] < stamps[7]
    assert venue.conns[0].commands[-1] == {"id": 7, "cmd": "update_subscription", "params": {
        "action": "get_snapshot", "sids": [1], "market_tickers": [A, B]}}


async def test_buffer_overflow_resubscribes_the_book_channel_and_books_stay_stale_until_the_new_snapshots():
    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(snapshot(1, 1, A))
        await c.send(frame("error", {"code": 25, "msg": "subscription buffer overflow"}, sid=1))
        subscribe = await c.command()
        await c.send(frame("subscribed", {"channel": "orderbook_delta", "sid": 2}, id=subscribe["id"]))
        await c.send(snapshot(2, 1, A))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"]) as feed:
        events = await take(feed, count("book_resynced"))
    assert kinds(events) == ["book_snapshot", "venue_error", "seq_gap_detected", "book_snapshot", "book_resynced"]
    assert events[1] == ev.VenueError(where="kalshi.ws", message="subscription buffer overflow", code=25)
    assert events[2] == ev.SeqGapDetected(sid=1, expected=2, received=ENDED, markets=(A,))
    assert [c["params"] for c in venue.conns[0].commands] == [  # the venue dropped sid 1 itself
        {"channels": ["orderbook_delta"], "market_tickers": [A], "use_yes_price": False}] * 2


async def test_a_resync_on_demand_asks_every_book_for_a_snapshot_and_waits_for_it():
    """For a loss no later frame has revealed (the last frame before a quiet spell)."""
    asked = asyncio.Event()

    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(snapshot(1, 1, A))
        cmd = await c.command()
        asked.set()
        await c.send(frame("ok", id=cmd["id"], sid=1, seq=1))
        await c.send(snapshot(1, 2, A, yes=((4_000, 100),)))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"]) as feed:
        await take(feed, count("book_snapshot"))
        await feed.resync()
        assert feed.stale == {A}
        events = await take(feed, count("book_snapshot"))
        assert feed.stale == frozenset() and feed.stats.gaps == 0
    assert asked.is_set() and venue.conns[0].commands[-1]["params"] == {
        "action": "get_snapshot", "sids": [1], "market_tickers": [A]}
    assert events == [ev.BookSnapshot(market=A, yes_bids=((4_000, 100),), sid=1, venue_seq=2)]


# --- fills and malformed frames ----------------------------------------------------------------------------
async def test_a_fill_sent_twice_is_delivered_once_and_malformed_frames_become_events_not_crashes():
    """An unreadable book frame also resyncs its subscription."""
    async def script(c: Conn) -> None:
        sids = await c.subscribe()
        book, fills = sids["orderbook_delta"], sids["fill"]
        await c.send(snapshot(book, 1, A))
        await c.send(snapshot(book, 2, B))
        await c.send(fill(fills, "t-1"))
        await c.send(fill(fills, "t-1"))
        await c.send(b"{not json")
        await c.send(delta(book, 3, A, price="0.12345"))
        assert (await c.command())["params"]["action"] == "get_snapshot"
        await c.send(fill(fills, "t-2"))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A, B]) as feed:
        events = await take(feed, lambda got: any(getattr(e, "trade_id", None) == "t-2" for e in got))
        assert feed.stats.duplicate_fills == 1 and feed.stats.malformed == 2 and feed.stale == {A, B}
    assert kinds(events) == ["book_snapshot", "book_snapshot", "order_filled", "malformed_input", "malformed_input",
                             "seq_gap_detected", "order_filled"]
    assert [e.trade_id for e in events if type(e) is ev.OrderFilled] == ["t-1", "t-2"]
    assert events[3].raw == b"{not json"
    assert events[4].error == "orderbook_delta.msg.price_dollars: '0.12345' is off the 0.0001 grid"
    assert events[5] == ev.SeqGapDetected(sid=1, expected=3, received=3, markets=(A, B))


# --- reconnecting ---------------------------------------------------------------------------------------------
@pytest.fixture
def captured_logs():
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="debug", format="json"), stream=buffer)
    yield buffer
    structlog.configure(**saved)


async def test_a_dropped_connection_marks_books_stale_reconnects_re_signed_and_resubscribes(signer, pem,
                                                                                            captured_logs):
    """New sids and a new seq after the reconnect; no key material in any log line."""
    async def first(c: Conn) -> None:
        await c.subscribe(channels=2)
        await c.send(snapshot(1, 7, A))
        await c.send(snapshot(1, 8, B))
        c.ws.transport.abort()  # no close frame: the connection is simply gone

    async def second(c: Conn) -> None:
        await c.subscribe(first_sid=11, channels=2)
        await c.send(snapshot(11, 1, A))
        await c.send(snapshot(11, 2, B))

    async with Venue(first, second) as venue, KalshiFeed(venue.url, [A, B], channels=["orderbook_delta", "trade"],
                                                         signer=signer, backoff_s=0.01) as feed:
        events = await take(feed, count("book_resynced", 2))
        assert feed.stats.reconnects == 1 and feed.stale == frozenset()
    assert kinds(events) == ["book_snapshot", "book_snapshot", "venue_error", "seq_gap_detected",
                             "book_snapshot", "book_resynced", "book_snapshot", "book_resynced"]
    assert "the connection was lost" in events[2].message and "reconnecting in" in events[2].message
    assert events[3] == ev.SeqGapDetected(sid=1, expected=9, received=ENDED, markets=(A, B))
    assert events[5] == ev.BookResynced(market=A, sid=11)
    first_ids = [c["id"] for c in venue.conns[0].commands]
    second_ids = [c["id"] for c in venue.conns[1].commands]
    assert len(second_ids) == 2 and not set(first_ids) & set(second_ids)
    for conn in venue.conns:
        h = conn.headers
        assert signer.verifier().verify(h["KALSHI-ACCESS-TIMESTAMP"], "GET", WS_PATH, h["KALSHI-ACCESS-SIGNATURE"])
    logs = captured_logs.getvalue()
    assert "connection lost" in logs
    secret = [line for line in pem.decode().splitlines() if "-----" not in line]
    assert not [s for s in secret if s in logs]


class Portfolio:
    """A REST server with one account's fills, resting orders and positions, recording its reads."""

    FILLS = [ev.OrderFilled(trade_id=t, order_id="o-1", client_order_id="c-1", market=A, side="bid", price=4_000,
                            count=100, fee=16_800, is_taker=True, venue_ts_ms=1_700_000_000_500 + i)
             for i, t in enumerate(["t-1", "t-3"])]
    ORDER = ev.OrderStatusReported(client_order_id="c-2", order_id="o-2", market=B, status="resting", side="ask",
                                   price=6_000, fill_count=0, remaining_count=300, initial_count=300)
    POSITION = ev.PositionReported(market=A, position=200, cost=0, realized_pnl=0, fees_paid=0, venue_ts_ms=0)

    def __init__(self) -> None:
        self.reads: list[tuple[str, dict]] = []
        app = web.Application()
        app.router.add_get("/trade-api/v2/portfolio/fills", self.fills)
        app.router.add_get("/trade-api/v2/portfolio/orders", self.orders)
        app.router.add_get("/trade-api/v2/portfolio/positions", self.positions)
        self.server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> Portfolio:
        await self.server.start_server()
        self.url = str(self.server.make_url("/trade-api/v2"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    def reply(self, request: web.Request, body) -> web.Response:
        self.reads.append((request.path.rsplit("/", 1)[1], dict(request.query)))
        return web.Response(body=encode(body), content_type="application/json")

    async def fills(self, request: web.Request) -> web.Response:
        return self.reply(request, rest.fills_body(self.FILLS))

    async def orders(self, request: web.Request) -> web.Response:
        return self.reply(request, rest.orders_body([self.ORDER]))

    async def positions(self, request: web.Request) -> web.Response:
        return self.reply(request, rest.positions_body([self.POSITION]))


async def test_after_every_connection_fills_orders_and_positions_are_reconciled_over_rest_fills_once():
    """The fill the WebSocket brought is not delivered again by REST; the second read starts from the last
    fill's time minus the margin."""
    async def first(c: Conn) -> None:
        sids = await c.subscribe()
        await c.send(fill(sids["fill"], "t-1", ts_ms=1_700_000_000_500))
        while len(portfolio.reads) < 4:  # let the reconciliation finish before the connection drops
            await asyncio.sleep(0.01)
        c.ws.transport.abort()

    async def second(c: Conn) -> None:
        await c.subscribe(first_sid=21)

    async with Portfolio() as portfolio, Venue(first, second) as venue, KalshiRest(portfolio.url) as client, \
            KalshiFeed(venue.url, [A, B], rest=client, backoff_s=0.01, clock_ns=clock(),
                       reconcile_margin_ms=60_000) as feed:
        events = await take(feed, count("position_reported", 2))
        assert feed.stats.duplicate_fills == 3  # t-1 by REST after the WebSocket; t-1, t-3 again
    fills = [e.trade_id for e in events if type(e) is ev.OrderFilled]
    assert sorted(fills) == ["t-1", "t-3"]
    assert [e for e in events if type(e) is ev.OrderStatusReported] == [Portfolio.ORDER] * 2
    assert [e for e in events if type(e) is ev.PositionReported] == [Portfolio.POSITION] * 2
    reads = portfolio.reads
    # the fills, every order (a REST fill names no client_order_id: its order's is taken), the resting orders
    assert [what for what, _ in reads] == ["fills", "orders", "orders", "positions"] * 2
    assert "status" not in reads[1][1] and reads[2][1]["status"] == "resting"
    assert reads[0][1]["min_ts"] == str((T // 1_000_000 - 60_000) // 1000)
    assert reads[4][1]["min_ts"] == str((1_700_000_000_501 - 60_000) // 1000)  # the last fill delivered


# --- failing and closing --------------------------------------------------------------------------------------
async def test_a_refused_key_ends_the_feed_with_an_error_saying_what_to_check():
    def refuse(connection, request):
        return connection.respond(HTTPStatus.UNAUTHORIZED, "bad signature\n")

    async with Venue(process_request=refuse) as venue, KalshiFeed(venue.url, [A]) as feed:
        with pytest.raises(KalshiFeedError, match="refused the WebSocket upgrade with HTTP 401 — check the API key"):
            await take(feed, lambda got: False)


async def test_a_slow_consumer_slows_the_feed_and_loses_nothing():
    """At max_pending the feed stops reading; every delta still arrives, in order."""
    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(snapshot(1, 1, A))
        for seq in range(2, 202):
            await c.send(delta(1, seq, A))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"],
                                                  max_pending=5) as feed:
        await asyncio.sleep(0.2)  # the venue sends everything while nobody reads
        sizes: list[int] = []
        events: list[ev.Event] = []
        async with asyncio.timeout(5):
            async for batch in feed:
                sizes.append(len(batch))
                events.extend(e for _, e in batch)
                if len(events) == 201:
                    break
    assert [e.venue_seq for e in events] == list(range(1, 202))
    assert max(sizes) <= 5 + 1 and feed.stats.gaps == 0


async def test_closing_the_feed_cancels_its_tasks_and_ends_the_iteration():
    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(snapshot(1, 1, A))

    async with Venue(script) as venue:
        feed = KalshiFeed(venue.url, [A], channels=["orderbook_delta"])
        async with feed:
            await take(feed, count("book_snapshot"))
            assert feed.connected
        assert not feed.connected
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("kalshi-feed")] == []
        assert [batch async for batch in feed] == []


@pytest.mark.parametrize("legacy", [True, False])
async def test_legacy_integer_cent_frames_are_read_only_when_asked(legacy):
    """A pre-2026 snapshot (``yes``: [[cents, contracts]]) is a book with legacy=True, malformed input otherwise."""
    async def script(c: Conn) -> None:
        await c.subscribe(channels=1)
        await c.send(frame("orderbook_snapshot", {"market_ticker": A, "yes": [[40, 12]]}, sid=1, seq=1))

    async with Venue(script) as venue, KalshiFeed(venue.url, [A], channels=["orderbook_delta"],
                                                  legacy=legacy) as feed:
        events = await take(feed, lambda got: any(type(e) in (ev.BookSnapshot, ev.MalformedInput) for e in got))
    if legacy:
        assert ev.BookSnapshot(market=A, yes_bids=((4_000, 1_200),), sid=1, venue_seq=1) in events
    else:
        (bad,) = [e for e in events if isinstance(e, ev.MalformedInput)]
        assert "legacy" in bad.error
