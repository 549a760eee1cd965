"""``tape synth``: write seeded synthetic market-data sessions from the local exchange's order-flow model."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from config import Settings, settings_hash

from ..log import SessionMeta, create_log, is_postgres
from ..venues.sim import SynthSession, derive_seed
from ..venues.sim.session import write_fair
from ..version import code_version
from .progress import Status

BATCH = 20_000  # events per append (one frame); a fixed size keeps the segment files byte-identical


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "synth", help="generate seeded synthetic market-data sessions (training data, no sockets)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the local exchange's matching engine and order-flow model for M markets over --duration\n"
        "seconds of event time, as fast as the model runs, and write each session as a file log: one run\n"
        "directory per session under --log, named synth-<seed>-<n>. Market makers quote around a public\n"
        "estimate that lags a latent fair value (a drifting, jumping probability); informed traders see the\n"
        "fair value and trade ahead of the makers' move; noise traders add the rest. Most markets are wide\n"
        "(spreads above 20 cents), a fifth are tight and busy; activity comes in bursts and quiet spells.\n\n"
        "A session holds session_started; per market 'activated' (with its close time) and a book snapshot,\n"
        "then book deltas and public trades; at its close the deltas that empty the book, 'deactivated',\n"
        "'determined' and 'settled' (YES with probability = the final fair value); and session_ended.\n\n"
        "Beside each log (never in it) the run directory gets fair.msgpack: every market's latent fair-value path,\n"
        "which only `tape eval --oracle` reads (the ceiling policies are measured against); no policy sees it.\n\n"
        "Session n's own seed is derived from --seed and n and recorded in it. Event time starts at\n"
        "2026-01-01T00:00:00Z, never the wall clock: the same seed, arguments, settings and code give\n"
        "byte-identical segment files, with --jobs or without.",
        epilog="examples:\n"
        "  tape synth --sessions 10 --markets 20 --seed 7 --log runs/synth --jobs 2\n"
        "  tape synth --sessions 1 --markets 4 --seed 1 --log /tmp/synth --duration 600\n"
        "then: tape log info runs/synth/synth-7-0000")
    p.add_argument("--sessions", type=int, default=1, metavar="N", help="sessions to write (default 1)")
    p.add_argument("--markets", type=int, default=8, metavar="M", help="markets per session (default 8)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed of the whole run (default: [session] seed)")
    p.add_argument("--log", default=None, metavar="DIR",
                   help="directory to write the run directories into (default: [log] target, 'runs')")
    p.add_argument("--duration", type=float, default=3600.0, metavar="SECONDS",
                   help="event time per session; markets close in its last 20%% and settle (default 3600)")
    p.add_argument("--jobs", type=int, default=1, metavar="K",
                   help="sessions written at once, each in its own process (default 1)")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError, new_directory

    if args.sessions < 1 or args.markets < 1 or args.jobs < 1:
        raise UsageError("--sessions, --markets and --jobs must be at least 1")
    if not args.duration > 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")
    seed = settings.session.seed if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    root = args.log or settings.log.target
    if is_postgres(root):
        raise UsageError("tape synth writes file logs; pass --log DIR")
    root = new_directory(root, "--log" if args.log else "[log] target")
    plans = [_Plan(root, f"synth-{seed}-{k:04d}", derive_seed(seed, "session", k), args.markets, args.duration)
             for k in range(args.sessions)]
    taken = [p.session_id for p in plans if (root / p.session_id).exists()]
    if taken:
        raise UsageError(f"{root / taken[0]} already exists: the same --seed names the same sessions; "
                         "choose another --log DIR or --seed")
    progress = _Progress(args.sessions)
    if args.jobs == 1 or args.sessions == 1:
        for plan in plans:
            records, events = await _write(plan, settings, progress)
            progress.session(plan.session_id, records, events)
    else:  # whole sessions in worker processes: each is written exactly as it would be here
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(min(args.jobs, args.sessions), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [loop.run_in_executor(pool, _write_in_worker, plan, settings) for plan in plans]
            for done in asyncio.as_completed(futures):
                session_id, records, events = await done
                progress.session(session_id, records, events)
    total, elapsed = progress.events, time.perf_counter() - progress.started
    first = root / plans[0].session_id
    print(f"wrote {args.sessions} session(s) of {args.markets} market(s) x {args.duration:g} s under {root}: "
          f"{total:,} market events in {elapsed:.2f} s ({total / max(elapsed, 1e-9):,.0f} events/s)")
    print(f"look further:\n  tape log info {first}\n  tape log cat {first} --type public_trade --to 50")
    return 0


@dataclass(frozen=True)
class _Plan:
    """One session to write: where, its id, its own seed and its size."""

    root: Path
    session_id: str
    seed: int
    markets: int
    duration_s: float
    fair: bool = True
    """write the fair-value sidecar beside the log"""


class _Progress(Status):
    """Sessions done and events written: a live line on a terminal, a line per session otherwise."""

    def __init__(self, sessions: int) -> None:
        super().__init__()
        self.sessions, self.done, self.events = sessions, 0, 0

    def tick(self, events: int) -> None:
        if self.due():
            total = self.events + events
            self.show(f"synth: session {self.done + 1}/{self.sessions}, {total:,} events "
                      f"({total / max(self.elapsed(), 1e-9):,.0f}/s)")

    def session(self, session_id: str, records: int, events: int) -> None:
        self.done += 1
        self.events += events
        elapsed = self.elapsed()
        self.line(f"synth: session {self.done}/{self.sessions} {session_id}: {records:,} records; {self.events:,} "
                  f"events in {elapsed:.1f} s ({self.events / max(elapsed, 1e-9):,.0f}/s)")


async def _write(plan: _Plan, settings: Settings, progress: _Progress | None = None) -> tuple[int, int]:
    """Generate and log one session, then its fair-value sidecar beside the log; returns (records, market events)."""
    config_hash, version = settings_hash(settings), code_version()
    session = SynthSession(plan.seed, plan.markets, plan.duration_s, config=settings.synth, record_fair=plan.fair)
    meta = SessionMeta(session_id=plan.session_id, mode="synth", venue="sim", seed=plan.seed,
                       config_hash=config_hash, code_version=version, created_ns=time.time_ns())
    events = 0
    log = await create_log(plan.root, meta, settings.log)
    async with log:
        await log.append([session.started(plan.session_id, config_hash, version)])
        for batch in session.batches(BATCH):
            await log.append(batch)  # one at a time: the frames and segments do not depend on timing
            events += len(batch)
            if progress is not None:
                progress.tick(events)
        await log.append([session.ended()])
        await log.mark("ended", "synth complete")
    if plan.fair:
        write_fair(plan.root / plan.session_id, session.fair(plan.session_id))
    return log.last_seq, events


def _write_in_worker(plan: _Plan, settings: Settings) -> tuple[str, int, int]:
    records, events = asyncio.run(_write(plan, settings))
    return plan.session_id, records, events
