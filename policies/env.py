"""The single-agent Gymnasium environment: one agent trades one market of a recorded or synthetic session.

An episode is one market tape (:mod:`policies.data`) replayed through a paper session's machines
(:class:`~policies.episode.Episode`: the book, the paper matcher with its latency and queue model, Kalshi's
fees, the cash pool, the positions, and the orchestrator that turns decisions into orders). A step is one
decision of that market — every ``decide_every_ms`` of event time, and on a book update once that long has
passed — and the agent plays all four roles at once with one discrete action:

======  ====================  ==================================================================
action  name                  when flat (signal → sizing → entry)   holding, or an entry order working (exit)
======  ====================  ==================================================================
0       ``hold``              hold                                   hold
1       ``buy_yes_passive``   buy ``lot`` YES, join the best bid     hold
2       ``buy_yes_cross``     buy ``lot`` YES, take the best ask     hold
3       ``buy_no_passive``    buy ``lot`` NO, join the best ask      hold
4       ``buy_no_cross``      buy ``lot`` NO, take the best bid      hold
5       ``close``             hold                                   close the position (IOC at the touch,
                                                                     reduce-only) and cancel the entry order
======  ====================  ==================================================================

The orchestrator still checks everything (price grid, free cash, closing markets): an action it refuses is
logged as a refusal and the agent simply holds. **Observation**: the exit role's vector
(``OBSERVATION_NAMES["exit"]``: the 19 shared features, then average price, unrealized PnL, time held and the
working entry order), with those six zero when flat — so the features are computed by the same code as in
live trading, followed by the regime probabilities when ``regimes`` is given (:mod:`policies.regimes`,
``tape train --regimes K``), scaled by ``scaling`` (a :class:`~policies.features.Scaling` fitted on the training data
and saved with the model; none: unscaled). **Reward**: the change of the market's marked value since the previous step, in dollars
(realized PnL + the position at the mid - fees, as ``tape paper`` marks it); the sum over an episode is its
PnL. The episode ends (``terminated``) when the tape ends, after the market settled; ``max_steps`` truncates.

Episodes sample tapes with the environment's seeded generator (``reset(seed=...)``), optionally easiest first
(``curriculum``: the easiest quarter by :attr:`Tape.difficulty`, opening to all of them over that many
episodes). Everything is deterministic given the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import msgspec
import numpy as np

from config.profiles import SHIPPED, PaperProfile
from runtime.events import Role
from runtime.units import MONEY_SCALE

from .base import (
    OBSERVATION_NAMES,
    ROLES,
    EntryDecision,
    ExitDecision,
    ExitObservation,
    SignalDecision,
    SizingDecision,
)
from .data import Tape, load_tapes
from .episode import Episode
from .features import Scaling
from .regimes import regime_filter

__all__ = ["ACTIONS", "EnvConfig", "TradingEnv", "agent_observation", "decision_for", "sample_tape"]

ACTIONS: tuple[str, ...] = ("hold", "buy_yes_passive", "buy_yes_cross", "buy_no_passive", "buy_no_cross", "close")
OBS_SIZE = len(OBSERVATION_NAMES["exit"])
_EXTRA = OBS_SIZE - len(OBSERVATION_NAMES["signal"])


class EnvConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the environments run (RLlib passes it as ``env_config``, a dict of these fields)."""

    data: tuple[str, ...] = ()
    """sources of sessions (:func:`policies.data.load_tapes`); unused when tapes are passed in"""
    markets: tuple[str, ...] | None = None
    """keep only these tickers"""
    cash: int = 1_000 * MONEY_SCALE
    """starting cash per episode, micro-dollars"""
    lot: int = 1_000
    """the single agent's order size, 1/100 contract (1,000 = 10 contracts)"""
    latency_ms: int = 50
    """paper latency: a decision reaches the simulated venue this much event time later"""
    decide_every_ms: int = 1_000
    max_steps: int = 0
    """truncate an episode after this many agent steps (0: play the tape to its end)"""
    curriculum: int = 0
    """episodes over which sampling opens from the easiest quarter of the tapes to all (0: uniform from the start)"""
    reward_scale: float = 1.0
    """reward = dollars x this"""
    seed: int = 0
    """the session seed recorded in each episode's spec"""
    paper_profile: str = ""
    """a named paper profile (``config.profiles.SHIPPED``: ``calibrated-sim`` trains against the matcher calibrated
    on the local exchange's true queue, ``tape fidelity --calibrate``); its settings replace ``latency_ms``"""

    def paper(self) -> tuple[str, PaperProfile] | None:
        """``(name, settings)`` of :attr:`paper_profile`, or None (``latency_ms`` with the default queue model)."""
        return (self.paper_profile, SHIPPED[self.paper_profile]) if self.paper_profile else None

    def __post_init__(self) -> None:
        if self.paper_profile and self.paper_profile not in SHIPPED:
            raise ValueError(f"env config: paper_profile {self.paper_profile!r} is not a shipped profile "
                             f"({', '.join(sorted(SHIPPED))})")
        if self.cash <= 0 or self.lot <= 0 or self.decide_every_ms <= 0 or min(self.max_steps, self.curriculum) < 0:
            raise ValueError(f"env config: cash, lot and decide_every_ms must be > 0, max_steps and curriculum >= 0; "
                             f"got {self}")


def env_config(config: EnvConfig | Mapping[str, Any] | None) -> EnvConfig:
    if isinstance(config, EnvConfig):
        return config
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(config or {}).items()}
    try:
        return msgspec.convert(fields, EnvConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"env config: {exc}") from None


_CACHE: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[Tape]] = {}


def tapes_for(config: EnvConfig) -> list[Tape]:
    """The tapes ``config.data`` names, loaded once per process."""
    key = (config.data, config.markets)
    if key not in _CACHE:
        import asyncio

        if not config.data:
            raise ValueError("env config: no data (give data=[LOG, DIR, ...] or pass tapes=)")
        _CACHE[key] = asyncio.run(load_tapes(config.data, markets=config.markets))
    return _CACHE[key]


def sample_tape(tapes: Sequence[Tape], rng: np.random.Generator, episodes: int, curriculum: int) -> Tape:
    """An episode's tape, drawn with ``rng`` from ``tapes`` (easiest first): all of them, or with a ``curriculum``
    the easiest quarter opening to all over that many ``episodes``."""
    n = len(tapes)
    if curriculum:
        n = max(1, math.ceil(n * min(1.0, 0.25 + 0.75 * episodes / curriculum)))
    return tapes[int(rng.integers(n))]


def agent_observation(role: Role, obs: Any) -> np.ndarray:
    """The single agent's observation for a signal or exit decision (module docstring)."""
    if role == "exit":
        return obs.vector()
    return np.concatenate((obs.features, np.zeros(_EXTRA, dtype=np.float32)))


def decision_for(role: Role, action: int, lot: int, obs: Any = None) -> Any:
    """What the single agent's ``action`` means for ``role`` (module docstring)."""
    name = ACTIONS[action]
    if role == "signal":
        if name in ("hold", "close"):
            return SignalDecision("hold", 1.0)
        return SignalDecision("buy_yes" if name.startswith("buy_yes") else "buy_no", 1.0)
    if role == "sizing":
        return SizingDecision(lot)
    if role == "entry":
        return EntryDecision("passive" if name.endswith("passive") else "cross")
    if name != "close":
        return ExitDecision("hold")
    position = obs.view.position if isinstance(obs, ExitObservation) else 0
    return ExitDecision("close" if position else "cancel", "agent")


class TradingEnv(gym.Env):
    """One agent, one market per episode (module docstring). ``tapes`` overrides ``config.data``; ``record`` keeps
    each episode's records (``episode.log``)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, config: EnvConfig | Mapping[str, Any] | None = None, *,
                 tapes: Sequence[Tape] | None = None, record: bool = False) -> None:
        scaling = regimes = None
        if config is not None and not isinstance(config, EnvConfig):
            config = dict(config)  # RLlib's env_config may carry the tapes themselves (local training, benchmarks)
            given = config.pop("tapes", None)
            tapes = given if tapes is None else tapes
            scaling = config.pop("scaling", None)
            regimes = config.pop("regimes", None)
        self.regimes = regime_filter(regimes)
        """the regime filter whose probabilities follow the observation (module docstring)"""
        self.scaling: Scaling | None = (scaling if scaling is None or isinstance(scaling, Scaling)
                                        else msgspec.convert(scaling, Scaling))
        """the observation's scaling (module docstring)"""
        self.config = env_config(config)
        self.record = record
        """keep every episode's records in ``self.episode.log`` (tests, inspection; costs memory)"""
        self.tapes = sorted(tapes if tapes is not None else tapes_for(self.config), key=lambda t: t.difficulty)
        if not self.tapes:
            raise ValueError("TradingEnv: no tapes")
        high = np.finfo(np.float32).max
        self._size = OBS_SIZE + (0 if self.regimes is None else self.regimes.model.k)
        self.observation_space = gym.spaces.Box(-high, high, shape=(self._size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.episodes = 0
        self.episode: Episode | None = None
        self._steps: Any = None
        self._role: Role = "signal"
        self._obs: Any = None
        self._value2 = 0
        self._count = 0

    def _tape(self) -> Tape:
        return sample_tape(self.tapes, self.np_random, self.episodes, self.config.curriculum)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is None and self._np_random is None:  # never seeded: from the config, not from the OS
            seed = self.config.seed
        super().reset(seed=seed)
        for _ in range(10 * len(self.tapes)):
            tape = self._tape()
            self.episodes += 1
            self.episode = Episode(tape, {}, agent_roles=frozenset(ROLES), agent_version="agent",
                                   cash=self.config.cash, latency_ms=self.config.latency_ms,
                                   decide_every_ms=self.config.decide_every_ms, seed=self.config.seed,
                                   paper=self.config.paper())
            if self.record:
                self.episode.log = []
            self._steps = self.episode.steps()
            try:
                self._role, self._obs = next(self._steps)
            except StopIteration:
                continue  # a tape with no decision to make (never a tradable book): another one
            self._value2, self._count = self.episode.value2(), 0
            return self._observe(), self._info()
        raise RuntimeError("TradingEnv: no tape gives the agent a decision (are the books ever two-sided?)")

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.episode is None or self.episode.done:
            raise RuntimeError("TradingEnv.step: call reset() first (the episode is over)")
        action = int(action)
        if not 0 <= action < len(ACTIONS):
            raise ValueError(f"TradingEnv.step: action {action} is outside 0..{len(ACTIONS) - 1}")
        lot, steps = self.config.lot, self._steps
        terminated = False
        try:
            role, obs = steps.send(decision_for(self._role, action, lot, self._obs))
            while role in ("sizing", "entry"):  # the rest of an entry chain: the same action decides it
                role, obs = steps.send(decision_for(role, action, lot, obs))
            self._role, self._obs = role, obs
        except StopIteration:
            terminated = True
        self._count += 1
        value2 = self.episode.value2()
        reward = (value2 - self._value2) / (2 * MONEY_SCALE) * self.config.reward_scale
        self._value2 = value2
        truncated = not terminated and bool(self.config.max_steps) and self._count >= self.config.max_steps
        obs_vec = np.zeros(self._size, dtype=np.float32) if terminated else self._observe()
        return obs_vec, reward, terminated, truncated, self._info()

    def _observe(self) -> np.ndarray:
        vector = agent_observation(self._role, self._obs)
        if self.regimes is not None:
            vector = self.regimes.extend(vector, self._obs.view.history)
        return vector if self.scaling is None else self.scaling.apply(vector)

    def _info(self) -> dict[str, Any]:
        ep = self.episode
        assert ep is not None
        return {"session": ep.tape.session, "market": ep.tape.market, "pnl": self._value2 / (2 * MONEY_SCALE),
                "position": ep.position, "steps": self._count}
