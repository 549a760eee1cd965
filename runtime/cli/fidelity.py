"""``tape fidelity``: the paper matcher measured against the local exchange's true queue, and calibrated."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from config import Settings
from config.profiles import PaperProfile

from ..fidelity.session import FidelityError, check_venue, spec_profile

VENUES = ("sim", "kalshi-demo", "kalshi", "recorded")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "fidelity", help="measure the paper matcher against the true queue (live orders on the local exchange, the "
        "paper matcher shadowing them); --calibrate its settings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run --sessions fidelity sessions (seeds --seed, --seed+1, ...): each trades --policies with REAL "
        "ORDERS on a local exchange started in this process (loopback, no money at risk; true price-time priority), "
        "while the shadow execution folds the same log through the paper matcher with the paper profile's settings, "
        "its fills kept out of the ledger. Then, paper beside true and their difference with a 95% confidence "
        "interval over sessions: the passive fill rate, time to first fill, queue position (the venue's, polled, "
        "against the paper matcher's at the same seq), fill price slippage against the decision's mid, adverse "
        "selection (the mid's move against us after a fill) and PnL; per order kind and per market. Each session's "
        "log is verified by replay. With --logs, existing fidelity sessions are measured instead. With --calibrate, "
        "the paper settings are searched on the first sessions and reported on the last --held-out ones (the shadow "
        "execution is re-folded from each log, no exchange needed).",
        epilog="examples:\n"
        "  tape fidelity --sessions 4 --seconds 120 --plot fidelity.png    measure the paper settings in force\n"
        "  tape fidelity --logs runs/fidelity-* --calibrate --held-out 2   calibrate on recorded sessions\n"
        "  tape fidelity --logs runs/fidelity-* --calibrate --save mine.toml --profile-name mine\n"
        "                                                                 then: tape paper --config mine.toml\n"
        "  tape fidelity --calibrate --grid latency_ms=0,10,25 --grid queue_model=proportional\n"
        "parameters --grid may search: latency_ms, queue_model (conservative, proportional, share, orders), cancel_ahead_pct,\n"
        "pacing (none or a Kalshi tier)\n"
        "exit status: 0 measured (and every replay verified), 1 a replay diverged, 2 used wrongly")
    p.add_argument("--sessions", type=int, default=4, metavar="N", help="fidelity sessions to run (default 4)")
    p.add_argument("--seconds", type=float, default=120.0, metavar="S", help="wall seconds per session (default 120)")
    p.add_argument("--markets", type=int, default=8, metavar="N", help="markets per session, all traded (default 8)")
    p.add_argument("--speed", type=float, default=5.0, metavar="X",
                   help="the exchange's event time per wall second (default 5)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the first session (default 1)")
    p.add_argument("--policies", default="random", metavar="rule|flow|random[:SEED]|MODEL_DIR",
                   help="what trades: built-in policies, or a trained model's directory (default random: many "
                   "orders of every kind, the most to measure)")
    p.add_argument("--venue", choices=VENUES, default="sim",
                   help="where the true matching happens: only sim (the local exchange) has a queue we can know "
                   "without trading real money; the others are refused with the reason (default sim)")
    p.add_argument("--logs", nargs="+", default=None, metavar="LOG", help="measure these fidelity sessions instead")
    p.add_argument("--cash", type=float, default=10_000.0, metavar="DOLLARS", help="starting cash (default 10000)")
    p.add_argument("--log", default="runs", metavar="DIR", help="where the sessions' run directories go (default runs)")
    p.add_argument("--calibrate", action="store_true", help="search the paper settings (see above)")
    p.add_argument("--held-out", type=int, default=None, metavar="K",
                   help="--calibrate: the last K sessions are held out (default: half, rounded down)")
    p.add_argument("--grid", action="append", default=[], metavar="PARAM=V1,V2",
                   help="--calibrate: the values to try for a parameter (repeatable; default: config.profiles.PARAMETERS)")
    p.add_argument("--save", default=None, metavar="FILE", help="--calibrate: write the chosen settings as a settings "
                   "file ([paper] profile and its [paper.profiles.NAME] table)")
    p.add_argument("--profile-name", default="calibrated", metavar="NAME", help="--save: the profile's name (default calibrated)")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw paper against true cumulative PnL")
    p.add_argument("--no-verify", action="store_true", help="skip the replay verification of each session")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from . import UsageError

    try:
        check_venue(args.venue)
    except FidelityError as exc:
        raise UsageError(str(exc)) from None
    grid = None
    if args.calibrate:
        from ..fidelity.calibrate import CalibrationError, parse_grid

        try:
            grid = parse_grid(args.grid)
        except CalibrationError as exc:
            raise UsageError(str(exc)) from None
    elif args.grid or args.save or args.held_out is not None:
        raise UsageError("--grid, --held-out and --save belong to --calibrate")
    say = _say(args.json)
    if args.logs is not None:
        logs = list(args.logs)
    else:
        from .paper import _policies

        name, profile = settings.paper.effective()
        logs = await record(args.policies, _policies(args.policies)[0], args, profile=profile, profile_name=name, say=say)
    sessions = await _load(logs)
    from ..fidelity.measure import measure

    try:
        measures = [measure(records, log=log) for log, records in sessions]
    except FidelityError as exc:
        raise UsageError(str(exc)) from None
    from ..fidelity.report import plot, render, summarize

    summary = summarize(measures)
    profiles = sorted({f"{m.spec.profile or '(settings)'}: {spec_profile(m.spec).text()}" for m in measures})
    say(render(summary, title=f"fill fidelity, paper settings {'; '.join(profiles)}"))
    result: dict = {"logs": logs, "summary": summary}
    ok = True
    if not args.no_verify:
        verdicts = await _verify(logs, say)
        result["replay"] = verdicts
        ok = all(v == "ok" for v in verdicts.values())
    if args.plot:
        say(f"plot: {plot(measures, args.plot)}")
    if grid is not None:
        result["calibration"] = _calibrate(args, sessions, grid, say)
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
        sys.stdout.flush()
    return 0 if ok else 1


def _say(json_out: bool) -> Callable[[str], None]:
    """Lines for people: on stdout, or on stderr when stdout is the JSON result."""
    stream = sys.stderr if json_out else sys.stdout
    return lambda text: print(text, file=stream, flush=True)


async def record(name: str, base: str, args: argparse.Namespace, *, profile: PaperProfile, profile_name: str,
                 say: Callable[[str], None], markets: int | None = None) -> list[str]:
    """Record ``args.sessions`` fidelity sessions of the policies ``name`` (``base``: the spec's policy it stands on,
    ``.paper._policies``) from seed ``args.seed`` on, as ``args`` sizes them (``--seconds``, ``--speed``, ``--log``,
    ``--cash``; ``markets`` or ``--markets``): what ``tape fidelity``, ``tape bench fidelity`` and ``tape eval
    --execution true`` record. Returns their logs."""
    from policies.registry import PROVIDER, ModelSource, is_named

    from ..fidelity.session import run_session
    from . import UsageError, new_directory

    markets = args.markets if markets is None else markets
    if args.sessions < 1 or not args.seconds > 0 or markets < 1 or not args.speed > 0:
        raise UsageError("--sessions, --seconds, --markets and --speed must be positive")
    new_directory(args.log, "--log")
    logs = []
    for i in range(args.sessions):
        seed = args.seed + i
        say(f"{name}: fidelity session {i + 1}/{args.sessions}, seed {seed}, {markets} markets, {args.seconds:g} s at "
            f"{args.speed:g}x, live orders to the local exchange; paper profile {profile_name or '(settings)'} "
            f"({profile.text()})")
        run = await run_session(seed=seed, markets=markets, seconds=args.seconds, policies=PROVIDER, policy=base,
                                speed=args.speed, profile=profile, profile_name=profile_name, target=args.log,
                                cash=args.cash, models=None if is_named(name) else ModelSource(name))
        s = run.summary
        say(f"  {run.log}: {s.reason}, {s.intents:,} orders, {s.fills:,} true fills, PnL ${s.pnl / 1e6:,.2f}")
        logs.append(run.log)
    return logs


async def _load(logs: list[str]) -> list[tuple[str, list]]:
    from ..log import open_log
    from . import UsageError

    out = []
    for log in logs:
        try:
            async with await open_log(log) as reader:
                out.append((log, [r async for batch in reader.read() for r in batch]))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{log}: cannot read the log ({exc})") from None
    return out


async def _verify(logs: list[str], say) -> dict[str, str]:
    from policies.registry import PROVIDER
    from replay.verify import verify

    from ..log import open_log

    verdicts = {}
    for log in logs:
        async with await open_log(log) as reader:
            v = await verify(reader, policies=PROVIDER, jobs=os.cpu_count() or 1)
        verdicts[log] = "ok" if v.ok else f"DIVERGED: {v.divergence}"
        say(f"replay verify {log}: {'ok, ' + format(v.records, ',') + ' records' if v.ok else verdicts[log]}")
    return verdicts


def _calibrate(args: argparse.Namespace, sessions: list, grid: dict, say) -> object:
    from ..fidelity.calibrate import calibrate
    from ..fidelity.report import render
    from . import UsageError

    held = len(sessions) // 2 if args.held_out is None else args.held_out
    if not 0 <= held < len(sessions):
        raise UsageError(f"--held-out {held}: keep at least one of the {len(sessions)} sessions for training")
    train, held_out = sessions[: len(sessions) - held], sessions[len(sessions) - held :]
    say(f"calibration: {len(train)} training session(s), {len(held_out)} held out; grid "
        + ", ".join(f"{k}={','.join(map(str, v))}" for k, v in sorted(grid.items())))
    result = calibrate(train, held_out, grid, progress=lambda i, n, t: say(
        f"  {i}/{n} {t.profile.text()}: error {t.error:.2f} "
        f"(fill rate {t.fill_rate_error_pp if t.fill_rate_error_pp is None else round(t.fill_rate_error_pp, 2)} pp, "
        f"PnL {t.pnl_error_pct if t.pnl_error_pct is None else round(t.pnl_error_pct, 1)} % pooled, "
        f"{t.pnl_abs_error_pct if t.pnl_abs_error_pct is None else round(t.pnl_abs_error_pct, 1)} % per session)"))
    c = result.chosen
    say(f"chosen: {c.text()}")
    if result.held_out_chosen is not None and result.held_out_default is not None:
        say(render(result.held_out_chosen, title="held out, chosen settings:"))
        say(render(result.held_out_default, title="held out, default settings:"))
    if args.save:
        path = Path(args.save)
        path.write_text(f'# tape fidelity --calibrate: chosen on {len(train)} session(s), held out {len(held_out)}\n'
                        f'[paper]\nprofile = "{args.profile_name}"\n\n[paper.profiles.{args.profile_name}]\n'
                        f'latency_ms = {c.latency_ms}\nqueue_model = "{c.queue_model}"\ncancel_ahead_pct = {c.cancel_ahead_pct}\n'
                        f'pacing = "{c.pacing}"\n')
        say(f"saved: {path} (tape paper --config {path})")
    return result


class TrueResult(msgspec.Struct, kw_only=True):
    """``tape eval --execution true``: one policy set on the local exchange, true and paper side by side."""

    name: str
    sessions: list[str]
    pnl_true: float  # dollars, every session together
    pnl_paper: float
    pnl_error_pct: float | None
    orders: int
    filled_true: float  # contracts
    filled_paper: float
    passive_fill_rate_true: float | None
    passive_fill_rate_paper: float | None
    pnl_true_per_session: list[float]
    pnl_paper_per_session: list[float]


async def eval_true(args: argparse.Namespace, settings: Settings, names: list[str]) -> int:
    """``tape eval --execution true`` (see its --help): each set's sessions, then the table (or JSON)."""
    from ..fidelity.measure import measure
    from ..fidelity.report import plot, summarize
    from ..units import MONEY_SCALE
    from . import UsageError
    from .paper import _policies

    if args.data is not None:
        raise UsageError("--data: --execution true plays on the local exchange's own markets; leave --data out")
    markets = 8 if args.markets is None else args.markets
    if not str(markets).isdigit() or int(markets) < 1:
        raise UsageError(f"--markets {markets}: --execution true takes a count of markets (the exchange's own tickers)")
    bases = {name: _policies(name)[0] for name in names}  # (checked before anything runs)
    profile_name, profile = settings.paper.effective()
    say = _say(args.json)
    results, measures = [], []
    for name in names:
        logs = await record(name, bases[name], args, profile=profile, profile_name=profile_name, say=say,
                            markets=int(markets))
        these = [measure(records, log=log) for log, records in await _load(logs)]
        measures += these
        s = summarize(these)
        results.append(TrueResult(
            name=name, sessions=logs, pnl_true=s.pnl_true, pnl_paper=s.pnl_paper, pnl_error_pct=s.pnl_error_pct,
            orders=s.overall.orders, filled_true=s.overall.true.filled / 100, filled_paper=s.overall.paper.filled / 100,
            passive_fill_rate_true=s.overall.true.passive_fill_rate, passive_fill_rate_paper=s.overall.paper.passive_fill_rate,
            pnl_true_per_session=[m.pnl_true / MONEY_SCALE for m in these],
            pnl_paper_per_session=[m.pnl_paper / MONEY_SCALE for m in these]))
    if args.plot:
        say(f"plot: {plot(measures, args.plot, title='tape eval --execution true')}")
    if args.json:
        print(msgspec.json.encode({"execution": "true", "profile": profile_name, "paper": profile,
                                   "results": results}).decode())
        return 0
    print(f"execution true: {args.sessions} session(s) x {args.seconds:g} s per set on the local exchange; paper = the "
          f"paper matcher beside them ({profile_name or 'settings'}: {profile.text()})")
    print(f"{'set':28}{'true PnL $':>12}{'paper PnL $':>13}{'paper-true %':>14}{'orders':>8}{'filled true':>13}"
          f"{'filled paper':>14}{'passive fill% true/paper':>26}")

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    for r in results:
        print(f"{r.name[:27]:28}{r.pnl_true:>12,.2f}{r.pnl_paper:>13,.2f}"
              f"{'—' if r.pnl_error_pct is None else format(r.pnl_error_pct, '+.1f'):>14}{r.orders:>8,}"
              f"{r.filled_true:>13,.0f}{r.filled_paper:>14,.0f}"
              f"{pct(r.passive_fill_rate_true) + ' / ' + pct(r.passive_fill_rate_paper):>26}")
    return 0
