"""Training with RLlib PPO (new API stack): the config, the loop behind ``tape train``, and the saved model.

:func:`ppo_config` builds one :class:`~ray.rllib.algorithms.ppo.PPOConfig` for either environment:

* ``env="roles"`` — :class:`~policies.multi.MultiRoleEnv`, one RLlib module per role (module id = role),
  ``policies_to_train`` = the roles chosen; roles not chosen are answered inside the episodes by the
  frozen policies (the rule baselines by default) and get no module;
* ``env="single"`` — :class:`~policies.env.TradingEnv`, one module (``default_policy``).

Resources are RLlib's: ``num_env_runners`` sampling actors (0 samples in the driver), ``num_learners``
learner actors (0: the learner runs in the driver) and ``num_gpus_per_learner`` (a fraction shares one
GPU; with ``num_learners=0`` and a GPU the driver's learner uses it). Nothing requires a GPU.

:func:`train` runs ``iterations`` PPO iterations, reports each one (:func:`iteration_line`: an iteration in which no
episode ended has no return, shown as ``-``, and ``null`` in the report's JSON, never ``nan``), and saves a model directory
(:mod:`policies.registry`): the RLlib checkpoint to resume from, and ``model.json`` with the training
config, the data description (sources, sessions, tapes, a digest of their events) and the version hash
of the learned weights. With the same seed and data on CPU, two runs give the same weights
(``torch.use_deterministic_algorithms`` and one torch thread in the learner; see :func:`seed_everything`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from runtime.events import Role

from .base import ROLES
from .data import Tape

__all__ = ["TrainConfig", "TrainReport", "episode_return", "format_return", "iteration_line", "ppo_config",
           "seed_everything", "train"]

EnvKind = Literal["roles", "single"]


class TrainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``tape train`` was asked: recorded beside the model."""

    data: tuple[str, ...]
    env: EnvKind = "roles"
    roles: tuple[Role, ...] = ROLES
    """(env ``roles``) the roles that learn; the others are ``frozen``"""
    frozen: str = "rule"
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
    gamma: float = 0.995
    hidden: tuple[int, ...] = (64, 64)
    env_config: dict[str, Any] = {}
    """:class:`~policies.env.EnvConfig` fields (lot, cash, latency_ms, curriculum, max_steps…)"""


def seed_everything(seed: int) -> None:
    """The process-wide settings that make CPU training repeatable: deterministic torch kernels, one thread. (On a
    GPU, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for deterministic kernels: set here unless the user set it.)"""
    import os
    import random

    import numpy as np
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def ppo_config(env: Any, env_config: dict[str, Any], *, seed: int = 0, roles: Sequence[Role] | None = None,
               num_env_runners: int = 0, num_learners: int = 0, num_gpus_per_learner: float = 0.0,
               train_batch: int = 4_000, minibatch: int = 500, epochs: int = 6, lr: float = 3e-4,
               gamma: float = 0.995, hidden: Sequence[int] = (64, 64), envs_per_runner: int = 1) -> Any:
    """The PPO config (module docstring). ``env`` is an environment class; ``roles`` (multi-agent only) are the
    modules to train."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    model = DefaultModelConfig(fcnet_hiddens=list(hidden), head_fcnet_hiddens=[])
    config = (
        PPOConfig()
        .environment(env=env, env_config=env_config)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=envs_per_runner)
        .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
        .training(train_batch_size_per_learner=train_batch, minibatch_size=min(minibatch, train_batch),
                  num_epochs=epochs, lr=lr, gamma=gamma)
        .debugging(seed=seed, log_level="ERROR")
        .reporting(min_sample_timesteps_per_iteration=0)
    )
    if roles is None:
        return config.rl_module(model_config=model)
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    chosen = list(roles)
    return (config
            .multi_agent(policies=chosen, policy_mapping_fn=_same_id, policies_to_train=chosen)  # a list: a set's
            # order follows PYTHONHASHSEED, and so would the modules' initial weights
            .rl_module(rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={r: RLModuleSpec(model_config=model) for r in chosen})))


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


def train(config: TrainConfig, out: str | Path, *, tapes: Sequence[Tape] | None = None,
          say: Callable[[str], None] = lambda _: None) -> TrainReport:
    """Train (module docstring) and save the model under ``out``; ``tapes`` overrides loading ``config.data``."""
    import asyncio

    from .data import load_tapes
    from .registry import save_model

    seed_everything(config.seed)
    if tapes is None:
        tapes = asyncio.run(load_tapes(config.data, progress=lambda s, n: say(f"loaded {s}: {n} tapes so far")))
    env_config: dict[str, Any] = {**config.env_config, "tapes": list(tapes), "seed": config.seed}
    if config.env == "roles":
        env_config |= {"roles": list(config.roles), "frozen": config.frozen}
    algo = ppo_config(_env_class(config.env), env_config, seed=config.seed,
                      roles=config.roles if config.env == "roles" else None,
                      num_env_runners=config.num_env_runners, num_learners=config.num_learners,
                      num_gpus_per_learner=config.num_gpus_per_learner, train_batch=config.train_batch,
                      minibatch=config.minibatch, epochs=config.epochs, lr=config.lr, gamma=config.gamma,
                      hidden=config.hidden, envs_per_runner=config.envs_per_runner).build_algo()
    started = time.perf_counter()
    returns: list[float | None] = []
    steps = 0
    try:
        for i in range(1, config.iterations + 1):
            result = algo.train()
            runners = result.get("env_runners", {})
            steps = int(runners.get("num_env_steps_sampled_lifetime", steps))
            ret, per = episode_return(runners, config.env)
            returns.append(ret)
            say(iteration_line(i, config.iterations, steps, ret, per, time.perf_counter() - started))
        device = _learner_device(algo)
        saved = save_model(algo, Path(out), config, tapes)
    finally:
        algo.stop()
    return TrainReport(out=str(out), version=saved.version, iterations=config.iterations, env_steps=steps,
                       seconds=time.perf_counter() - started, returns=returns, device=device)


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
