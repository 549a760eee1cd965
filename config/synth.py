"""Settings of the local exchange's order-flow model (``[synth]``): hashed into every session like the rest.

Defined here rather than beside the model (``runtime.venues.sim.flow``, which re-exports it) so that the
settings package depends on nothing else in tape.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["FlowConfig"]

PRICE_MAX = 10_000

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
Probability = Annotated[float, Meta(gt=0, lt=1)]
Ticks = Annotated[int, Meta(ge=0, le=5_000)]
Contracts = Annotated[float, Meta(gt=0)]


class FlowConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters of the order-flow model. Prices and half-spreads are in 1/10,000 dollar, sizes in whole
    contracts, times in seconds, rates per second (before the market's activity and regime multipliers)."""

    tick: Annotated[int, Meta(ge=1, le=5_000)] = 100
    """price grid of every order (100 = whole cents, valid on every Kalshi market)"""

    # --- the latent fair value ---
    fair_min: Probability = 0.08
    """lowest initial fair value (each market starts uniform in [fair_min, fair_max])"""
    fair_max: Probability = 0.92
    """highest initial fair value"""
    volatility: NonNegative = 0.002
    """diffusion of the fair value's logit, per square-root second (0.12 per square-root hour)"""
    jump_rate: NonNegative = 1 / 900
    """news jumps per second (four an hour on average)"""
    jump_sd: NonNegative = 0.4
    """standard deviation of a jump of the logit (0.4 moves a 50% market by about 10 cents)"""

    # --- the public estimate (what the makers believe) ---
    public_lag_s: NonNegative = 45.0
    """delay after which every move of the fair value (diffusion and jumps) reaches the public estimate"""
    maker_flow_impact: NonNegative = 0.0005
    """logit move of the public estimate per square-root contract of a trade, in the taker's direction"""
    flow_memory_s: Positive = 60.0
    """time constant with which the flow-learned part of the public estimate fades"""

    # --- activity and regimes ---
    activity_sd: NonNegative = 0.7
    """spread of the markets' activity: each market's rates are scaled by exp(N(0, activity_sd))"""
    quiet_mult: Positive = 0.25
    """arrival-rate multiplier in the quiet regime"""
    burst_mult: Positive = 4.0
    """arrival-rate multiplier in the burst regime"""
    quiet_mean_s: Positive = 600.0
    """mean length of a quiet period"""
    normal_mean_s: Positive = 900.0
    """mean length of a normal period (it ends in a quiet period or, with burst_share, a burst)"""
    burst_mean_s: Positive = 90.0
    """mean length of a burst"""
    burst_share: Fraction = 0.4
    """probability that a normal period ends in a burst rather than a quiet period"""
    burst_on_jump: bool = True
    """a jump of the fair value starts a burst"""

    # --- market makers ---
    tight_share: Fraction = 0.2
    """share of markets quoted tight (the most active ones: a market's activity and its tightness are
    drawn together); the rest are wide"""
    tight_half_spread: tuple[Ticks, Ticks] = (100, 300)
    """range of the makers' half-spread on a tight market (1-3 cents: spreads of 2-6 cents)"""
    wide_half_spread: tuple[Ticks, Ticks] = (1_100, 2_500)
    """range of the makers' half-spread on a wide market (11-25 cents: spreads above 20 cents)"""
    tight_activity: Positive = 3.0
    """tight markets are this much busier"""
    makers: tuple[Annotated[int, Meta(ge=1, le=20)], Annotated[int, Meta(ge=1, le=20)]] = (1, 3)
    """range of the number of market makers per market"""
    maker_levels: Annotated[int, Meta(ge=1, le=20)] = 3
    """price levels each maker quotes per side"""
    maker_level_step: Ticks = 100
    """distance between a maker's levels (rounded up to the tick)"""
    maker_size: tuple[Contracts, Contracts] = (10.0, 200.0)
    """range of a maker's size per level (contracts; drawn per maker)"""
    maker_refresh_s: Positive = 15.0
    """mean time between a maker's routine requotes (it also requotes soon after a fill, and after news)"""
    maker_requote: Fraction = 0.25
    """a maker leaves its ladder in place until its quote would move by more than this fraction of its
    half-spread (so wide quotes move rarely; tight ones follow every tick)"""
    maker_react_s: Positive = 1.0
    """mean delay of a maker's requote after one of its orders was filled, or after news became public"""
    maker_skew: NonNegative = 0.0002
    """logit skew of a maker's quotes per contract of inventory (against the inventory)"""
    maker_skew_cap: NonNegative = 0.1
    """largest skew of a maker's quotes (logit)"""
    maker_bias_sd: NonNegative = 0.03
    """standard deviation of each maker's own fixed logit bias"""

    # --- noise traders ---
    noise_take_rate: NonNegative = 0.01
    """noise takes per second (a small IOC at or just through the touch)"""
    noise_limit_rate: NonNegative = 0.04
    """noise limit orders per second"""
    noise_improve: Fraction = 0.03
    """share of noise limit orders placed inside the spread (the rest join or sit behind the touch)"""
    noise_life_s: Positive = 120.0
    """mean life of a noise limit order before it is canceled"""
    noise_size: tuple[Contracts, NonNegative] = (5.0, 1.0)
    """(median contracts, log-normal sigma) of a noise order's size"""
    noise_accounts: Annotated[int, Meta(ge=1, le=10_000)] = 50
    """distinct noise traders (self-trade prevention applies within one)"""

    # --- informed traders ---
    informed_rate: NonNegative = 0.03
    """times per second an informed trader looks at the book"""
    informed_edge: Ticks = 100
    """the least distance between the fair value and the touch at which an informed trader takes"""
    informed_size: tuple[Contracts, NonNegative] = (8.0, 0.5)
    """(median contracts, log-normal sigma) of an informed take per edge of mispricing: the further the
    fair value is from the touch, the more they trade (so flow intensity tells how big the news is)"""
    informed_max_edges: Positive = 10.0
    """cap of that scaling, in edges"""
    informed_sweep: bool = False
    """False: an informed trader takes only at the touch, splitting its trading over time so that the
    book does not show what it knows before the news is public; True: it sweeps every level up to the
    fair value less the edge"""
    informed_campaign_s: NonNegative = 3.0
    """after a jump, informed traders also look every this many seconds on average until the news is
    public (0: no campaigns)"""

    # --- lifecycle ---
    close_min: Fraction = 0.8
    """earliest close, as a fraction of the session's duration"""
    close_max: Fraction = 0.95
    """latest close, as a fraction of the session's duration"""
    settle_after_s: Positive = 5.0
    """delay from close to determined, and from determined to settled (shortened to fit the session)"""

    def __post_init__(self) -> None:
        checks = [
            (self.fair_min <= self.fair_max, "fair_min must be <= fair_max"),
            (self.close_min <= self.close_max, "close_min must be <= close_max"),
            (PRICE_MAX % self.tick == 0, f"tick must divide {PRICE_MAX}"),
        ]
        for name in ("tight_half_spread", "wide_half_spread", "makers", "maker_size"):
            lo, hi = getattr(self, name)
            checks.append((lo <= hi, f"{name}: the low end {lo} exceeds the high end {hi}"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FlowConfig: {message}")
