"""What a learned role's discrete action means: one table, used by the multi-agent environment (training) and
by :class:`~policies.learned.ModelPolicy` (live trading), so a model means the same thing in both.

=======  ==============================  =========================================================
role     observation (``obs.vector()``)   actions
=======  ==============================  =========================================================
signal   ``OBSERVATION_NAMES["signal"]``  0 ``hold``, 1 ``buy_yes``, 2 ``buy_no`` (confidence: the
                                          model's probability of its choice; 1.0 in training)
sizing   ``OBSERVATION_NAMES["sizing"]``  k: buy ``SIZES[k]`` contracts (``SIZES[0]`` = 0 skips)
entry    ``OBSERVATION_NAMES["entry"]``   0 ``skip``, 1 ``passive``, 2 ``cross``
exit     ``OBSERVATION_NAMES["exit"]``    0 ``hold``, 1 ``close``, 2 ``cancel`` (the entry order)
=======  ==============================  =========================================================

**Masks** (:func:`action_mask`): an action that cannot apply to the observation is masked (1 allowed, 0 not), in
training and inference alike: ``buy_yes`` / ``buy_no`` without a touch to take; a size the free cash cannot pay
for at the worst unit cost; ``passive`` / ``cross`` without a valid price to join or take on the signal's side;
``close`` when flat (only a working entry order) and ``cancel`` when no entry order works. ``hold``, a size of 0
and ``skip`` are always allowed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from runtime.events import Role
from runtime.units import COUNT_SCALE, PRICE_MAX

from .base import OBSERVATION_NAMES, ROLES, EntryDecision, ExitDecision, SignalDecision, SizingDecision

__all__ = ["ACTION_COUNTS", "ROLE_ACTIONS", "SIZES", "RandomPolicy", "action_mask", "decision", "observation_size",
           "random_policies"]

SIZES: tuple[int, ...] = (0, 1, 2, 5, 10, 25)
"""contracts the sizing role can choose"""

ROLE_ACTIONS: dict[Role, tuple[str, ...]] = {
    "signal": ("hold", "buy_yes", "buy_no"),
    "sizing": tuple(f"{n}_contracts" for n in SIZES),
    "entry": ("skip", "passive", "cross"),
    "exit": ("hold", "close", "cancel"),
}
ACTION_COUNTS: dict[Role, int] = {role: len(actions) for role, actions in ROLE_ACTIONS.items()}


def observation_size(role: Role) -> int:
    return len(OBSERVATION_NAMES[role])


def decision(role: Role, action: int, confidence: float = 1.0) -> Any:
    """The role's decision for ``action`` (see the module docstring); raises ``ValueError`` outside the range."""
    if not 0 <= action < ACTION_COUNTS[role]:
        raise ValueError(f"{role}: action {action} is outside 0..{ACTION_COUNTS[role] - 1}")
    name = ROLE_ACTIONS[role][action]
    if role == "signal":
        return SignalDecision(name, confidence if action else 0.0)  # type: ignore[arg-type]
    if role == "sizing":
        return SizingDecision(SIZES[action] * COUNT_SCALE)
    if role == "entry":
        return EntryDecision(name)  # type: ignore[arg-type]
    return ExitDecision(name, "" if name == "hold" else "model")  # type: ignore[arg-type]


def _valid(price: int | None) -> float:
    return 1.0 if price is not None and 0 < price < PRICE_MAX else 0.0


def action_mask(role: Role, obs: Any) -> np.ndarray:
    """Which of the role's actions can apply to ``obs`` (module docstring), as float32 ones and zeros."""
    view = obs.view
    if role == "signal":
        return np.array([1.0, _valid(view.best_ask), _valid(view.best_bid)], dtype=np.float32)
    if role == "sizing":
        return np.array([1.0 if not n or n * COUNT_SCALE * obs.unit_cost <= view.free_cash else 0.0 for n in SIZES],
                        dtype=np.float32)
    if role == "entry":
        yes = obs.signal.direction == "buy_yes"
        join, take = (view.best_bid, view.best_ask) if yes else (view.best_ask, view.best_bid)
        return np.array([1.0, _valid(join), _valid(take)], dtype=np.float32)
    return np.array([1.0, 1.0 if view.position else 0.0, 0.0 if obs.entry_order is None else 1.0], dtype=np.float32)


class RandomPolicy:
    """A role choosing uniformly among its actions: the baseline any model must beat.

    Deterministic as every policy must be: the choice is a hash of the seed and the observation's bytes (so a
    replay makes the same choices), never a random generator's state.
    """

    def __init__(self, role: Role, seed: int = 0) -> None:
        self.role: Role = role
        self.seed = seed
        self.version = f"random@{seed}"

    def decide(self, obs: Any) -> Any:
        digest = hashlib.blake2b(obs.vector().tobytes(), key=self.seed.to_bytes(8, "little"), digest_size=8).digest()
        return decision(self.role, int.from_bytes(digest, "little") % ACTION_COUNTS[self.role], 1.0)


def random_policies(seed: int = 0) -> dict[Role, RandomPolicy]:
    """A random policy per role."""
    return {role: RandomPolicy(role, seed) for role in ROLES}
