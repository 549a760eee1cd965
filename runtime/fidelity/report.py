"""Fidelity figures: per session, per order kind and per market, paper beside true, and their differences with
confidence intervals over sessions.

:func:`figures` turns one :class:`~.measure.SessionMeasure` (or a group of its orders) into :class:`Figures`;
:func:`summarize` puts several sessions' figures together: each metric's paper and true values over all the orders,
and the paper-minus-true difference per session with a 95% confidence interval (Student's t over sessions; none
from one session). :func:`render` prints it; :func:`plot` draws paper against true cumulative PnL.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from ..units import MONEY_SCALE
from .measure import KINDS, MARKOUT_S, PASSIVE_KINDS, Outcome, SessionMeasure

__all__ = ["METRICS", "Figures", "Interval", "Summary", "figures", "plot", "render", "summarize"]

METRICS = ("passive_fill_rate", "first_fill_s", "queue_error", "slippage", "adverse_selection", "pnl")
"""passive fill rate (share of ordered contracts), seconds to the first fill, queue ahead paper - true (contracts),
fill price against the decision's mid (1/10,000 dollar per contract, positive costs us), the mid's move against
us over MARKOUT_S after a fill (same unit), PnL (dollars)"""

_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


class Side(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One side's figures (None: nothing to measure, e.g. no passive orders)."""

    passive_fill_rate: float | None = None
    first_fill_s: float | None = None
    slippage: float | None = None
    adverse_selection: float | None = None
    pnl: float | None = None
    filled: int = 0  # contracts (1/100)


class Figures(msgspec.Struct, kw_only=True):
    orders: int
    passive_orders: int
    paper: Side
    true: Side
    queue_error: float | None = None  # mean paper - true ahead, contracts
    queue_abs_error: float | None = None
    queue_samples: int = 0

    def diff(self, metric: str) -> float | None:
        if metric == "queue_error":
            return self.queue_error
        p, t = getattr(self.paper, metric), getattr(self.true, metric)
        return None if p is None or t is None else p - t


class Interval(msgspec.Struct, kw_only=True):
    mean: float
    low: float | None = None
    high: float | None = None
    n: int = 1


class Summary(msgspec.Struct, kw_only=True):
    sessions: int
    overall: Figures
    by_kind: dict[str, Figures]
    by_market: dict[str, Figures]
    differences: dict[str, Interval]  # metric -> paper - true over sessions
    fill_rate_error_pp: float | None  # paper - true passive fill rate, percentage points, over every order
    pnl_error_pct: float | None  # (paper - true) / |true| PnL, percent, over every session's sum
    pnl_abs_error_pct: float | None  # sum over sessions of |paper - true| / sum of |true|, percent: no cancelling out
    pnl_true: float
    pnl_paper: float


def figures(outcomes: Sequence[Outcome], measures: Sequence[SessionMeasure],
            pnl: tuple[int, int] | None = None) -> Figures:
    """The figures of ``outcomes`` (each fill's markout from its own session's mids, ``measures``); ``pnl`` =
    (true, paper) micro-dollars."""
    sessions = {m.log: m for m in measures}
    passive = [o for o in outcomes if o.kind in PASSIVE_KINDS]
    queue = [q for o in outcomes for q in o.queue]
    sides = {}
    for side in ("paper", "true"):
        ordered = sum(o.count for o in passive)
        rate = sum(o.filled(side) for o in passive) / ordered if ordered else None
        firsts = [t for o in outcomes if (t := o.first_fill_s(side)) is not None]
        slip_n = slip = adv_n = adv = 0
        for o in outcomes:
            sign = 1 if o.side == "bid" else -1
            for f in getattr(o, side):
                if o.mid2 is not None:
                    slip += sign * (2 * f.price - o.mid2) * f.count
                    slip_n += 2 * f.count
                sm = sessions.get(o.session)
                if sm is not None:
                    before, after = sm.mid2_at(o.market, f.ts_ns), sm.mid2_at(o.market, f.ts_ns + int(MARKOUT_S * 1e9))
                    if before is not None and after is not None:
                        adv += -sign * (after - before) * f.count
                        adv_n += 2 * f.count
        sides[side] = Side(passive_fill_rate=rate, first_fill_s=sum(firsts) / len(firsts) if firsts else None,
                           slippage=slip / slip_n if slip_n else None, adverse_selection=adv / adv_n if adv_n else None,
                           pnl=None if pnl is None else (pnl[1] if side == "paper" else pnl[0]) / MONEY_SCALE,
                           filled=sum(o.filled(side) for o in outcomes))
    return Figures(orders=len(outcomes), passive_orders=len(passive), paper=sides["paper"], true=sides["true"],
                   queue_error=sum(p - t for p, t in queue) / len(queue) / 100 if queue else None,
                   queue_abs_error=sum(abs(p - t) for p, t in queue) / len(queue) / 100 if queue else None,
                   queue_samples=len(queue))


def interval(values: Sequence[float]) -> Interval | None:
    """Mean and 95% confidence interval (Student's t) of per-session values; None if there are none."""
    if not values:
        return None
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean=mean, n=1)
    sd = statistics.stdev(values)
    t = _T95.get(n - 1) or next((v for k, v in sorted(_T95.items(), reverse=True) if k <= n - 1), 1.96)
    half = t * sd / math.sqrt(n)
    return Interval(mean=mean, low=mean - half, high=mean + half, n=n)


def summarize(measures: Sequence[SessionMeasure]) -> Summary:
    """Several sessions' figures together (module docstring)."""
    every = [o for m in measures for o in m.outcomes]
    per_session = [figures(m.outcomes, [m], (m.pnl_true, m.pnl_paper)) for m in measures]
    pnl_true = sum(m.pnl_true for m in measures)
    pnl_paper = sum(m.pnl_paper for m in measures)
    overall = _pooled(measures, lambda o: True, (pnl_true, pnl_paper))
    by_kind = {k: f for k in KINDS if (f := _pooled(measures, lambda o, k=k: o.kind == k, None)).orders}
    markets = sorted({o.market for o in every})
    by_market = {mk: _pooled(measures, lambda o, mk=mk: o.market == mk,
                             (sum(m.pnl_markets.get(mk, (0, 0))[0] for m in measures),
                              sum(m.pnl_markets.get(mk, (0, 0))[1] for m in measures))) for mk in markets}
    differences = {}
    for metric in METRICS:
        values = [d for f in per_session if (d := f.diff(metric)) is not None]
        if (iv := interval(values)) is not None:
            differences[metric] = iv
    rate = overall.diff("passive_fill_rate")
    return Summary(sessions=len(measures), overall=overall, by_kind=by_kind, by_market=by_market,
                   differences=differences, fill_rate_error_pp=None if rate is None else 100 * rate,
                   pnl_error_pct=100 * (pnl_paper - pnl_true) / abs(pnl_true) if pnl_true else None,
                   pnl_abs_error_pct=(100 * sum(abs(m.pnl_paper - m.pnl_true) for m in measures)
                                      / sum(abs(m.pnl_true) for m in measures)) if any(m.pnl_true for m in measures) else None,
                   pnl_true=pnl_true / MONEY_SCALE, pnl_paper=pnl_paper / MONEY_SCALE)


def _pooled(measures: Sequence[SessionMeasure], keep: Callable[[Outcome], bool],
            pnl: tuple[int, int] | None) -> Figures:
    """Figures over the kept orders of every session."""
    return figures([o for m in measures for o in m.outcomes if keep(o)], measures, pnl)


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def render(s: Summary, *, title: str = "") -> str:
    """The summary as text: the overall figures, then per order kind and per market."""
    lines = [title] if title else []
    lines.append(f"{s.sessions} session(s), {s.overall.orders} orders ({s.overall.passive_orders} passive)")
    lines.append(f"{'':24}{'paper':>12}{'true':>12}{'paper-true':>14}   95% CI over sessions")
    rows = (("passive fill rate %", "passive_fill_rate", 100.0, ".1f"), ("first fill (s)", "first_fill_s", 1.0, ".2f"),
            ("slippage (¢/contract)", "slippage", 0.01, ".3f"), (f"adverse sel. {MARKOUT_S:g}s (¢)", "adverse_selection", 0.01, ".3f"),
            ("PnL ($)", "pnl", 1.0, ",.2f"))
    for label, metric, scale, spec in rows:
        p, t = getattr(s.overall.paper, metric), getattr(s.overall.true, metric)
        d = None if p is None or t is None else (p - t) * scale
        iv = s.differences.get(metric)
        ci = "" if iv is None or iv.low is None else f"[{iv.low * scale:{spec}}, {iv.high * scale:{spec}}]"
        lines.append(f"{label:24}{_fmt(None if p is None else p * scale, spec):>12}{_fmt(None if t is None else t * scale, spec):>12}"
                     f"{_fmt(d, spec):>14}   {ci}")
    iv = s.differences.get("queue_error")
    lines.append(f"{'queue ahead (contracts)':24}{'':>24}{_fmt(s.overall.queue_error, '.1f'):>14}   "
                 + ("" if iv is None or iv.low is None else f"[{iv.low:.1f}, {iv.high:.1f}]")
                 + f"  mean |error| {_fmt(s.overall.queue_abs_error, '.1f')} over {s.overall.queue_samples} reports")
    lines.append(f"fill_rate_error_pp {_fmt(s.fill_rate_error_pp, '+.2f')}   pnl_error_pct {_fmt(s.pnl_error_pct, '+.1f')}"
                 f"   (per session, |paper - true| over |true|: {_fmt(s.pnl_abs_error_pct, '.1f')} %)")
    for heading, groups in (("by order kind", s.by_kind), ("by market", s.by_market)):
        lines.append(f"{heading}:{'':14}{'orders':>8}{'fill% paper':>13}{'fill% true':>12}{'filled paper':>14}{'filled true':>13}"
                     f"{'queue err':>11}{'PnL $ paper':>13}{'PnL $ true':>12}")
        for name, f in groups.items():
            rp, rt = f.paper.passive_fill_rate, f.true.passive_fill_rate
            lines.append(f"  {name:22}{f.orders:>8}{_fmt(None if rp is None else 100 * rp, '.1f'):>13}"
                         f"{_fmt(None if rt is None else 100 * rt, '.1f'):>12}{f.paper.filled / 100:>14,.0f}"
                         f"{f.true.filled / 100:>13,.0f}{_fmt(f.queue_error, '.1f'):>11}"
                         f"{_fmt(f.paper.pnl, ',.2f'):>13}{_fmt(f.true.pnl, ',.2f'):>12}")
    return "\n".join(lines)


def plot(measures: Sequence[SessionMeasure], path: str | Path, *, title: str = "paper vs true PnL") -> Path:
    """Paper against true cumulative PnL, one pair of lines per session, to a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for i, m in enumerate(measures):
        color = f"C{i % 10}"
        xs = [c[0] for c in m.curve]
        ax.plot(xs, [c[1] / MONEY_SCALE for c in m.curve], color=color, lw=1.6,
                label=f"true (seed {m.spec.seed})" if len(measures) <= 8 else None)
        ax.plot(xs, [c[2] / MONEY_SCALE for c in m.curve], color=color, lw=1.2, ls="--",
                label=f"paper (seed {m.spec.seed})" if len(measures) <= 8 else None)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("seconds into the session")
    ax.set_ylabel("PnL, $ (marked at the mid, net of fees)")
    ax.set_title(f"{title} — solid: true (local exchange), dashed: paper matcher")
    if len(measures) <= 8:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
