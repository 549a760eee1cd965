"""``tape exchange serve``: the local exchange — Kalshi's REST API and WebSocket around the matching engine and
the order-flow model — on one port, until Ctrl-C."""

from __future__ import annotations

import argparse
import time

from actors.limits import TIER_NAMES
from config import Settings

from ..logger import get_logger

EPILOG = """\
examples:
  tape exchange serve                                   8 markets at real speed on 127.0.0.1:8765 (trust mode)
  tape exchange serve --port 0 --markets 4 --speed 60   any free port; a minute of market time per second
  tape exchange serve --public-key kalshi_pub.pem       require Kalshi-signed requests (RSA-PSS)
  tape exchange serve --faults gap=50,dup_fills=1       every connection loses a frame in 50, fills twice
  tape exchange serve --seed 7 --start-ms 1767225600000 the very market data of `tape synth --seed 7`
  tape exchange serve --tier none                       no rate limits (default: Kalshi's basic tier, per key)

fault spec (also per connection: ws://HOST:PORT/trade-api/ws/v2?faults=SPEC; per REST request: the header
X-Tape-Faults: slow_ms=X), comma-separated key=value, 0 = off:
  gap=N        every Nth orderbook_delta/trade frame of a subscription is lost (a seq gap)
  error25=N    after N data frames, one subscription gets error 25 and stops
  drop=N       after N data frames, the connection is closed abruptly
  dup_fills=1  every fill frame is sent twice
  malformed=N  every Nth data frame is followed by a malformed one
  slow_ms=X    each frame or REST reply waits X ms
  seed=S       seed of the malformed frames' choice

then point a client at the printed URLs, e.g.
  curl http://127.0.0.1:8765/trade-api/v2/markets
"""


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("exchange", help="the local Kalshi-protocol exchange (serve)",
                            description="The local exchange: Kalshi's protocol around tape's matching engine and "
                            "order-flow model, so that the runtime runs and is tested offline.")
    sub = p.add_subparsers(dest="exchange_command", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "serve", help="serve Kalshi's REST API and WebSocket on one port until Ctrl-C",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run M markets of the order-flow model ([synth] settings) in wall time x --speed and serve them\n"
        "with Kalshi's protocol: REST under /trade-api/v2 (V2 orders, portfolio, markets, order books) and the\n"
        "WebSocket at /trade-api/ws/v2 (orderbook_delta, trade, fill, user_orders, market_positions,\n"
        "market_lifecycle_v2). Your orders meet the synthetic participants' in the same book, with true\n"
        "queue priority; each account (API key id) starts with --balance dollars. Markets close in the last\n"
        "20% of --session-s and settle; the server keeps answering after that.\n\n"
        "Prints the REST and WebSocket URLs and the tickers, then serves until Ctrl-C (exit 0). Without\n"
        "--public-key it runs in trust mode: any request is accepted and its KALSHI-ACCESS-KEY header (or\n"
        "'trust') names the account.",
        epilog=EPILOG)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default 8765)")
    s.add_argument("--markets", type=int, default=8, metavar="M", help="markets KXSIM-000 ... (default 8)")
    s.add_argument("--seed", type=int, default=None, metavar="S", help="seed of the markets (default: [session] seed)")
    s.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="market seconds per wall second (default 1.0)")
    s.add_argument("--session-s", type=float, default=3600.0, metavar="SECONDS",
                   help="market time until the last market settles (default 3600)")
    s.add_argument("--start-ms", type=int, default=None, metavar="MS",
                   help="market time at start, Unix ms (default: now, to the second); "
                   "1767225600000 is tape synth's start")
    s.add_argument("--balance", type=int, default=10_000, metavar="DOLLARS",
                   help="each account's starting balance in whole dollars (default 10000)")
    auth = s.add_mutually_exclusive_group()
    auth.add_argument("--public-key", metavar="PEM_PATH",
                      help="verify Kalshi request signatures against this RSA public key (PEM)")
    auth.add_argument("--trust", action="store_true", help="accept unsigned requests (the default)")
    s.add_argument("--faults", default="", metavar="SPEC", help="faults for every connection (see below)")
    s.add_argument("--tier", choices=(*TIER_NAMES, "none"), default="basic",
                   help="enforce this Kalshi rate-limit tier per API key, as Kalshi does (429 past it): read and "
                   "write token buckets, most requests 10 tokens, a cancel 2; basic = 200 read / 100 write tokens "
                   "per second (default basic; none = no limit)")
    s.set_defaults(handler=serve)


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    from runtime.units import MONEY_SCALE

    from ..venues.kalshi.auth import AuthError, Verifier
    from ..venues.sim.exchange import Exchange
    from ..venues.sim.faults import FaultError, Faults
    from ..venues.sim.server import ExchangeServer
    from . import UsageError

    if not 0 <= args.port <= 65_535:
        raise UsageError(f"--port must be from 0 to 65535, got {args.port}")
    if not 1 <= args.markets <= 1_000:
        raise UsageError(f"--markets must be from 1 to 1000, got {args.markets}")
    if not args.speed > 0 or args.speed > 1e7:
        raise UsageError(f"--speed must be positive and at most 1e7, got {args.speed}")
    if not args.session_s > 0:
        raise UsageError(f"--session-s must be positive, got {args.session_s}")
    if args.balance < 0:
        raise UsageError(f"--balance must be >= 0, got {args.balance}")
    seed = settings.session.seed if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if args.start_ms is not None and args.start_ms < 0:
        raise UsageError(f"--start-ms must be >= 0, got {args.start_ms}")
    try:
        faults = Faults.parse(args.faults)
    except FaultError as exc:
        raise UsageError(f"--faults: {exc}") from None
    verifier = None
    if args.public_key:
        try:
            verifier = Verifier.from_file(args.public_key)
        except AuthError as exc:
            raise UsageError(f"--public-key: {exc}") from None
    start_ms = args.start_ms if args.start_ms is not None else time.time_ns() // 1_000_000_000 * 1_000
    exchange = Exchange(args.markets, seed, config=settings.synth, session_s=args.session_s,
                        start_ns=start_ms * 1_000_000, starting_balance=args.balance * MONEY_SCALE)
    server = ExchangeServer(exchange, host=args.host, port=args.port, verifier=verifier, speed=args.speed, faults=faults,
                            limits=None if args.tier == "none" else args.tier)
    try:
        await server.start()
    except OSError as exc:
        raise UsageError(f"--host/--port: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    if verifier is None:
        get_logger("exchange").warning("trust mode: requests are not authenticated (pass --public-key PEM_PATH to "
                                       "require Kalshi signatures)")
    print(f"tape exchange: {args.markets} market(s), seed {seed}, speed {args.speed:g}x, session {args.session_s:g} s, "
          f"{'signed requests' if verifier else 'trust mode'}, "
          f"{'no rate limits' if args.tier == 'none' else f'rate limits of the {args.tier} tier'}"
          f"{f', faults {faults}' if faults.any else ''}\n"
          f"  REST       {server.rest_url}\n"
          f"  WebSocket  {server.ws_url}\n"
          f"  markets    {' '.join(exchange.tickers)}\n"
          "Ctrl-C stops it.", flush=True)
    from . import until_stopped

    try:
        await until_stopped()
    finally:
        await server.stop()
    print("tape exchange: stopped", flush=True)
    return 0
