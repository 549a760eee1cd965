"""The multi-agent environment: the four roles as four agents, acting in turn on one market per episode.

The episode engine is the single-agent environment's (:class:`~policies.episode.Episode`: a market tape through
a paper session's machines, the orchestrator making every decision). Whenever the orchestrator asks a role
that trains (``roles``), the environment returns that agent's observation alone and waits for its action;
the other roles are answered inside the episode by ``frozen`` policies (the rule baselines, or models from a
checkpoint). Spaces and action meanings are :mod:`policies.roles`' (what live trading uses).

**Reward: the outcome of each trade, shared.** A trade runs from the market being flat (no position, no
working or pending order) until it is flat again, or to the end of the episode. When it ends, its outcome —
the change of the market's marked value over it (realized PnL - fees; marked at the mid at the episode's
end) in dollars times ``reward_scale`` — is given to every training role that acted since the previous
trade ended, each once, in the step's rewards (RLlib adds a reward to the agent's last action). A
decision that leads to no trade earns nothing. ``infos`` of each step carry the marked PnL so far.

Episodes, seeding, the curriculum and ``max_steps`` (counting every agent's steps; a truncated episode gives every agent its latest
observation, as RLlib needs to bootstrap values) are as in
:class:`~policies.env.TradingEnv`; the configuration is :class:`~policies.env.EnvConfig` plus ``roles``
and ``frozen``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from runtime.events import Role
from runtime.units import MONEY_SCALE

from .base import ROLES, Policy
from .data import Tape
from .env import EnvConfig, env_config, sample_tape, tapes_for
from .episode import Episode
from .roles import ACTION_COUNTS, decision, observation_size

__all__ = ["MultiRoleEnv", "role_spaces"]

_HIGH = float(np.finfo(np.float32).max)


def role_spaces(role: Role) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """``(observation space, action space)`` of a role."""
    return (gym.spaces.Box(-_HIGH, _HIGH, shape=(observation_size(role),), dtype=np.float32),
            gym.spaces.Discrete(ACTION_COUNTS[role]))


def _roles(value: Any) -> tuple[Role, ...]:
    roles = tuple(value.split(",")) if isinstance(value, str) else tuple(value or ROLES)
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"multi-agent env: roles must be among {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
    return tuple(r for r in ROLES if r in roles)  # type: ignore[misc]


class MultiRoleEnv(MultiAgentEnv):
    """Signal, sizing, entry and exit as agents (module docstring).

    ``config`` holds :class:`EnvConfig`'s fields plus ``roles`` (the training roles, default all four) and
    ``frozen`` (policies for the others: ``"rule"``, or a model checkpoint directory). ``tapes`` and
    ``frozen_policies`` override the data and the frozen policies (tests, evaluation).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, tapes: Sequence[Tape] | None = None,
                 frozen_policies: Mapping[Role, Policy] | None = None) -> None:
        super().__init__()
        config = dict(config or {})
        self.roles = _roles(config.pop("roles", None))
        frozen = config.pop("frozen", "rule")
        given = config.pop("tapes", None)  # RLlib's env_config may carry the tapes themselves
        tapes = given if tapes is None else tapes
        self.config: EnvConfig = env_config(config)
        self.tapes = sorted(tapes if tapes is not None else tapes_for(self.config), key=lambda t: t.difficulty)
        if frozen_policies is None:
            from .registry import load_policies

            frozen_policies = load_policies(frozen)
        self.frozen = dict(frozen_policies)
        self.possible_agents = list(self.roles)
        self.agents = list(self.roles)
        spaces = {r: role_spaces(r) for r in self.roles}
        self.observation_spaces = {r: s[0] for r, s in spaces.items()}
        self.action_spaces = {r: s[1] for r, s in spaces.items()}
        self._rng = np.random.default_rng(self.config.seed)  # until reset(seed=...): from the config, not the OS
        self.episodes = 0
        self.episode: Episode | None = None
        self._steps: Any = None
        self._role: Role = "signal"
        self._acted: dict[Role, None] = {}  # roles that acted since the last trade ended
        self._ever: dict[Role, None] = {}  # roles that acted this episode
        self._last: dict[Role, np.ndarray] = {}  # each agent's latest observation
        self._trade_start2 = 0
        self._in_trade = False
        self._count = 0

    def _tape(self) -> Tape:
        return sample_tape(self.tapes, self._rng, self.episodes, self.config.curriculum)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        for _ in range(10 * len(self.tapes)):
            self.episodes += 1
            self.episode = Episode(self._tape(), self.frozen, agent_roles=frozenset(self.roles), agent_version="agent",
                                   cash=self.config.cash, latency_ms=self.config.latency_ms,
                                   decide_every_ms=self.config.decide_every_ms, seed=self.config.seed)
            self._steps = self.episode.steps()
            try:
                self._role, obs = next(self._steps)
            except StopIteration:
                continue
            self._acted, self._ever, self._in_trade, self._count = {}, {}, False, 0
            self._trade_start2 = self.episode.value2()
            self._last = {self._role: obs.vector()}
            return dict(self._last), {}
        raise RuntimeError("MultiRoleEnv: no tape asks a training role for a decision")

    def _flat(self) -> bool:
        ep = self.episode
        assert ep is not None
        return ep.orchestrator.flat(ep.tape.market)

    def step(self, action_dict: Mapping[Role, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self.episode is None or self.episode.done:
            raise RuntimeError("MultiRoleEnv.step: call reset() first (the episode is over)")
        role = self._role
        if role not in action_dict:
            raise ValueError(f"MultiRoleEnv.step: the {role} agent is to act; got actions for {sorted(action_dict)}")
        self._acted[role] = None
        self._ever[role] = None
        self._count += 1
        ended = False
        try:
            self._role, obs = self._steps.send(decision(role, int(action_dict[role])))
        except StopIteration:
            ended = True
        rewards: dict[Role, float] = {}
        flat = ended or self._flat()
        if not flat:
            self._in_trade = True
        elif self._in_trade or ended:  # a trade ended (or the episode did): its outcome to every role that acted
            value2 = self.episode.value2()
            outcome = (value2 - self._trade_start2) / (2 * MONEY_SCALE) * self.config.reward_scale
            rewards = dict.fromkeys(self._acted, outcome)
            self._acted, self._in_trade, self._trade_start2 = {}, False, value2
        truncated = not ended and bool(self.config.max_steps) and self._count >= self.config.max_steps
        if ended:
            observations = {}
        else:
            self._last[self._role] = obs.vector()
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
