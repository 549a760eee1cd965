"""``flow``: a known-edge reference — informed flow leads the mid, so trade in its direction and wait for the mid.

In the order-flow model (:mod:`runtime.venues.sim.flow`) informed traders see the latent fair value and take at
the touch when it is beyond it; the makers refill the touch where it was, so the book barely moves while the
informed buy or sell, until the news reaches the makers' estimate ``public_lag_s`` (45 s) later and their quotes
jump. Signed trade flow over a window therefore predicts the next window's mid change, on tight markets above all.
These rules read that from the observation features (:mod:`policies.features`: ``signed_volume``,
``flow_imbalance`` and ``traded_volume`` over the features' 60-s window) and nothing else.

* **signal** (:class:`FlowSignal`): only a tight, two-sided book — a spread in (0, ``max_spread``] (6¢) with at
  least ``min_touch`` (5 contracts) at each best price. Then, with ``signed`` the window's contracts bought by
  YES takers less those bought by NO takers and ``share = signed / traded`` (``flow_imbalance``): ``buy_yes``
  when ``signed >= min_signed`` (300 contracts) and ``share >= min_share`` (0.8), ``buy_no`` when
  ``signed <= -min_signed`` and ``share <= -min_share``, else ``hold``; confidence 1. (Noise takes are a few
  contracts; an informed trader takes about 8 contracts per cent of mispricing, so only news moves this much
  one way. Weaker thresholds trade noise and lose the spread and the fees both ways.)
* **sizing**: the rule baselines' :class:`~policies.rules.ConfidenceSizing` (default parameters): a budget of
  the free cash times 5% (confidence 1), at most $25 a market and half the smaller touch.
* **entry** (:class:`FlowEntry`): ``cross`` — take the opposite touch (IOC) at once, before the makers move: the
  edge is the news the mid has not taken in yet, and it is gone when they requote. A locked, crossed or
  one-sided book: ``skip``.
* **exit** (:class:`FlowExit`): a position is closed only across a spread of at most ``max_spread`` (10¢); on
  a wider or one-sided book it holds (``wide_spread``). Otherwise, in this order: ``near_close`` within
  ``flatten_before_close_s`` (60 s) of the close; ``flow_reversed`` when the window's flow runs against the
  position (``signed`` at least ``min_signed`` the other way with ``|share| >= min_share``: the signal's
  thresholds, the other news); ``max_hold`` after ``hold_s`` (300 s) in the position: long after the news lag,
  as the mid keeps drifting toward the fair value after the makers first move. No take-profit or stop-loss:
  on these tapes either one cut the winners short (measured on synthetic sessions, seeds 1 and 3). A working
  entry order older than ``entry_timeout_s`` (5 s) is canceled (``entry_timeout``). Else ``hold``.

Parameters are frozen msgspec Structs (:class:`FlowParams`: prices in 1/10,000 dollar, counts in 1/100
contract, times in seconds); each rule's ``version`` is its name and a hash of them
(:func:`~policies.rules.rule_version`), so the log says which rule, set how, made each decision.
"""

from __future__ import annotations

import msgspec

from runtime.events import Role

from .base import (
    EntryDecision,
    EntryObservation,
    ExitDecision,
    ExitObservation,
    Policy,
    SignalDecision,
    SignalObservation,
)
from .features import FEATURE_NAMES
from .rules import ConfidenceSizing, rule_version

__all__ = ["FlowEntry", "FlowExit", "FlowParams", "FlowSignal", "flow_policies"]

_NS = 1_000_000_000
_SIGNED = FEATURE_NAMES.index("signed_volume")
_SHARE = FEATURE_NAMES.index("flow_imbalance")
_HOLD = SignalDecision("hold")
_BUY_YES = SignalDecision("buy_yes", 1.0)
_BUY_NO = SignalDecision("buy_no", 1.0)
_SKIP = EntryDecision("skip")
_CROSS = EntryDecision("cross")
_EXIT_HOLD = ExitDecision("hold")
_WIDE_SPREAD = ExitDecision("hold", "wide_spread")


class FlowParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The flow rules' parameters (module docstring)."""

    max_spread: int = 600
    """widest spread the signal trades (6¢)"""
    min_touch: int = 500
    """least size at each best price for the signal (5 contracts)"""
    min_signed: float = 300.0
    """least net contracts taken in one direction over the features' window (signed_volume)"""
    min_share: float = 0.8
    """least |flow_imbalance|: the net share of the window's traded volume"""
    hold_s: int = 300
    """close after this long in the position (event time)"""
    flatten_before_close_s: int = 60
    """close when the market closes within this long"""
    entry_timeout_s: int = 5
    """cancel a working entry order this long after it was placed"""
    exit_max_spread: int = 1_000
    """widest spread a close crosses (10¢); on a wider book the position is held"""

    def __post_init__(self) -> None:
        for ok, message in ((self.max_spread > 0 and self.exit_max_spread > 0, "spreads must be > 0"),
                            (self.min_touch >= 0, "min_touch must be >= 0"),
                            (self.min_signed > 0, "min_signed must be > 0"),
                            (0 <= self.min_share <= 1, "min_share must lie in [0, 1]"),
                            (self.hold_s > 0 and self.entry_timeout_s > 0, "hold_s and entry_timeout_s must be > 0"),
                            (self.flatten_before_close_s >= 0, "flatten_before_close_s must be >= 0")):
            if not ok:
                raise ValueError(f"FlowParams: {message}")


def _flow(features, p: FlowParams) -> int:
    """+1 when the window's flow is YES buying by the thresholds, -1 NO buying, else 0."""
    signed, share = features.item(_SIGNED), features.item(_SHARE)
    if signed >= p.min_signed and share >= p.min_share:
        return 1
    if signed <= -p.min_signed and share <= -p.min_share:
        return -1
    return 0


class FlowSignal:
    """Trade in the direction of the window's signed flow on a tight book (module docstring)."""

    role: Role = "signal"

    def __init__(self, params: FlowParams | None = None) -> None:
        self.params = params or FlowParams()
        self.version = rule_version("flow_signal", self.params)

    def decide(self, obs: SignalObservation) -> SignalDecision:
        p, v = self.params, obs.view
        spread = v.spread
        if spread is None or not 0 < spread <= p.max_spread or min(v.bid_size, v.ask_size) < p.min_touch:
            return _HOLD
        direction = _flow(obs.features, p)
        if not direction:
            return _HOLD
        return _BUY_YES if direction > 0 else _BUY_NO


class FlowEntry:
    """Cross at once on any two-sided book (module docstring)."""

    role: Role = "entry"

    def __init__(self, params: FlowParams | None = None) -> None:
        self.params = params or FlowParams()
        self.version = rule_version("flow_entry", self.params)

    def decide(self, obs: EntryObservation) -> EntryDecision:
        spread = obs.view.spread
        if obs.signal.direction == "hold" or obs.count <= 0 or spread is None or spread <= 0:
            return _SKIP
        return _CROSS


class FlowExit:
    """Close on reversed flow, time or the close; cancel stale entries (module docstring)."""

    role: Role = "exit"

    def __init__(self, params: FlowParams | None = None) -> None:
        self.params = params or FlowParams()
        self.version = rule_version("flow_exit", self.params)

    def decide(self, obs: ExitObservation) -> ExitDecision:
        p, position = self.params, obs.view.position
        if position:
            spread, to_close = obs.view.spread, obs.view.to_close_ns
            if spread is None or spread > p.exit_max_spread:
                return _WIDE_SPREAD
            if to_close is not None and to_close <= p.flatten_before_close_s * _NS:
                return ExitDecision("close", "near_close")
            if _flow(obs.features, p) * position < 0:
                return ExitDecision("close", "flow_reversed")
            if obs.held_ns >= p.hold_s * _NS:
                return ExitDecision("close", "max_hold")
        order = obs.entry_order
        if order is not None and order.age_ns >= p.entry_timeout_s * _NS:
            return ExitDecision("cancel", "entry_timeout")
        return _EXIT_HOLD


def flow_policies(params: FlowParams | None = None) -> dict[Role, Policy]:
    """The flow reference by role: :class:`FlowSignal`, the rule baselines' sizing, :class:`FlowEntry`,
    :class:`FlowExit`."""
    return {"signal": FlowSignal(params), "sizing": ConfidenceSizing(), "entry": FlowEntry(params),
            "exit": FlowExit(params)}
