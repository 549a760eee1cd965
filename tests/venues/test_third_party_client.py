"""Acceptance: an unmodified third-party Kalshi client from PyPI (``pykalshi-client``), pointed at the local
exchange, authenticates, subscribes to order books and rebuilds the same books as our client — and both
equal the exchange's own engine books. Its REST order book read agrees too.

The third party's books are built from its own pydantic models with ``Decimal`` arithmetic, independently of
our codec; ours are our client's events folded through :class:`actors.book.OrderBook`.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pykalshi import ClientConfig, KalshiCredentials, KalshiHttpClient, KalshiWebSocketClient
from pykalshi.api.markets import get_market_orderbook
from pykalshi.models.responses import GetMarketOrderbookResponse
from pykalshi.models.ws import OrderbookDeltaMsg, OrderbookSnapshotMsg

from actors.book import OrderBook
from runtime.events import BookSnapshot
from runtime.venues.kalshi.auth import Signer, Verifier
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

pytestmark = pytest.mark.timeout(60)

Book = dict[str, dict[Decimal, Decimal]]  # side ("yes"/"no") -> price in dollars -> contracts


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def exchange_book(snapshot: BookSnapshot) -> Book:
    return {"yes": {Decimal(p) / 10_000: Decimal(c) / 100 for p, c in snapshot.yes_bids},
            "no": {Decimal(p) / 10_000: Decimal(c) / 100 for p, c in snapshot.no_bids}}


def third_party_books(frames: list[str]) -> dict[str, Book]:
    """Books from the third party's own message models, with Decimal arithmetic."""
    books: dict[str, Book] = {}
    for raw in frames:
        data = json.loads(raw)
        if data.get("type") == "orderbook_snapshot":
            snap = OrderbookSnapshotMsg.model_validate(data["msg"])
            books[snap.market_ticker] = {
                "yes": {Decimal(p): Decimal(q) for p, q in snap.yes_dollars_fp or []},
                "no": {Decimal(p): Decimal(q) for p, q in snap.no_dollars_fp or []}}
        elif data.get("type") == "orderbook_delta":
            delta = OrderbookDeltaMsg.model_validate(data["msg"])
            side = books[delta.market_ticker][str(delta.side.value if hasattr(delta.side, "value") else delta.side)]
            price = Decimal(delta.price_dollars)
            size = side.get(price, Decimal(0)) + Decimal(delta.delta_fp)
            assert size >= 0, f"the third party saw a negative level: {raw}"
            if size:
                side[price] = size
            else:
                side.pop(price, None)
    return books


def our_books(events: list, tickers: tuple[str, ...]) -> dict[str, Book]:
    books = {t: OrderBook(t) for t in tickers}
    for seq, (ts, event) in enumerate(events, start=1):
        market = getattr(event, "market", None)
        if market in books:
            books[market].handle(seq, ts, event)
    out = {}
    for ticker, book in books.items():
        state = book.snapshot()
        assert not state.stale, f"our book of {ticker} is stale"
        out[ticker] = exchange_book(BookSnapshot(market=ticker, yes_bids=state.yes_bids, no_bids=state.no_bids))
    return out


async def test_a_third_party_client_rebuilds_the_same_books_as_ours_and_the_exchange(key):
    exchange = Exchange(3, 11, start_ns=EPOCH_NS, session_s=3_600.0)
    tickers = exchange.tickers
    async with ExchangeServer(exchange, verifier=Verifier(key.public_key()), speed=20.0) as server:
        base = f"127.0.0.1:{server.port}"
        config = ClientConfig(ws_base_url=f"ws://{base}", http_base_url=f"http://{base}", auto_configure_rates=False)
        credentials = KalshiCredentials.from_private_key("third-party-key", key)

        frames: list[str] = []

        async def on_message(raw: str) -> None:
            frames.append(raw)

        theirs = KalshiWebSocketClient(credentials, config, on_message_callback=on_message)
        await theirs.connect()
        listener = asyncio.create_task(theirs.listener_loop())
        await theirs.add_markets(list(tickers), ["orderbook_delta"])

        ours: list = []
        feed = KalshiFeed(server.ws_url, tickers, channels=("orderbook_delta",), signer=Signer("our-key", key))

        async def run_ours() -> None:
            async for batch in feed:
                ours.extend(batch)

        async with feed:
            task = asyncio.create_task(run_ours())
            await asyncio.sleep(2.0)  # about 40 s of event time at speed 20
            server.pause()
            await asyncio.sleep(0.5)  # let both clients drain what was sent before the pause
            expected = {t: exchange_book(exchange.book(t)) for t in tickers}

            deltas = sum(1 for raw in frames if '"orderbook_delta"' in raw[:40])
            assert deltas > 20, f"the exchange sent too little to compare ({deltas} deltas)"
            assert third_party_books(frames) == expected
            assert our_books(ours, tickers) == expected

            async with KalshiHttpClient(credentials, config) as http:
                for ticker in tickers:
                    reply = GetMarketOrderbookResponse.model_validate(await get_market_orderbook(http, ticker))
                    rest_book = {"yes": {Decimal(p): Decimal(q) for p, q in reply.orderbook_fp.yes_dollars},
                                 "no": {Decimal(p): Decimal(q) for p, q in reply.orderbook_fp.no_dollars}}
                    assert rest_book == expected[ticker]
            task.cancel()
        await theirs.close()
        listener.cancel()
        await asyncio.gather(task, listener, return_exceptions=True)
