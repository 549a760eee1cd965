"""Deterministic rule baselines for the four roles, so the system trades sensibly before any model is trained.

* **signal** (:class:`ImbalanceMomentum`): trade only a liquid book — both sides present, a positive
  spread no wider than ``max_spread`` (10¢), at least ``min_touch`` (10 contracts) at each best price
  and ``min_depth`` (20 contracts) on each side over the feature levels (a lone small order inside a wide
  market is not liquidity). Then ``score = imbalance_weight × imbalance + momentum_weight × momentum /
  momentum_scale`` (the features' depth imbalance in [-1, 1] and mid change in dollars): ``buy_yes`` at
  ``score >= threshold``, ``buy_no`` at ``score <= -threshold``, else ``hold``; confidence ``min(1, |score|)``.
* **sizing** (:class:`ConfidenceSizing`): a budget of ``free_cash × max_fraction × confidence``, capped
  by ``max_market_cost`` less what the market already ties up, divided by the worst cost of one count
  unit; and no more than ``max_touch_share`` of the smaller of the two touches (what the entry can take
  and what the exit can close into); rounded down to whole ``lot`` s; below ``min_count`` it is 0 (skip).
* **entry** (:class:`SpreadEntry`): the edge foreseen is ``confidence × edge_at_full_confidence``. When
  the spread is at most that edge, paying it is worth it: ``cross``. When it is wider: ``passive`` (join
  our side's touch and wait). A locked, crossed or one-sided book: ``skip``.
* **exit** (:class:`TakeProfitStopTime`): a position is closed only across a spread of at most
  ``max_spread`` (10¢): on a wider (or one-sided) book it holds (``wide_spread``) rather than pay the width
  — at worst until the settlement. Otherwise, in this order: ``near_close`` within
  ``flatten_before_close_s`` of the close; ``take_profit`` when closing at the touch now would realize at
  least ``take_profit`` per contract; ``stop_loss`` when the position marked at the mid has lost at least
  ``stop_loss`` per contract (the mid, so that a spread widening alone does not stop it out); ``max_hold``
  after ``max_hold_s`` of event time in the position — each closes it. A working entry order older than
  ``entry_timeout_s`` is canceled (``entry_timeout``). Otherwise ``hold``.

Parameters are frozen msgspec Structs with documented defaults (prices in 1/10,000 dollar, counts in 1/100
contract, money in micro-dollars, times in seconds). A rule's ``version`` is its name and a hash of its
parameters (``imbalance_momentum@3f2a…``), so the log tells which rule, set how, made each decision.
Money arithmetic is exact: a float (a weight times a confidence) is quantized to parts per million once,
then everything is integer.
"""

from __future__ import annotations

import hashlib

import msgspec

from policies.base import (
    EntryDecision,
    EntryObservation,
    ExitDecision,
    ExitObservation,
    Policy,
    SignalDecision,
    SignalObservation,
    SizingDecision,
    SizingObservation,
)
from policies.features import FEATURE_NAMES
from runtime.events import Role

__all__ = [
    "ConfidenceSizing",
    "EntryParams",
    "ExitParams",
    "ImbalanceMomentum",
    "SignalParams",
    "SizingParams",
    "SpreadEntry",
    "TakeProfitStopTime",
    "baselines",
    "rule_version",
]

PPM = 1_000_000
_NS = 1_000_000_000
_IMBALANCE = FEATURE_NAMES.index("imbalance")
_MOMENTUM = FEATURE_NAMES.index("momentum")
# the decisions most calls return, built once (they are frozen)
_HOLD = SignalDecision("hold")
_NO_SIZE = SizingDecision(0)
_SKIP = EntryDecision("skip")
_EXIT_HOLD = ExitDecision("hold")
_WIDE_SPREAD = ExitDecision("hold", "wide_spread")


def rule_version(name: str, params: msgspec.Struct) -> str:
    """``name@<12 hex>``: the rule's name and the sha256 of its parameters' canonical JSON."""
    return f"{name}@{hashlib.sha256(msgspec.json.encode(params)).hexdigest()[:12]}"


def _ppm(x: float) -> int:
    return round(x * PPM)


def _check(params: msgspec.Struct, *conditions: tuple[bool, str]) -> None:
    for ok, message in conditions:
        if not ok:
            raise ValueError(f"{type(params).__name__}: {message}")


# --- signal --------------------------------------------------------------------------------------------
class SignalParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_spread: int = 1_000
    """widest spread traded (10¢); wider books hold"""
    min_touch: int = 1_000
    """least size at each best price (10 contracts); thinner touches hold"""
    min_depth: int = 2_000
    """least size resting on each side over the feature levels (20 contracts); thinner books hold"""
    imbalance_weight: float = 1.0
    """weight of the depth imbalance (in [-1, 1]) in the score"""
    momentum_weight: float = 1.0
    """weight of the scaled mid change in the score"""
    momentum_scale: float = 0.02
    """the mid change (dollars, over the features' momentum window) that counts as 1.0 of score"""
    threshold: float = 0.5
    """|score| at which the signal leaves hold"""

    def __post_init__(self) -> None:
        _check(self, (self.max_spread > 0, "max_spread must be > 0"), (min(self.min_touch, self.min_depth) >= 0, "min_touch and min_depth must be >= 0"),
               (self.momentum_scale > 0, "momentum_scale must be > 0"), (0 < self.threshold <= 1, "threshold must lie in (0, 1]"))


class ImbalanceMomentum:
    """Signal from depth imbalance and short-term momentum, behind a liquidity filter (module docstring)."""

    role: Role = "signal"

    def __init__(self, params: SignalParams | None = None) -> None:
        self.params = params or SignalParams()
        self.version = rule_version("imbalance_momentum", self.params)

    def liquid(self, obs: SignalObservation) -> bool:
        """Both sides present, spread in (0, max_spread], at least min_touch and min_depth on each side."""
        p, v = self.params, obs.view
        spread = v.spread
        return (spread is not None and 0 < spread <= p.max_spread and v.bid_size >= p.min_touch
                and v.ask_size >= p.min_touch and v.bid_depth >= p.min_depth and v.ask_depth >= p.min_depth)

    def decide(self, obs: SignalObservation) -> SignalDecision:
        if not self.liquid(obs):
            return _HOLD
        p = self.params
        score = (p.imbalance_weight * obs.features.item(_IMBALANCE)
                 + p.momentum_weight * obs.features.item(_MOMENTUM) / p.momentum_scale)
        if abs(score) < p.threshold:
            return _HOLD
        return SignalDecision("buy_yes" if score > 0 else "buy_no", min(1.0, abs(score)))


# --- sizing --------------------------------------------------------------------------------------------
class SizingParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_fraction: float = 0.05
    """most of the free cash one entry may commit, at confidence 1"""
    max_market_cost: int = 25_000_000
    """most one market may tie up, at worst cost ($25)"""
    lot: int = 100
    """count granularity (whole contracts)"""
    min_count: int = 100
    """smallest entry worth placing (1 contract)"""
    max_touch_share: float = 0.5
    """most of the smaller touch (best bid size, best ask size) one entry may be"""

    def __post_init__(self) -> None:
        _check(self, (0 < self.max_fraction <= 1, "max_fraction must lie in (0, 1]"),
               (self.max_touch_share > 0, "max_touch_share must be > 0"),
               (self.max_market_cost >= 0, "max_market_cost must be >= 0"), (self.lot >= 1, "lot must be >= 1"),
               (self.min_count >= 1, "min_count must be >= 1"))


class ConfidenceSizing:
    """Size from confidence and free cash, capped per market (module docstring)."""

    role: Role = "sizing"

    def __init__(self, params: SizingParams | None = None) -> None:
        self.params = params or SizingParams()
        self.version = rule_version("confidence_sizing", self.params)

    def decide(self, obs: SizingObservation) -> SizingDecision:
        p = self.params
        if obs.signal.direction == "hold" or obs.unit_cost <= 0:
            return _NO_SIZE
        budget = max(0, obs.view.free_cash) * _ppm(p.max_fraction * obs.signal.confidence) // PPM
        budget = min(budget, p.max_market_cost - obs.exposure)
        touch = min(obs.view.bid_size, obs.view.ask_size) * _ppm(p.max_touch_share) // PPM
        count = min(max(0, budget) // obs.unit_cost, touch) // p.lot * p.lot
        return SizingDecision(count) if count >= p.min_count else _NO_SIZE


# --- entry ---------------------------------------------------------------------------------------------
class EntryParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    edge_at_full_confidence: int = 400
    """the price move a confidence of 1 is taken to foresee (4¢): cross when the spread is at most
    confidence × this, else join the touch"""

    def __post_init__(self) -> None:
        _check(self, (self.edge_at_full_confidence >= 0, "edge_at_full_confidence must be >= 0"))


class SpreadEntry:
    """Passive or crossing by the spread against the foreseen edge (module docstring)."""

    role: Role = "entry"

    def __init__(self, params: EntryParams | None = None) -> None:
        self.params = params or EntryParams()
        self.version = rule_version("spread_entry", self.params)

    def decide(self, obs: EntryObservation) -> EntryDecision:
        spread = obs.view.spread
        if obs.signal.direction == "hold" or obs.count <= 0 or spread is None or spread <= 0:
            return _SKIP
        edge_ppm = _ppm(obs.signal.confidence) * self.params.edge_at_full_confidence
        return EntryDecision("cross" if spread * PPM <= edge_ppm else "passive")


# --- exit ----------------------------------------------------------------------------------------------
class ExitParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    take_profit: int = 300
    """close when closing at the touch now realizes at least this per contract (3¢)"""
    stop_loss: int = 400
    """close when the position marked at the mid has lost at least this per contract (4¢)"""
    max_hold_s: int = 300
    """close after this long in the position (event time)"""
    flatten_before_close_s: int = 60
    """close when the market closes within this long"""
    entry_timeout_s: int = 30
    """cancel a working entry order this long after it was placed"""
    max_spread: int = 1_000
    """widest spread a close crosses (10¢); on a wider book the position is held"""

    def __post_init__(self) -> None:
        _check(self, (self.take_profit > 0 and self.stop_loss > 0, "take_profit and stop_loss must be > 0"),
               (self.max_spread > 0, "max_spread must be > 0"),
               (self.max_hold_s > 0 and self.entry_timeout_s > 0, "max_hold_s and entry_timeout_s must be > 0"),
               (self.flatten_before_close_s >= 0, "flatten_before_close_s must be >= 0"))


class TakeProfitStopTime:
    """Exit by take-profit, stop-loss and time; cancel stale entry orders (module docstring)."""

    role: Role = "exit"

    def __init__(self, params: ExitParams | None = None) -> None:
        self.params = params or ExitParams()
        self.version = rule_version("take_profit_stop_time", self.params)

    def decide(self, obs: ExitObservation) -> ExitDecision:
        p, position = self.params, obs.view.position
        if position:
            spread, to_close, size = obs.view.spread, obs.view.to_close_ns, abs(position)
            if spread is None or spread > p.max_spread:
                return _WIDE_SPREAD
            if to_close is not None and to_close <= p.flatten_before_close_s * _NS:
                return ExitDecision("close", "near_close")
            if obs.unrealized is not None and obs.unrealized >= p.take_profit * size:
                return ExitDecision("close", "take_profit")
            if obs.unrealized_at_mid2 <= -2 * p.stop_loss * size:
                return ExitDecision("close", "stop_loss")
            if obs.held_ns >= p.max_hold_s * _NS:
                return ExitDecision("close", "max_hold")
        order = obs.entry_order
        if order is not None and order.age_ns >= p.entry_timeout_s * _NS:
            return ExitDecision("cancel", "entry_timeout")
        return _EXIT_HOLD


def baselines(signal: SignalParams | None = None, sizing: SizingParams | None = None, entry: EntryParams | None = None,
              exit: ExitParams | None = None) -> dict[Role, Policy]:
    """The four rule baselines by role (default parameters unless given)."""
    return {"signal": ImbalanceMomentum(signal), "sizing": ConfidenceSizing(sizing), "entry": SpreadEntry(entry),
            "exit": TakeProfitStopTime(exit)}
