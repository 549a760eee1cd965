"""``tape bench fidelity``: how far paper is from true, with the shipped profiles, and what calibration costs.

:func:`run_fidelity_bench` records ``sessions`` fresh fidelity sessions (or takes ``logs``), re-folds each under the
``default`` and the ``calibrated-sim`` profiles (:func:`.calibrate.refold`) and reports, for each, the passive fill
rate's error in percentage points and the PnL's error in percent (paper minus true over every session, and session by
session: the sum of ``|paper - true|`` over the sum of ``|true|``). These
sessions took no part in choosing ``calibrated-sim`` (its own campaign's seeds are in the README), so they are
held out. Then the paper matcher's orders per second under each profile (:func:`actors.bench.matcher_ops`, the same
order stream, events :data:`STEP_NS` apart so latency elapses and pacing can keep up), median of ``repeat``, and
their ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from config.profiles import SHIPPED, PaperProfile

from .calibrate import measure_with
from .report import summarize

__all__ = ["matcher_rate", "run_fidelity_bench"]

STEP_NS = 50_000_000
"""event time between the timed stream's events: an order every ~115 ms, within the basic tier's 10 orders/s, so a
pacing profile paces and neither profile piles up orders that could never be sent"""


def matcher_rate(profile: PaperProfile, *, orders: int = 20_000, repeat: int = 3) -> float:
    """The paper matcher's orders/s under ``profile`` (median of ``repeat``)."""
    from actors.bench import book_stream, matcher_ops

    stream = book_stream(orders * 2, markets=16, seed=1)
    return statistics.median(
        matcher_ops(stream, orders, step_ns=STEP_NS, latency_ns=profile.latency_ms * 1_000_000,
                    queue_model=profile.queue_model, cancel_ahead_pct=profile.cancel_ahead_pct,
                    pacing=None if profile.pacing == "none" else profile.pacing)
        for _ in range(repeat))


def run_fidelity_bench(sessions: Sequence[tuple[str, Sequence]], *, repeat: int = 3,
                       say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """The figures (module docstring) of recorded fidelity ``sessions`` (``(log, records)`` pairs)."""
    out: dict[str, object] = {"sessions": len(sessions), "logs": [log for log, _ in sessions]}
    for name in ("default", "calibrated-sim"):
        s = summarize(measure_with(sessions, SHIPPED[name]))
        key = "calibrated" if name == "calibrated-sim" else "default"
        out[f"fill_rate_error_pp_{key}"] = None if s.fill_rate_error_pp is None else round(s.fill_rate_error_pp, 3)
        out[f"pnl_error_pct_{key}"] = None if s.pnl_error_pct is None else round(s.pnl_error_pct, 2)
        out[f"pnl_abs_error_pct_{key}"] = None if s.pnl_abs_error_pct is None else round(s.pnl_abs_error_pct, 2)
        out["pnl_true"], out[f"pnl_paper_{key}"] = round(s.pnl_true, 2), round(s.pnl_paper, 2)
        rate = s.overall.true.passive_fill_rate
        out["passive_fill_rate_true"] = None if rate is None else round(rate, 5)
        rate = s.overall.paper.passive_fill_rate
        out[f"passive_fill_rate_paper_{key}"] = None if rate is None else round(rate, 5)
        say(f"{name}: fill rate error {out[f'fill_rate_error_pp_{key}']} pp, PnL error {out[f'pnl_error_pct_{key}']} % "
            f"(true ${s.pnl_true:,.2f}, paper ${s.pnl_paper:,.2f})")
    default, calibrated = matcher_rate(SHIPPED["default"], repeat=repeat), matcher_rate(SHIPPED["calibrated-sim"], repeat=repeat)
    out["matcher_ops_default"], out["matcher_ops_calibrated"] = round(default), round(calibrated)
    out["matcher_ops"] = round(calibrated / default, 3)
    out["calibrated_profile"] = SHIPPED["calibrated-sim"].text()
    say(f"matcher orders/s: default {default:,.0f}, calibrated {calibrated:,.0f} (ratio {calibrated / default:.3f})")
    return out
