"""``tape demo``: write a small session to a run directory, verify it, read it back, export it."""

from __future__ import annotations

import argparse
import time

from config import Settings, settings_hash

from ..events import SessionEnded, SessionStarted, event_type
from ..ids import new_session_id
from ..log import SessionMeta, create_log, is_postgres, open_log
from ..log.tools import verify_log
from ..synthetic import market_events
from ..venues.sim.session import EPOCH_NS
from ..version import code_version


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo", help="write, verify and read back a small session (no services, no network)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="An end-to-end tour of the event log on the embedded defaults: record a seeded synthetic "
        "market-data session into a new run directory (file log, fsync per batch), reopen it, verify every "
        "checksum and seq, read it back to count what it holds (by event type, as tape log cat --type names "
        "them), and export it to Parquet. Prints the commands to look further. The session holds market data "
        "only, no decisions: tape paper trades on market data and proves its run with tape replay verify.",
        epilog="examples:\n  tape demo --events 200000 --markets 8 --seed 7\n"
        "  tape demo --runs /tmp/runs --no-export\n"
        "then: tape log info runs/demo-20261122T185900Z-3fa9c1, and the main job: tape paper")
    p.add_argument("--runs", default=None, metavar="DIR", help="directory for the run (default: [log] target, 'runs')")
    p.add_argument("--events", type=int, default=50_000, metavar="N", help="market events to record (default 50,000)")
    p.add_argument("--markets", type=int, default=4, metavar="M", help="markets in the session (default 4)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed of the synthetic stream (default: [session] seed)")
    p.add_argument("--no-export", action="store_true", help="skip the Parquet export step")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, new_directory

    if args.events < 1 or args.markets < 1:
        raise UsageError("--events and --markets must be at least 1")
    if is_postgres(args.runs or settings.log.target):
        raise UsageError("the demo writes a file log; pass --runs DIR")
    runs = new_directory(args.runs or settings.log.target, "--runs" if args.runs else "[log] target")
    seed = settings.session.seed if args.seed is None else args.seed
    session_id = new_session_id("demo")
    meta = SessionMeta(session_id=session_id, mode="demo", venue="synthetic", seed=seed,
                       config_hash=settings_hash(settings), code_version=code_version(), created_ns=time.time_ns())
    stream = market_events(args.events, markets=args.markets, seed=seed, start_ns=EPOCH_NS)  # same seed, same events
    markets = tuple(sorted({e.market for _, e in stream}))  # type: ignore[attr-defined]

    started = time.perf_counter()
    log = await create_log(runs, meta, settings.log)
    async with log:
        first_ts = stream[0][0]
        await log.append([(first_ts, SessionStarted(session_id=session_id, mode="demo", venue="synthetic", seed=seed,
                                                    config_hash=meta.config_hash, code_version=meta.code_version,
                                                    markets=markets))])
        for lo in range(0, len(stream), 10_000):
            await log.append(stream[lo : lo + 10_000])
        await log.append([(stream[-1][0], SessionEnded(reason="demo complete"))])
        await log.mark("ended", "demo complete")
    wrote = time.perf_counter() - started
    where = runs / session_id
    print(f"recorded {log.last_seq:,} events over {len(markets)} markets into {where} in {wrote:.2f} s")

    async with await open_log(where, settings=settings.log) as reader:
        report = await verify_log(reader)
        counts: dict[str, int] = {}
        async for batch in reader.read():
            for record in batch:
                name = event_type(record.event)
                counts[name] = counts.get(name, 0) + 1
        print(f"verified: {'ok' if report.ok else 'DAMAGED'} ({report.records:,} records, {report.frames} frames, "
              f"{report.segments} segment(s))")
        print("read back: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
        if not args.no_export:
            from replay.export import export_parquet

            out = where / "export.parquet"
            summary = await export_parquet(reader, out)
            print(f"exported: {out} ({summary.rows:,} rows; pandas.read_parquet / polars / ray.data read it)")
    print("\nlook further:\n"
          f"  tape log info {where}\n"
          f"  tape log cat {where} --type public_trade --to 200\n"
          f"  tape log verify {where}\n"
          "then the main job, trading on market data like this and proving the run by replay:\n"
          "  tape paper")
    return 0 if report.ok else 1
