"""Evaluation behind ``tape eval``: policies side by side on the same held-out tapes.

Every tape is played once per policy set as a paper session of that market (:class:`~policies.episode.Episode`,
every role answered by the policies: a backtest through the runtime's own machines, with its latency,
queue model and fees). Per policy set, over all tapes:

* ``pnl`` — total marked PnL net of fees, dollars; ``pnl_mean`` / ``pnl_std`` per tape;
* ``sharpe`` — ``pnl_mean / pnl_std`` over the tapes (per episode, not annualized; 0 if no spread);
* ``max_drawdown`` — the deepest fall of the marked value from its running peak within one tape, dollars
  (the worst tape's);
* ``trades``, ``win_rate`` (share of trades with PnL > 0), ``fill_rate`` (contracts filled / contracts
  ordered), ``fees`` (dollars);
* ``attribution`` — the trades' PnL split into ``signal``, ``entry``, ``exit`` and ``fees``
  (:mod:`policies.attribution`), dollars; ``mean_size`` the mean trade size (sizing's part), contracts;
* ``share_of_oracle`` — ``pnl`` over the oracle's ``pnl`` when the oracle ran (``oracle=True``: the set
  :data:`ORACLE`, :mod:`policies.oracle`, which knows each synthetic tape's latent fair value) and made money;
  else None.

A policy set is a mapping of role to policy, or a function of the tape giving one (the oracle's policies know
their tape's fair-value path; every other set is the same on every tape).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import msgspec

from runtime.events import OrderFilled, OrderIntent, Role
from runtime.units import COUNT_SCALE, MONEY_SCALE

from .attribution import trades
from .base import Policy
from .data import Tape
from .episode import Episode

__all__ = ["ORACLE", "EvalResult", "PolicySet", "evaluate", "evaluate_one"]

ORACLE = "oracle"
"""the name of the oracle's set in :func:`evaluate`'s results"""

PolicySet = Mapping[Role, Policy] | Callable[[Tape], Mapping[Role, Policy]]


class EvalResult(msgspec.Struct, kw_only=True):
    """One policy set's figures over the tapes (module docstring)."""

    name: str
    versions: dict[str, str]
    tapes: int
    sessions: int
    pnl: float
    pnl_mean: float
    pnl_std: float
    sharpe: float
    max_drawdown: float
    trades: int
    win_rate: float
    fill_rate: float
    fees: float
    attribution: dict[str, float]
    mean_size: float
    per_tape: list[float]
    share_of_oracle: float | None = None


def _dollars(micros: float) -> float:
    return micros / MONEY_SCALE


def evaluate_one(name: str, policies: PolicySet, tapes: Sequence[Tape], *, cash: int,
                 latency_ms: int = 50, decide_every_ms: int = 1_000,
                 progress: Callable[[int], None] | None = None) -> EvalResult:
    """Play every tape with ``policies`` and gather the figures (module docstring)."""
    per_tape: list[float] = []
    worst = 0
    parts = {"signal": 0, "entry": 0, "exit": 0, "fees": 0}
    n_trades = wins = ordered = filled = fees = size = 0
    versions: dict[str, str] = {}
    for i, tape in enumerate(tapes):
        chosen = policies(tape) if callable(policies) else policies
        versions = versions or {r: p.version for r, p in chosen.items()}
        episode = Episode(tape, chosen, cash=cash, latency_ms=latency_ms, decide_every_ms=decide_every_ms)
        episode.log = []
        episode.track_drawdown = True
        episode.run()
        records = [r for batch in episode.log for r in batch]
        per_tape.append(_dollars(episode.value2() / 2))
        worst = max(worst, episode.max_drawdown2)
        for t in trades(records, tape.market):
            n_trades += 1
            wins += t.pnl > 0
            size += t.size
            for part in parts:
                parts[part] += getattr(t, part)
        for r in records:
            if type(r.event) is OrderIntent:
                ordered += r.event.count
            elif type(r.event) is OrderFilled:
                filled += r.event.count
                fees += r.event.fee
        if progress is not None:
            progress(i + 1)
    n = len(per_tape)
    mean = sum(per_tape) / n if n else 0.0
    std = math.sqrt(sum((x - mean) ** 2 for x in per_tape) / (n - 1)) if n > 1 else 0.0
    return EvalResult(
        name=name, versions=versions, tapes=n,
        sessions=len({t.session for t in tapes}), pnl=sum(per_tape), pnl_mean=mean, pnl_std=std,
        sharpe=mean / std if std > 0 else 0.0, max_drawdown=_dollars(worst / 2), trades=n_trades,
        win_rate=wins / n_trades if n_trades else 0.0, fill_rate=filled / ordered if ordered else 0.0,
        fees=_dollars(fees), attribution={k: _dollars(v) for k, v in parts.items()},
        mean_size=size / n_trades / COUNT_SCALE if n_trades else 0.0, per_tape=per_tape)


def evaluate(sets: Mapping[str, PolicySet], tapes: Sequence[Tape], *, cash: int, latency_ms: int = 50,
             decide_every_ms: int = 1_000, oracle: bool = False,
             say: Callable[[str], None] = lambda _: None) -> list[EvalResult]:
    """Each named policy set on the same tapes, in the order given; with ``oracle`` the oracle last, and every
    result's ``share_of_oracle`` (module docstring). Every tape must then have a fair-value sidecar
    (:class:`~policies.oracle.OracleError` names the first that has none)."""
    from .oracle import fair_path, oracle_policies

    if oracle:
        if ORACLE in sets:
            raise ValueError(f"a policy set is named {ORACLE!r}: the oracle's name")
        for tape in tapes:
            fair_path(tape)  # every sidecar there, before anything is played
        sets = {**sets, ORACLE: oracle_policies}
    out = []
    for name, policies in sets.items():
        say(f"evaluating {name} on {len(tapes)} tapes …")
        out.append(evaluate_one(name, policies, tapes, cash=cash, latency_ms=latency_ms,
                                decide_every_ms=decide_every_ms))
    if oracle:
        ceiling = out[-1].pnl
        for result in out:
            result.share_of_oracle = result.pnl / ceiling if ceiling > 0 else None
    return out
