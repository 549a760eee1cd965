"""The roles' rewards (policies.rewards): the reference trade over the decision horizon, a trade's PnL split exactly
between the roles, and what declining to trade is charged."""

from __future__ import annotations

import numpy as np
import pytest

from actors.fees import KalshiFees
from policies.attribution import Trade, trades
from policies.data import Tape, tapes_from
from policies.episode import Episode
from policies.multi import MultiRoleEnv
from policies.rewards import QuotePath, RewardConfig, reference, split
from policies.roles import random_policies
from policies.rules import baselines
from replay.bench import TIGHT
from runtime.events import BookSnapshot, MarketLifecycle
from runtime.venues.sim.session import SynthSession

S = 1_000_000_000
T0 = 1_700_000_000 * S
M = "KXTEST-1"
FEE = KalshiFees()
TAPES = tapes_from("synth-3", list(SynthSession(3, 6, 600, config=TIGHT).events()))


def quotes(bid: int, ask: int) -> BookSnapshot:
    return BookSnapshot(market=M, yes_bids=((bid, 10_000),), no_bids=((10_000 - ask, 10_000),))


# 40/42 until 200 s, then 50/52, then 60/62 from 950 s; closes at 1000 s and settles YES
TAPE = Tape(session="s", market=M, events=(
    (T0, MarketLifecycle(market=M, kind="activated", close_ts_ms=(T0 + 1_000 * S) // 1_000_000)),
    (T0, quotes(4_000, 4_200)), (T0 + 200 * S, quotes(5_000, 5_200)), (T0 + 950 * S, quotes(6_000, 6_200)),
    (T0 + 1_005 * S, MarketLifecycle(market=M, kind="settled", result="yes", settlement_value=10_000))))
PATH = QuotePath(TAPE)


def fee(price: int, count: int) -> int:
    return FEE.trade_fee(M, price, count, True)


def test_the_reference_trade_is_the_move_of_the_mid_over_the_horizon():
    one = 100  # a contract
    assert reference(PATH, T0, +1, one, 120) == 0  # 41c until 200 s
    assert reference(PATH, T0, +1, one, 300) == (5_100 - 4_100) * one
    assert reference(PATH, T0, -1, one, 300) == -(5_100 - 4_100) * one
    # the close within the horizon: out a minute before it, never through the settlement
    assert reference(PATH, T0, +1, one, 1_200) == (5_100 - 4_100) * one
    assert reference(PATH, T0 + 960 * S, +1, one, 300) == 0
    assert reference(PATH, T0 - S, +1, one, 300) is None  # no book yet: no mid


def test_a_trades_pnl_splits_exactly_and_each_role_gets_the_part_it_controls():
    """5 contracts bought passively at 40c (the mid was 41c), sold at 51c 300 s later (the mid then 51c)."""
    q, config = 500, RewardConfig(horizon_s=300)
    out_fee = fee(5_100, q)
    pnl = (5_100 - 4_000) * q - out_fee
    trade = Trade(market=M, size=q, side=1, pnl=pnl, signal=0, entry=0, exit=0, fees=-out_fee, closed=True, quantity=q,
                  entry_cost=4_000 * q, entry_fees=0, decided_ns=T0)
    shares = split(trade, PATH, config)
    assert shares.total() == pnl and all(type(v) is int for v in (shares.signal, shares.sizing, shares.entry,
                                                                   shares.exit))
    assert shares.signal == (5_100 - 4_100) * 100  # the call: the mid's move over the horizon, per contract
    assert shares.entry == (4_100 - 4_000) * 100  # the half spread a passive fill earned, per contract
    assert shares.exit == -out_fee * 100 // q  # out at the mid at the horizon: only the fee
    assert shares.sizing == pnl - shares.signal - shares.entry - shares.exit
    assert shares.sizing == pytest.approx(pnl * 4 / 5, rel=1e-3)  # 4 contracts beyond the reference one
    # a loser sized up costs sizing in proportion; crossing pays the half spread and the fee
    loser = Trade(market=M, size=q, side=-1, pnl=-(5_200 - 4_000) * q - fee(4_000, q) - fee(5_200, q), signal=0,
                  entry=0, exit=0, fees=0, closed=True, quantity=q, entry_cost=4_000 * q, entry_fees=fee(4_000, q),
                  decided_ns=T0)
    lost = split(loser, PATH, config)
    assert lost.total() == loser.pnl and lost.sizing < 0
    assert lost.entry == (-(4_100 - 4_000) * q - fee(4_000, q)) * 100 // q


def test_every_trade_of_an_episode_splits_exactly():
    """Random policies on synthetic tapes: every trade (closed, settled or open at the end) splits into integer parts
    that add up to its PnL to the micro-dollar."""
    config = RewardConfig()
    seen = 0
    for tape in TAPES:
        episode = Episode(tape, random_policies(5), cash=10**9)
        episode.log = []
        episode.run()
        path = QuotePath(tape)
        for trade in trades([r for b in episode.log for r in b], tape.market):
            shares = split(trade, path, config)
            assert shares.total() == trade.pnl
            seen += 1
    assert seen > 20


def step_through(env: MultiRoleEnv, choose, seed: int = 0, steps: int = 50_000):
    """(role, observation object, action, rewards) per step."""
    obs, _ = env.reset(seed=seed)
    trace = []
    for _ in range(steps):
        (role,) = obs
        seen = env._obs
        action = choose(role, obs[role])
        obs, rewards, terminated, truncated, _ = env.step({role: action})
        trace.append((role, seen, action, rewards))
        if terminated["__all__"] or truncated["__all__"]:
            break
    return trace


def test_a_signal_is_paid_its_call_over_the_horizon_and_a_hold_is_charged_the_move_it_passed_on():
    """buy_yes: the move; buy_no: minus it; hold: minus half (the default abstain weight) of its size."""
    rng = np.random.default_rng(0)
    charged = 0
    for tape in (TAPE, *TAPES):  # (the quotes rise 8c at 200 s on TAPE: holds before it pass on a move)
        env = MultiRoleEnv({"roles": ["signal"], "reward_scale": 1.0}, tapes=[tape], frozen_policies=baselines())
        path = QuotePath(tape)
        choose = (lambda r, o: 0) if tape is TAPE else (lambda r, o: int(rng.integers(3)))
        for _, obs, action, rewards in step_through(env, choose):
            move = reference(path, obs.view.now_ns, +1, 100, 300) or 0
            expected = (-round(0.5 * abs(move)), move, -move)[action] / 10_000  # cents (abstain 0.5)
            assert rewards["signal"] == pytest.approx(expected)
            charged += action == 0 and expected < 0
    assert charged, "some holds passed on a move"
    # without the abstention weight a hold is free
    free = MultiRoleEnv({"roles": ["signal"], "rewards": {"abstain": 0.0}}, tapes=TAPES[:1], frozen_policies=baselines())
    assert {r["signal"] for _, _, _, r in step_through(free, lambda r, o: 0)} == {0.0}


def test_declining_to_enter_is_charged_the_reference_trade():
    """An entry that skips gets minus the reference trade of the signal's direction, at once."""
    env = MultiRoleEnv({"roles": ["signal", "entry"], "reward_scale": 1.0}, tapes=TAPES, frozen_policies=baselines())
    trace = step_through(env, lambda r, o: 1 if r == "signal" else 0)
    skips = [(obs, rewards) for role, obs, _, rewards in trace if role == "entry"]
    assert skips
    path = QuotePath(env.episode.tape)
    for obs, rewards in skips[:20]:
        cf = reference(path, obs.view.now_ns, obs.signal.sign, 100, 300) or 0
        assert rewards["entry"] == pytest.approx(-cf / 10_000)
