"""Imitation before reinforcement: a role's network first learns to decide as a teacher policy does.

``tape train --imitate flow`` (``TrainConfig.imitate``) starts each role that learns from the teacher's decisions
instead of from random weights: PPO then improves on a policy that already trades the edge the teacher knows,
rather than discovering it from scratch (where, from random weights, entry and exit lose what the signal makes
before they learn anything: README, training).

:func:`demonstrations` plays the training tapes with the teacher set (``rule`` or ``flow``: every role the teacher's)
through the same episodes the environments run, and records, per role and per decision, the observation exactly as
the role's network will see it (regime probabilities appended, then the fitted scaling, as
:class:`~policies.registry.ModelPolicy` does), the role's action mask, and the teacher's decision as the role's action
index (sizing: the allowed size nearest the teacher's count). :func:`imitate` fits each role's module to them by
cross-entropy over the masked logits, each action weighted by the inverse of its frequency (a teacher that holds at
almost every decision would otherwise teach holding and nothing else), on every learner, then hands the weights to
the env runners. Deterministic: the episodes are, and the fit runs full-batch epochs in a fixed order from the
seeded weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runtime.events import Role

from .base import ROLES, Policy
from .data import Tape
from .features import Scaling
from .regimes import RegimeModel, regime_filter
from .roles import ROLE_ACTIONS, SIZES, action_mask

__all__ = ["TEACHERS", "Demonstrations", "action_index", "demonstrations", "imitate"]

TEACHERS = ("rule", "flow")
"""the policy sets a role can imitate"""

EPOCHS = 200
"""full-batch passes of the fit (Adam, learning rate :data:`LR`)"""
LR = 3e-3

Demonstrations = dict[Role, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""role -> (observations as the network sees them, action masks, the teacher's action indices)"""


def action_index(role: Role, decision: Any, mask: np.ndarray) -> int:
    """The role's action that stands for the teacher's ``decision`` (sizing: the allowed size nearest its count)."""
    if role == "signal":
        return ROLE_ACTIONS["signal"].index(decision.direction)
    if role in ("entry", "exit"):
        return ROLE_ACTIONS[role].index(decision.action)
    contracts = decision.count / 100
    allowed = [i for i in range(len(SIZES)) if mask[i]] or [0]
    return min(allowed, key=lambda i: (abs(SIZES[i] - contracts), i))


def demonstrations(tapes: Sequence[Tape], teacher: Mapping[Role, Policy], roles: Sequence[Role],
                   scaling: Mapping[str, Scaling], regimes: RegimeModel | None = None, *,
                   cash: int) -> Demonstrations:
    """The teacher's decisions on ``tapes`` for ``roles`` (module docstring)."""
    from .episode import Episode
    from .registry import network_input

    filtered = regime_filter(regimes)
    rows: dict[Role, tuple[list[np.ndarray], list[np.ndarray], list[int]]] = {r: ([], [], []) for r in roles}

    class Recording:
        def __init__(self, policy: Policy) -> None:
            self.policy, self.role, self.version = policy, policy.role, policy.version

        def decide(self, obs: Any) -> Any:
            decided = self.policy.decide(obs)
            if self.role in rows:
                vector = network_input(obs, scaling.get(self.role), filtered)
                mask = action_mask(self.role, obs)
                seen, masks, actions = rows[self.role]
                seen.append(np.asarray(vector, dtype=np.float32))
                masks.append(mask)
                actions.append(action_index(self.role, decided, mask))
            return decided

    for tape in tapes:
        Episode(tape, {r: Recording(teacher[r]) for r in ROLES}, cash=cash).run()
    return {r: (np.stack(x), np.stack(m), np.array(a, dtype=np.int64)) for r, (x, m, a) in rows.items() if a}


def imitate(algo: Any, demos: Demonstrations, roles: Sequence[Role], seed: int = 0) -> dict[Role, float]:
    """Fit the modules of ``roles`` to ``demos`` on every learner, then sync the env runners; each role's share of
    the teacher's decisions its module now takes (argmax), as measured on the first learner."""
    wanted = {r: demos[r] for r in roles if r in demos}
    if not wanted:
        return {}

    def fit(learner: Any) -> dict[Role, float]:
        return {role: _fit(learner.module[role], *data, seed=seed) for role, data in wanted.items()}

    agreement = next(iter(algo.learner_group.foreach_learner(fit))).get()  # (one result per learner, local or remote)
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
    return agreement


def _fit(module: Any, observations: np.ndarray, masks: np.ndarray, actions: np.ndarray, *, seed: int) -> float:
    import torch
    from ray.rllib.core.columns import Columns

    torch.manual_seed(seed)
    device = next(module.parameters()).device
    obs = torch.as_tensor(observations, device=device)
    mask = torch.as_tensor(masks, device=device)
    target = torch.as_tensor(actions, device=device)
    counts = torch.bincount(target, minlength=int(module.action_space.n)).float()
    present = counts > 0
    weight = torch.where(present, counts.sum() / (counts.clamp(min=1) * present.sum()), torch.zeros_like(counts))
    optimizer = torch.optim.Adam(module.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def logits() -> Any:
        out = module._forward_train({Columns.OBS: {"observations": obs, "action_mask": mask}})
        return out[Columns.ACTION_DIST_INPUTS]

    module.train()
    for _ in range(EPOCHS):
        optimizer.zero_grad()
        loss = loss_fn(logits(), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((logits().argmax(dim=-1) == target).float().mean())
