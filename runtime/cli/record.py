"""``tape record``: capture a venue's market data into the event log, as the runtime's inputs."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from config import Settings, settings_hash

from ..events import SessionEnded, SessionStarted
from ..ids import new_session_id
from ..log import SessionMeta, create_log, is_postgres
from ..venues.kalshi.auth import Signer
from ..venues.kalshi.http import KalshiRest
from ..venues.kalshi.ws import KalshiFeed
from ..version import code_version
from .progress import Status
from .venue import VENUES, parse_markets, resolve_markets, venue_signer, venue_urls

CHANNELS = ("orderbook_delta", "trade", "market_lifecycle_v2")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "record", help="capture a venue's market data (books, trades, lifecycle) into the event log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Subscribe to the order books, public trades and lifecycle of --markets and append every message, "
        "stamped with its receive time, to a new session of the event log: the inputs a paper session or a "
        "training run replays. Sequence gaps, resyncs, reconnects and malformed frames are recorded too "
        "(seq_gap_detected, book_resynced, venue_error, malformed_input), so a book rebuilt from the log is "
        "marked stale exactly where the live one was.\n\n"
        "--venue sim (the default) starts the local exchange in-process on loopback (no network, no keys), or "
        "connects to a running `tape exchange serve` given --url. kalshi-demo and kalshi connect to Kalshi and "
        "need an API key: KALSHI_API_KEY_ID with KALSHI_PRIVATE_KEY_PATH (a PEM file) or KALSHI_PRIVATE_KEY.",
        epilog="examples:\n"
        "  tape record --duration 30                                  8 local markets for 30 s into ./runs\n"
        "  tape record --markets 20 --duration 600 --log postgresql://postgres@127.0.0.1/test\n"
        "  tape exchange serve --port 8765 &  tape record --url ws://127.0.0.1:8765/trade-api/ws/v2 --markets 4\n"
        "  KALSHI_API_KEY_ID=… KALSHI_PRIVATE_KEY_PATH=key.pem tape record --venue kalshi-demo \\\n"
        "      --markets KXHIGHNY-26NOV23-B50,KXHIGHNY-26NOV23-B52 --duration 3600\n"
        "then: tape log info runs/record-20261122T185900Z-3fa9c1")
    p.add_argument("--venue", choices=VENUES, default="sim", help="where the data comes from (default sim)")
    p.add_argument("--markets", default="8", metavar="N|T1,T2",
                   help="a number of markets (the N most liquid open ones: narrowest spread) or comma-separated tickers "
                   "(default 8)")
    p.add_argument("--duration", type=float, default=60.0, metavar="SECONDS", help="how long to record (default 60)")
    p.add_argument("--log", default=None, metavar="LOG",
                   help="a directory for the new run directory, or a postgresql:// DSN (default: [log] target, 'runs')")
    p.add_argument("--url", default=None, metavar="WS_URL",
                   help="the venue's WebSocket URL (default: the venue's own; for sim, an in-process exchange)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the in-process local exchange (default: [session] seed)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="event time per wall second of the in-process local exchange (default 1)")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, new_directory

    if not args.duration > 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")
    if not args.speed > 0:
        raise UsageError(f"--speed must be positive, got {args.speed}")
    target = args.log or settings.log.target
    if not is_postgres(target):  # checked before a venue is reached
        new_directory(target, "--log" if args.log else "[log] target")
    count, tickers = parse_markets(args.markets)
    seed = settings.session.seed if args.seed is None else args.seed
    signer = venue_signer(args.venue)
    async with venue_urls(args.venue, args.url, count or 8, seed, span_s=args.duration * args.speed,
                          speed=args.speed) as (rest_url, ws_url):
        tickers = await resolve_markets(rest_url, signer, count, tickers, args.venue)
        return await _record(args, settings, seed, ws_url, signer, tickers, rest_url)


async def _record(args: argparse.Namespace, settings: Settings, seed: int, ws_url: str, signer: Signer | None,
                  tickers: list[str], rest_url: str) -> int:
    target = args.log or settings.log.target
    session_id = new_session_id("record")
    config_hash, version = settings_hash(settings), code_version()
    meta = SessionMeta(session_id=session_id, mode="record", venue=args.venue, seed=seed, config_hash=config_hash,
                       code_version=version, created_ns=time.time_ns())
    log = await create_log(target, meta, settings.log)
    progress = _Progress(len(tickers), args.duration)
    reason = "completed"
    async with log, KalshiRest(rest_url, signer=signer, tier=settings.venue.tier) as rest:
        await log.append([(time.time_ns(), SessionStarted(
            session_id=session_id, mode="record", venue=args.venue, seed=seed, config_hash=config_hash,
            code_version=version, markets=tuple(tickers)))])
        feed = KalshiFeed(ws_url, tickers, channels=CHANNELS, signer=signer, info=rest)  # MarketInfo first
        try:
            async with feed:
                async with asyncio.timeout(args.duration):
                    async for batch in feed:
                        await log.append(batch)
                        progress.update(len(batch), feed)
        except TimeoutError:
            pass
        except (KeyboardInterrupt, asyncio.CancelledError):
            reason = "interrupted"
        await log.append([(time.time_ns(), SessionEnded(reason=reason))])
        await log.mark("ended", f"record {reason}")
    progress.clear()
    target = str(target)
    where = f"{target}{'&' if '?' in target else '?'}session={session_id}" if is_postgres(target) else Path(target) / session_id
    stats = feed.stats
    print(f"recorded {progress.events:,} events from {len(tickers)} market(s) on {args.venue} in "
          f"{progress.elapsed():.1f} s into {where} (gaps {stats.gaps}, resyncs {stats.resyncs}, "
          f"reconnects {stats.reconnects}, malformed {stats.malformed})")
    print(f"look further:\n  tape log info {where}\n  tape log cat {where} --type book_snapshot --to 20")
    return 0


class _Progress(Status):
    """Events recorded and their rate: a live line on a terminal, a line every 10 s otherwise."""

    def __init__(self, markets: int, duration: float) -> None:
        super().__init__(every_s=10.0)
        self.markets, self.duration, self.events = markets, duration, 0

    def update(self, events: int, feed: KalshiFeed) -> None:
        self.events += events
        if self.due():
            t = self.elapsed()
            self.show(f"record: {t:.0f}/{self.duration:g} s, {self.events:,} events ({self.events / t:,.0f}/s), "
                      f"{self.markets} markets, stale {len(feed.stale)}, gaps {feed.stats.gaps}, "
                      f"reconnects {feed.stats.reconnects}")
