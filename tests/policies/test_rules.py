"""The rule baselines as specifications: given an observation, then this decision."""

from __future__ import annotations

import re

import numpy as np
import pytest

from actors.fees import KalshiFees
from policies.base import (
    OBSERVATION_NAMES,
    EntryObservation,
    ExitObservation,
    MarketView,
    SignalDecision,
    SignalObservation,
    SizingObservation,
    WorkingOrder,
)
from policies.features import FEATURE_NAMES
from policies.rules import (
    ConfidenceSizing,
    EntryParams,
    ExitParams,
    ImbalanceMomentum,
    SignalParams,
    SizingParams,
    SpreadEntry,
    TakeProfitStopTime,
    baselines,
    rule_version,
)

M = "KXRULE-1"
S = 1_000_000_000


def view(**fields) -> MarketView:
    """A liquid market: 48¢ / 50¢, 50 contracts at each touch, 100 on each side; $100 free; flat."""
    base = dict(market=M, now_ns=1_000 * S, best_bid=4_800, best_ask=5_000, bid_size=5_000, ask_size=5_000,
                bid_depth=10_000, ask_depth=10_000, position=0, free_cash=100_000_000)
    return MarketView(**{**base, **fields})


def features(**named: float) -> np.ndarray:
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for name, value in named.items():
        vector[FEATURE_NAMES.index(name)] = value
    return vector


def signal(v: MarketView | None = None, **named: float) -> SignalDecision:
    return ImbalanceMomentum().decide(SignalObservation(view=v or view(), features=features(**named)))


BUY = SignalDecision("buy_yes", 0.5)


# --- signal -------------------------------------------------------------------------------------------
def test_bid_heavy_depth_buys_yes_with_the_score_as_confidence():
    """Imbalance 0.8 (weight 1) is a score of 0.8: buy_yes, confidence 0.8."""
    decision = signal(imbalance=0.8)
    assert (decision.direction, decision.confidence) == ("buy_yes", pytest.approx(0.8))


def test_ask_heavy_depth_buys_no():
    """A negative score past the threshold sells YES (buys NO)."""
    assert signal(imbalance=-0.6).direction == "buy_no"


def test_momentum_counts_in_units_of_its_scale_and_confidence_is_capped_at_one():
    """A 1.2¢ rise is 0.6 of score; a 5¢ rise is 2.5, capped to confidence 1."""
    assert (signal(momentum=0.012).direction, signal(momentum=0.012).confidence) == ("buy_yes", pytest.approx(0.6))
    assert signal(momentum=0.05).confidence == 1.0


def test_imbalance_and_momentum_that_disagree_cancel_out():
    """0.7 of bid imbalance against a 1.2¢ fall is 0.1 of score: hold."""
    assert signal(imbalance=0.7, momentum=-0.012) == SignalDecision("hold")


def test_a_score_below_the_threshold_holds():
    """0.49 < 0.5."""
    assert signal(imbalance=0.49) == SignalDecision("hold")


@pytest.mark.parametrize("v", [
    view(best_ask=5_900),  # 11¢ wide
    view(best_ask=4_800),  # locked
    view(best_ask=4_700),  # crossed
    view(best_ask=None),  # one-sided
    view(ask_size=999),  # a thin touch
    view(bid_depth=1_999),  # a thin side
], ids=["wide", "locked", "crossed", "one-sided", "thin-touch", "thin-depth"])
def test_an_illiquid_book_holds_whatever_the_score(v):
    """The liquidity filter comes first: no signal on a wide, locked, crossed, one-sided or thin book."""
    assert signal(v, imbalance=1.0) == SignalDecision("hold")


def test_a_10_cent_spread_is_still_traded():
    """max_spread is inclusive."""
    assert signal(view(best_ask=5_800), imbalance=1.0).direction == "buy_yes"


# --- sizing -------------------------------------------------------------------------------------------
def size(obs_view: MarketView | None = None, decision: SignalDecision = BUY, params: SizingParams | None = None,
         exposure: int = 0) -> int:
    v = obs_view or view()
    unit = KalshiFees().worst_unit_outlay(M, v.best_ask)  # buying YES at the ask at worst
    obs = SizingObservation(view=v, features=features(), signal=decision, unit_cost=unit, exposure=exposure)
    return ConfidenceSizing(params).decide(obs).count


def test_size_is_a_confidence_weighted_fraction_of_free_cash_in_whole_contracts():
    """$100 × 5% × 0.5 = $2.50; at $0.0052 worst per 1/100 contract that is 480 units: 4 contracts."""
    unit = KalshiFees().worst_unit_outlay(M, 5_000)
    assert unit == 5_200
    assert size() == 400


def test_size_is_capped_by_the_market_cost_cap():
    """With $10,000 free, 5% × 0.5 is $250, but one market may tie up $25: 4807 units -> 48 contracts."""
    assert size(view(free_cash=10_000_000_000, bid_size=100_000, ask_size=100_000)) == 4_800


def test_size_is_capped_by_half_the_smaller_touch():
    """30 contracts at the ask: at most 15 contracts go in, whatever the cash."""
    assert size(view(free_cash=10_000_000_000, ask_size=3_000)) == 1_500


def test_too_small_a_size_or_a_hold_is_zero():
    """Below min_count (1 contract) nothing is placed; a hold is never sized."""
    assert size(view(free_cash=10_000_000)) == 0  # $10 × 2.5% = $0.25 < one contract
    assert size(decision=SignalDecision("hold")) == 0


def test_exposure_already_taken_counts_against_the_market_cap():
    """$24.99 of $25 already tied up leaves nothing."""
    assert size(view(free_cash=10_000_000_000), exposure=24_990_000) == 0


# --- entry --------------------------------------------------------------------------------------------
def entry(spread: int, confidence: float, count: int = 500) -> str:
    v = view(best_bid=5_000 - spread)
    obs = EntryObservation(view=v, features=features(), signal=SignalDecision("buy_yes", confidence), count=count)
    return SpreadEntry().decide(obs).action


def test_a_spread_within_the_foreseen_edge_is_crossed():
    """Confidence 0.5 foresees 2¢: a 2¢ spread is worth paying."""
    assert entry(200, 0.5) == "cross"


def test_a_spread_wider_than_the_edge_joins_the_touch():
    """3¢ > 2¢: wait at the touch instead."""
    assert entry(300, 0.5) == "passive"


def test_nothing_to_enter_is_skipped():
    """A zero size, or a locked book, skips."""
    assert entry(200, 0.5, count=0) == "skip"
    assert entry(0, 0.5) == "skip"


# --- exit ---------------------------------------------------------------------------------------------
def exit_decision(bid: int, ask: int, position: int = 1_000, entry_price: int = 5_000, held_s: int = 10,
                  close_in_s: int | None = None, order: WorkingOrder | None = None, params: ExitParams | None = None):
    now = 1_000 * S
    v = view(best_bid=bid, best_ask=ask, position=position, now_ns=now,
             close_ns=None if close_in_s is None else now + close_in_s * S)
    obs = ExitObservation(view=v, features=features(), cost_basis=position * entry_price, held_ns=held_s * S,
                          entry_order=order)
    return TakeProfitStopTime(params).decide(obs)


def test_take_profit_when_closing_at_the_bid_realizes_3_cents():
    """Long 10 at 50¢: a 53¢ bid realizes exactly 3¢ a contract."""
    assert exit_decision(5_300, 5_400).label == "take_profit"
    assert exit_decision(5_299, 5_400).label == "hold"


def test_take_profit_of_a_no_position_closes_at_the_ask():
    """Short YES (long NO) 10 from 50¢: a 47¢ ask buys it back 3¢ cheaper."""
    assert exit_decision(4_600, 4_700, position=-1_000).label == "take_profit"


def test_stop_loss_marks_at_the_mid():
    """Long from 50¢: a 45¢/47¢ book has a 46¢ mid, 4¢ down: stop. 46¢/48¢ (mid 47¢) holds."""
    assert exit_decision(4_500, 4_700) == exit_decision(4_500, 4_700, held_s=0)
    assert exit_decision(4_500, 4_700).label == "stop_loss"
    assert exit_decision(4_600, 4_800).label == "hold"


def test_max_hold_closes_after_five_minutes_of_event_time():
    """299 s holds, 300 s closes."""
    assert exit_decision(5_000, 5_100, held_s=299).label == "hold"
    assert exit_decision(5_000, 5_100, held_s=300).label == "max_hold"


def test_near_the_close_the_position_is_flattened_first():
    """Within 60 s of the close it closes, ahead of every other reason."""
    assert exit_decision(5_300, 5_400, close_in_s=60).label == "near_close"
    assert exit_decision(5_300, 5_400, close_in_s=61).label == "take_profit"


def test_a_wide_book_is_held_rather_than_crossed():
    """Even at a 10¢ loss at the mid, a 20¢-wide book is not crossed to close."""
    decision = exit_decision(3_000, 5_000)
    assert (decision.action, decision.label) == ("hold", "wide_spread")


def test_a_working_entry_order_is_canceled_after_its_timeout():
    """A resting entry order 30 s old is canceled; at 29 s it stays."""
    def order(age_s: int) -> WorkingOrder:
        return WorkingOrder(client_order_id="c", side="bid", price=4_800, count=500, filled=0, age_ns=age_s * S)

    assert exit_decision(4_800, 5_000, position=0, order=order(30)).label == "entry_timeout"
    assert exit_decision(4_800, 5_000, position=0, order=order(29)).label == "hold"


# --- the interface ------------------------------------------------------------------------------------
def test_the_baselines_cover_the_four_roles_with_versions_from_their_parameters():
    """One policy per role, each of its role; the version is the rule's name and a hash of its parameters."""
    policies = baselines()
    assert [(role, p.role) for role, p in policies.items()] == [(r, r) for r in ("signal", "sizing", "entry", "exit")]
    assert policies["signal"].version == rule_version("imbalance_momentum", SignalParams())
    assert policies["signal"].version.startswith("imbalance_momentum@") and len(policies["signal"].version) == 31
    assert ImbalanceMomentum(SignalParams(threshold=0.4)).version != policies["signal"].version
    assert ImbalanceMomentum(SignalParams()).version == policies["signal"].version


def test_every_observation_vector_is_float32_in_its_named_layout():
    """Features first, then the role's own inputs, as OBSERVATION_NAMES says."""
    sig = SignalDecision("buy_no", 0.25)
    order = WorkingOrder(client_order_id="c", side="ask", price=5_000, count=500, filled=100, age_ns=3 * S)
    observations = {
        "signal": SignalObservation(view=view(), features=features()),
        "sizing": SizingObservation(view=view(), features=features(), signal=sig, unit_cost=5_200),
        "entry": EntryObservation(view=view(), features=features(), signal=sig, count=700),
        "exit": ExitObservation(view=view(position=-700), features=features(), cost_basis=-3_500_000, held_ns=2 * S,
                                entry_order=order),
    }
    vectors = {role: obs.vector() for role, obs in observations.items()}
    for role, vector in vectors.items():
        assert (vector.dtype, vector.shape) == (np.float32, (len(OBSERVATION_NAMES[role]),))
    named = dict(zip(OBSERVATION_NAMES["sizing"], vectors["sizing"].tolist(), strict=True))
    assert (named["direction"], named["confidence"], named["unit_cost"]) == (-1.0, 0.25, pytest.approx(0.52))
    named = dict(zip(OBSERVATION_NAMES["exit"], vectors["exit"].tolist(), strict=True))
    # short 7 at 50¢, closing at the 50¢ ask: flat PnL
    assert (named["avg_price"], named["unrealized"], named["held_s"]) == (pytest.approx(0.5), 0.0, 2.0)
    assert (named["entry_working"], named["entry_age_s"], named["entry_remaining"]) == (1.0, 3.0, 4.0)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SignalParams(threshold=0), "SignalParams: threshold must lie in (0, 1]"),
    (lambda: SizingParams(max_fraction=1.5), "SizingParams: max_fraction must lie in (0, 1]"),
    (lambda: EntryParams(edge_at_full_confidence=-1), "EntryParams: edge_at_full_confidence must be >= 0"),
    (lambda: ExitParams(stop_loss=0), "ExitParams: take_profit and stop_loss must be > 0"),
    (lambda: SignalDecision("buy_yes", 1.5), "signal confidence must lie in [0, 1], got 1.5"),
])
def test_invalid_parameters_and_decisions_are_refused_by_name(make, message):
    """Parameters are validated when built; a decision outside its range is a bug in the policy."""
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
