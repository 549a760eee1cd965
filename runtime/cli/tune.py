"""``tape tune``: a hyperparameter search over the training config with Ray Tune, scored on held-out sessions, the best
trial saved as a model version with its search record (:mod:`policies.tune`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from config import Settings

from .cluster import connect
from .progress import Status

DEFAULT_SPACE = Path(__import__("config").__file__).with_name("tune-default.toml")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "tune", help="search training hyperparameters with Ray Tune, scored on held-out sessions; save the best model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Search the training configuration (any field of tape train's config: learning rate, batch, "
        "network size, the roles that learn, env settings…) with Ray Tune. The search space is a TOML file: "
        "[base] holds fixed settings, [space] a distribution per searched field ({loguniform = [low, high]}, "
        "{uniform = …}, {randint = …}, {choice = [a, b, …]}); the default is config/tune-default.toml, whose "
        "comments describe the format. An unknown parameter or role is refused naming the file and key (exit 2).\n\n"
        "Each trial trains with RLlib PPO on --data as tape train does, and plays the --heldout sessions with its "
        "policies every --eval-every iterations and at its last (same execution, latency, queue model and fees "
        "as tape eval): its score is their total PnL. The ASHA scheduler stops the worse trials early. Trials run "
        "in parallel as the Ray cluster's CPUs allow (the cluster RAY_ADDRESS names when set; else a local one), "
        "each reserving 1 CPU plus its env runners. The best finished trial is saved as a new version under --out "
        "(as tape train --out does; DIR/latest names it) with search.json beside its model.json: every trial's "
        "parameters, config, status and held-out PnL at each report.",
        epilog="examples:\n"
        "  tape synth --sessions 8 --markets 8 --duration 1800 --seed 1 --log data/train\n"
        "  tape synth --sessions 3 --markets 8 --duration 1800 --seed 2 --log data/heldout\n"
        "  tape tune --data data/train --heldout data/heldout --trials 16 --time-budget-s 3600 --out models/tuned\n"
        "  tape tune --data data/train --heldout data/heldout --space my-space.toml --iterations 5 --trials 4\n"
        "then: tape eval --data data/heldout --policies rule,flow,models/tuned --oracle --plot pnl.png")
    p.add_argument("--data", nargs="+", required=True, metavar="LOG_OR_DIR", help="sessions to train on")
    p.add_argument("--heldout", nargs="+", required=True, metavar="LOG_OR_DIR",
                   help="sessions each trial is scored on (none of --data's)")
    p.add_argument("--space", default=None, metavar="FILE.toml",
                   help=f"the search space (default: the shipped {DEFAULT_SPACE.name})")
    p.add_argument("--out", default="models/tuned", metavar="DIR",
                   help="registry directory the best trial is saved under (default models/tuned)")
    p.add_argument("--trials", type=int, default=8, metavar="N", help="trials to run (default 8)")
    p.add_argument("--time-budget-s", type=float, default=None, metavar="S",
                   help="stop the search after this many seconds; the best trial that finished by then is kept "
                   "(default: no limit)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="PPO iterations per trial (default: the space's [base], else tape train's)")
    p.add_argument("--eval-every", type=int, default=0, metavar="K",
                   help="play the held-out sessions every K iterations (and at the last): the scheduler compares "
                   "trials there (default 0: 4 times per trial)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="the seed of every trial's training and of the draws from the space (default: the space's)")
    p.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                   help="at most N trials at once (default: as many as the cluster's CPUs allow)")
    p.add_argument("--storage", default=None, metavar="DIR",
                   help="Ray Tune's experiment directory (default: a temporary one, removed after; on a cluster of "
                   "several machines, storage all of them reach)")
    p.add_argument("--markets", default=None, metavar="T1,T2", help="these tickers only (training and held out)")
    p.add_argument("--json", action="store_true", help="print the search record as one JSON object")
    p.set_defaults(handler=run_tune, pinned_hash=True)


async def run_tune(args: argparse.Namespace, settings: Settings) -> int:
    from policies.tune import SpaceError, load_space, trial_config, tune

    from . import UsageError, new_directory
    from .rl import _check_data, _tapes

    if args.trials < 1 or (args.iterations is not None and args.iterations < 1) or args.eval_every < 0:
        raise UsageError(f"--trials and --iterations must be >= 1, --eval-every >= 0; got {args.trials}, "
                         f"{args.iterations}, {args.eval_every}")
    if args.time_budget_s is not None and not args.time_budget_s > 0:
        raise UsageError(f"--time-budget-s must be a positive number of seconds, got {args.time_budget_s:g}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    try:
        space = load_space(args.space or DEFAULT_SPACE)
    except SpaceError as exc:
        raise UsageError(f"--space {exc}") from None
    _check_data(args.data)
    try:
        _check_data(args.heldout)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--data", "--heldout", 1)) from None
    new_directory(args.out, "--out")
    if args.storage is not None:
        new_directory(args.storage, "--storage")
    base = {**space.base, **({"iterations": args.iterations} if args.iterations else {}),
            **({"seed": args.seed} if args.seed is not None else {})}
    try:
        config = trial_config(base, {}, data=args.data)
    except (ValueError, msgspec.ValidationError) as exc:
        raise UsageError(f"--space {space.source}: base: {exc}") from None
    tapes = await _tapes(args.data, args.markets)
    heldout = await _tapes(args.heldout, args.markets)
    shared = sorted({t.session for t in tapes} & {t.session for t in heldout})
    if shared:
        raise UsageError(f"--heldout: session {shared[0]} is also in --data ({len(shared)} shared): the score would "
                         "not be held out")
    connect()
    _check_cluster(config)
    status = Status()
    report = tune(space, args.data, tapes, args.heldout, heldout, args.out, trials=args.trials, iterations=args.iterations,
                  eval_every=args.eval_every, seed=args.seed, time_budget_s=args.time_budget_s,
                  max_concurrent=args.max_concurrent, storage=args.storage, say=status.line)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report)))
    else:
        _summary(report)
    if report.version is None:
        from . import BadDataError

        raise BadDataError("no trial finished" + (" within --time-budget-s: raise it, or lower --iterations or "
                                                  "--trials" if args.time_budget_s else "") + "; nothing saved")
    return 0


def _check_cluster(config) -> None:
    """A trial the cluster can never place would wait forever: refuse it instead."""
    import ray

    from . import UsageError
    from .rl import _check_gpus

    _check_gpus(config)
    need = 1 + config.num_env_runners + config.num_learners
    have = ray.cluster_resources().get("CPU", 0)
    if need > have:
        raise UsageError(f"a trial needs {need} CPUs (1 + {config.num_env_runners} env runners + "
                         f"{config.num_learners} learners); the Ray cluster has {have:g}")


def _summary(report) -> None:
    from policies.tune import SEARCH_FILE, short_params

    print(f"{len(report.trials)} of {report.trials_asked} trial(s) ran in {report.seconds:.0f} s, scored by held-out PnL on "
          f"{report.heldout['tapes']} tapes of {len(report.heldout['sessions'])} session(s):")
    for r in sorted(report.trials, key=lambda r: (r.heldout_pnl is None, -(r.heldout_pnl or 0), r.number)):
        pnl = "-" if r.heldout_pnl is None else f"${r.heldout_pnl:+,.2f}"
        mark = "*" if r.number == report.best else " "
        print(f" {mark} trial {r.number:>2}  {r.status:<8}  iterations {r.iterations:>3}  held-out PnL {pnl:>12}  "
              f"{short_params(r.params)}")
    if report.version is not None:
        print(f"best: trial {report.best}, saved {report.out}/{report.version} (latest) with {SEARCH_FILE}\nthen:\n"
              f"  tape eval --data NEW_HELD_OUT --policies rule,flow,{report.out} --oracle --plot pnl.png\n"
              f"  tape paper --policies {report.out}")
