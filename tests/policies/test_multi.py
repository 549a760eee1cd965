"""The multi-agent environment: roles acting in turn, frozen roles, the shared trade-outcome reward."""

from __future__ import annotations

import numpy as np
import pytest

from policies.data import tapes_from
from policies.multi import MultiRoleEnv
from policies.roles import ACTION_COUNTS, SIZES, RandomPolicy, decision, random_policies
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
        action = int(rng.integers(env.action_spaces[role].n))
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


def test_rewards_are_trade_outcomes_shared_by_the_roles_that_acted_and_sum_to_the_pnl():
    env = MultiRoleEnv({}, tapes=TAPES, frozen_policies=baselines())
    trace = run(env, 2)
    paid = [rewards for _, _, rewards, _ in trace if rewards]
    assert paid, "a random agent trades"
    for rewards in paid:
        assert len(set(rewards.values())) == 1  # shared: one outcome per trade
    pnl = trace[-1][3][next(iter(trace[-1][3]))]["pnl"]
    assert sum(next(iter(r.values())) for r in paid) == pytest.approx(pnl, abs=1e-6)
    # a signal that holds and never trades earns nothing
    holding = MultiRoleEnv({"roles": ["signal"]}, tapes=TAPES, frozen_policies=baselines())
    holding.reset(seed=0)
    for _ in range(500):
        _, rewards, terminated, _, _ = holding.step({"signal": 0})
        assert not rewards or set(rewards.values()) == {0.0}
        if terminated["__all__"]:
            break


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
