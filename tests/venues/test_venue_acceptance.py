"""Acceptance: our Kalshi clients against the local exchange with every fault on, end to end.

The exchange runs in-process (signed, fast time); our :class:`KalshiFeed` connects with
``?faults=gap,error25,drop,dup_fills,malformed`` while :class:`KalshiRest` places orders that fill. Then
the market's time is paused, the feed asked to resync, and once no book is stale: the client's events,
folded through :class:`actors.book.OrderBook`, give exactly the exchange's engine books, and the fills
delivered are exactly the account's fills, none twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.book import OrderBook
from runtime import events as ev
from runtime.units import PRICE_MAX
from runtime.venues.kalshi.auth import Signer
from runtime.venues.kalshi.http import KalshiApiError, KalshiRest
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer

pytestmark = pytest.mark.timeout(60)

KEY_ID = "acceptance-key"
FAULTS = "gap=20,error25=150,drop=400,dup_fills=1,malformed=37,seed=5"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(KEY_ID, rsa.generate_private_key(public_exponent=65537, key_size=2048))


async def until(condition, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


async def test_books_and_fills_come_out_exact_through_every_fault(signer):
    exchange = Exchange(3, 7, start_ns=time.time_ns(), session_s=360_000.0)
    tickers = exchange.tickers
    tick = exchange.config.tick
    events: list[tuple[int, ev.Event]] = []
    async with ExchangeServer(exchange, verifier=signer.verifier(), speed=1_000.0) as server, \
            KalshiRest(server.rest_url, signer=signer, backoff_s=0.01) as rest, \
            KalshiFeed(f"{server.ws_url}?faults={FAULTS}", tickers, signer=signer, rest=rest, backoff_s=0.01,
                       max_backoff_s=0.1, rng=random.Random(3)) as feed:

        async def consume() -> None:
            async for batch in feed:
                events.extend(batch)

        consumer = asyncio.create_task(consume())
        # market data alone first: gaps, malformed frames, error 25 and a dropped connection
        await until(lambda: feed.stats.reconnects >= 1, 10, "the drop fault fired")
        refused = 0
        traded = tickers[:2]  # the last market keeps trading on its own, so the next drop comes soon
        for n in range(3):  # IOC orders that take whatever rests, on both sides
            for ticker in traded:
                for side, price in (("bid", PRICE_MAX - tick), ("ask", tick)):
                    intent = ev.OrderIntent(cause_seq=1, client_order_id=f"acc-{n}-{ticker}-{side}", market=ticker,
                                            side=side, price=price, count=100, tif="ioc")  # type: ignore[arg-type]
                    try:
                        await rest.create_order(intent)
                    except KalshiApiError:
                        refused += 1  # nothing to take on that side: fine
            await asyncio.sleep(0.05)
        # a reconnect after the fills: REST reconciliation brings them again, and they are dropped as duplicates
        await until(lambda: feed.stats.reconnects >= 2, 10, "the drop fault fired after the fills")
        server.pause()
        await asyncio.sleep(0.1)
        await feed.resync()  # a loss just before the pause shows at no later frame: check every book now
        owned = {f.trade_id for f in exchange.fills(KEY_ID)}
        delivered = lambda: [e.trade_id for _, e in events if type(e) is ev.OrderFilled]  # noqa: E731
        await until(lambda: not feed.stale and owned <= set(delivered()), 10, "books fresh, every fill delivered")
        expected = {t: exchange.book(t) for t in tickers}
        stats = feed.stats
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    kinds = Counter(ev.event_type(e) for _, e in events)
    assert stats.gaps and stats.reconnects and stats.duplicate_fills and stats.malformed and stats.resyncs, stats
    assert any(type(e) is ev.VenueError and e.code == 25 for _, e in events), "no error 25 was seen"
    assert kinds["book_delta"] > 300 and len(owned) >= 6, (kinds, len(owned), refused)

    books = {t: OrderBook(t) for t in tickers}
    for seq, (ts, event) in enumerate(events, start=1):
        for book in books.values():
            book.handle(seq, ts, event)
    for ticker, book in books.items():
        state = book.snapshot()
        assert not state.stale, ticker
        assert (state.yes_bids, state.no_bids) == (expected[ticker].yes_bids, expected[ticker].no_bids), ticker

    fills = delivered()
    assert len(fills) == len(set(fills)), "a fill was delivered twice"
    assert set(fills) == owned
