"""``tape train`` and ``tape eval``: learn policies from sessions with RLlib, and compare policies on held-out ones."""

from __future__ import annotations

import argparse
import json
import time

import msgspec

from config import Settings

from ..logger import get_logger
from ..units import MONEY_SCALE
from .cluster import check_placement, connect, placement_rules
from .progress import Status

ROLES_TEXT = "signal,sizing,entry,exit"
LEARNING_TEXT = ROLES_TEXT  # policies.base.LEARNING (a test keeps them equal)
POLICIES_TEXT = "rule, flow, random[:SEED] or a model directory saved by tape train"


def register(commands: argparse._SubParsersAction) -> None:
    t = commands.add_parser(
        "train", help="train policies with RLlib PPO on recorded or synthetic sessions; save a model version",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the trading policies with RLlib's PPO (new API stack) on the market data of the sessions "
        "--data names: run directories, directories of runs (tape synth, tape record), postgresql:// DSNs "
        "(?session=ID, or every session) or Parquet exports. Each episode replays one market of one session through "
        "the paper session's own machines (book, paper matcher with latency and queue model, Kalshi fees, cash pool, "
        "orchestrator): what is learned is what trades live.\n\n"
        "--env roles (default): the four roles are agents acting in turn, one RLlib module each; --roles picks "
        "those that learn, the others stay --frozen (rule baselines). Each role is rewarded with its own share of "
        "each trade (policies/rewards.py: the signal the market's move over a decision horizon, entry and exit the "
        "execution and timing against it, sizing what the size made of it; declining to trade is charged what the "
        "horizon would have paid); by default the roles learn in stages (--schedule staged: the signal first, then "
        "entry and exit, then sizing). Observations are scaled per feature as fitted on --data, actions masked where "
        "they cannot apply; both are saved with the model. --regimes K fits a K-state hidden Markov model of the "
        "markets' volatility, activity and spread on --data (policies/regimes.py) and gives every role the "
        "probabilities of its states, filtered causally from the market's recent samples; it is saved with the model "
        "and applied identically live.\n\n"
        "--env single: one agent plays every role with one discrete action (hold, buy YES/NO passive or "
        "crossing, close), rewarded by the change of the marked PnL.\n\n"
        "Resources are RLlib's: --num-env-runners sampling actors, --num-learners learner actors, "
        "--num-gpus-per-learner GPUs each (0 = CPU). On a cluster (`ray up`; RAY_ADDRESS set, or inside `ray job "
        "submit`) it uses the cluster. Each iteration prints its progress. The model is saved as a new version "
        "under --out (DIR/<version>/ with model.json and the RLlib checkpoint; DIR/latest names it): use it with "
        "`tape eval --policies DIR` and `tape paper --policies DIR`. The same --seed and data on CPU give the same "
        "weights, so the same version.",
        epilog="examples:\n"
        "  tape synth --sessions 8 --markets 8 --duration 1800 --seed 1 --log data/train\n"
        "  tape train --data data/train --iterations 30 --out models/kxsim\n"
        "  tape train --data data/train --iterations 30 --eval-every 5 --heldout data/heldout --out models/kxsim\n"
        "  tape train --data data/train --iterations 30 --eval-every 5 --heldout data/valid --keep best --out models/kxsim\n"
        "  tape train --data data/train --roles signal,exit --iterations 50 --out models/kxsim\n"
        "  tape train --data runs/ --env single --num-env-runners 2 --num-gpus-per-learner 1 --out models/single\n"
        "  ray job submit --working-dir . -- tape train --data postgresql://…/tape --num-env-runners 16 \\\n"
        "      --num-learners 2 --num-gpus-per-learner 1 --out /shared/models/kxsim\n"
        "then: tape eval --data data/heldout --policies rule,random,models/kxsim")
    t.add_argument("--data", nargs="+", required=True, metavar="LOG_OR_DIR", help="sessions to learn from")
    t.add_argument("--env", choices=("roles", "single"), default="roles",
                   help="roles: the four roles as agents (default); single: one agent for everything")
    t.add_argument("--roles", default=LEARNING_TEXT, metavar="R1,R2",
                   help=f"(--env roles) the roles that learn, among {ROLES_TEXT} (default all four; signal,entry,exit "
                   "leaves sizing the rule's: README, training, compares them)")
    t.add_argument("--frozen", default="rule", metavar="rule|flow|random|DIR",
                   help="(--env roles) the policies of the roles that do not learn: the rule baselines (default), "
                   "random, or a model trained before (its roles keep its weights)")
    t.add_argument("--schedule", choices=("joint", "staged"), default=None,
                   help="(--env roles) joint: every role learns from the first iteration; staged: the signal first "
                   "(the others rules), then entry and exit, then sizing (default staged)")
    t.add_argument("--iterations", type=int, default=20, metavar="N", help="PPO iterations (default 20)")
    t.add_argument("--eval-every", type=int, default=0, metavar="K",
                   help="with --heldout: the held-out PnL every K iterations and after the last, in the progress and "
                   "the history saved with the model (default 0: never)")
    t.add_argument("--heldout", nargs="+", default=(), metavar="LOG_OR_DIR",
                   help="held-out sessions for --eval-every (never trained on)")
    t.add_argument("--imitate", default="", metavar="rule|flow",
                   help="(--env roles) each learning role first learns to decide as this policy set does on the "
                   "training tapes (policies/imitate.py), then PPO improves on it (default: from random weights)")
    t.add_argument("--keep", choices=("last", "best"), default="last",
                   help="the version saved: the policies after the last iteration (default), or at the --eval-every "
                   "evaluation whose held-out PnL was highest (those sessions then chose the model: evaluate it on others)")
    t.add_argument("--out", default="models/tape", metavar="DIR",
                   help="registry directory the new version is saved under (default models/tape)")
    t.add_argument("--num-env-runners", type=int, default=0, metavar="K",
                   help="sampling actors (default 0: sample in this process)")
    t.add_argument("--num-learners", type=int, default=0, metavar="L",
                   help="learner actors (default 0: learn in this process)")
    t.add_argument("--num-gpus-per-learner", type=float, default=0.0, metavar="G",
                   help="GPUs per learner (default 0: CPU; 1 puts the learner on a GPU)")
    t.add_argument("--place", action="append", default=[], metavar="env_runner|learner=RESOURCE[:AMOUNT]",
                   help="on a Ray cluster, run the env runners (or the learners) only on nodes that declare the custom "
                   "RESOURCE (ray start --resources; config/cluster-onprem.yaml gives workers tape_worker); repeatable")
    t.add_argument("--hidden", type=_sizes, default=(64, 64), metavar="N1,N2",
                   help="hidden layer sizes of each policy network (default 64,64). A GPU learner pays off with large "
                   "networks only: on an H100 it was 2.6x slower than the CPU at 64,64 and 5.4x faster at 1024,1024")
    t.add_argument("--envs-per-runner", type=int, default=8, metavar="E",
                   help="environments each env runner steps together, one batched inference for all (default 8)")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="seed of everything (default 0)")
    t.add_argument("--train-batch", type=int, default=4_000, metavar="STEPS", help="env steps per iteration (default 4000)")
    t.add_argument("--minibatch", type=int, default=500, metavar="STEPS", help="SGD minibatch (default 500)")
    t.add_argument("--epochs", type=int, default=6, metavar="E", help="SGD passes per iteration (default 6)")
    t.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    t.add_argument("--entropy", type=float, default=None, metavar="C", help="PPO's entropy coefficient (default 0)")
    t.add_argument("--clip", type=float, default=None, metavar="EPS",
                   help="PPO's clip parameter: how far one update may move the probability ratio (default 0.2)")
    t.add_argument("--gamma", type=float, default=None, metavar="G", help="discount factor (default 0.9)")
    t.add_argument("--lambda", dest="lambda_", type=float, default=None, metavar="L", help="GAE's lambda (default 0.95)")
    t.add_argument("--horizon", type=int, default=None, metavar="SECONDS",
                   help="(--env roles) the decision horizon the roles' rewards measure against (policies/rewards.py; "
                   "default 300)")
    t.add_argument("--abstain", type=float, default=None, metavar="W",
                   help="(--env roles) weight of the opportunity cost charged to a signal's hold (default 1)")
    t.add_argument("--regimes", type=int, default=0, metavar="K",
                   help="fit a K-state regime model (volatility, activity, spread) on --data and give the roles its "
                   "filtered state probabilities as observations, saved with the model (default 0: none; 2-8)")
    t.add_argument("--markets", default=None, metavar="T1,T2", help="train on these tickers only")
    t.add_argument("--lot", type=int, default=10, metavar="CONTRACTS", help="(--env single) order size (default 10)")
    t.add_argument("--cash", type=float, default=1_000.0, metavar="DOLLARS", help="starting cash per episode (default 1000)")
    t.add_argument("--latency-ms", type=int, default=50, metavar="MS", help="paper latency (default 50)")
    t.add_argument("--paper-profile", default="", metavar="NAME", help=PROFILE_TEXT)
    t.add_argument("--curriculum", type=int, default=0, metavar="EPISODES",
                   help="start on the easiest quarter of the tapes, opening to all over this many episodes (default 0: off)")
    t.add_argument("--max-steps", type=int, default=0, metavar="N", help="truncate episodes after N agent steps (default 0: whole tapes)")
    t.add_argument("--json", action="store_true", help="print the report as one JSON object")
    t.set_defaults(handler=run_train, pinned_hash=True)

    e = commands.add_parser(
        "eval", help="compare policies (trained, rule, flow, random) on held-out sessions: PnL, Sharpe, drawdown, attribution",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Play every market of the sessions --data names once per policy set, each as a paper session of "
        "that market through the runtime's own machines (latency, queue model, fees), and print the sets side by "
        "side: total PnL (marked at the mid, net of fees), per-tape mean and Sharpe (mean/std over tapes), worst "
        "drawdown, trades, win rate, fill rate (contracts filled / ordered), fees, and the trades' PnL split into "
        "signal (the market's move while in the trade), entry and exit (execution against the mid) and fees, with "
        "the mean trade size (sizing's part). A model evaluated on sessions it was trained on is flagged: use "
        "held-out sessions (another tape synth --seed, or other recordings).\n\n"
        "References: rule (the rule baselines), random, and flow: a documented rule set on the signed-flow features "
        "(informed flow leads the mid; policies/flow.py), the known edge a learned model should at least match. "
        "--oracle adds the ceiling on synthetic sessions: the set 'oracle', which knows the latent fair value "
        "tape synth wrote beside each session (fair.msgpack; no other policy sees it) and trades it with the same "
        "execution, latency, queue model and fees; every set's PnL is then also shown as its share of the "
        "oracle's. Sessions without that file (recorded ones) are refused with --oracle (exit 2).\n\n"
        "Regimes: each set's trades' PnL is split by the market regime in force when each trade's entry was decided, "
        "from a trained model's own regime model (tape train --regimes K), or for the other sets from one --regimes K "
        "fits on the evaluated tapes (policies/regimes.py).\n\n"
        "--execution true plays each set with REAL ORDERS on a local exchange started in this process instead (loopback, "
        "true price-time priority; --sessions sessions of --seconds, the same seeds for every set) with the paper matcher "
        "shadowing them (tape fidelity): each set's true PnL and its paper PnL side by side, with the passive fill rate "
        "either way. --data is not used then: the exchange makes its own markets.",
        epilog="examples:\n"
        "  tape eval --data data/heldout --policies rule,random,flow,models/kxsim --oracle --plot pnl.png\n"
        "  tape eval --data runs/ --policies models/kxsim/ppo@3f2a9c81d0e4 --json\n"
        "  tape eval --data data/heldout --policies rule,flow,models/kxsim --regimes 3\n"
        "  tape eval --data runs/paper-20261122T185900Z-3fa9c1 --policies rule,random:7\n"
        "  tape eval --execution true --policies rule,flow,models/kxsim --sessions 3 --seconds 120")
    e.add_argument("--data", nargs="+", default=None, metavar="LOG_OR_DIR", help="held-out sessions (required but "
                   "with --execution true)")
    e.add_argument("--execution", choices=("paper", "true"), default="paper",
                   help="paper: the paper matcher on --data (default); true: live orders on the local exchange, the "
                   "paper matcher beside them")
    e.add_argument("--sessions", type=int, default=2, metavar="N", help="--execution true: sessions per set (default 2)")
    e.add_argument("--seconds", type=float, default=120.0, metavar="S",
                   help="--execution true: wall seconds per session (default 120)")
    e.add_argument("--speed", type=float, default=10.0, metavar="X",
                   help="--execution true: the exchange's event time per wall second (default 10)")
    e.add_argument("--seed", type=int, default=1, metavar="S", help="--execution true: the first session's seed (default 1)")
    e.add_argument("--log", default="runs", metavar="DIR", help="--execution true: where the sessions go (default runs)")
    e.add_argument("--policies", default="rule,random", metavar="P1,P2",
                   help="comma-separated: rule, flow, random[:SEED], or model paths (default rule,random)")
    e.add_argument("--oracle", action="store_true",
                   help="also play the oracle (knows the latent fair value of tape synth's sessions) and show each "
                   "set's share of its PnL")
    e.add_argument("--baseline", default=None, metavar="NAME",
                   help="compare every other set with this one tape by tape: the mean per-tape difference, its "
                   "standard error and t-statistic (default: flow when it is among the sets, else none)")
    e.add_argument("--regimes", type=int, default=0, metavar="K",
                   help="split every set's PnL by regime: a model trained with regimes uses its own; for the other sets "
                   "a K-state regime model is fitted on the evaluated tapes (default 0: only the models' own; 2-8)")
    e.add_argument("--markets", default=None, metavar="T1,T2", help="these tickers only")
    e.add_argument("--cash", type=float, default=1_000.0, metavar="DOLLARS", help="starting cash per tape (default 1000)")
    e.add_argument("--latency-ms", type=int, default=50, metavar="MS", help="paper latency (default 50)")
    e.add_argument("--paper-profile", default="", metavar="NAME", help=PROFILE_TEXT)
    e.add_argument("--plot", default=None, metavar="OUT.png",
                   help="also draw each policy set's cumulative PnL over the tapes, in the order played, into this PNG "
                   "(its directory must exist)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(handler=run_eval)


PROFILE_TEXT = ("the paper matcher's settings as a named profile (config/profiles.py): calibrated-sim = calibrated by "
                "tape fidelity against the local exchange's true queue; replaces --latency-ms (default: none)")


def _paper_profile(name: str) -> str:
    """``--paper-profile``: a shipped profile's name ("" for none); else a usage error naming them."""
    from config.profiles import SHIPPED

    from . import UsageError

    if name and name not in SHIPPED:
        raise UsageError(f"--paper-profile {name!r}: choose among {', '.join(sorted(SHIPPED))}")
    return name


def _check_data(data: list[str]) -> None:
    """``--data``: each source that is a path must be a directory or a Parquet export (a usage mistake otherwise);
    what the sources hold is checked as they load."""
    from pathlib import Path

    from ..log import is_postgres
    from . import UsageError

    for source in data:
        path = Path(source)
        if is_postgres(source) or path.is_dir() or (path.is_file() and path.suffix == ".parquet"):
            continue
        if not path.exists():
            raise UsageError(f"--data {source}: no such log, directory of runs, Parquet file or postgresql:// URL")
        raise UsageError(f"--data {source}: not a directory (a run directory or a directory of runs), nor a .parquet "
                         "export")


def _check_play(cash: float, latency_ms: int) -> None:
    """``--cash`` and ``--latency-ms``, as the paper session of every tape takes them."""
    from . import UsageError

    if not cash > 0:
        raise UsageError(f"--cash must be a positive number of dollars, got {cash:g}")
    if latency_ms < 0:
        raise UsageError(f"--latency-ms must be >= 0, got {latency_ms}")


async def _check_markets(data: list[str], markets: str) -> None:
    """When no tape of ``--markets`` loads: a usage mistake listing the markets ``--data`` has, if it has some."""
    from policies.data import DataError, load_tapes

    from . import UsageError

    try:
        found = sorted({t.market for t in await load_tapes(data)})
    except DataError:
        return
    raise UsageError(f"--markets {markets}: no such market in --data; its markets are {', '.join(found[:20])}"
                     + (f" … ({len(found)} in all)" if len(found) > 20 else ""))


async def _tapes(data: list[str], markets: str | None):
    """The market tapes of ``--data`` (a source whose data cannot be used is a :class:`BadDataError`, exit 1)."""
    from policies.data import DataError, load_tapes

    from . import BadDataError

    _check_data(data)
    status = Status()
    try:
        tapes = await load_tapes(data, markets=markets.split(",") if markets else None,
                                 progress=lambda s, n: status.show(f"loading {s}: {n} tapes") if status.due() else None)
    except DataError as exc:
        status.clear()
        if markets:
            await _check_markets(data, markets)
        raise BadDataError(f"--data: {exc}") from None
    status.clear()
    sessions = len({t.session for t in tapes})
    status.line(f"data: {len(tapes)} market tapes from {sessions} session(s), {sum(len(t.events) for t in tapes):,} "
                "market events")
    return tapes


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden takes layer sizes >= 1 separated by commas, e.g. 256,256; got {text!r}")
    return sizes


async def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from policies.train import TrainConfig, format_return, train

    from . import UsageError, new_directory

    _check_data(args.data)
    _check_play(args.cash, args.latency_ms)
    if args.lot < 1:
        raise UsageError(f"--lot must be at least 1 contract, got {args.lot}")
    if args.max_steps < 0 or args.curriculum < 0:
        raise UsageError(f"--max-steps and --curriculum must be >= 0, got {args.max_steps} and {args.curriculum}")
    new_directory(args.out, "--out")  # before hours of training, not after
    roles = tuple(r for r in args.roles.split(",") if r)
    if args.eval_every < 0:
        raise UsageError(f"--eval-every must be >= 0, got {args.eval_every}")
    if args.eval_every and not args.heldout:
        raise UsageError("--eval-every needs --heldout LOG_OR_DIR (the sessions to measure on)")
    if args.keep == "best" and not args.eval_every:
        raise UsageError("--keep best needs --eval-every K and --heldout LOG_OR_DIR (the evaluations it chooses among)")
    if args.heldout:
        _check_data(list(args.heldout))
    defaults = TrainConfig(data=())
    rewards = defaults.rewards
    try:
        rewards = msgspec.structs.replace(
            rewards, **{k: v for k, v in (("horizon_s", args.horizon), ("abstain", args.abstain)) if v is not None})
        config = TrainConfig(
            data=tuple(args.data), env=args.env, roles=roles, frozen=args.frozen, iterations=args.iterations,
            schedule=args.schedule or defaults.schedule, eval_every=args.eval_every, heldout=tuple(args.heldout),
            keep=args.keep, imitate=args.imitate,
            entropy=defaults.entropy if args.entropy is None else args.entropy, rewards=rewards,
            clip=defaults.clip if args.clip is None else args.clip,
            gamma=defaults.gamma if args.gamma is None else args.gamma,
            lambda_=defaults.lambda_ if args.lambda_ is None else args.lambda_, regimes=args.regimes,
            seed=args.seed, num_env_runners=args.num_env_runners, num_learners=args.num_learners,
            num_gpus_per_learner=args.num_gpus_per_learner, train_batch=args.train_batch, minibatch=args.minibatch,
            epochs=args.epochs, lr=args.lr, envs_per_runner=args.envs_per_runner, hidden=args.hidden,
            env_config={"cash": round(args.cash * MONEY_SCALE), "lot": args.lot * 100, "latency_ms": args.latency_ms,
                        "curriculum": args.curriculum, "max_steps": args.max_steps,
                        "paper_profile": _paper_profile(args.paper_profile)})
        _check(config)
    except (ValueError, msgspec.ValidationError) as exc:
        raise UsageError(str(exc)) from None
    placement = placement_rules("--place", args.place)  # (a malformed rule is refused before the data loads)
    tapes = await _tapes(args.data, args.markets)
    heldout = await _tapes(list(args.heldout), args.markets) if args.heldout and args.eval_every else None
    connect()
    _check_gpus(config)
    if placement:  # refused at once when the cluster cannot meet it, or nothing it names runs as an actor
        actors = [name for name, count in (("env_runner", config.num_env_runners), ("learner", config.num_learners))
                  if count]
        check_placement("--place", placement, actors or ["(no actors: --num-env-runners and --num-learners are 0)"])
    status = Status()
    say = status.line
    started = time.perf_counter()
    report = train(config, args.out, tapes=tapes, heldout=heldout, say=say, placement=placement)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report)))
        return 0
    print(f"trained {report.version} in {time.perf_counter() - started:.0f} s: {report.iterations} iterations, "
          f"{report.env_steps:,} env steps, learner on {report.device}; episode return "
          f"{format_return(report.returns[0])} -> {format_return(report.returns[-1])}")
    if report.kept_iteration is not None:
        pnl = report.history[report.kept_iteration - 1]["heldout_pnl"]
        print(f"kept iteration {report.kept_iteration} of {report.iterations} (--keep best): held-out PnL ${pnl:+,.2f}, "
              "the best of the evaluations; those sessions chose it, so evaluate it on others")
    print(f"saved {args.out}/{report.version} (latest)\nthen:\n  tape eval --data HELD_OUT --policies "
          f"rule,random,{args.out}\n  tape paper --policies {args.out}")
    return 0


def _check_gpus(config) -> None:
    """RLlib waits forever for a GPU the cluster does not have: refuse instead."""
    import ray

    from . import UsageError

    wanted = config.num_gpus_per_learner * max(1, config.num_learners)
    have = ray.cluster_resources().get("GPU", 0)
    if wanted > have:
        raise UsageError(f"--num-gpus-per-learner {config.num_gpus_per_learner:g} x {max(1, config.num_learners)} "
                         f"learner(s) needs {wanted:g} GPU(s); the Ray cluster has {have:g} (train on CPU with 0)")


def _check(config) -> None:
    from policies.base import ROLES

    unknown = [r for r in config.roles if r not in ROLES]
    if unknown or not config.roles:
        raise ValueError(f"--roles: choose among {ROLES_TEXT}, got {','.join(config.roles) or 'none'}")
    if (config.iterations < 1 or config.train_batch < 1 or config.num_env_runners < 0 or config.num_learners < 0
            or config.envs_per_runner < 1):
        raise ValueError("--iterations, --train-batch and --envs-per-runner must be >= 1, --num-env-runners and "
                         "--num-learners >= 0")
    if config.num_gpus_per_learner < 0:
        raise ValueError("--num-gpus-per-learner must be >= 0")
    if not 0 < config.clip <= 1:
        raise ValueError(f"--clip must be in (0, 1], got {config.clip:g}")
    _check_regimes(config.regimes)
    from policies.imitate import TEACHERS

    if config.imitate and (config.imitate not in TEACHERS or config.env != "roles"):
        raise ValueError(f"--imitate: {' or '.join(TEACHERS)}, with --env roles; got {config.imitate!r}"
                         + (f" with --env {config.env}" if config.env != "roles" else ""))
    from policies.registry import ModelError, is_named, load_model, load_policies

    try:
        if is_named(config.frozen):
            load_policies(config.frozen)
        else:
            load_model(config.frozen)
    except ModelError as exc:
        raise ValueError(f"--frozen: rule, random[:SEED] or a model, got {config.frozen!r}: {exc}") from None
    from policies.env import env_config

    env_config(config.env_config)  # its own checks (cash, lot…)


REGIMES_MAX = 8


def _check_regimes(k: int) -> None:
    if k and not 2 <= k <= REGIMES_MAX:
        raise ValueError(f"--regimes: 0 (none) or between 2 and {REGIMES_MAX} states, got {k}")


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from policies.evaluate import evaluate
    from policies.oracle import OracleError
    from policies.registry import ModelError, is_named, load_model, load_policies

    from . import BadDataError, UsageError

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--policies: name at least one ({POLICIES_TEXT})")
    if args.execution == "true":
        from .fidelity import eval_true

        return await eval_true(args, settings, names)
    if args.data is None:
        raise UsageError("--data: name the held-out sessions to play (or evaluate with --execution true on the local "
                         "exchange)")
    _check_data(args.data)
    _check_play(args.cash, args.latency_ms)
    _paper_profile(args.paper_profile)  # (checked before the tapes are read)
    plot = _check_plot(args.plot)
    try:
        _check_regimes(args.regimes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sets = {}
    trained_on: dict[str, set[str]] = {}
    own_regimes = {}
    for name in names:
        try:
            if is_named(name):
                sets[name] = load_policies(name)
            else:
                model = load_model(name)
                sets[model.version] = model.policies()
                trained_on[model.version] = set(model.manifest.data.get("sessions", []))
                if model.manifest.regimes is not None:
                    own_regimes[model.version] = model.manifest.regimes
        except ModelError as exc:
            raise UsageError(f"--policies {name}: {exc}; --policies takes {POLICIES_TEXT}") from None
    baseline = args.baseline if args.baseline is not None else ("flow" if "flow" in sets else None)
    if baseline is not None and baseline not in sets and not (args.oracle and baseline == "oracle"):
        raise UsageError(f"--baseline {baseline}: not among the policy sets ({', '.join(sets)}); name one of them")
    tapes = await _tapes(args.data, args.markets)
    if args.oracle:
        bare = next((t for t in tapes if t.sidecar is None), None)
        if bare is not None:
            raise UsageError(f"--oracle: session {bare.session} has no fair-value sidecar (fair.msgpack beside its log): "
                             "only tape synth writes one; evaluate recorded sessions without --oracle")
    for version, sessions in trained_on.items():
        seen = sorted(sessions & {t.session for t in tapes})
        if seen:
            get_logger("eval").warning(f"{version} was trained on {len(seen)} of these sessions "
                                       f"({', '.join(seen[:3])}…): not held out")
    status = Status()
    fitted = None
    if args.regimes:
        from policies.regimes import fit_regimes

        try:
            fitted = fit_regimes(tapes, args.regimes)
        except ValueError as exc:
            raise BadDataError(f"--regimes: {exc}") from None
        if not args.json:
            status.line(f"regimes: {fitted.k} states fitted on the evaluated tapes ({fitted.steps:,} sample steps) for "
                        "the sets without a regime model of their own")
    try:
        from config.profiles import SHIPPED

        profile = _paper_profile(args.paper_profile)
        results = evaluate(sets, tapes, cash=round(args.cash * MONEY_SCALE), latency_ms=args.latency_ms,
                           paper=(profile, SHIPPED[profile]) if profile else None,
                           oracle=args.oracle, baseline=baseline, regimes=own_regimes, fitted=fitted,
                           say=lambda line: status.line(line) if not args.json else None)
    except OracleError as exc:
        raise BadDataError(f"--oracle: {exc}") from None
    if plot is not None:
        from policies.plots import pnl_curves

        pnl_curves(results, plot)
    if args.json:
        print(json.dumps({"tapes": len(tapes), "sessions": len({t.session for t in tapes}), "oracle": args.oracle,
                          "results": [msgspec.to_builtins(r) for r in results],
                          "regimes_fitted": None if fitted is None else msgspec.to_builtins(fitted),
                          **({"plot": str(plot)} if plot is not None else {})}))
        return 0
    _table(results)
    if plot is not None:
        print(f"cumulative PnL per policy set drawn in {plot}")
    return 0


def _check_plot(text: str | None):
    """``--plot``: a PNG file to write in a directory that exists (a usage mistake otherwise, before any work)."""
    from pathlib import Path

    from . import UsageError

    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {text}: the picture is a PNG; name the file *.png")
    if path.is_dir():
        raise UsageError(f"--plot {text}: is a directory; name a .png file")
    for at in path.parents:
        if at.exists():
            if not at.is_dir():
                raise UsageError(f"--plot {text}: {at} is not a directory")
            break
    if not path.parent.is_dir():
        raise UsageError(f"--plot {text}: no such directory {path.parent}")
    return path


def _table(results) -> None:
    rows = [("", *(r.name for r in results)),
            ("PnL $", *(f"{r.pnl:,.2f}" for r in results)),
            ("per tape $ (mean ± sd)", *(f"{r.pnl_mean:,.3f} ± {r.pnl_std:,.3f}" for r in results)),
            ("Sharpe (per tape)", *(f"{r.sharpe:.3f}" for r in results)),
            ("max drawdown $", *(f"{r.max_drawdown:,.2f}" for r in results)),
            ("trades", *(str(r.trades) for r in results)),
            ("win rate", *(f"{r.win_rate:.1%}" for r in results)),
            ("fill rate", *(f"{r.fill_rate:.1%}" for r in results)),
            ("fees $", *(f"{r.fees:,.2f}" for r in results)),
            ("signal $", *(f"{r.attribution['signal']:,.2f}" for r in results)),
            ("entry $", *(f"{r.attribution['entry']:,.2f}" for r in results)),
            ("exit $", *(f"{r.attribution['exit']:,.2f}" for r in results)),
            ("mean size (contracts)", *(f"{r.mean_size:,.1f}" for r in results))]
    if any(r.name == "oracle" for r in results):
        rows.append(("share of oracle", *("-" if r.share_of_oracle is None else f"{r.share_of_oracle:.1%}"
                                          for r in results)))
    versus = next((r.versus.baseline for r in results if r.versus is not None), None)
    if versus is not None:
        rows.append((f"vs {versus} $/tape (± se)", *("-" if r.versus is None else
                                                    f"{r.versus.diff_mean:+,.3f} ± {r.versus.diff_se:,.3f}"
                                                    for r in results)))
        rows.append((f"vs {versus}: t (paired)", *("-" if r.versus is None or r.versus.t is None else
                                                  f"{r.versus.t:+.2f}" for r in results)))
    names = sorted({k for r in results if r.regimes for k in r.regimes})
    if names:
        for name in names:
            rows.append((f"{name} $ (trades)", *("-" if not r.regimes or name not in r.regimes else
                                                 f"{r.regimes[name].pnl:,.2f} ({r.regimes[name].trades})"
                                                 for r in results)))
        rows.append(("regime model", *("-" if r.regime_model is None else
                                       "own" if r.regime_model == "model" else "fitted on these tapes"
                                       for r in results)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    first = results[0] if results else None
    if first is not None:
        print(f"{first.tapes} tapes from {first.sessions} session(s); each policy set played every tape once")
    for row in rows:
        print("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
