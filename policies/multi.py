"""The multi-agent environment: the four roles as four agents, acting in turn on one market per episode.

The episode engine is the single-agent environment's (:class:`~policies.episode.Episode`: a market tape through
a paper session's machines, the orchestrator making every decision). Whenever the orchestrator asks a role
that trains (``roles``), the environment returns that agent's observation alone and waits for its action;
the other roles are answered inside the episode by ``frozen`` policies (the rule baselines, or models from a
checkpoint). Spaces and action meanings are :mod:`policies.roles`' (what live trading uses).

**Observations** are ``{"observations": ..., "action_mask": ...}`` (RLlib's action-masking pattern;
:class:`MaskedPPOModule` is PPO's default module behind the mask): the role's ``obs.vector()`` scaled by the
role's :class:`~policies.features.Scaling` (``scaling``, fitted on the training data and saved with the model;
none: unscaled), and :func:`~policies.roles.action_mask`. Live inference (:mod:`policies.registry`) builds both
the same way from the same observation.

**Rewards: each role its own share** (:mod:`policies.rewards`, where the design is documented). At once, on the
decision: a signal's ``buy_*`` is paid the market's move in its direction over the decision horizon and a
``hold`` is charged (a weight of) the move it passed on; a sizing of 0 and an entry's ``skip`` are charged the reference trade
they passed on. When a trade ends (the records of the episode folded through a
:class:`~policies.attribution.TradeTracker`), its PnL is split exactly (:func:`~policies.rewards.split`): the
entry, exit and sizing parts go to those roles (the signal's part is what it was paid at the decision); an entry
order that ends without a fill is charged the reference trade. Rewards are in cents times ``reward_scale``;
each reward goes to the role's latest action (RLlib's rule), which is the decision it judges. ``infos`` of each
step carry the marked PnL so far.

Episodes, seeding, the curriculum and ``max_steps`` (counting every agent's steps; a truncated episode gives every
agent its latest observation, as RLlib needs to bootstrap values) are as in :class:`~policies.env.TradingEnv`;
the configuration is :class:`~policies.env.EnvConfig` plus ``roles``, ``frozen``, ``rewards``
(:class:`~policies.rewards.RewardConfig` fields), ``scaling`` (role -> scaling) and ``regimes`` (a
:class:`~policies.regimes.RegimeModel` or its fields, ``tape train --regimes K``: its filtered probabilities for the
episode's market follow every role's ``obs.vector()``, before the scaling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import msgspec
import numpy as np
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from runtime.events import Role
from runtime.units import MONEY_SCALE

from .attribution import Trade, TradeTracker
from .base import ROLES, Policy
from .data import Tape
from .env import EnvConfig, env_config, sample_tape, tapes_for
from .episode import Episode
from .features import Scaling
from .regimes import regime_filter
from .rewards import CENT, QuotePath, RewardConfig, reference, split
from .roles import ACTION_COUNTS, SIZES, action_mask, decision, observation_size

__all__ = ["MaskedPPOModule", "MultiRoleEnv", "role_spaces", "scalings"]

_HIGH = float(np.finfo(np.float32).max)
_FLOAT_MIN = float(np.finfo(np.float32).min)


def role_spaces(role: Role, regimes: int = 0) -> tuple[gym.spaces.Dict, gym.spaces.Discrete]:
    """``(observation space, action space)`` of a role: the (scaled) vector, with ``regimes`` regime probabilities,
    and the action mask."""
    n = ACTION_COUNTS[role]
    return (gym.spaces.Dict({"action_mask": gym.spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32),
                             "observations": gym.spaces.Box(-_HIGH, _HIGH, shape=(observation_size(role) + regimes,),
                                                            dtype=np.float32)}),
            gym.spaces.Discrete(n))


def scalings(value: Any) -> dict[str, Scaling]:
    """``scaling`` as given in a config: role -> :class:`Scaling` (or its fields)."""
    return {str(k): v if isinstance(v, Scaling) else msgspec.convert(v, Scaling) for k, v in dict(value or {}).items()}


def _roles(value: Any) -> tuple[Role, ...]:
    roles = tuple(value.split(",")) if isinstance(value, str) else tuple(value or ROLES)
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"multi-agent env: roles must be among {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
    return tuple(r for r in ROLES if r in roles)  # type: ignore[misc]


class MultiRoleEnv(MultiAgentEnv):
    """Signal, sizing, entry and exit as agents (module docstring).

    ``config`` holds :class:`EnvConfig`'s fields plus ``roles`` (the training roles, default all four), ``frozen``
    (policies for the others: ``"rule"``, or a model checkpoint directory), ``rewards`` and ``scaling``.
    ``tapes`` and ``frozen_policies`` override the data and the frozen policies (tests, evaluation).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, tapes: Sequence[Tape] | None = None,
                 frozen_policies: Mapping[Role, Policy] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        self.roles = _roles(config.pop("roles", None))
        frozen = config.pop("frozen", "rule")
        given = config.pop("tapes", None)  # RLlib's env_config may carry the tapes themselves
        try:
            self.rewards = msgspec.convert(config.pop("rewards", None) or {}, RewardConfig)
        except msgspec.ValidationError as exc:
            raise ValueError(f"rewards: {exc}") from None
        self.scaling = scalings(config.pop("scaling", None))
        self.regimes = regime_filter(config.pop("regimes", None))
        tapes = given if tapes is None else tapes
        self.config: EnvConfig = env_config(config)
        self.tapes = sorted(tapes if tapes is not None else tapes_for(self.config), key=lambda t: t.difficulty)
        if frozen_policies is None:
            from .registry import load_policies

            frozen_policies = load_policies(frozen)
        self.frozen = dict(frozen_policies)
        self.possible_agents = list(self.roles)
        self.agents = list(self.roles)
        spaces = {r: role_spaces(r, 0 if self.regimes is None else self.regimes.model.k) for r in self.roles}
        self.observation_spaces = {r: s[0] for r, s in spaces.items()}
        self.action_spaces = {r: s[1] for r, s in spaces.items()}
        self._rng = np.random.default_rng(self.config.seed)  # until reset(seed=...): from the config, not the OS
        self._paths: dict[int, QuotePath] = {}
        self.episodes = 0
        self.episode: Episode | None = None
        self._steps: Any = None
        self._role: Role = "signal"
        self._obs: Any = None
        self._ever: dict[Role, None] = {}  # roles that acted this episode
        self._last: dict[Role, dict[str, np.ndarray]] = {}  # each agent's latest observation
        self._tracker: TradeTracker | None = None
        self._entry_pending: int | None = None  # an entry order's reference trade, until it fills or ends unfilled
        self._count = 0

    def _tape(self) -> Tape:
        return sample_tape(self.tapes, self._rng, self.episodes, self.config.curriculum)

    def _path(self) -> QuotePath:
        tape = self.episode.tape  # type: ignore[union-attr]
        path = self._paths.get(id(tape))
        if path is None:
            path = self._paths[id(tape)] = QuotePath(tape)
        return path

    def observe(self, role: Role, obs: Any) -> dict[str, np.ndarray]:
        """The agent's observation of ``obs`` (module docstring)."""
        vector = obs.vector()
        if self.regimes is not None:
            vector = self.regimes.extend(vector, obs.view.history)
        scaling = self.scaling.get(role)
        return {"action_mask": action_mask(role, obs),
                "observations": scaling.apply(vector) if scaling is not None else vector.astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        for _ in range(10 * len(self.tapes)):
            self.episodes += 1
            self.episode = Episode(self._tape(), self.frozen, agent_roles=frozenset(self.roles), agent_version="agent",
                                   cash=self.config.cash, latency_ms=self.config.latency_ms,
                                   decide_every_ms=self.config.decide_every_ms, seed=self.config.seed,
                                   paper=self.config.paper())
            self.episode.log = []
            self._tracker = TradeTracker(self.episode.tape.market)
            self._steps = self.episode.steps()
            try:
                self._role, self._obs = next(self._steps)
            except StopIteration:
                continue
            self._ever, self._count, self._entry_pending = {}, 0, None
            self._last = {self._role: self.observe(self._role, self._obs)}
            return dict(self._last), {}
        raise RuntimeError("MultiRoleEnv: no tape asks a training role for a decision")

    # -- rewards (policies.rewards) ---------------------------------------------------------------
    def _reference(self, obs: Any, side: int) -> int:
        return reference(self._path(), obs.view.now_ns, side, self.rewards.reference, self.rewards.horizon_s) or 0

    def _on_decision(self, role: Role, action: int, obs: Any, paid: dict[Role, int]) -> None:
        """What a decision earns at once, in micro-dollars (the rest comes when its trade ends)."""
        if role == "signal":
            if action == 0:
                best = abs(self._reference(obs, 1))
                paid["signal"] = paid.get("signal", 0) - round(self.rewards.abstain * best)
            else:
                paid["signal"] = paid.get("signal", 0) + self._reference(obs, 1 if action == 1 else -1)
        elif role == "sizing" and SIZES[action] == 0:
            paid["sizing"] = paid.get("sizing", 0) - self._reference(obs, obs.signal.sign)
        elif role == "entry":
            cf = self._reference(obs, obs.signal.sign)
            if action == 0:
                paid["entry"] = paid.get("entry", 0) - cf
            else:
                self._entry_pending = cf

    def _on_trade(self, trade: Trade, paid: dict[Role, int]) -> None:
        shares = split(trade, self._path(), self.rewards)
        for role in ("sizing", "entry", "exit"):
            paid[role] = paid.get(role, 0) + getattr(shares, role)  # type: ignore[index]

    def _fold_records(self, paid: dict[Role, int], ended: bool) -> None:
        ep, tracker = self.episode, self._tracker
        assert ep is not None and ep.log is not None and tracker is not None
        for batch in ep.log:
            for record in batch:
                trade = tracker.fold(record)
                if trade is not None:
                    self._entry_pending = None  # it filled: judged by its trade
                    self._on_trade(trade, paid)
        ep.log.clear()
        if tracker.open:
            self._entry_pending = None  # filled: judged by its trade
        if ended:
            last = tracker.finish()
            if last is not None:
                self._on_trade(last, paid)
        if self._entry_pending is not None and (ended or ep.orchestrator.flat(ep.tape.market)):
            paid["entry"] = paid.get("entry", 0) - self._entry_pending  # ended without a fill
            self._entry_pending = None

    def step(self, action_dict: Mapping[Role, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self.episode is None or self.episode.done:
            raise RuntimeError("MultiRoleEnv.step: call reset() first (the episode is over)")
        role = self._role
        if role not in action_dict:
            raise ValueError(f"MultiRoleEnv.step: the {role} agent is to act; got actions for {sorted(action_dict)}")
        action = int(action_dict[role])
        answer = decision(role, action)  # (raises on an action outside the role's range)
        self._ever[role] = None
        self._count += 1
        paid: dict[Role, int] = {}
        self._on_decision(role, action, self._obs, paid)
        ended = False
        try:
            self._role, self._obs = self._steps.send(answer)
        except StopIteration:
            ended = True
        truncated = not ended and bool(self.config.max_steps) and self._count >= self.config.max_steps
        self._fold_records(paid, ended or truncated)
        scale = self.config.reward_scale / CENT
        rewards = {r: v * scale for r, v in paid.items() if r in self._ever}
        if ended:
            observations = {}
        else:
            self._last[self._role] = self.observe(self._role, self._obs)
            # cut short: every agent that acted gets a last observation (its value is bootstrapped from it)
            observations = dict(self._last) if truncated else {self._role: self._last[self._role]}
        info = {"pnl": self.episode.value2() / (2 * MONEY_SCALE), "market": self.episode.tape.market}
        # RLlib wants a reward (0.0 if nothing happened) with every observation of an agent that acted before, and
        # at the end for every agent that acted
        for r in (self._ever if ended or truncated else observations):
            if r in self._ever:
                rewards.setdefault(r, 0.0)
        infos = {r: info for r in (observations or rewards or {role: None})}
        return (observations, rewards, {"__all__": ended}, {"__all__": truncated}, infos)


class MaskedPPOModule(DefaultPPOTorchRLModule):
    """PPO's default module behind an action mask: RLlib's action-masking pattern for the new API stack
    (``ray.rllib.examples.rl_modules.classes.action_masking_rlm``). The environment's observation is
    ``{"action_mask", "observations"}``; the networks see ``observations``, and masked actions get the lowest
    logit, so they are never sampled nor chosen."""

    def __init__(self, *, observation_space: gym.Space | None = None, **kwargs: Any) -> None:
        if not isinstance(observation_space, gym.spaces.Dict):
            raise ValueError("MaskedPPOModule needs a Dict observation space {'action_mask', 'observations'}")
        self.observation_space_with_mask = observation_space
        super().__init__(observation_space=observation_space["observations"], **kwargs)

    def setup(self) -> None:
        super().setup()
        self.observation_space = self.observation_space_with_mask

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, batch = _unmask(batch)
        return _masked(super()._forward_inference(batch, **kwargs), mask)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, batch = _unmask(batch)
        return _masked(super()._forward_exploration(batch, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if isinstance(batch[Columns.OBS], dict):
            mask, batch = _unmask(batch)
        else:
            mask = batch["action_mask"]
        return _masked(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        if isinstance(batch[Columns.OBS], dict):
            mask, batch = _unmask(batch)
            batch["action_mask"] = mask  # _forward_train of the same batch reads it
        return super().compute_values(batch, embeddings)


def _unmask(batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    observation = batch[Columns.OBS]
    batch[Columns.OBS] = observation["observations"]
    return observation["action_mask"], batch


def _masked(out: dict[str, Any], mask: Any) -> dict[str, Any]:
    import torch

    out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + torch.clamp(torch.log(mask), min=_FLOAT_MIN)
    return out
