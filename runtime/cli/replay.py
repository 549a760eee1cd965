"""``tape replay``: re-run a sequenced session's log through its topology, in-process."""

from __future__ import annotations

import argparse
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from config import Settings
from policies.registry import MODELS_ENV, PROVIDER, ModelError

from ..topology import SpecMissingError
from ..units import PRICE_MAX, format_count, format_money, format_price
from . import BadDataError, open_log_target
from .cluster import connect
from .logcmd import LOG_HELP, RUN, Progress, _seq


def register(commands: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    replay = commands.add_parser(
        "replay", help="replay a session through its state machines: verify it, or rebuild its state",
        description="Replay a session written by the sequencer through the same state machines, in this process\n"
        "(no Ray). The session's topology is rebuilt from its first two records (session_started and the\n"
        "session_spec operator command).", formatter_class=fmt)
    sub = replay.add_subparsers(dest="replay_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "verify", help="check that every derived event replays exactly; exit 1 at the first divergence",
        formatter_class=fmt,
        description="Fold every record in seq order through the machines it routes to and compare each derived\n"
        "record of the log with what the replay derives at that position (rounds in the sequencer's order).\n"
        "Prints the counts (records, inputs, derived by type) and the rate, or the first divergence:\n"
        "its seq and kind (differs / missing / unexpected) with the expected and the logged event; exit 1.\n\n"
        "A log with checkpoints (every machine's state, stored by the sequencer every 25,000 records or so)\n"
        "is cut into segments replayed on --jobs processes at once; each segment must end in exactly the\n"
        "next checkpoint (else the divergence is of kind 'state', naming the machine), so the parallel\n"
        "replay proves what a serial one does. With --ray the segments run on a Ray cluster's cores.",
        epilog=f"examples:\n  tape replay verify {RUN}\n"
        "  tape replay verify 'postgresql://postgres@127.0.0.1/test?session=paper-20261122T185900Z-3fa9c1' --json\n"
        "  RAY_ADDRESS=auto tape replay verify 'postgresql://…?session=paper-20261122T185900Z-3fa9c1' --ray\n\n"
        "A log of market data alone (tape demo, tape record, tape synth) holds no decisions to replay: it is\n"
        "refused (exit 1). Check such a log with tape log verify.")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help=f"segments replayed at once (default: this machine's {os.cpu_count() or 1} cores, or with --ray "
                   "the cluster's; 1: serially, in this process)")
    p.add_argument("--ray", action="store_true",
                   help="replay the segments as Ray tasks on the cluster named by $RAY_ADDRESS (`ray up`), or on a "
                   "local Ray instance: every node reads the log itself, so it must be a PostgreSQL log or a run "
                   "directory on a filesystem the nodes share")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _models_option(p)
    p.set_defaults(handler=verify_cmd)

    p = sub.add_parser(
        "run", help="rebuild the session's state and print it", formatter_class=fmt,
        description="Fold the log (through --to SEQ, or all of it) through the machines, without checking, and\n"
        "print the final state: cash, reserved and available; position, cost, realized PnL, fees and PnL\n"
        "marked at the mid per market; the books' best bid and ask; the orders still open at the venue.",
        epilog=f"examples:\n  tape replay run {RUN}\n  tape replay run {RUN} --to 5000 --json")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--to", dest="last", type=_seq, default=None, metavar="SEQ", help="last seq (default: the end)")
    p.add_argument("--json", action="store_true", help="print the state as one JSON object (exact integer units)")
    _models_option(p)
    p.set_defaults(handler=run_cmd)


def _models_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="where the session's models are now, if they moved since it ran (repeatable): a model "
                   "version directory, a registry (tape train --out DIR), or a directory of registries. A model "
                   "the log names is looked for where it was loaded from, then here, by its version's name, and "
                   f"checked by its hash. Also read from ${MODELS_ENV}.")


def _use_models(args: argparse.Namespace) -> None:
    """``--models``, before the replay's machines (and its processes) are built: the loader reads it from the
    environment."""
    if args.models:
        before = [d for d in os.environ.get(MODELS_ENV, "").split(os.pathsep) if d]
        os.environ[MODELS_ENV] = os.pathsep.join([str(Path(d).resolve()) for d in args.models] + before)


async def verify_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from replay.verify import verify

    _use_models(args)
    cores = _ray_cpus() if args.ray else os.cpu_count() or 1
    jobs = args.jobs or cores
    async with await open_log_target(args.log, settings) as log:
        meta = await log.meta()
        progress = Progress("replay", meta.last_seq)
        try:
            report = await verify(log, progress, policies=PROVIDER, jobs=jobs, on_ray=args.ray)
        except (SpecMissingError, ModelError) as exc:
            _cannot(log.location, meta.mode, progress, exc)
        except BrokenProcessPool as exc:  # a segment's process died (killed, out of memory)
            _cannot(log.location, meta.mode, progress, RuntimeError(
                f"a replay process died ({exc}); replay with --jobs 1 (serially, in this process) to see why"))
    progress.done()
    derived = sum(report.derived.values())
    if args.json:
        out: dict[str, Any] = {"log": report.location, "ok": report.ok, "records": report.records,
                               "inputs": report.inputs, "derived": report.derived, "seconds": report.seconds,
                               "records_per_s": report.rate, "segments": report.segments, "jobs": report.jobs,
                               "nodes": list(report.nodes),
                               "divergence": None}
        if report.divergence is not None:
            d = report.divergence
            out["divergence"] = {"seq": d.seq, "kind": d.kind, "expected": msgspec.to_builtins(d.expected),
                                 "got": msgspec.to_builtins(d.got), "node": d.node, "message": str(d)}
        print(msgspec.json.encode(out).decode())
        return 0 if report.ok else 1
    print(f"{report.location}: {report.records:,} records replayed ({report.inputs:,} inputs, {derived:,} derived) "
          f"in {report.seconds:.2f} s ({report.rate:,.0f} records/s"
          + (f"; {report.segments} segments on {report.jobs} {'Ray workers' if args.ray else 'processes'}"
             + (f" on {len(report.nodes)} nodes: {', '.join(report.nodes)})" if report.nodes else ")")
             if report.segments > 1 else ")"))
    if report.derived:
        print("derived: " + ", ".join(f"{k} {v:,}" for k, v in report.derived.items()))
    if report.divergence is not None:
        d = report.divergence
        print(f"DIVERGED at seq {d.seq} ({d.kind}): {d}")
        if d.kind != "state":
            print(f"expected: {d.expected!r}\ngot:      {d.got!r}")
        return 1
    print("ok: every derived event replays exactly")
    return 0


def _ray_cpus() -> int:
    """Connect to the cluster (:func:`.cluster.connect`): its CPUs."""
    import ray

    connect()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be a whole number >= 1, got {text!r}")
    return n


MARKET_DATA_MODES = ("demo", "record", "synth")  # sessions of market data alone: nothing was decided in them


def _cannot(location: str, mode: str, progress: Progress, exc: Exception) -> NoReturn:
    """A log that cannot be replayed: say why (a :class:`BadDataError`, exit status 1)."""
    progress.done()
    if isinstance(exc, ModelError):
        raise BadDataError(f"{location}: a model the session loaded cannot be: {exc} (the replay needs the very "
                           "versions the session loaded: restore that directory, or pass --models DIR naming where it "
                           "is now)")
    if isinstance(exc, SpecMissingError) and mode in MARKET_DATA_MODES:
        raise BadDataError(f"{location}: a {mode} session holds market data only, no decisions to replay (tape "
                           f"replay replays sessions of tape paper; `tape log verify {location}` checks this one): "
                           f"{exc}")
    raise BadDataError(f"{location}: {exc}")


async def run_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from replay.verify import rebuild

    _use_models(args)
    async with await open_log_target(args.log, settings) as log:
        meta = await log.meta()
        last = meta.last_seq if args.last is None else args.last
        progress = Progress("replay", last)
        try:
            state = await rebuild(log, args.last, progress, policies=PROVIDER)
        except (SpecMissingError, ModelError) as exc:
            _cannot(log.location, meta.mode, progress, exc)
        location = log.location
    progress.done()
    summary = _summary(state)
    if args.json:
        print(msgspec.json.encode({"log": location, "through_seq": last, **summary}).decode())
        return 0
    cash = summary["cash"]
    print(f"{location} through seq {last:,}")
    print(f"cash ${format_money(cash['cash'])}  reserved ${format_money(cash['reserved'])}  "
          f"available ${format_money(cash['cash'] - cash['reserved'])}")
    print(f"{'market':<24} {'bid':>7} {'ask':>7} {'position':>10} {'cost':>12} {'realized':>12} {'fees':>10} "
          f"{'pnl@mid':>12}")
    for m in summary["markets"]:
        print(f"{m['market']:<24} {_price(m['best_bid']):>7} {_price(m['best_ask']):>7} "
              f"{format_count(m['position']):>10} {format_money(m['cost_basis']):>12} "
              f"{format_money(m['realized_pnl']):>12} {format_money(m['fees']):>10} "
              f"{'-' if m['pnl_at_mid'] is None else format_money(m['pnl_at_mid']):>12}")
    orders = summary["open_orders"]
    print(f"open orders: {len(orders)}")
    for o in orders:
        print(f"  {o['client_order_id']:<24} {o['market']:<24} {o['side']:<4} {format_price(o['price'])} "
              f"{format_count(o['remaining'])} of {format_count(o['count'])} {'live' if o['live'] else 'in flight'}")
    return 0


def _price(units: int | None) -> str:
    return "-" if units is None else format_price(units)


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    """The rebuilt snapshots as the figures ``run`` prints (exact integer units)."""
    cash = state["cash"]
    positions = {p.market: p for p in state["fills"].markets}
    markets = []
    for name, book in state.items():
        if not name.startswith("book:"):
            continue
        bid = book.yes_bids[-1][0] if book.yes_bids else None
        ask = PRICE_MAX - book.no_bids[-1][0] if book.no_bids else None
        p = positions.get(book.market)
        position, cost = (p.position, p.cost_basis) if p else (0, 0)
        mid_pnl = None if bid is None or ask is None else (position * (bid + ask) - 2 * cost) // 2
        markets.append({"market": book.market, "best_bid": bid, "best_ask": ask, "stale": book.stale,
                        "position": position, "cost_basis": cost, "realized_pnl": p.realized_pnl if p else 0,
                        "fees": p.fees if p else 0, "pnl_at_mid": None if mid_pnl is None else mid_pnl + (
                            p.realized_pnl if p else 0)})
    orders = [{"client_order_id": o.client_order_id, "market": o.market, "side": o.side, "price": o.price,
               "count": o.count, "remaining": o.remaining, "live": o.live} for o in state["execution"].orders]
    return {"cash": {"cash": cash.cash, "reserved": sum(r.hold for r in cash.reservations),
                     "rounding_paid": cash.rounding_paid},
            "markets": markets, "open_orders": orders}
