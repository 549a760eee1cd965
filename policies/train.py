"""Training with RLlib PPO (new API stack): the config, the loop behind ``tape train``, and the saved model.

:func:`ppo_config` builds one :class:`~ray.rllib.algorithms.ppo.PPOConfig` for either environment:

* ``env="roles"`` — :class:`~policies.multi.MultiRoleEnv`, one RLlib module per role (module id = role),
  ``policies_to_train`` = the roles chosen; roles not chosen are answered inside the episodes by the
  frozen policies (the rule baselines by default) and get no module;
* ``env="single"`` — :class:`~policies.env.TradingEnv`, one module (``default_policy``).

Multi-agent modules are :class:`~policies.multi.MaskedPPOModule` (PPO's default networks behind the roles' action
masks). Before the first iteration, each module's observation **scaling** is fitted on the training tapes
(:func:`fit_scaling`) and given to the environments; it is saved with the model and applied identically live.
With ``regimes`` K (``tape train --regimes K``; 0, the default, is off) a K-state **regime model** is fitted on the
training tapes first (:func:`policies.regimes.fit_regimes`); its causally filtered probabilities follow every
module's observation (the scaling passes them unchanged), in the environments and, saved in the model version and
its hash, live.

**Schedules** (``schedule``): ``joint`` trains every chosen role together from the first iteration; ``staged``
trains them in three stages over the same iterations (:data:`STAGES`: the signal first, with sizing, entry and exit
answered by the ``frozen`` policies; then entry and exit, with the learned signal acting but no longer trained;
then sizing, with the other three acting), each stage starting from the weights the one before left.

Resources are RLlib's: ``num_env_runners`` sampling actors (0 samples in the driver), ``num_learners``
learner actors (0: the learner runs in the driver) and ``num_gpus_per_learner`` (a fraction shares one
GPU; with ``num_learners=0`` and a GPU the driver's learner uses it). Nothing requires a GPU.

:func:`train` runs ``iterations`` PPO iterations, reports each one (:func:`iteration_line`: an iteration in which no
episode ended has no return, shown as ``-``, and ``null`` in the report's JSON, never ``nan``), and saves a model directory
(:mod:`policies.registry`): the RLlib checkpoint to resume from, and ``model.json`` with the training
config, the data description (sources, sessions, tapes, a digest of their events) and the version hash
of the learned weights, and the **history**: per iteration its return per role (None where no episode ended) and,
every ``eval_every`` iterations when ``heldout`` sessions are given, the held-out PnL of the policies as they are
then (:func:`policies.evaluate.evaluate_one` on those tapes), saved as ``history.json`` beside the model with its
curve ``training.png``. With ``imitate`` (``rule`` or ``flow``) each stage's learning roles first imitate that
policy set's decisions on the training tapes (:mod:`policies.imitate`), then PPO goes on from there. With ``keep="best"`` the version saved is the policies as they were at the evaluation whose
held-out PnL was highest (the first of equals), not at the last iteration: each new best is saved aside as it
happens (a stage's model is its acting roles learned, the others ``frozen``), and the best becomes the version, with
the whole history and ``kept_iteration`` in its report. Its held-out sessions chose it: they are then a validation set,
so judge the model on others. With the same seed and data on CPU, two runs give the same weights
(``torch.use_deterministic_algorithms`` and one torch thread in the learner; see :func:`seed_everything`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from runtime.events import Role

from .base import OBSERVATION_NAMES, ROLES
from .data import Tape
from .features import Scaling
from .regimes import RegimeModel
from .rewards import RewardConfig

__all__ = ["HASH_SEED", "SCHEDULES", "STAGES", "TrainConfig", "TrainReport", "episode_return", "fit_scaling", "format_return",
           "iteration_line", "ppo_config", "seed_everything", "stages", "train"]

EnvKind = Literal["roles", "single"]
Schedule = Literal["joint", "staged"]
SCHEDULES: tuple[str, ...] = ("joint", "staged")
STAGES: tuple[tuple[float, tuple[Role, ...]], ...] = ((0.4, ("signal",)), (0.4, ("entry", "exit")), (0.2, ("sizing",)))
"""the staged schedule: (share of the iterations, the roles trained then); a stage's acting roles are its own and
those of the stages before"""


class TrainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``tape train`` was asked: recorded beside the model."""

    data: tuple[str, ...]
    env: EnvKind = "roles"
    roles: tuple[Role, ...] = ROLES
    """(env ``roles``) the roles that learn; the others are ``frozen``"""
    frozen: str = "rule"
    schedule: Schedule = "staged"
    """(env ``roles``) ``joint`` or ``staged`` (module docstring)"""
    iterations: int = 20
    seed: int = 0
    num_env_runners: int = 0
    num_learners: int = 0
    num_gpus_per_learner: float = 0.0
    train_batch: int = 4_000
    """env steps per iteration"""
    minibatch: int = 500
    epochs: int = 6
    envs_per_runner: int = 1
    """environments each env runner steps together (one batched forward pass for all: RLlib's per-step cost is
    mostly fixed, so 4-8 sample several times faster)"""
    lr: float = 3e-4
    gamma: float = 0.9
    """the discount: the roles' rewards come at (signal, sizing, entry) or soon after (exit) their decisions"""
    lambda_: float = 0.95
    """GAE's lambda"""
    entropy: float = 0.0
    """PPO's entropy coefficient"""
    clip: float = 0.2
    """PPO's clip parameter: how far one update may move the policy's probability ratio from 1"""
    hidden: tuple[int, ...] = (64, 64)
    env_config: dict[str, Any] = {}
    """:class:`~policies.env.EnvConfig` fields (lot, cash, latency_ms, curriculum, max_steps…)"""
    rewards: RewardConfig = RewardConfig()
    """(env ``roles``) the roles' rewards (:mod:`policies.rewards`)"""
    eval_every: int = 0
    """every this many iterations (and after the last), the held-out PnL of the policies so far (0: never)"""
    heldout: tuple[str, ...] = ()
    """the sessions that held-out PnL is measured on"""
    regimes: int = 0
    """states of the regime model fitted on the data and observed by every module (:mod:`policies.regimes`); 0: none"""
    imitate: str = ""
    """(env ``roles``) a policy set (``rule`` or ``flow``) each learning role first imitates before PPO
    (:mod:`policies.imitate`); "" for none"""
    keep: Literal["last", "best"] = "last"
    """the version saved: the policies after the last iteration, or at the ``eval_every`` evaluation whose held-out PnL
    was highest (module docstring)"""


HASH_SEED = "0"
"""the ``PYTHONHASHSEED`` training is repeatable under (``tape train`` and ``tape tune`` run under it): RLlib builds
multi-agent episodes and batches by iterating over sets of agent ids, whose order follows Python's string hashing"""


def seed_everything(seed: int) -> None:
    """The process-wide settings that make CPU training repeatable: deterministic torch kernels, one thread. (On a
    GPU, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for deterministic kernels: set here unless the user set it.) Python's
    string hashing cannot be set in a running process: outside :data:`HASH_SEED` a warning says so."""
    import os
    import random

    import numpy as np
    import torch

    from runtime.logger import get_logger

    if os.environ.get("PYTHONHASHSEED") != HASH_SEED:
        get_logger("policies.train").warning(
            "training not repeatable across processes", pythonhashseed=os.environ.get("PYTHONHASHSEED"),
            fix=f"run under PYTHONHASHSEED={HASH_SEED} (tape train and tape tune do): RLlib orders agents by set "
                "iteration, which follows the hash seed")

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def ppo_config(env: Any, env_config: dict[str, Any], *, seed: int = 0, roles: Sequence[Role] | None = None,
               train_roles: Sequence[Role] | None = None, num_env_runners: int = 0, num_learners: int = 0,
               num_gpus_per_learner: float = 0.0, train_batch: int = 4_000, minibatch: int = 500, epochs: int = 6,
               lr: float = 3e-4, gamma: float = 0.9, lambda_: float = 0.95, entropy: float = 0.0,
               clip: float = 0.2, hidden: Sequence[int] = (64, 64),
               envs_per_runner: int = 1, placement: Sequence[Any] = ()) -> Any:
    """The PPO config (module docstring). ``env`` is an environment class; ``roles`` (multi-agent only) are the
    modules, the agents of the environment, and ``train_roles`` those of them that train (default: all).
    ``placement`` (:mod:`runtime.placement` rules for ``env_runner`` and ``learner``) puts the env runners and the
    learners on the nodes that declare a resource; a failed env runner is restarted (RLlib's fault tolerance)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from runtime.placement import resources_for

    model = DefaultModelConfig(fcnet_hiddens=list(hidden), head_fcnet_hiddens=[])
    config = (
        PPOConfig()
        .environment(env=env, env_config=env_config)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=envs_per_runner,
                     custom_resources_per_env_runner=resources_for(placement, "env_runner") or {})
        .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner,
                  custom_resources_per_learner=resources_for(placement, "learner") or {})
        .fault_tolerance(restart_failed_env_runners=True)
        .training(train_batch_size_per_learner=train_batch, minibatch_size=min(minibatch, train_batch),
                  num_epochs=epochs, lr=lr, gamma=gamma, lambda_=lambda_,
                  entropy_coeff=entropy, clip_param=clip)
        .debugging(seed=seed, log_level="ERROR")
        .reporting(min_sample_timesteps_per_iteration=0)
    )
    if roles is None:
        return config.rl_module(model_config=model)
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from .multi import MaskedPPOModule

    chosen = list(roles)
    trained = [r for r in chosen if train_roles is None or r in train_roles]
    return (config
            .multi_agent(policies=chosen, policy_mapping_fn=_same_id, policies_to_train=trained)  # lists: a set's
            # order follows PYTHONHASHSEED, and so would the modules' initial weights
            .rl_module(rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={r: RLModuleSpec(module_class=MaskedPPOModule, model_config=model) for r in chosen})))


def _same_id(agent_id: str, episode: Any, **kwargs: Any) -> str:
    return agent_id


class TrainReport(msgspec.Struct, kw_only=True):
    """What :func:`train` did."""

    out: str
    version: str
    iterations: int
    env_steps: int
    seconds: float
    returns: list[float | None]
    """mean episode return per iteration, in reward units (dollars x reward_scale; roles: the mean over the roles,
    which share each trade's outcome); None for an iteration in which no episode ended (JSON ``null``)"""
    device: str
    """where the learner's weights lived at the end (``cpu``, ``cuda:0``)"""
    history: list[dict[str, Any]] = []
    """per iteration: ``iteration``, ``returns`` (role -> mean episode return or None), ``heldout_pnl`` (dollars, or
    None where not measured)"""
    kept_iteration: int | None = None
    """``keep="best"``: the iteration whose policies were saved (None: the last, ``keep="last"``)"""


def _metric(value: Any) -> float | None:
    """A mean RLlib reports, or None where there is none: absent, or NaN (no episode ended to average)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def episode_return(runners: Mapping[str, Any], env: EnvKind) -> tuple[float | None, dict[str, float | None]]:
    """An iteration's mean episode return and each module's, from RLlib's ``env_runners`` results; None where no
    episode ended. Roles: the mean over the roles that have one (they share each trade's outcome: a role's return
    is the episode's PnL, and the sum over the roles is not)."""
    per = {str(k): _metric(v) for k, v in (runners.get("module_episode_returns_mean") or {}).items()}
    known = [v for v in per.values() if v is not None]
    if env == "roles" and known:
        return sum(known) / len(known), per
    return _metric(runners.get("episode_return_mean")), per


def format_return(value: float | None, spec: str = "+.3f") -> str:
    """A return as the progress shows it: ``-`` where there is none (no episode ended), never ``nan``."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


def iteration_line(i: int, iterations: int, steps: int, ret: float | None, per: Mapping[str, float | None],
                   seconds: float) -> str:
    """One iteration's progress line (per-role returns for the roles among ``per``)."""
    roles = " ".join(f"{k}={format_return(v, '+.2f')}" for k, v in sorted(per.items()) if k in ROLES)
    return (f"iteration {i}/{iterations}: {steps:,} env steps, episode return {format_return(ret)}"
            f"{' (' + roles + ')' if roles else ''}, {seconds:.0f} s")


def _env_class(kind: EnvKind) -> Any:
    if kind == "single":
        from .env import TradingEnv

        return TradingEnv
    from .multi import MultiRoleEnv

    return MultiRoleEnv


def stages(config: TrainConfig) -> list[tuple[int, tuple[Role, ...], tuple[Role, ...]]]:
    """The schedule's stages: ``(iterations, acting roles, training roles)``; one stage for ``joint`` (and the single
    agent), :data:`STAGES` restricted to ``config.roles`` for ``staged``: each stage one iteration, and the rest
    shared by the stages' shares (largest remainders first). Fewer iterations than stages train jointly."""
    plan = [(share, tuple(r for r in roles if r in config.roles)) for share, roles in STAGES]
    plan = [(share, roles) for share, roles in plan if roles]
    if config.env == "single" or config.schedule == "joint" or config.iterations < len(plan):
        return [(config.iterations, tuple(config.roles), tuple(config.roles))]
    total, rest = sum(share for share, _ in plan), config.iterations - len(plan)
    exact = [rest * share / total for share, _ in plan]
    counts = [1 + int(x) for x in exact]
    for k in sorted(range(len(plan)), key=lambda k: (int(exact[k]) - exact[k], k))[:config.iterations - sum(counts)]:
        counts[k] += 1
    out, acting = [], ()
    for n, (_, roles) in zip(counts, plan, strict=True):
        acting = tuple(r for r in ROLES if r in acting or r in roles)
        out.append((n, acting, roles))
    return out


def fit_scaling(tapes: Sequence[Tape], env: EnvKind, *, sample: int = 16, cash: int = 10**9,
                regimes: RegimeModel | None = None) -> dict[str, Scaling]:
    """Each module's observation scaling (:class:`~policies.features.Scaling`), fitted on observations of the training
    tapes: every role's, as the seeded random baselines meet them (they trade, so positions and working orders are
    seen too), on up to ``sample`` tapes spread evenly over the data. Deterministic. With ``regimes``, the layouts end
    with its probabilities, which the scaling leaves as they are (centre 0, scale 1)."""
    import numpy as np

    from .env import agent_observation
    from .episode import Episode
    from .registry import SINGLE_MODULE
    from .roles import random_policies

    rows: dict[Role, list[Any]] = {r: [] for r in ROLES}

    class Recording:
        def __init__(self, policy: Any) -> None:
            self.policy, self.role, self.version = policy, policy.role, policy.version

        def decide(self, obs: Any) -> Any:
            rows[self.role].append(agent_observation(self.role, obs) if env == "single" else obs.vector())
            return self.policy.decide(obs)

    step = max(1, len(tapes) // sample)
    for tape in list(tapes)[::step][:sample]:
        Episode(tape, {r: Recording(p) for r, p in random_policies(0).items()}, cash=cash).run()
    if env == "single":
        seen = [row for r in ("signal", "exit") for row in rows[r]]
        fitted = {SINGLE_MODULE: Scaling.fit(OBSERVATION_NAMES["exit"], np.array(seen))}
    else:
        fitted = {r: Scaling.fit(OBSERVATION_NAMES[r], np.array(rows[r])) for r in ROLES}
    if regimes is None:
        return fitted
    k = regimes.k
    return {m: Scaling(names=(*s.names, *regimes.names), center=(*s.center, *(0.0,) * k), scale=(*s.scale, *(1.0,) * k),
                       clip=s.clip) for m, s in fitted.items()}


def _policies_now(algo: Any, config: TrainConfig, acting: Sequence[Role], scaling: Mapping[str, Scaling],
                  regimes: RegimeModel | None = None) -> Any:
    """The policies as the modules are now (for the held-out evaluation during training)."""
    from .regimes import regime_filter
    from .registry import SINGLE_MODULE, ModelPolicy, SingleAgentPolicy, load_policies

    filtered = regime_filter(regimes)
    if config.env == "single":
        module = algo.get_module(SINGLE_MODULE)
        lot = int(config.env_config.get("lot", 1_000))
        return {r: SingleAgentPolicy(r, module, "training", lot, scaling.get(SINGLE_MODULE), filtered) for r in ROLES}
    out = dict(load_policies(config.frozen)) if set(acting) != set(ROLES) else {}
    for role in acting:
        out[role] = ModelPolicy(role, algo.get_module(role), "training", scaling.get(role), masked=True,
                                regimes=filtered)
    return out


def train(config: TrainConfig, out: str | Path, *, tapes: Sequence[Tape] | None = None,
          heldout: Sequence[Tape] | None = None, say: Callable[[str], None] = lambda _: None,
          on_iteration: Callable[[dict[str, Any]], None] | None = None, placement: Sequence[Any] = ()) -> TrainReport:
    """Train (module docstring) and save the model under ``out``; ``tapes`` overrides loading ``config.data``,
    ``heldout`` loading ``config.heldout``; ``on_iteration`` is given each iteration's history item as it ends;
    ``placement`` places the env runners and learners (:func:`ppo_config`; where they ran changes nothing learned)."""
    import asyncio
    import shutil

    import msgspec

    from .data import load_tapes
    from .evaluate import evaluate_one
    from .registry import adopt_model, save_model

    seed_everything(config.seed)
    if tapes is None:
        tapes = asyncio.run(load_tapes(config.data, progress=lambda s, n: say(f"loaded {s}: {n} tapes so far")))
    if heldout is None and config.heldout and config.eval_every:
        heldout = asyncio.run(load_tapes(config.heldout))
    cash = int(config.env_config.get("cash", 1_000 * 1_000_000))
    regimes = None
    if config.regimes:
        from .regimes import fit_regimes

        regimes = fit_regimes(tapes, config.regimes)
        say(f"regimes: {regimes.k} states fitted on {regimes.steps:,} sample steps (mean volatility, activity, spread: "
            + "; ".join(", ".join(f"{v:.2f}" for v in m) for m in regimes.means) + ")")
    scaling = fit_scaling(tapes, config.env, regimes=regimes)
    env_config: dict[str, Any] = {**config.env_config, "tapes": list(tapes), "seed": config.seed,
                                  "scaling": {k: msgspec.to_builtins(v) for k, v in scaling.items()}}
    if regimes is not None:
        env_config["regimes"] = msgspec.to_builtins(regimes)
    if config.env == "single":
        env_config["scaling"] = env_config["scaling"]["default_policy"]
    else:
        env_config |= {"frozen": config.frozen, "rewards": msgspec.to_builtins(config.rewards)}
    started = time.perf_counter()
    returns: list[float | None] = []
    history: list[dict[str, Any]] = []
    steps = 0
    algo: Any = None
    weights: dict[str, Any] = {}
    i = 0
    plan = stages(config)
    keep_best = config.keep == "best" and bool(heldout) and config.eval_every > 0
    demos = None
    if config.imitate and config.env == "roles":
        from .imitate import demonstrations
        from .registry import load_policies

        demos = demonstrations(tapes, load_policies(config.imitate), config.roles, scaling, regimes, cash=cash)
        say(f"imitating {config.imitate}: " + ", ".join(f"{r} {len(d[2]):,} decisions" for r, d in demos.items()))
    best: tuple[float, int, str] | None = None  # (held-out PnL, iteration, version saved aside)
    aside = Path(out).resolve() / f".best-{os.getpid()}"
    try:
        for n, acting, training in plan:
            if algo is not None:
                weights = algo.learner_group.get_weights(module_ids=list(algo.config.policies))
                algo.stop()
            if config.env == "roles":
                env_config["roles"] = list(acting)
            algo = ppo_config(_env_class(config.env), env_config, seed=config.seed + len(history),
                              roles=acting if config.env == "roles" else None, train_roles=training,
                              num_env_runners=config.num_env_runners, num_learners=config.num_learners,
                              num_gpus_per_learner=config.num_gpus_per_learner, train_batch=config.train_batch,
                              minibatch=config.minibatch, epochs=config.epochs, lr=config.lr, gamma=config.gamma,
                              lambda_=config.lambda_, entropy=config.entropy, clip=config.clip,
                              hidden=config.hidden, envs_per_runner=config.envs_per_runner,
                              placement=placement).build_algo()
            if weights:  # the stage before's modules: carried on
                algo.learner_group.set_weights({m: w for m, w in weights.items() if m in acting})
                algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group,
                                                   inference_only=True)
            if demos is not None:
                from .imitate import imitate

                agreement = imitate(algo, demos, training, seed=config.seed)
                say("imitated: " + ", ".join(f"{r} takes {100 * a:.1f}% of the teacher's decisions"
                                             for r, a in agreement.items()))
            if len(plan) > 1:
                say(f"stage: {', '.join(training)} learn{'s' if len(training) == 1 else ''}"
                    f"{' (' + ', '.join(r for r in acting if r not in training) + ' acting)' if acting != training else ''}")
            base = steps
            for _ in range(n):
                i += 1
                result = algo.train()
                runners = result.get("env_runners", {})
                steps = base + int(runners.get("num_env_steps_sampled_lifetime", steps - base))
                ret, per = episode_return(runners, config.env)
                returns.append(ret)
                pnl = None
                if heldout and config.eval_every and (i % config.eval_every == 0 or i == config.iterations):
                    pnl = evaluate_one("training", _policies_now(algo, config, acting, scaling, regimes), heldout,
                                       cash=cash).pnl
                history.append({"iteration": i, "returns": {r: per.get(r) for r in acting} if config.env == "roles"
                                else {"single": ret}, "heldout_pnl": pnl})
                if on_iteration is not None:
                    on_iteration(history[-1])
                line = iteration_line(i, config.iterations, steps, ret, per, time.perf_counter() - started)
                say(line if pnl is None else f"{line}, held-out PnL ${pnl:+,.2f}")
                if keep_best and pnl is not None and (best is None or pnl > best[0]):
                    now = msgspec.structs.replace(config, roles=acting) if config.env == "roles" else config
                    best = (pnl, i, save_model(algo, aside, now, tapes, scaling=scaling, masked=config.env == "roles",
                                               regimes=regimes).version)
        device = _learner_device(algo)
        if best is not None:
            saved = adopt_model(aside / best[2], Path(out), history=history)
            say(f"kept iteration {best[1]}: its held-out PnL ${best[0]:+,.2f} was the best of the evaluations")
        else:
            saved = save_model(algo, Path(out), config, tapes, scaling=scaling, masked=config.env == "roles",
                               history=history, regimes=regimes)
    finally:
        if algo is not None:
            algo.stop()
        shutil.rmtree(aside, ignore_errors=True)
    return TrainReport(out=str(out), version=saved.version, iterations=config.iterations, env_steps=steps,
                       seconds=time.perf_counter() - started, returns=returns, device=device, history=history,
                       kept_iteration=None if best is None else best[1])


def _learner_device(algo: Any) -> str:
    """Where the learner's first parameter lives (the local learner, or the first remote one)."""
    def device(learner: Any) -> str:
        module = learner.module
        for mid in module.keys():  # noqa: SIM118 - a MultiRLModule is not iterable
            for p in module[mid].parameters():
                return str(p.device)
        return "cpu"

    group = algo.learner_group
    if getattr(group, "_learner", None) is not None:
        return device(group._learner)
    return str(next(iter(group.foreach_learner(device))).get())  # RemoteCallResults: one result per learner
