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
  else None;
* ``versus`` — against a ``baseline`` set played on the same tapes (:class:`Paired`): the mean and standard error
  of the per-tape difference (this set's PnL minus the baseline's, tape by tape) and its t-statistic, ``mean /
  (sd / sqrt(n))``: paired, so what the tapes share (a market that moved, a quiet one) cancels out. Above 2, the
  set beats the baseline beyond the tapes' noise;
* ``regimes`` — with a regime model (:mod:`policies.regimes`: a trained model's own, or one ``tape eval --regimes K``
  fitted on the evaluated tapes; ``regime_model`` says which), the trades' PnL and count split by the regime in force
  when each trade's entry was decided (the filter's most probable state given the market's samples before that
  decision, as the model's policies see it): ``{"regime_0": {"pnl", "trades"}, …}``, every regime listed (0 and 0
  where none traded). It splits the trades, so it adds up to the sum of the trades' PnL, which is the set's ``pnl``:
  a tape on which nothing was traded has PnL 0 (no fill, no fee) and adds to no regime, and a trade still open at
  the tape's end is marked at the last mid as the set's PnL marks it. None without a regime model.

A policy set is a mapping of role to policy, or a function of the tape giving one (the oracle's policies know
their tape's fair-value path; every other set is the same on every tape).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import msgspec

from config.profiles import PaperProfile
from runtime.events import OrderFilled, OrderIntent, Role
from runtime.units import COUNT_SCALE, MONEY_SCALE

from .attribution import trades
from .base import Policy
from .data import Tape
from .episode import Episode
from .regimes import RegimeModel, regime_at, tape_samples

__all__ = ["ORACLE", "EvalResult", "Paired", "PolicySet", "RegimePnL", "evaluate", "evaluate_one", "paired"]

ORACLE = "oracle"
"""the name of the oracle's set in :func:`evaluate`'s results"""

PolicySet = Mapping[Role, Policy] | Callable[[Tape], Mapping[Role, Policy]]


class Paired(msgspec.Struct, kw_only=True):
    """A set against the baseline over the same tapes (module docstring: ``versus``)."""

    baseline: str
    tapes: int
    diff_mean: float
    """dollars per tape: this set's PnL minus the baseline's"""
    diff_se: float
    """the standard error of that mean (0 when the differences do not vary)"""
    t: float | None
    """``diff_mean / diff_se``; None when there is no spread (fewer than 2 tapes, or every difference the same)"""


def paired(pnl: Sequence[float], baseline: Sequence[float], name: str) -> Paired:
    """The per-tape comparison of ``pnl`` with ``baseline`` (the same tapes, in the same order)."""
    if len(pnl) != len(baseline):
        raise ValueError(f"paired: {len(pnl)} tapes against {len(baseline)} of {name}")
    diffs = [a - b for a, b in zip(pnl, baseline, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    se = sd / math.sqrt(n) if n else 0.0
    return Paired(baseline=name, tapes=n, diff_mean=mean, diff_se=se, t=mean / se if se > 0 else None)


class RegimePnL(msgspec.Struct, kw_only=True):
    """A set's trades entered in one regime (module docstring: ``regimes``)."""

    pnl: float
    """dollars"""
    trades: int


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
    versus: Paired | None = None
    regimes: dict[str, RegimePnL] | None = None
    regime_model: str | None = None
    """where ``regimes``' model came from: ``model`` (the set's own) or ``fitted`` (on the evaluated tapes)"""


def _dollars(micros: float) -> float:
    return micros / MONEY_SCALE


def evaluate_one(name: str, policies: PolicySet, tapes: Sequence[Tape], *, cash: int,
                 latency_ms: int = 50, decide_every_ms: int = 1_000,
                 progress: Callable[[int], None] | None = None, regimes: RegimeModel | None = None,
                 regime_model: str | None = None, paper: tuple[str, PaperProfile] | None = None) -> EvalResult:
    """Play every tape with ``policies`` and gather the figures (module docstring); with ``regimes``, the trades' PnL
    by regime (``regime_model`` names where the model came from)."""
    per_regime = {r: [0, 0] for r in regimes.names} if regimes is not None else None
    per_tape: list[float] = []
    worst = 0
    parts = {"signal": 0, "entry": 0, "exit": 0, "fees": 0}
    n_trades = wins = ordered = filled = fees = size = 0
    versions: dict[str, str] = {}
    for i, tape in enumerate(tapes):
        chosen = policies(tape) if callable(policies) else policies
        versions = versions or {r: p.version for r, p in chosen.items()}
        episode = Episode(tape, chosen, cash=cash, latency_ms=latency_ms, decide_every_ms=decide_every_ms, paper=paper)
        episode.log = []
        episode.track_drawdown = True
        episode.run()
        records = [r for batch in episode.log for r in batch]
        per_tape.append(_dollars(episode.value2() / 2))
        worst = max(worst, episode.max_drawdown2)
        samples = tape_samples(tape) if regimes is not None else []
        for t in trades(records, tape.market):
            if per_regime is not None and regimes is not None:
                bucket = per_regime[regimes.names[regime_at(regimes, samples, t.decided_ns)]]
                bucket[0] += t.pnl
                bucket[1] += 1
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
        mean_size=size / n_trades / COUNT_SCALE if n_trades else 0.0, per_tape=per_tape,
        regimes=None if per_regime is None else {r: RegimePnL(pnl=_dollars(p), trades=n) for r, (p, n) in per_regime.items()},
        regime_model=None if per_regime is None else regime_model)


def evaluate(sets: Mapping[str, PolicySet], tapes: Sequence[Tape], *, cash: int, latency_ms: int = 50,
             decide_every_ms: int = 1_000, oracle: bool = False, baseline: str | None = None,
             regimes: Mapping[str, RegimeModel] | None = None, fitted: RegimeModel | None = None,
             say: Callable[[str], None] = lambda _: None, paper: tuple[str, PaperProfile] | None = None) -> list[EvalResult]:
    """Each named policy set on the same tapes, in the order given; with ``oracle`` the oracle last, and every
    result's ``share_of_oracle`` (module docstring). Every tape must then have a fair-value sidecar
    (:class:`~policies.oracle.OracleError` names the first that has none). With ``baseline`` (one of the sets'
    names), every other set's ``versus`` it. ``regimes`` gives a set's own regime model (by name), ``fitted`` the one
    for every other set (fitted on these tapes): each such set's ``regimes`` breakdown."""
    from .oracle import fair_path, oracle_policies

    if baseline is not None and baseline not in sets and not (oracle and baseline == ORACLE):
        raise ValueError(f"baseline {baseline!r} is not among the policy sets ({', '.join(sets)})")
    if oracle:
        if ORACLE in sets:
            raise ValueError(f"a policy set is named {ORACLE!r}: the oracle's name")
        for tape in tapes:
            fair_path(tape)  # every sidecar there, before anything is played
        sets = {**sets, ORACLE: oracle_policies}
    out = []
    for name, policies in sets.items():
        say(f"evaluating {name} on {len(tapes)} tapes …")
        own = (regimes or {}).get(name)
        out.append(evaluate_one(name, policies, tapes, cash=cash, latency_ms=latency_ms,
                                decide_every_ms=decide_every_ms, regimes=own or fitted, paper=paper,
                                regime_model="model" if own is not None else "fitted" if fitted is not None else None))
    if oracle:
        ceiling = out[-1].pnl
        for result in out:
            result.share_of_oracle = result.pnl / ceiling if ceiling > 0 else None
    if baseline is not None:
        base = next(r for r in out if r.name == baseline)
        for result in out:
            if result is not base:
                result.versus = paired(result.per_tape, base.per_tape, baseline)
    return out
