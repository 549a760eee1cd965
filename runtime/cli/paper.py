"""``tape paper``: trade on paper against live market data, log everything, and prove the run by replaying it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from decimal import Decimal

from config import Settings, settings_hash

from ..dashboard import TOKEN_ENV, ListenError, LiveDashboard, parse_listen
from ..ids import new_session_id
from ..log import SessionMeta, create_log, is_postgres, open_log
from ..paper import PaperSession, Summary, Watch, session_mode
from ..topology import SessionSpec
from ..units import COUNT_SCALE, MONEY_SCALE, PRICE_MAX, format_count, format_price
from ..venues.kalshi.http import HOSTS, KalshiRest
from ..venues.kalshi.tracker import PRIVATE_CHANNELS
from ..venues.kalshi.ws import KalshiFeed
from ..version import code_version
from .progress import Status
from .rl import POLICIES_TEXT
from .venue import VENUES, parse_markets, resolve_markets, venue_signer, venue_urls

CHANNELS = ("orderbook_delta", "trade", "market_lifecycle_v2")
LIVE_CHANNELS = (*CHANNELS, *sorted(PRIVATE_CHANNELS))  # with --live-orders: our fills, orders and positions too
ACKNOWLEDGE = "--i-understand-real-orders"
TICK = 100  # a whole cent, valid on every market


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "paper", help="paper-trade the rule policies or a trained model on live market data, then verify the run by replay",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a paper session: market data from the venue (by default the local exchange, started here on "
        "loopback) goes through the sequencer into the event log, and the session's state machines — one order "
        "book per market, the cash pool, the paper matcher, the fill listener and the orchestrator running the "
        "signal, sizing, entry and exit policies — trade on it, on Ray actors (or in this process with --runner "
        "inprocess). By default orders are filled by the paper matcher (latency and queue model from [paper] "
        "settings), never sent to the venue. With --live-orders they are REAL ORDERS sent to the venue: the "
        "execution node is the order router, an order gateway sends its creates and cancels, and fills come back "
        "from the venue's private channels (fill, user_orders, market_positions) and REST reconciliation. With "
        "--venue sim that is the local exchange on loopback (no money at risk); with --venue kalshi-demo, Kalshi's "
        f"demo exchange; with --venue kalshi, Kalshi production, real money, which also needs {ACKNOWLEDGE}. "
        "A live status shows books, positions, cash, reserved cash, PnL, fills and the event rate. At the end "
        "(after --duration, or Ctrl-C) every working order is canceled (with --live-orders, at the venue: the "
        "session waits for the cancels to be acknowledged), the log is flushed and the session marked ended; then "
        "the summary (PnL, fills and where they came from, fees, max drawdown, input-to-order latency of every order) and `tape "
        "replay verify` of the log are printed. Exit status 1 if the replay diverges.",
        epilog="examples:\n"
        "  tape paper                                     4 local markets for 60 s, log in ./runs/paper-20261122T185900Z-3fa9c1/\n"
        "  tape paper --markets 10 --duration 300 --speed 5 --cash 5000\n"
        "  tape paper --runner inprocess --log postgresql://postgres@127.0.0.1/test\n"
        "  tape paper --policies models/kxsim              the latest model tape train saved there (hot reload)\n"
        "  KALSHI_API_KEY_ID=… KALSHI_PRIVATE_KEY_PATH=key.pem tape paper --venue kalshi-demo --markets T1,T2\n"
        "  tape paper --live-orders --duration 30          real orders to the local exchange (loopback, no risk)\n"
        "  KALSHI_API_KEY_ID=… KALSHI_PRIVATE_KEY_PATH=key.pem tape paper --venue kalshi-demo --live-orders\n"
        f"  … tape paper --venue kalshi --live-orders {ACKNOWLEDGE} --cash 20   production: real money\n"
        "then: tape replay run runs/paper-20261122T185900Z-3fa9c1\n"
        "      tape log cat runs/paper-20261122T185900Z-3fa9c1 --type order_filled\n"
        "exit status: 0 done and verified, 1 the replay diverged, 2 used wrongly (see tape --help)")
    p.add_argument("--venue", choices=VENUES, default="sim", help="where market data comes from (default sim)")
    p.add_argument("--markets", default="4", metavar="N|T1,T2",
                   help="a number of markets (the N most liquid open ones: narrowest spread) or comma-separated "
                   "tickers (default 4)")
    p.add_argument("--duration", type=float, default=60.0, metavar="SECONDS", help="how long to trade (default 60)")
    p.add_argument("--log", default=None, metavar="DIR|DSN",
                   help="a directory for the run directory, or a postgresql:// DSN (default: [log] target, 'runs')")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the session and of the local exchange (default: [session] seed)")
    p.add_argument("--policies", default="rule", metavar="rule|flow|random[:SEED]|PATH",
                   help="the policies: 'rule' = the deterministic baselines (default), 'flow' = the signed-flow rules, 'random' = uniform random "
                   "(deterministic, seeded), or a model trained by `tape train`: its version directory, or its --out "
                   "directory (then the session follows it: a newer version saved there is loaded during the "
                   "session, and logged, so the replay loads it at the same point)")
    p.add_argument("--cash", type=float, default=1_000.0, metavar="DOLLARS", help="starting cash (default 1000)")
    p.add_argument("--speed", type=float, default=30.0, metavar="X",
                   help="the local exchange's event time per wall second (default 30: a market busy enough to trade within seconds)")
    p.add_argument("--url", default=None, metavar="WS_URL", help="a running local exchange's WebSocket URL")
    p.add_argument("--runner", choices=("ray", "inprocess"), default="ray",
                   help="host the state machines on Ray actors (default) or in this process")
    p.add_argument("--place", action="append", default=[], metavar="PATTERN=RESOURCE[:AMOUNT]",
                   help="on a Ray cluster, run the state machines whose names match PATTERN (book:*, orchestrator, "
                   "execution, cash, fills, positions, …) only on nodes that declare the custom RESOURCE (ray start "
                   "--resources); repeatable, the first match wins; the rest stay on this node (README: cluster)")
    p.add_argument("--policy-actors", nargs="?", const="", default=None, metavar="RESOURCE[:AMOUNT]",
                   help="run each role's policy in a Ray actor of its own, asked once per decision round for every "
                   "market (a large network on a node of its own): on the nodes that declare the custom RESOURCE if "
                   "given, else on this node; needs --runner ray; the log is the same bytes (README: cluster)")
    p.add_argument("--live-orders", action="store_true",
                   help="send REAL ORDERS to the venue instead of filling them on paper (default off): to the local "
                   "exchange with --venue sim, to Kalshi with --venue kalshi-demo or kalshi (production also needs "
                   f"{ACKNOWLEDGE}); fills then come from the venue")
    p.add_argument("--shadow", action="store_true",
                   help="with --live-orders: the paper matcher shadows the live orders (its fills logged beside the "
                   "venue's, never in the ledger) and the venue's queue position of each resting order is polled every "
                   "second; tape fidelity --logs LOG then measures paper against true (README: fill fidelity)")
    p.add_argument("--dashboard", default=None, metavar="[HOST:]PORT",
                   help="serve the session to a browser while it runs (tape dashboard's page, following this log; "
                   "127.0.0.1 unless HOST is given, port 0: any free one); another address needs a token")
    p.add_argument("--dashboard-token", default=None, metavar="TOKEN",
                   help=f"the dashboard's token (default ${TOKEN_ENV}): needed off loopback, and for the page's halt")
    p.add_argument(ACKNOWLEDGE, dest="acknowledged", action="store_true",
                   help="with --venue kalshi --live-orders: confirm that real orders with real money go to Kalshi "
                   "production")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from policies.base import ROLES
    from policies.registry import PROVIDER

    from ..topology import topology
    from . import UsageError, new_directory
    from .cluster import check_placement

    if not args.duration > 0 or not args.speed > 0:
        raise UsageError("--duration and --speed must be positive")
    base, models = _policies(args.policies)
    if not 0 < args.cash < 1e9:
        raise UsageError(f"--cash must be a positive number of dollars, got {args.cash}")
    if round(args.cash * MONEY_SCALE) < (one := _one_contract()):
        raise UsageError(f"--cash {args.cash:g}: less than one contract can cost ({_usd(one)}: one contract "
                         f"at ${format_price(PRICE_MAX - TICK)} with its fee and the cash pool's rounding allowance); "
                         "the cash pool would refuse every order")
    if args.shadow and not args.live_orders:
        raise UsageError("--shadow shadows live orders: it needs --live-orders (a paper session's matcher is already "
                         "the paper side)")
    if args.live_orders and args.venue == "kalshi" and not args.acknowledged:
        raise UsageError(f"--venue kalshi --live-orders sends real orders with real money to Kalshi production: "
                         f"add {ACKNOWLEDGE} to confirm (or try --venue kalshi-demo, or --venue sim)")
    listen = _dashboard_address(args)
    placement = _placement(args)
    policy_actors = _policy_actors(args)
    count, tickers = parse_markets(args.markets)
    seed = settings.session.seed if args.seed is None else args.seed
    target = str(args.log or settings.log.target)
    if not is_postgres(target):
        new_directory(target, "--log")  # before the exchange starts: a file in the way is named at once
    signer = venue_signer(args.venue)
    if args.live_orders:
        print(_live_warning(args.venue, args.url, args.cash), flush=True)
    session_id = new_session_id("paper")
    async with venue_urls(args.venue, args.url, count or 4, seed, span_s=args.duration * args.speed,
                          speed=args.speed) as (rest_url, ws_url):
        tickers = await resolve_markets(rest_url, signer, count, tickers, args.venue)
        profile_name, profile = settings.paper.effective()
        spec = SessionSpec(markets=tuple(tickers), starting_cash=round(args.cash * MONEY_SCALE), profile=profile_name,
                           latency_ms=profile.latency_ms, queue_model=profile.queue_model,
                           cancel_ahead_pct=profile.cancel_ahead_pct, pacing=profile.pacing, seed=seed,
                           prefix=session_id.rsplit("-", 1)[-1], execution="venue" if args.live_orders else "paper",
                           policy=base, rate_limits=settings.venue.tier, shadow=args.shadow)
        if placement:  # refused before the log is made
            check_placement("--place", placement, [node.name for node in topology(spec, PROVIDER)])
        if policy_actors:
            check_placement("--policy-actors", policy_actors, [f"policy:{role}" for role in ROLES])
        config_hash, version = settings_hash(settings), code_version()
        meta = SessionMeta(session_id=session_id, mode=session_mode(spec, args.venue), venue=args.venue, seed=seed,
                           config_hash=config_hash, code_version=version, created_ns=time.time_ns())
        log = await create_log(target, meta, settings.log)
        hosts = None if policy_actors is None else _start_policy_actors(spec, policy_actors)  # kept to the end
        runner = await _runner(args.runner, spec, log, placement, None if hosts is None else hosts[0].provider())
        where = f"{target}{'&' if '?' in target else '?'}session={session_id}" if is_postgres(target) \
            else f"{target.rstrip('/')}/{session_id}"
        board = None if listen is None else _start_dashboard(where, listen, settings, args)
        orders = "REAL ORDERS to the venue" if args.live_orders else "orders on paper"
        shown = ", ".join(tickers[:6]) + (f", … ({len(tickers)} in all)" if len(tickers) > 6 else "")
        print(f"paper session {session_id}: trading {shown} on {args.venue}, ${args.cash:,.2f}, "
              f"{args.duration:g} s, {orders}, machines {'on Ray' if args.runner == 'ray' else 'in process'}; "
              f"log {where}", flush=True)
        if board is not None:
            print(f"dashboard: {board.url}", flush=True)
        status = _Status(spec)
        live = args.live_orders
        async with log, KalshiRest(rest_url, signer=signer, tier=settings.venue.tier) as rest, \
                KalshiFeed(ws_url, tickers, channels=LIVE_CHANNELS if live else CHANNELS, signer=signer,
                           rest=rest if live else None, info=rest, own=spec.prefix + "-" if live else None) as feed:
            session = PaperSession(log, spec, feed, session_id=session_id, venue=args.venue, runner=runner,
                                   config_hash=config_hash, code_version=version, rest=rest if live else None,
                                   models=models, queue_every_s=1.0 if args.shadow else 0.0)
            if board is not None:
                board.halt_with(session.stop)  # the page's halt (its token checked by the dashboard): Ctrl-C's stop
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, session.stop)
            try:
                summary = await session.run(args.duration, status)
            finally:
                loop.remove_signal_handler(signal.SIGINT)
            await log.mark("ended", f"paper {summary.reason}")
        status.clear()
    if hosts is not None:
        from actors.policy_actor import stop

        stop(hosts[0])
    _print_summary(summary, spec, status.last)
    from replay.verify import verify

    reader = await (open_log(target, session=session_id, settings=settings.log) if is_postgres(target)
                    else open_log(where, settings=settings.log))
    async with reader:
        report = await verify(reader, policies=PROVIDER, jobs=os.cpu_count() or 1)
    if report.ok:
        print(f"replay verify: ok — {report.records:,} records, {sum(report.derived.values()):,} derived events "
              f"regenerated identically ({report.rate:,.0f} records/s)")
    else:
        print(f"replay verify: DIVERGED — {report.divergence}")
    print(f"look further:\n  tape replay run {where}\n  tape log cat {where} --type order_filled")
    if board is not None:
        board.close()
    return 0 if report.ok else 1


def _dashboard_address(args: argparse.Namespace) -> tuple[str, int, str | None] | None:
    """``--dashboard``'s (host, port, token), checked before anything starts (a usage mistake otherwise)."""
    from . import UsageError

    if args.dashboard is None:
        return None
    token = args.dashboard_token or os.environ.get(TOKEN_ENV) or None
    try:
        return (*parse_listen(args.dashboard, token, option="--dashboard", token_option="--dashboard-token"), token)
    except ListenError as exc:
        raise UsageError(str(exc)) from None


def _start_dashboard(where: str, listen: tuple[str, int, str | None], settings: Settings,
                     args: argparse.Namespace) -> LiveDashboard:
    """The dashboard's own process, following the log at ``where`` (the address is bound here: in use, a usage
    mistake); it never shares this process's interpreter, and the trading loop never waits for it."""
    from . import UsageError

    try:
        return LiveDashboard.start(where, host=listen[0], port=listen[1], token=listen[2], settings=settings.log,
                                   logging=settings.logging, models=_model_dirs(args.policies))
    except OSError as exc:
        raise UsageError(f"--dashboard {args.dashboard}: {exc.strerror or exc}") from None


def _model_dirs(policies: str) -> tuple[str, ...]:
    """The registry ``--policies`` names, for the dashboard's models page (none for a built-in name)."""
    from policies.registry import is_named

    return () if is_named(policies) else (policies,)


def _policies(name: str):
    """``(the spec's base policies, the model to follow or None)`` for ``--policies``; a bad name is a usage error."""
    from policies.registry import ModelError, ModelSource, base_policy, is_named, load_model, load_policies

    from . import UsageError

    if is_named(name):
        try:
            load_policies(name)
        except ModelError as exc:
            raise UsageError(f"--policies: {exc}; --policies takes {POLICIES_TEXT}") from None
        return name, None
    try:
        model = load_model(name)  # checked now, before anything is started or logged
    except ModelError as exc:
        raise UsageError(f"--policies {name}: {exc}; --policies takes {POLICIES_TEXT}") from None
    base = base_policy(name)
    others = "" if len(model.manifest.roles) == 4 else f"; others {model.manifest.frozen or base}"
    print(f"policies: model {model.version} ({model.manifest.kind}: {', '.join(model.manifest.roles)}{others}) from "
          f"{model.directory}", flush=True)
    return base, ModelSource(name)


def _placement(args: argparse.Namespace) -> tuple:
    from . import UsageError
    from .cluster import placement_rules

    rules = placement_rules("--place", args.place)
    if rules and args.runner != "ray":
        raise UsageError("--place places Ray actors: it needs --runner ray")
    return rules


def _policy_actors(args: argparse.Namespace) -> tuple | None:
    """``--policy-actors``' placement rules (none for the bare flag), or None without it."""
    from . import UsageError
    from .cluster import placement_rules

    if args.policy_actors is None:
        return None
    if args.runner != "ray":
        raise UsageError("--policy-actors hosts the policies in Ray actors: it needs --runner ray (in this process "
                         "the orchestrator calls its policies directly)")
    return placement_rules("--policy-actors", [args.policy_actors] if args.policy_actors else [], "policy:*")


def _start_policy_actors(spec: SessionSpec, rules: tuple) -> tuple:
    """The session's policy actors, started from here, placed by ``rules``: ``(PolicyActors, their handles)``."""
    from actors.policy_actor import PolicyActors, start, where
    from policies.registry import PROVIDER

    from .cluster import connect

    connect()
    actors = PolicyActors(PROVIDER, spec.prefix, rules)
    handles = start(actors)
    hosts = where(actors)
    print("policy actors: " + "; ".join(f"{ip}: {', '.join(r for r, at in hosts.items() if at == ip)}"
                                        for ip in sorted(set(hosts.values()))), flush=True)
    return actors, handles


async def _runner(kind: str, spec: SessionSpec, log, placement: tuple = (), policies=None):
    """The machines' host: Ray actors (placed by ``placement``, :mod:`runtime.placement`), or this process; the
    orchestrator's policies are the registry's, or ``policies``' (a provider of policy actors' proxies)."""
    from policies.registry import PROVIDER

    from ..sequencer import InProcessRunner
    from ..topology import topology

    if kind == "inprocess":
        return InProcessRunner(topology(spec, PROVIDER))
    from actors.shell import RayRunner

    from .cluster import connect

    connect()
    runner = RayRunner(topology(spec, policies or PROVIDER), log, placement=placement)  # (placement checked by run)
    await runner.ready()  # every actor up before the feed subscribes: no backlog of stale market data
    if placement:
        where = await runner.where()
        nodes = {ip: [n.name for n, at in zip(runner.nodes, where, strict=True) if at == ip] for ip in sorted(set(where))}
        print("machines placed: " + "; ".join(f"{ip}: {len(names)} ({', '.join(names[:4])}"
                                               f"{', …' if len(names) > 4 else ''})" for ip, names in nodes.items()),
              flush=True)
    return runner


class _Status(Status):
    """The live view: one line per market (best bid/ask, position) and a totals line."""

    def __init__(self, spec: SessionSpec) -> None:
        super().__init__(every_s=10.0, human=sys.stdout)
        self.spec = spec
        self.last: Watch | None = None
        self._lines = 0

    def __call__(self, watch: Watch, elapsed: float) -> None:
        self.last = watch
        if not self.due():
            return
        totals = (f"{elapsed:5.0f} s  {watch.records / max(elapsed, 1e-9):8,.0f} ev/s  orders {watch.intents}  fills {watch.fills}  "
                  f"cash {_usd(watch.cash.cash)}  reserved {_usd(watch.cash.reserved)}  "
                  f"PnL {_usd(watch.pnl())}")
        if not self.live:
            self.show(totals)
            return
        rows = []
        for m in self.spec.markets:
            book = watch.books[m]
            bid, ask = book.best_bid(), book.best_ask()
            pos = watch.positions.get(m).position
            rows.append(f"  {m:<20} {'-' if bid is None else format_price(bid):>7} / "
                        f"{'-' if ask is None else format_price(ask):<7} {'stale' if book.stale else '':5} "
                        f"position {format_count(pos):>9}")
        text = "\n".join([totals, *rows])
        up = f"\x1b[{self._lines}F" if self._lines else ""
        sys.stderr.write(up + "\n".join(line + "\x1b[K" for line in text.split("\n")) + "\n")
        sys.stderr.flush()
        self._lines = len(rows) + 1
        self._shown = time.perf_counter()


def _one_contract() -> int:
    """The least ``--cash``: what the cash pool reserves for one contract at the highest whole-cent price."""
    from actors.fees import KalshiFees
    from actors.orchestrator import worst_case_cost

    return worst_case_cost(KalshiFees(), "", "bid", PRICE_MAX - TICK, COUNT_SCALE)


def _usd(micros: int) -> str:
    """Micro-dollars shown to the cent, sign first (``-$0.29``; exact rounding, display only)."""
    sign = "-" if micros < 0 else ""
    return f"{sign}${Decimal(abs(micros)) / MONEY_SCALE:,.2f}"


def _live_warning(venue: str, url: str | None, cash: float) -> str:
    """The line ``--live-orders`` prints before anything is sent: where real orders will go."""
    if venue == "sim":
        where = f"the local exchange at {url}" if url else "the local exchange started here (loopback)"
        return f"live orders: real orders go to {where}: no money at risk"
    host = HOSTS[venue].rest
    if venue == "kalshi-demo":
        return f"WARNING: live orders: real orders go to Kalshi's demo exchange ({host}), demo money"
    return (f"WARNING: LIVE ORDERS ON KALSHI PRODUCTION ({host}): real orders with REAL MONEY, up to "
            f"${cash:,.2f} of cash at stake; Ctrl-C cancels every working order")


def _print_summary(s: Summary, spec: SessionSpec, watch: Watch | None) -> None:
    lat = sorted(s.latency_ms)
    p50 = f"{statistics.median(lat):.1f}" if lat else ""
    p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f}" if lat else ""
    print(f"paper session {s.reason} after {s.seconds:.1f} s: {s.records:,} records ({s.inputs:,} inputs, "
          f"{s.derived:,} derived, {s.records / max(s.seconds, 1e-9):,.0f}/s)")
    print(f"  PnL {_usd(s.pnl)} (net of fees, marked at the mid)   max drawdown {_usd(s.max_drawdown)}")
    print(f"  fills {s.fills}   fees {_usd(s.fees)}   order intents {s.intents}   decisions {s.decisions}")
    if s.execution == "venue":
        g = s.gateway
        print(f"  fills from the venue ({s.venue}): {s.venue_fills} reported on its fill channel and REST "
              f"reconciliation ({s.reconciled_fills} found by the final read); orders sent {g.get('creates', 0)}, "
              f"accepted {g.get('accepted', 0)}, rejected {g.get('rejected', 0)}, canceled {g.get('canceled', 0)}, "
              f"venue errors {g.get('venue_errors', 0)}")
        if s.venue_positions is not None:
            differ = {m: (p, s.venue_positions.get(m, 0)) for m, p in s.positions.items()
                      if p != s.venue_positions.get(m, 0)}
            if differ:
                print("  venue positions DIFFER from the log: " + ", ".join(
                    f"{m} log {format_count(a)} venue {format_count(b)}" for m, (a, b) in differ.items()))
            else:
                print("  venue positions agree with the log")
        if s.reserved:
            print(f"  WARNING: cash still reserved after the drain: an order of ours may still rest at {s.venue}; "
                  "check it there")
    else:
        print("  fills from the paper matcher (simulated: no order was sent to the venue)")
    print(f"  cash {_usd(s.cash)} (started {_usd(spec.starting_cash)})   reserved "
          f"{_usd(s.reserved)}")
    if lat:
        causes = ", ".join(f"{n} after {kind}" for kind, n in s.latency_causes.items())
        print(f"  input-to-order latency (the input that caused the decision received -> its order durable in the log): "
              f"p50 {p50} ms, p99 {p99} ms over {len(lat)} order(s): {causes}")
    else:
        print("  input-to-order latency: no order was placed")
    if s.models:
        print("  models loaded: " + ", ".join(s.models))
    held = {m: p for m, p in s.positions.items() if p}
    if held:
        print("  positions: " + ", ".join(f"{m} {format_count(p)}" for m, p in held.items()))
