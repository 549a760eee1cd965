"""The policy interface: one shape for the four roles, so a rule and a learned model are interchangeable.

The orchestrator (:mod:`actors.orchestrator`) runs the roles for one market at a time, in order:

========  =====================================================  ==========================================
role      asks                                                   decides (a small action)
========  =====================================================  ==========================================
signal    which way, if any?                                     ``hold`` / ``buy_yes`` / ``buy_no``, with a
                                                                 confidence in [0, 1]
sizing    how much, given the signal and the free cash?         a count in 1/100 contract (0 = skip)
entry     how to get in?                                         ``skip`` / ``passive`` (join our side's
                                                                 touch, post-only GTC) / ``cross`` (take the
                                                                 opposite touch, IOC)
exit      for a position or a working entry order: what now?    ``hold`` / ``close`` (IOC at the touch,
                                                                 reduce-only) / ``cancel`` (the entry order)
========  =====================================================  ==========================================

Prices and limits are the orchestrator's business, not the policy's: it turns ``passive`` and ``cross``
into the touch price, checks the grid and the cash, and logs every decision as ``PolicyDecided``.

**Observations.** Every role's observation carries two views of the same market state at decision time:

* ``features`` — the shared float32 vector of :mod:`policies.features` (layout ``FEATURE_NAMES``);
* ``view`` — the same state as exact integers (:class:`MarketView`), which rule policies may read;

plus the role's own inputs. ``obs.vector()`` is the features followed by those inputs as float32
(layout :data:`OBSERVATION_NAMES` ``[role]``): the one numeric observation a learned policy gets, in
training and live alike.

**Policies.** A policy has a ``role``, a ``version`` (recorded in every ``PolicyDecided`` it causes) and
``decide(observation) -> decision``. It must be deterministic given the observation and its version
(inference mode): no clock, no unseeded randomness, no state carried between calls. ``decide_many(observations)``
answers several at once, each exactly as ``decide`` would (the orchestrator asks a role once for all the markets of
a decision round; a policy in a Ray actor answers them in one call).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

import msgspec
import numpy as np

from policies.features import FEATURE_NAMES
from runtime.events import Role
from runtime.units import COUNT_SCALE, MONEY_SCALE, PRICE_SCALE

__all__ = [
    "OBSERVATION_NAMES",
    "ROLES",
    "EntryDecision",
    "EntryObservation",
    "EntryPolicy",
    "ExitDecision",
    "ExitObservation",
    "ExitPolicy",
    "MarketView",
    "Policy",
    "Role",
    "SignalDecision",
    "SignalObservation",
    "SignalPolicy",
    "SizingDecision",
    "SizingObservation",
    "SizingPolicy",
    "WorkingOrder",
    "decide_many",
]

ROLES: tuple[Role, ...] = ("signal", "sizing", "entry", "exit")  # the order a decision runs them in
LEARNING: tuple[Role, ...] = ROLES
"""the roles ``tape train`` trains unless told otherwise: all four. Leaving sizing the rule's was better on two data
seeds' held-out tapes and worse on a third's 64 (README, training): the learned sizing bets small"""

Direction = Literal["hold", "buy_yes", "buy_no"]
_NS = 1_000_000_000


class MarketView(msgspec.Struct, frozen=True, kw_only=True):
    """One market at decision time in exact integers: prices in 1/10,000 dollar, counts in 1/100 contract,
    money in micro-dollars, times in event-time nanoseconds."""

    market: str
    now_ns: int
    best_bid: int | None
    best_ask: int | None
    bid_size: int = 0
    """resting at the best bid"""
    ask_size: int = 0
    """resting at the best ask"""
    bid_depth: int = 0
    """resting over the top levels of the feature spec"""
    ask_depth: int = 0
    position: int = 0
    """own signed position (+YES / -NO)"""
    free_cash: int = 0
    """cash neither reserved for open orders nor committed to intents on their way to the log"""
    close_ns: int | None = None
    """the market's close time, if known"""
    history: tuple[tuple[int | None, int | None, int, int], ...] = ()
    """the market's regime samples before ``now_ns``, oldest first (:mod:`policies.features`: ``Sample``); what a
    model's regime filter reads (:mod:`policies.regimes`)"""

    @property
    def spread(self) -> int | None:
        """Best ask - best bid, or None if a side is empty."""
        return None if self.best_bid is None or self.best_ask is None else self.best_ask - self.best_bid

    @property
    def to_close_ns(self) -> int | None:
        """Time left until the close (negative past it), or None if the close is unknown."""
        return None if self.close_ns is None else self.close_ns - self.now_ns


class WorkingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One of our orders that is still working, as the exit role sees it."""

    client_order_id: str
    side: Literal["bid", "ask"]
    price: int
    count: int
    filled: int
    age_ns: int
    """event time since it was logged"""

    @property
    def remaining(self) -> int:
        return self.count - self.filled


# --- decisions ---------------------------------------------------------------------------------------
class SignalDecision(msgspec.Struct, frozen=True):
    """Which way to trade a flat market: ``buy_yes``, ``buy_no`` (sell YES) or ``hold``."""

    direction: Direction
    confidence: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"signal confidence must lie in [0, 1], got {self.confidence!r}")

    @property
    def sign(self) -> int:
        """+1 for buy_yes, -1 for buy_no, 0 for hold."""
        return {"buy_yes": 1, "buy_no": -1}.get(self.direction, 0)


class SizingDecision(msgspec.Struct, frozen=True):
    """How many to buy, in 1/100 contract; 0 skips the entry."""

    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"sizing count must be >= 0, got {self.count}")


class EntryDecision(msgspec.Struct, frozen=True):
    """``passive``: join our side's touch (post-only GTC); ``cross``: take the opposite touch (IOC); ``skip``."""

    action: Literal["skip", "passive", "cross"]


class ExitDecision(msgspec.Struct, frozen=True):
    """``close`` the position (IOC at the touch), ``cancel`` the working entry order, or ``hold``.

    ``reason`` names the rule that fired (``take_profit``, ``stop_loss``…); when set it is what the log
    records as the action, so the log says why, not only what.
    """

    action: Literal["hold", "close", "cancel"]
    reason: str = ""

    @property
    def label(self) -> str:
        return self.reason or self.action


# --- observations --------------------------------------------------------------------------------------
def _vector(features: np.ndarray, *extra: float) -> np.ndarray:
    return np.concatenate((features, np.array(extra, dtype=np.float32))) if extra else features


class SignalObservation(msgspec.Struct, frozen=True, kw_only=True):
    """What the signal role sees: the market, nothing else."""

    view: MarketView
    features: np.ndarray

    def vector(self) -> np.ndarray:
        return _vector(self.features)


class SizingObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The market, the signal, and what one 1/100 contract can cost at worst (price plus taker fee, in
    micro-dollars, at the crossing price: no entry pays more) and the cash the market already ties up."""

    view: MarketView
    features: np.ndarray
    signal: SignalDecision
    unit_cost: int
    exposure: int = 0

    def vector(self) -> np.ndarray:
        per_contract = COUNT_SCALE / MONEY_SCALE
        return _vector(self.features, self.signal.sign, self.signal.confidence, self.unit_cost * per_contract,
                       self.exposure / MONEY_SCALE)


class EntryObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The market, the signal and the size chosen."""

    view: MarketView
    features: np.ndarray
    signal: SignalDecision
    count: int

    def vector(self) -> np.ndarray:
        return _vector(self.features, self.signal.sign, self.signal.confidence, self.count / COUNT_SCALE)


class ExitObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The market, the position's cost basis (YES leg, as :mod:`actors.positions` keeps it) and age, and the
    working entry order if there is one."""

    view: MarketView
    features: np.ndarray
    cost_basis: int = 0
    held_ns: int = 0
    entry_order: WorkingOrder | None = None

    @property
    def exit_price(self) -> int | None:
        """Where an IOC close would trade: the best bid for a YES position, the best ask for a NO one."""
        position = self.view.position
        return self.view.best_bid if position > 0 else self.view.best_ask if position < 0 else None

    @property
    def unrealized(self) -> int | None:
        """The position's PnL if closed at :attr:`exit_price` (micro-dollars, before fees), or None."""
        price = self.exit_price
        return None if price is None else self.view.position * price - self.cost_basis

    @property
    def unrealized_at_mid2(self) -> int:
        """Twice the position's PnL marked at the mid (exact: the mid may fall between ticks); 0 without a mid."""
        v = self.view
        if v.best_bid is None or v.best_ask is None:
            return 0
        return v.position * (v.best_bid + v.best_ask) - 2 * self.cost_basis

    def vector(self) -> np.ndarray:
        position, order = self.view.position, self.entry_order
        average = self.cost_basis / position / PRICE_SCALE if position else 0.0
        unrealized = self.unrealized
        return _vector(self.features, average, 0.0 if unrealized is None else unrealized / MONEY_SCALE,
                       self.held_ns / _NS, float(order is not None), 0.0 if order is None else order.age_ns / _NS,
                       0.0 if order is None else order.remaining / COUNT_SCALE)


OBSERVATION_NAMES: dict[Role, tuple[str, ...]] = {
    "signal": FEATURE_NAMES,
    "sizing": (*FEATURE_NAMES, "direction", "confidence", "unit_cost", "exposure"),
    "entry": (*FEATURE_NAMES, "direction", "confidence", "size"),
    "exit": (*FEATURE_NAMES, "avg_price", "unrealized", "held_s", "entry_working", "entry_age_s", "entry_remaining"),
}
"""Each role's ``obs.vector()`` layout: the features, then its own inputs (dollars, contracts, seconds;
``direction`` is +1 buy_yes / -1 buy_no)."""


# --- the interface -------------------------------------------------------------------------------------
O_contra = TypeVar("O_contra", contravariant=True)
D_co = TypeVar("D_co", covariant=True)


class Policy(Protocol[O_contra, D_co]):
    """A policy for one role: deterministic given the observation and ``version``."""

    @property
    def role(self) -> Role: ...

    @property
    def version(self) -> str:
        """The rule or model version, recorded in every ``PolicyDecided`` this policy causes."""
        ...

    def decide(self, obs: O_contra, /) -> D_co: ...

    def decide_many(self, observations: Sequence[O_contra], /) -> list[D_co]:
        """The decisions for several observations at once (the markets of one decision round), in order: exactly
        ``[decide(o) for o in observations]``, which is what this default does. A policy hosted elsewhere answers
        them in one call (:mod:`actors.policy_actor`)."""
        return [self.decide(o) for o in observations]


def decide_many(policy: Policy, observations: Sequence, /) -> list:
    """``policy.decide_many(observations)``, or for a policy without it (one that does not subclass :class:`Policy`,
    as a rule written against the protocol), its ``decide`` of each in turn."""
    many = getattr(policy, "decide_many", None)
    return list(many(observations)) if many is not None else [policy.decide(o) for o in observations]


SignalPolicy = Policy[SignalObservation, SignalDecision]
SizingPolicy = Policy[SizingObservation, SizingDecision]
EntryPolicy = Policy[EntryObservation, EntryDecision]
ExitPolicy = Policy[ExitObservation, ExitDecision]
