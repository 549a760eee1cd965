"""``tape bench env``: how fast the environments step, alone and under RLlib. Figures to print, never assertions.

* ``env_sps`` — single-agent :class:`~policies.env.TradingEnv` steps per second in this process, seeded random
  actions, on a synthetic session's tapes (the local exchange's order-flow model, every market quoted
  tight), episodes reset as they end; ``ma_env_sps`` the same for :class:`~policies.multi.MultiRoleEnv`
  with all four roles training (agent steps).
* ``rllib_sps_trading`` / ``rllib_sps_trivial`` — RLlib PPO's sampling throughput (env steps per second, the
  local env runner with one environment: RLlib's default; the default model) on the trading env and on a
  trivial env with the same spaces (constant observation, zero reward, same episode length), measured side by
  side in one run, alternating, best of three rounds each; ``rllib_overhead`` = 1 - trading / trivial.
  ``rllib8_*``: the same with 8 environments per env runner, as ``tape train`` samples by default. RLlib's own
  cost per step falls about tenfold with 8 environments, so the environment's share of it grows.
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


def measure_rllib(tapes: list[Tape], steps: int = 4_000, seed: int = 0, rounds: int = 3,
                  envs_per_runner: int = ENVS_PER_RUNNER) -> dict[str, float]:
    """RLlib sampling env steps per second on the trading env and the trivial env (module docstring): both
    algorithms built first, then ``rounds`` alternating samples of ``steps`` each; the best round of each counts
    (a round slowed by something else on the machine says nothing about RLlib)."""
    from .env import TradingEnv
    from .train import ppo_config

    length = max(1, round(_mean_episode_steps(tapes)))
    algos = {name: ppo_config(env, config, seed=seed, num_env_runners=0, train_batch=steps,
                              envs_per_runner=envs_per_runner).build_algo()
             for name, env, config in (("trading", TradingEnv, {"tapes": tapes}),
                                       ("trivial", TrivialEnv, {"length": length}))}
    best = dict.fromkeys(algos, 0.0)
    try:
        for algo in algos.values():
            algo.env_runner.sample(num_timesteps=steps // 4, random_actions=False)  # warm-up: episodes, the model
        for _ in range(max(1, rounds)):
            for name, algo in algos.items():
                started = time.perf_counter()
                episodes = algo.env_runner.sample(num_timesteps=steps, random_actions=False)
                rate = sum(len(e) for e in episodes) / (time.perf_counter() - started)
                best[name] = max(best[name], rate)
    finally:
        for algo in algos.values():
            algo.stop()
    return {"rllib_sps_trading": best["trading"], "rllib_sps_trivial": best["trivial"],
            "rllib_overhead": 1.0 - best["trading"] / best["trivial"], "episode_steps": length}


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
        for envs, prefix in ((1, "rllib"), (ENVS_PER_RUNNER, f"rllib{ENVS_PER_RUNNER}")):
            say(f"RLlib PPO sampling, {envs} env(s) per env runner: {rllib_steps:,} env steps on the trading env and "
                "on a trivial env …")
            figures = measure_rllib(tapes, rllib_steps, envs_per_runner=envs)
            result.update({k.replace("rllib", prefix, 1): round(v, 3) if k == "rllib_overhead" else round(v)
                           for k, v in figures.items() if k.startswith("rllib")})
            result["episode_steps"] = round(figures["episode_steps"])
    return result


def measure_sampling(runners: int, steps_per_runner: int = 2_000, rounds: int = 3,
                     placement: Any = (), envs_per_runner: int = ENVS_PER_RUNNER) -> dict[str, Any]:
    """RLlib sampling env steps per second with ``runners`` remote env runners on the connected Ray cluster (placed
    by ``placement``, :mod:`runtime.placement` rules for ``env_runner``), each sampling ``steps_per_runner`` steps of
    the trading env at once; the best of ``rounds`` counts. ``nodes``: where the env runners ran. ``tape bench
    cluster`` measures it on one worker and on two."""
    import ray

    from .env import TradingEnv
    from .train import ppo_config

    tapes = bench_tapes()
    algo = ppo_config(TradingEnv, {"tapes": tapes}, num_env_runners=runners, train_batch=steps_per_runner,
                      envs_per_runner=envs_per_runner, placement=placement).build_algo()
    group = algo.env_runner_group
    try:
        group.foreach_env_runner(lambda r: len(r.sample(num_timesteps=steps_per_runner // 4)),
                                 local_env_runner=False)  # warm-up: episodes started, the model traced
        best = 0.0
        for _ in range(max(1, rounds)):
            started = time.perf_counter()
            counts = group.foreach_env_runner(
                lambda r: sum(len(e) for e in r.sample(num_timesteps=steps_per_runner, random_actions=False)),
                local_env_runner=False)
            best = max(best, sum(counts) / (time.perf_counter() - started))
        nodes = group.foreach_env_runner(lambda r: ray.util.get_node_ip_address(), local_env_runner=False)
    finally:
        algo.stop()
    return {"sps": round(best), "runners": runners, "nodes": sorted(nodes)}
