"""What ``tape record`` and ``tape paper`` share: choosing a venue, its URLs, its key and its markets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from ..units import PRICE_MAX
from ..venues.kalshi.auth import AuthError, Signer, load_signer
from ..venues.kalshi.http import HOSTS, KalshiApiError, KalshiRest

VENUES = ("sim", "kalshi-demo", "kalshi")
LIQUIDITY_CANDIDATES = 60  # order books read to choose the most liquid markets
SIM_MARKETS_PER_PICK = 4  # the local exchange runs this many markets per one asked for, to pick the liquid ones


def parse_markets(text: str) -> tuple[int | None, list[str] | None]:
    """``--markets``: a count (``8``) or comma-separated tickers; raises ``UsageError`` naming the mistake."""
    from . import UsageError

    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise UsageError("--markets must be at least 1")
        return int(text), None
    tickers = [t.strip() for t in text.split(",") if t.strip()]
    if not tickers:
        raise UsageError(f"--markets {text!r}: give a number or comma-separated tickers")
    if len(set(tickers)) != len(tickers):
        raise UsageError(f"--markets {text!r} names a ticker twice")
    return None, tickers


def venue_signer(venue: str) -> Signer | None:
    """The API key for a Kalshi venue (from the environment); none for the local exchange."""
    from . import UsageError

    if venue == "sim":
        return None
    try:
        return load_signer()
    except AuthError as exc:
        raise UsageError(f"--venue {venue}: {exc}") from None


@contextlib.asynccontextmanager
async def venue_urls(venue: str, url: str | None, markets: int, seed: int, *, span_s: float,
                     speed: float = 1.0) -> AsyncIterator[tuple[str, str]]:
    """The venue's REST and WebSocket URLs. For ``sim`` without ``url``, a local exchange runs in this process for
    the duration (its session long enough for ``span_s`` seconds of event time), with
    :data:`SIM_MARKETS_PER_PICK` markets per one of ``markets``, so the most liquid can be picked from them."""
    if venue != "sim":
        rest_url, ws_url = HOSTS[venue]
        yield rest_url, url or ws_url
        return
    if url:
        yield _rest_of(url), url
        return
    from ..venues.sim.exchange import Exchange
    from ..venues.sim.server import ExchangeServer

    exchange = Exchange(markets * SIM_MARKETS_PER_PICK, seed, session_s=max(3_600.0, span_s * 2), start_ns=time.time_ns())
    async with ExchangeServer(exchange, speed=speed) as server:
        print(f"local exchange on {server.ws_url}: {_span(exchange.tickers)} (seed {seed}, speed {speed:g}x)",
              flush=True)
        yield server.rest_url, server.ws_url


def _span(tickers: tuple[str, ...]) -> str:
    """``16 markets KXSIM-000 … KXSIM-015``: what an exchange hosts, in a few words."""
    if len(tickers) <= 3:
        return f"{len(tickers)} market(s) {', '.join(tickers)}"
    return f"{len(tickers)} markets {tickers[0]} … {tickers[-1]}"


async def _most_liquid(rest: KalshiRest, tickers: list[str], count: int) -> list[str]:
    """The ``count`` markets with the narrowest spread (then the most contracts at the touch), in ticker order:
    most Kalshi markets are too wide to trade, so ``--markets N`` means the N most liquid ones."""
    async def rank(ticker: str) -> tuple[int, int, str]:
        book = await rest.orderbook(ticker)
        if not book.yes_bids or not book.no_bids:
            return (PRICE_MAX, 0, ticker)
        (bid, bid_size), (no_bid, ask_size) = max(book.yes_bids), max(book.no_bids)
        return (PRICE_MAX - no_bid - bid, -min(bid_size, ask_size), ticker)

    ranked = sorted(await asyncio.gather(*(rank(t) for t in tickers)))
    return sorted(t for _, _, t in ranked[:count])


def _rest_of(ws_url: str) -> str:
    """``ws://h:p/trade-api/ws/v2`` -> ``http://h:p/trade-api/v2`` (the local exchange serves both)."""
    from . import UsageError

    scheme, sep, rest = ws_url.partition("://")
    if not sep or scheme not in ("ws", "wss") or "/trade-api/ws/v2" not in rest:
        raise UsageError(f"--url {ws_url!r}: expected ws://HOST:PORT/trade-api/ws/v2")
    return ("http" if scheme == "ws" else "https") + "://" + rest.replace("/trade-api/ws/v2", "/trade-api/v2")


async def resolve_markets(rest_url: str, signer: Signer | None, count: int | None, tickers: list[str] | None,
                          venue: str) -> list[str]:
    """The tickers to use: the ``count`` most liquid open markets (see :func:`_most_liquid`), or ``tickers`` once
    each is known to the venue."""
    from . import UsageError

    async with KalshiRest(rest_url, signer=signer) as rest:
        if tickers is None:
            try:
                markets = await rest.markets(status="open")
            except KalshiApiError as exc:
                raise UsageError(f"--venue {venue}: listing markets failed: {exc}") from None
            found = [m.ticker for m in markets]
            if not found:
                raise UsageError(f"--venue {venue}: no open market")
            return found if len(found) <= count else await _most_liquid(rest, found[:LIQUIDITY_CANDIDATES], count)
        for ticker in tickers:
            try:
                await rest.market(ticker)
            except KalshiApiError as exc:
                hint = await _some_open(rest) if exc.error.status == 404 else ""
                raise UsageError(f"--markets: {ticker} on {venue}: {exc.error.message} "
                                 f"(HTTP {exc.error.status}){hint}") from None
        return tickers


async def _some_open(rest: KalshiRest, few: int = 5) -> str:
    """``; open markets there include A, B, C, … (N in all)``, for an error about an unknown ticker (empty if the
    venue cannot list them)."""
    try:
        found = [m.ticker for m in await rest.markets(status="open")]
    except KalshiApiError:
        return ""
    if not found:
        return "; the venue lists no open market"
    more = ", …" if len(found) > few else ""
    return f"; open markets there include {', '.join(found[:few])}{more} ({len(found)} in all)"
