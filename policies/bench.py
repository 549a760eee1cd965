"""``tape bench env``: how fast the environments step, alone and under RLlib. Figures to print, never assertions.

* ``env_sps`` — single-agent :class:`~policies.env.TradingEnv` steps per second in this process, seeded random
  actions, on a synthetic session's tapes (the local exchange's order-flow model, every market quoted
  tight), episodes reset as they end; ``ma_env_sps`` the same for :class:`~policies.multi.MultiRoleEnv`
  with all four roles training (agent steps).
* ``rllib_sps_trading`` / ``rllib_sps_trivial`` — RLlib PPO's sampling throughput (env steps per second, the
  local env runner stepping 8 environments together as ``tape train`` does, the default model) on the trading
  env and on a trivial env with the same spaces (constant observation, zero reward, same episode length),
  measured side by side in one run;
  ``rllib_overhead`` = 1 - trading / trivial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from replay.bench import TIGHT
from runtime.venues.sim.session import SynthSession

from .data import Tape, tapes_from

__all__ = ["bench_tapes", "measure_env", "measure_multi", "measure_rllib", "run_env_bench"]

ENVS_PER_RUNNER = 8  # as `tape train` samples by default


def bench_tapes(markets: int = 8, duration_s: float = 600.0, seed: int = 3) -> list[Tape]:
    session = SynthSession(seed, markets, duration_s, config=TIGHT)
    return tapes_from(f"synth-{seed}", list(session.events()))


def measure_env(tapes: list[Tape], seconds: float = 3.0, seed: int = 0) -> dict[str, float]:
    """Single-agent steps per second (module docstring)."""
    from .env import EnvConfig, TradingEnv

    env = TradingEnv(EnvConfig(), tapes=tapes)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.action_space.n, size=1 << 16)
    env.reset(seed=seed)
    steps = episodes = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(256):
            _, _, terminated, truncated, _ = env.step(actions[steps & 0xFFFF])
            steps += 1
            if terminated or truncated:
                episodes += 1
                env.reset()
    elapsed = time.perf_counter() - started
    return {"sps": steps / elapsed, "steps": steps, "episodes": episodes}


def measure_multi(tapes: list[Tape], seconds: float = 3.0, seed: int = 0) -> dict[str, float]:
    """Multi-agent agent steps per second, all four roles training (module docstring)."""
    from .multi import MultiRoleEnv
    from .rules import baselines

    env = MultiRoleEnv({}, tapes=tapes, frozen_policies=baselines())
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    steps = episodes = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(256):
            (role,) = obs
            obs, _, terminated, truncated, _ = env.step({role: int(rng.integers(env.action_spaces[role].n))})
            steps += 1
            if terminated["__all__"] or truncated["__all__"]:
                episodes += 1
                obs, _ = env.reset()
    elapsed = time.perf_counter() - started
    return {"sps": steps / elapsed, "steps": steps, "episodes": episodes}


class TrivialEnv(gym.Env):
    """The trading env's spaces with nothing behind them: a constant observation, zero reward, fixed length."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from .env import ACTIONS, OBS_SIZE

        config = config or {}
        high = np.finfo(np.float32).max
        self.observation_space = gym.spaces.Box(-high, high, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.length = int(config.get("length", 600))
        self._obs = np.zeros(OBS_SIZE, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return self._obs, 0.0, self._t >= self.length, False, {}


def measure_rllib(tapes: list[Tape], steps: int = 4_000, seed: int = 0) -> dict[str, float]:
    """RLlib sampling env steps per second on the trading env and the trivial env (module docstring)."""
    from .env import TradingEnv
    from .train import ppo_config

    figures: dict[str, float] = {}
    length = max(1, round(_mean_episode_steps(tapes)))
    for name, env, config in (("trading", TradingEnv, {"tapes": tapes}), ("trivial", TrivialEnv, {"length": length})):
        algo = ppo_config(env, config, seed=seed, num_env_runners=0, train_batch=steps,
                          envs_per_runner=ENVS_PER_RUNNER).build_algo()
        try:
            runner = algo.env_runner
            runner.sample(num_timesteps=steps // 4, random_actions=False)  # warm-up: the first episodes, the model
            started = time.perf_counter()
            episodes = runner.sample(num_timesteps=steps, random_actions=False)
            elapsed = time.perf_counter() - started
            figures[f"rllib_sps_{name}"] = sum(len(e) for e in episodes) / elapsed
        finally:
            algo.stop()
    figures["rllib_overhead"] = 1.0 - figures["rllib_sps_trading"] / figures["rllib_sps_trivial"]
    figures["episode_steps"] = length
    return figures


def _mean_episode_steps(tapes: list[Tape]) -> float:
    stats = measure_env(tapes, seconds=1.0)
    return stats["steps"] / max(1, stats["episodes"])


def run_env_bench(*, seconds: float = 3.0, rllib_steps: int = 4_000, rllib: bool = True,
                  say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """Every figure of ``tape bench env``."""
    tapes = bench_tapes()
    say(f"single-agent env: {seconds:g} s of random actions on {len(tapes)} synthetic tapes …")
    single = measure_env(tapes, seconds)
    say(f"multi-agent env: {seconds:g} s …")
    multi = measure_multi(tapes, seconds)
    result: dict[str, object] = {"env_sps": round(single["sps"]), "env_episodes": single["episodes"],
                                 "ma_env_sps": round(multi["sps"]), "ma_env_episodes": multi["episodes"]}
    if rllib:
        say(f"RLlib PPO sampling: {rllib_steps:,} env steps on the trading env and on a trivial env …")
        figures = measure_rllib(tapes, rllib_steps)
        result.update({k: round(v, 3) if k == "rllib_overhead" else round(v) for k, v in figures.items()})
    return result
