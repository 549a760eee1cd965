"""``oracle``: the ceiling on synthetic data — policies that know the latent fair value the order-flow model drew.

``tape synth`` writes each session's fair-value paths beside its log (:data:`runtime.venues.sim.session.FAIR_FILE`,
never in it); a :class:`~policies.data.Tape` names that file as its ``sidecar``. ``tape eval --oracle`` plays
these policies on every tape like any other set — the same execution, latency, queue model and fees — the one
difference being what they know: the fair value at the decision's event time (``obs.view.now_ns``). No other
policy reads the sidecar. With ``fair`` the fair value in 1/10,000 dollar (rounded: integers from there on) and ``fee`` Kalshi's taker fee of one
contract at the price:

* **signal** (:class:`OracleSignal`): on a two-sided book, ``buy_yes`` when ``fair - ask - fee >= entry_margin``
  (3¢), ``buy_no`` when ``bid - fair - fee >= entry_margin``, else ``hold``; confidence 1.
* **sizing**: the rule baselines' :class:`~policies.rules.ConfidenceSizing` (as ``flow``'s): the same budget at
  confidence 1, so the share of the oracle compares signals, not sizes.
* **entry**: ``cross`` (:class:`~policies.flow.FlowEntry`): the edge is there now.
* **exit** (:class:`OracleExit`): close on a two-sided book of spread at most ``max_spread`` (10¢; else hold,
  ``wide_spread``) when: ``near_close`` within ``flatten_before_close_s`` (60 s) of the close (the settlement is a
  coin flip on the fair value: its noise is no skill); ``edge_gone`` when the mid has taken in the fair value and
  gone past it, ``(mid - fair) × side >= exit_past`` (1¢; side +1 YES, -1 NO), or the fair value moved against
  the position that far. A working entry order older than 5 s is canceled. Else ``hold``.

Its PnL is the reference every evaluation divides by (``share_of_oracle``): how much of the edge the data held a
policy took, at the same execution. It is a ceiling for these rules of execution, not a bound on every strategy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import msgspec

from actors.fees import KalshiFees
from runtime.events import Role
from runtime.units import COUNT_SCALE, PRICE_MAX
from runtime.venues.sim.session import FAIR_FILE, FairPath, read_fair

from .base import ExitDecision, ExitObservation, Policy, SignalDecision, SignalObservation
from .data import Tape
from .flow import FlowEntry
from .rules import ConfidenceSizing, rule_version

__all__ = ["OracleError", "OracleExit", "OracleParams", "OracleSignal", "fair_path", "oracle_policies"]

_NS = 1_000_000_000
_FEES = KalshiFees()
_HOLD = SignalDecision("hold")
_BUY_YES = SignalDecision("buy_yes", 1.0)
_BUY_NO = SignalDecision("buy_no", 1.0)
_EXIT_HOLD = ExitDecision("hold")
_WIDE_SPREAD = ExitDecision("hold", "wide_spread")


class OracleError(ValueError):
    """A tape whose session has no fair-value sidecar, or whose sidecar lacks its market."""


class OracleParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The oracle's parameters (module docstring): prices in 1/10,000 dollar, times in seconds."""

    entry_margin: int = 300
    """least edge over the touch and the taker fee, per contract, to enter (3¢)"""
    exit_past: int = 100
    """close once the mid is this far past the fair value in the position's favour (1¢)"""
    max_spread: int = 1_000
    """widest spread a close crosses (10¢)"""
    flatten_before_close_s: int = 60
    """close when the market closes within this long"""
    entry_timeout_s: int = 5
    """cancel a working entry order this long after it was placed"""


def _fee(market: str, price: int) -> int:
    """Kalshi's taker fee of one contract at ``price``, in 1/10,000 dollar (rounded up)."""
    micros = _FEES.trade_fee(market, price, COUNT_SCALE, True)
    return -(-micros // 100)


class OracleSignal:
    """Enter when the fair value is beyond the touch by more than the fee and a margin (module docstring)."""

    role: Role = "signal"

    def __init__(self, fair: FairPath, params: OracleParams | None = None) -> None:
        self.fair = fair
        self.params = params or OracleParams()
        self.version = rule_version("oracle_signal", self.params)

    def decide(self, obs: SignalObservation) -> SignalDecision:
        v = obs.view
        bid, ask = v.best_bid, v.best_ask
        if bid is None or ask is None or ask <= bid:
            return _HOLD
        fair = round(self.fair.at(v.now_ns) * PRICE_MAX)
        margin = self.params.entry_margin
        if fair - ask - _fee(v.market, ask) >= margin:
            return _BUY_YES
        if bid - fair - _fee(v.market, bid) >= margin:
            return _BUY_NO
        return _HOLD


class OracleExit:
    """Close when the mid has taken in the fair value, or before the close (module docstring)."""

    role: Role = "exit"

    def __init__(self, fair: FairPath, params: OracleParams | None = None) -> None:
        self.fair = fair
        self.params = params or OracleParams()
        self.version = rule_version("oracle_exit", self.params)

    def decide(self, obs: ExitObservation) -> ExitDecision:
        p, v = self.params, obs.view
        if v.position:
            spread, to_close = v.spread, v.to_close_ns
            if spread is None or spread > p.max_spread:
                return _WIDE_SPREAD
            if to_close is not None and to_close <= p.flatten_before_close_s * _NS:
                return ExitDecision("close", "near_close")
            side = 1 if v.position > 0 else -1
            fair2 = 2 * round(self.fair.at(v.now_ns) * PRICE_MAX)
            if ((v.best_bid + v.best_ask) - fair2) * side >= 2 * p.exit_past:  # type: ignore[operator]
                return ExitDecision("close", "edge_gone")
        order = obs.entry_order
        if order is not None and order.age_ns >= p.entry_timeout_s * _NS:
            return ExitDecision("cancel", "entry_timeout")
        return _EXIT_HOLD


@lru_cache(maxsize=8)
def _sidecar(path: str) -> dict[str, FairPath]:
    sidecar = read_fair(Path(path).parent)
    if sidecar is None:
        raise OracleError(f"{path}: the fair-value sidecar is gone")
    return {m.market: m for m in sidecar.markets}


def fair_path(tape: Tape) -> FairPath:
    """The fair-value path of ``tape``'s market, from its session's sidecar (module docstring)."""
    if tape.sidecar is None:
        raise OracleError(f"session {tape.session} has no fair-value sidecar ({FAIR_FILE}): only tape synth writes "
                          "one, so --oracle needs synthetic sessions")
    try:
        paths = _sidecar(tape.sidecar)
    except ValueError as exc:
        raise OracleError(str(exc)) from None
    if tape.market not in paths:
        raise OracleError(f"{tape.sidecar}: no fair-value path of {tape.market}")
    return paths[tape.market]


def oracle_policies(tape: Tape, params: OracleParams | None = None) -> dict[Role, Policy]:
    """The oracle's policies for one tape (they know its fair-value path): signal, sizing, entry, exit."""
    fair = fair_path(tape)
    return {"signal": OracleSignal(fair, params), "sizing": ConfidenceSizing(), "entry": FlowEntry(),
            "exit": OracleExit(fair, params)}
