"""Pictures of training and evaluation, as PNG files (matplotlib, Agg backend, no display needed).

* :func:`training_curve` — a model version's training: the mean episode return of each role per iteration (a gap
  where no episode ended) and, on a second axis, the held-out PnL where it was measured. Saved with each version
  as :data:`CURVE_FILE`.
* :func:`pnl_curves` — ``tape eval --plot``: each policy set's cumulative PnL over the held-out tapes, in the order
  they were played (every set plays the same tapes in the same order), the oracle dashed when it ran.

The same input gives the same bytes: a fixed size and resolution, matplotlib's own defaults (a user's
``matplotlibrc`` is not read), and no software name or date in the file's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["CURVE_FILE", "pnl_curves", "training_curve"]

CURVE_FILE = "training.png"
"""a model version's training curve, in its version directory"""

_SIZE_IN = (8.0, 4.5)
_DPI = 100
_ROLE_ORDER = ("signal", "sizing", "entry", "exit")


class _Curve(Protocol):
    """What :func:`pnl_curves` reads of an :class:`~policies.evaluate.EvalResult`."""

    name: str
    per_tape: list[float]


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, out: Path) -> None:
    # PNG metadata: matplotlib writes its name and version as "Software" (and nothing dated); drop it so the bytes
    # depend on the picture only
    figure.savefig(out, format="png", dpi=_DPI, metadata={"Software": None})


def _style() -> Any:
    import matplotlib.style

    return matplotlib.style.context("default")  # matplotlib's defaults, whatever the user's matplotlibrc says


def _value(x: float | None) -> float:
    return math.nan if x is None or math.isnan(x) else float(x)


def _dollars(x: float) -> str:
    sign = "-" if x < 0 else "+"
    return rf"{sign}\${abs(x):,.2f}"  # an escaped dollar: two plain ones would start matplotlib's math text


def training_curve(history: Sequence[Mapping[str, Any]], out: Path) -> None:
    """Draw a training run into the PNG ``out``. Each item of ``history`` is one iteration:
    ``{"iteration": int, "returns": {role: float | None}, "heldout_pnl": float | None}`` — a role's mean episode
    return (None: no episode ended), and the held-out PnL in dollars where it was measured."""
    iterations = [int(h["iteration"]) for h in history]
    roles = sorted({r for h in history for r in h.get("returns", {})},
                   key=lambda r: (_ROLE_ORDER.index(r) if r in _ROLE_ORDER else len(_ROLE_ORDER), r))
    heldout = [(int(h["iteration"]), float(h["heldout_pnl"])) for h in history if h.get("heldout_pnl") is not None]
    with _style():
        figure = _figure()
        ax = figure.add_subplot()
        for role in roles:
            ys = [_value(h.get("returns", {}).get(role)) for h in history]
            ax.plot(iterations, ys, marker="." if len(iterations) < 50 else None, linewidth=1.5,
                    label=f"{role} return")
        ax.set_xlabel("iteration")
        ax.set_ylabel("mean episode return (reward units)")
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if heldout:
            right = ax.twinx()
            right.plot([i for i, _ in heldout], [p for _, p in heldout], color="black", linestyle="--", marker="o",
                       label="held-out PnL")
            right.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
            right.set_ylabel(r"held-out PnL (\$)")
            more, more_labels = right.get_legend_handles_labels()
            handles, labels = handles + more, labels + more_labels
        if iterations:
            ax.set_xlim(min(iterations) - 0.5, max(iterations) + 0.5)
        else:
            ax.text(0.5, 0.5, "no iterations", ha="center", va="center", transform=ax.transAxes)
        if handles:
            ax.legend(handles, labels, loc="upper left", fontsize="small")
        ax.set_title(f"Training: return per role{' and held-out PnL' if heldout else ''}, "
                     f"{len(iterations)} iteration(s)")
        _save(figure, out)


def pnl_curves(results: Sequence[_Curve], out: Path, *, oracle: str = "oracle") -> None:
    """Draw each result's cumulative PnL over the tapes (x: the tape's place in the order played, 1…n; y: dollars)
    into the PNG ``out``: one line per policy set, labelled with its name and total; the set named ``oracle``
    dashed."""
    tapes = max((len(r.per_tape) for r in results), default=0)
    with _style():
        figure = _figure()
        ax = figure.add_subplot()
        for result in results:
            total = 0.0
            ys = [0.0]
            for pnl in result.per_tape:
                total += pnl
                ys.append(total)
            style = {"color": "black", "linestyle": "--"} if result.name == oracle else {}
            ax.plot(range(len(ys)), ys, linewidth=1.5, label=f"{result.name} ({_dollars(total)})", **style)
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("held-out tape (in the order played)")
        ax.set_ylabel(r"cumulative PnL (\$, net of fees)")
        ax.set_xlim(0, max(tapes, 1))
        ax.grid(True, alpha=0.3)
        if results:
            ax.legend(loc="upper left", fontsize="small")
        ax.set_title(f"Cumulative PnL over {tapes} held-out tape(s)")
        _save(figure, out)
