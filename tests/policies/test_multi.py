"""The multi-agent environment: roles acting in turn, frozen roles, each role's own reward, masks and scaling.
(What the rewards are is tests/policies/test_rewards.py's.)"""

from __future__ import annotations

import numpy as np
import pytest

from policies.data import tapes_from
from policies.features import Scaling
from policies.multi import MultiRoleEnv
from policies.roles import ACTION_COUNTS, SIZES, RandomPolicy, action_mask, decision, random_policies
from policies.rules import baselines
from replay.bench import TIGHT
from runtime.events import OrderIntent, PolicyDecided
from runtime.venues.sim.session import SynthSession

TAPES = tapes_from("synth-3", list(SynthSession(3, 6, 600, config=TIGHT).events()))


def run(env: MultiRoleEnv, seed: int, steps: int = 100_000):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = []
    for _ in range(steps):
        (role,) = obs
        assert env.observation_spaces[role].contains(obs[role])
        action = int(rng.choice(np.flatnonzero(obs[role]["action_mask"])))  # what a masked module can choose
        obs, rewards, terminated, truncated, infos = env.step({role: action})
        trace.append((role, action, rewards, infos))
        if terminated["__all__"]:
            assert obs == {}
            break
        if truncated["__all__"]:
            assert {r for r, *_ in trace} <= set(obs)
            break
    return trace


def test_roles_act_in_turn_in_decision_order():
    env = MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines())
    trace = run(env, 1)
    roles = [role for role, *_ in trace]
    assert set(roles) == {"signal", "sizing", "entry", "exit"}
    for i, role in enumerate(roles):
        if role == "sizing":
            assert roles[i - 1] == "signal"
        if role == "entry":
            assert roles[i - 1] == "sizing"


def test_each_trade_pays_the_roles_their_shares_and_they_add_up_to_its_pnl():
    """Every trade of the episode is split (policies.rewards.split) and its parts add up to the trade's PnL; the
    trades' PnL is the episode's; a role is paid only after it acted."""
    from policies.rewards import split

    class Spy(MultiRoleEnv):
        def _on_trade(self, trade, paid):
            shares = split(trade, self._path(), self.rewards)
            self.seen.append((trade, shares))
            super()._on_trade(trade, paid)

    env = Spy({}, tapes=TAPES, frozen_policies=baselines())
    env.seen = []
    trace = run(env, 2)
    assert env.seen, "a random agent trades"
    for trade, shares in env.seen:
        assert shares.total() == trade.pnl
    pnl = trace[-1][3][next(iter(trace[-1][3]))]["pnl"]
    assert sum(t.pnl for t, _ in env.seen) / 1e6 == pytest.approx(pnl, abs=1e-3)
    acted: set[str] = set()
    for role, _, rewards, _ in trace:
        acted.add(role)
        assert set(rewards) <= acted


def test_actions_that_cannot_apply_are_masked():
    """Close is masked while flat, cancel without a working entry order; a buy or an entry needs a touch."""
    env = MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines())
    obs, _ = env.reset(seed=3)
    seen = set()
    for _ in range(20_000):
        (role,) = obs
        o, mask = env._obs, obs[role]["action_mask"]
        assert np.array_equal(mask, action_mask(role, o)) and mask[0] == 1.0
        if role == "exit":
            assert mask[1] == (1.0 if o.view.position else 0.0)
            assert mask[2] == (0.0 if o.entry_order is None else 1.0)
            seen.add(("exit", bool(o.view.position), o.entry_order is not None))
        if role == "sizing":
            assert all(m == 1.0 or n * 100 * o.unit_cost > o.view.free_cash for n, m in zip(SIZES, mask, strict=True))
        action = int(np.random.default_rng(len(seen)).choice(np.flatnonzero(mask)))
        obs, _, terminated, truncated, _ = env.step({role: action})
        if terminated["__all__"] or truncated["__all__"]:
            obs, _ = env.reset()
    assert ("exit", True, False) in seen and ("exit", False, True) in seen


def test_observations_are_scaled_by_the_roles_scaling():
    scaling = {"signal": Scaling(names=("x",) * 21, center=(1.0,) * 21, scale=(2.0,) * 21, clip=3.0)}
    plain = MultiRoleEnv({"roles": ["signal"]}, tapes=TAPES, frozen_policies=baselines())
    scaled = MultiRoleEnv({"roles": ["signal"], "scaling": scaling}, tapes=TAPES, frozen_policies=baselines())
    a, _ = plain.reset(seed=1)
    b, _ = scaled.reset(seed=1)
    expected = np.clip((a["signal"]["observations"] - 1.0) / 2.0, -3.0, 3.0)
    assert np.array_equal(b["signal"]["observations"], expected.astype(np.float32))


def test_frozen_roles_decide_inside_the_episode_with_their_own_version():
    env = MultiRoleEnv({"roles": "exit"}, tapes=TAPES, frozen_policies=baselines())
    trace = run(env, 3)
    assert {role for role, *_ in trace} == {"exit"}
    assert env.observation_spaces.keys() == {"exit"}
    assert env.episode is not None
    assert env.episode.orchestrator.policies["signal"].version.startswith("imbalance_momentum@")
    assert env.episode.orchestrator.policies["exit"].version == "agent"


def test_same_seed_same_trace():
    a = run(MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines()), 5)
    b = run(MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines()), 5)
    assert [(r, x, w) for r, x, w, _ in a] == [(r, x, w) for r, x, w, _ in b]


def test_bad_roles_and_actions_are_refused():
    with pytest.raises(ValueError, match="roles must be among"):
        MultiRoleEnv({"roles": ["signal", "timing"]}, tapes=TAPES, frozen_policies=baselines())
    env = MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines())
    obs, _ = env.reset(seed=0)
    (role,) = obs
    other = next(r for r in ("signal", "exit") if r != role)
    with pytest.raises(ValueError, match=f"the {role} agent is to act"):
        env.step({other: 0})
    with pytest.raises(ValueError, match="outside"):
        env.step({role: 99})


def test_role_actions_mean_what_the_table_says():
    assert decision("signal", 0).direction == "hold" and decision("signal", 2, 0.7).direction == "buy_no"
    assert decision("signal", 2, 0.7).confidence == 0.7
    assert [decision("sizing", k).count for k in range(ACTION_COUNTS["sizing"])] == [n * 100 for n in SIZES]
    assert decision("entry", 2).action == "cross" and decision("exit", 1).action == "close"


def test_random_policies_are_deterministic_and_trade():
    from policies.episode import Episode

    tape = TAPES[1]
    runs = []
    for _ in range(2):
        episode = Episode(tape, random_policies(7), cash=10**9)
        episode.log = []
        episode.run()
        runs.append([r for b in episode.log for r in b])
    assert runs[0] == runs[1]
    assert any(type(r.event) is OrderIntent for r in runs[0])
    assert {r.event.version for r in runs[0] if type(r.event) is PolicyDecided} == {"random@7"}
    assert RandomPolicy("exit", 1).version != RandomPolicy("exit", 2).version


def test_truncation_gives_every_agent_that_acted_a_last_observation():
    env = MultiRoleEnv({"max_steps": 40}, tapes=TAPES, frozen_policies=baselines())
    trace = run(env, 4)
    assert len(trace) == 40
