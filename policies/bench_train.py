"""``tape bench train``: how long a default training run takes on this machine to match the ``flow`` baseline on
held-out sessions. Figures to print, never assertions; wall time is what is measured (this is no part of the core).

The run: ``flow`` (:mod:`policies.flow`) and, when every held-out tape has its fair-value sidecar, the oracle
(:mod:`policies.oracle`) play the held-out tapes once (:func:`policies.evaluate.evaluate`); then :func:`~policies.train.train`
runs the :class:`~policies.train.TrainConfig` that ``tape train`` builds with its defaults (four roles, staged, 8
environments per env runner, sampling and learning in this process) with the held-out tapes given and ``eval_every``
K: the held-out PnL of the policies as they are every K iterations and after the last.

* ``minutes_to_flow`` — wall minutes from the start of :func:`~policies.train.train` (the scaling fit and the
  algorithm's build included; Ray's start not) to the end of the first held-out measurement whose PnL is at least
  ``flow``'s, or None when none is. The held-out evaluations are part of that wall clock (the user waits for them);
  ``eval_seconds`` is their share of the whole run, timed around their passes over the held-out tapes.
* ``train_env_sps`` — env steps sampled per second of training: env steps over the training's wall seconds less
  ``eval_seconds`` (sampling, learning, the stages' rebuilds, the model's save).
* ``share_of_oracle`` — the final model's held-out PnL (``final_pnl``, measured after the last iteration) over the
  oracle's, when the oracle ran and made money; else None.
* ``curve`` — every held-out measurement: ``iteration``, ``minutes`` (as ``minutes_to_flow``), ``heldout_pnl``.

PnL is in dollars, rounded to the micro-dollar the core counts in.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runtime.units import MONEY_SCALE

from .data import Tape

__all__ = ["ENVS_PER_RUNNER", "bench_config", "run_train_bench"]

ENVS_PER_RUNNER = 8
"""``tape train``'s ``--envs-per-runner`` default"""
CASH = 1_000 * MONEY_SCALE
"""``tape train``'s and ``tape eval``'s ``--cash`` default (micro-dollars per episode)"""


def bench_config(data: Sequence[str], *, iterations: int = 30, eval_every: int = 5, seed: int = 0,
                 train_batch: int = 4_000) -> Any:
    """The :class:`~policies.train.TrainConfig` ``tape train --data DATA --iterations N --eval-every K --seed S``
    builds with its other options at their defaults (``runtime/cli/rl.py``'s ``run_train``)."""
    from .base import LEARNING
    from .train import TrainConfig

    return TrainConfig(data=tuple(data), roles=LEARNING, iterations=iterations, eval_every=eval_every, seed=seed,
                       train_batch=train_batch, envs_per_runner=ENVS_PER_RUNNER,
                       env_config={"cash": CASH, "lot": 10 * 100, "latency_ms": 50, "curriculum": 0, "max_steps": 0})


class _TimedTapes(list):
    """The held-out tapes, adding the wall time of every pass over them to :attr:`seconds`: a held-out evaluation
    plays each tape in the body of that pass, so its time is the evaluation's."""

    def __init__(self, tapes: Sequence[Tape]) -> None:
        super().__init__(tapes)
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Tape]:
        started = time.perf_counter()
        try:
            yield from super().__iter__()
        finally:
            self.seconds += time.perf_counter() - started


def _dollars(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def run_train_bench(tapes: Sequence[Tape], heldout: Sequence[Tape], *, data: Sequence[str] = ("bench",),
                    iterations: int = 30, eval_every: int = 5, seed: int = 0, train_batch: int = 4_000,
                    out: str | Path | None = None, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure of ``tape bench train`` but the machine (module docstring), training on ``tapes`` (from the
    sessions ``data`` names, as recorded in the model) and measuring on ``heldout``. The model is saved under
    ``out`` (default: a temporary directory, removed afterwards). Ray must be initialised."""
    from .evaluate import evaluate
    from .registry import load_policies
    from .train import train

    if iterations < 1 or eval_every < 1 or train_batch < 1:
        raise ValueError(f"iterations, eval_every and train_batch must be >= 1, got {iterations}, {eval_every} and "
                         f"{train_batch}")
    oracle = all(t.sidecar is not None for t in heldout)
    say(f"baselines: flow{' and the oracle' if oracle else ''} on {len(heldout)} held-out tapes …")
    baseline_started = time.perf_counter()
    results = evaluate({"flow": load_policies("flow")}, heldout, cash=CASH, oracle=oracle)
    baseline_seconds = time.perf_counter() - baseline_started
    flow_pnl = results[0].pnl
    oracle_pnl = results[1].pnl if oracle else None
    say(f"flow ${flow_pnl:+,.2f}" + (f", oracle ${oracle_pnl:+,.2f}" if oracle_pnl is not None else "")
        + f" on the held-out tapes ({baseline_seconds:.0f} s)")

    config = bench_config(data, iterations=iterations, eval_every=eval_every, seed=seed, train_batch=train_batch)
    timed = _TimedTapes(heldout)
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()

    def measured(item: dict[str, Any]) -> None:
        if item["heldout_pnl"] is not None:
            curve.append({"iteration": item["iteration"], "minutes": round((time.perf_counter() - started) / 60, 3),
                          "heldout_pnl": _dollars(item["heldout_pnl"])})

    say(f"training: {iterations} iterations of {train_batch:,} env steps, staged, {ENVS_PER_RUNNER} envs per env "
        f"runner, seed {seed}; held-out PnL every {eval_every} …")
    with tempfile.TemporaryDirectory(prefix="tape-bench-train-") as scratch:
        started = time.perf_counter()  # the clock starts here (module docstring)
        report = train(config, Path(out) if out is not None else Path(scratch) / "models", tapes=tapes,
                       heldout=timed, say=say, on_iteration=measured)
        seconds = time.perf_counter() - started
    reached = next((point for point in curve if point["heldout_pnl"] >= flow_pnl), None)
    final_pnl = curve[-1]["heldout_pnl"] if curve else None
    return {
        "minutes_to_flow": None if reached is None else reached["minutes"],
        "iterations_to_flow": None if reached is None else reached["iteration"],
        "flow_pnl": _dollars(flow_pnl),
        "oracle_pnl": _dollars(oracle_pnl),
        "final_pnl": final_pnl,
        "share_of_oracle": (final_pnl / oracle_pnl if final_pnl is not None and oracle_pnl is not None
                            and oracle_pnl > 0 else None),
        "train_env_sps": round(report.env_steps / max(seconds - timed.seconds, 1e-9)),
        "env_steps": report.env_steps,
        "iterations": report.iterations,
        "eval_every": eval_every,
        "train_batch": train_batch,
        "seed": seed,
        "minutes_total": round(seconds / 60, 3),
        "eval_seconds": round(timed.seconds, 3),
        "baseline_seconds": round(baseline_seconds, 3),
        "train_tapes": len(tapes),
        "heldout_tapes": len(heldout),
        "version": report.version,
        "curve": curve,
    }
