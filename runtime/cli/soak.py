"""``tape soak``: a long live-order session on the local exchange with every fault on, memory and fills watched."""

from __future__ import annotations

import argparse
import sys

import msgspec

from config import Settings

from ..logger import get_logger
from ..soak import ALL_FAULTS, SoakError, sample_line, soak
from ..venues.sim.faults import FaultError, Faults


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "soak", help="a long live-order session on the local exchange with every fault on: memory, event rate, "
        "fills lost or doubled, replay",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a paper session with REAL ORDERS to a local exchange started in this process (loopback, no "
        "money at risk): --markets markets, all traded, for --duration seconds, with the fault hooks on the "
        "feed's connection (gap, error25, drop, dup_fills, malformed, slow_ms; slow_ms on REST too). Every --every "
        "seconds a line: elapsed, resident memory (RSS) of this process and of every process of its Ray session, "
        "in total and per kind, the event rate, fills, duplicates refused. At the end: RSS growth after the "
        "warm-up (the first 10 minutes, or a sixth of a shorter run), fills lost or doubled (the log against the "
        "exchange's own record of our fills) and the replay verification. Linux only (memory is read from /proc).",
        epilog="examples:\n"
        "  tape soak --duration 3600 --markets 300                the hour-long soak, every fault on\n"
        "  tape soak --duration 30 --markets 20 --every 5 --json  a short one, the report as JSON on stdout\n"
        f"faults (default): {ALL_FAULTS}\n"
        "exit status: 0 no fill lost or doubled and the replay verified, 1 otherwise, 2 used wrongly")
    p.add_argument("--duration", type=float, default=3600.0, metavar="SECONDS", help="how long to trade (default 3600)")
    p.add_argument("--markets", type=int, default=300, metavar="N", help="markets on the exchange, all traded (default 300)")
    p.add_argument("--faults", default=ALL_FAULTS, metavar="SPEC", help=f"the fault spec (default {ALL_FAULTS}; '' for none)")
    p.add_argument("--every", type=float, default=60.0, metavar="SECONDS", help="seconds between lines (default 60)")
    p.add_argument("--warmup", type=float, default=None, metavar="SECONDS",
                   help="memory growth is measured after this (default: 600, or a sixth of a shorter run)")
    p.add_argument("--speed", type=float, default=10.0, metavar="X", help="the exchange's event time per wall second (default 10)")
    p.add_argument("--seed", type=int, default=7, metavar="S", help="seed of the exchange and the session (default 7)")
    p.add_argument("--cash", type=float, default=10_000.0, metavar="DOLLARS", help="starting cash (default 10000)")
    p.add_argument("--log", default="runs", metavar="DIR", help="where the run directory goes (default runs)")
    p.add_argument("--runner", choices=("ray", "inprocess"), default="ray", help="the machines' host (default ray)")
    p.add_argument("--policies", default="rule", metavar="rule|flow|random[:SEED]",
                   help="the built-in policies that trade (default rule)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout (the lines go to stderr)")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, new_directory

    if not args.duration > 0 or not args.every > 0 or not args.speed > 0 or args.markets < 1:
        raise UsageError("--duration, --every, --speed and --markets must be positive")
    try:
        Faults.parse(args.faults)
    except FaultError as exc:
        raise UsageError(f"--faults: {exc}") from None
    new_directory(args.log, "--log")
    def say(text: str) -> None:  # people's lines on stdout; with --json (stdout is the report) a diagnostics record
        if args.json:
            get_logger("soak").info(text.strip())
        else:
            print(text, flush=True)

    say(f"soak: {args.markets} markets, {args.duration:g} s, speed {args.speed:g}x, faults {args.faults or 'none'}, "
        f"live orders to the local exchange (loopback)")
    from policies.registry import PROVIDER

    try:
        report = await soak(duration_s=args.duration, markets=args.markets, faults=args.faults, every_s=args.every,
                            warmup_s=args.warmup, speed=args.speed, seed=args.seed, cash=args.cash, target=args.log,
                            runner=args.runner, policy=args.policies, show=lambda s: say(sample_line(s)),
                            policies=PROVIDER)
    except SoakError as exc:
        print(f"tape soak: {exc}", file=sys.stderr)
        return 2
    r = report
    say(f"soak {r.session_id} {r.reason}: {r.records:,} records, {r.orders:,} orders, log {r.log}")
    say(f"  memory: {r.rss_start_kb / 1024:.1f} MiB after the {r.warmup_s:g} s warm-up, {r.rss_end_kb / 1024:.1f} MiB "
        f"at the end ({r.rss_growth:+.2%}), peak {r.rss_peak_kb / 1024:.1f} MiB ({r.rss_peak_growth:+.2%})")
    say(f"  fills: {r.exchange_fills:,} by the exchange's record, {r.log_fills:,} applied by the log; lost "
        f"{len(r.fills_lost)}, doubled {len(r.fills_doubled)}, unknown {len(r.fills_unknown)}; duplicates refused "
        f"{r.duplicates_refused_feed:,} by the feed, {r.duplicates_refused_log:,} by the machines")
    say(f"  replay verify: {r.replay}")
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(r)) + b"\n")
        sys.stdout.flush()
    return 0 if r.ok else 1
