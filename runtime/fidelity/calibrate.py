"""Calibration: the paper matcher's settings that err least against the true queue, on recorded fidelity sessions.

The shadow execution is a deterministic fold of the log (:mod:`actors.shadow`), so a recorded fidelity session can
be re-folded under any other paper settings without the exchange: :func:`refold` gives the fills and queue
positions the paper matcher would have logged with ``profile``; with the settings the session ran with, it
regenerates the log's own shadow events exactly (a test says so).

:func:`calibrate` tries every combination of ``grid`` (parameter -> values; the parameters are
:data:`config.profiles.PARAMETERS`, an unknown one is a :class:`CalibrationError`) on the *training* sessions and
keeps the one whose :func:`error` is smallest: the passive fill rate's error in percentage points (absolute, over the
sessions pooled) plus the PnL's error in percent of the true PnL's size, session by session (the sum over sessions of
``|paper - true|`` over the sum of ``|true|``: one session's overestimate cannot cancel another's underestimate). It then reports the chosen and
the default settings on the *held-out* sessions, which took no part in the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import msgspec

from actors.fees import KalshiFees
from actors.shadow import ShadowExecution
from config.profiles import PARAMETERS, SHIPPED, PaperProfile
from runtime.events import QueuePositionReported, Record, ShadowFilled, ShadowQueued

from ..topology import SHADOW_TYPES
from .measure import SessionMeasure, measure
from .report import Summary, summarize

__all__ = ["Calibration", "CalibrationError", "Trial", "calibrate", "error", "parse_grid", "refold"]

_MS = 1_000_000


class CalibrationError(ValueError):
    """A calibration that cannot run: the message names the parameter or value."""


class Trial(msgspec.Struct, kw_only=True):
    profile: PaperProfile
    error: float
    fill_rate_error_pp: float | None
    pnl_error_pct: float | None
    pnl_abs_error_pct: float | None


class Calibration(msgspec.Struct, kw_only=True):
    grid: dict[str, list[str | int]]
    train: list[str]  # logs
    held_out: list[str]
    trials: list[Trial]  # every combination, best first
    chosen: PaperProfile
    train_chosen: Summary
    train_default: Summary
    held_out_chosen: Summary | None
    held_out_default: Summary | None


def parse_grid(items: Sequence[str]) -> dict[str, tuple[object, ...]]:
    """``["latency_ms=0,25,50", "queue_model=proportional"]`` -> the grid, the others at their default values;
    raises :class:`CalibrationError` for an unknown parameter or a value it cannot take."""
    grid = dict(PARAMETERS)
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip()
        if not eq or not values.strip():
            raise CalibrationError(f"--grid {item!r}: expected PARAMETER=VALUE[,VALUE...], e.g. latency_ms=0,25,50")
        if name not in PARAMETERS:
            raise CalibrationError(f"--grid {item!r}: unknown parameter {name!r}; a calibration searches "
                                   f"{', '.join(sorted(PARAMETERS))}")
        parsed = []
        for text in values.split(","):
            text = text.strip()
            value: object = int(text) if isinstance(PARAMETERS[name][0], int) and text.lstrip("-").isdigit() else text
            try:
                msgspec.convert({name: value}, PaperProfile)
            except msgspec.ValidationError as exc:
                raise CalibrationError(f"--grid {item!r}: {name} = {text!r} is not allowed ({exc})") from None
            parsed.append(value)
        grid[name] = tuple(dict.fromkeys(parsed))
    return grid


def refold(records: Sequence[Record], profile: PaperProfile) -> tuple[list[ShadowFilled], dict[int, tuple[int, int]]]:
    """The shadow execution of a fidelity session's records under ``profile``: its fills and its queue positions at
    each ``QueuePositionReported`` (``seq -> (ahead, rested)``)."""
    from ..topology import spec_from_log

    spec = spec_from_log(records)
    machine = ShadowExecution(KalshiFees().trade_fee, prefix=spec.prefix, latency_ns=profile.latency_ms * _MS,
                              queue_model=profile.queue_model, cancel_ahead_pct=profile.cancel_ahead_pct,
                              pacing=None if profile.pacing == "none" else profile.pacing)
    fills: list[ShadowFilled] = []
    queue: dict[int, tuple[int, int]] = {}
    types = SHADOW_TYPES
    for r in records:
        if type(r.event) not in types:
            continue
        for e in machine.handle(r.seq, r.ts_ns, r.event):
            if type(e) is ShadowFilled:
                fills.append(e)
            elif type(e) is ShadowQueued and type(r.event) is QueuePositionReported:
                queue[r.seq] = (e.ahead, e.rested)
    return fills, queue


def _profile(values: dict[str, object]) -> PaperProfile:
    """A grid point as a profile (``cancel_ahead_pct`` only means something with ``queue_model = "share"``)."""
    if values.get("queue_model") != "share":
        values = {**values, "cancel_ahead_pct": 0}
    return msgspec.convert(values, PaperProfile)


def measure_with(sessions: Sequence[tuple[str, Sequence[Record]]], profile: PaperProfile) -> list[SessionMeasure]:
    out = []
    for log, records in sessions:
        fills, queue = refold(records, profile)
        out.append(measure(records, log=log, paper=fills, paper_queue=queue))
    return out


def error(summary: Summary) -> float:
    """What a calibration minimizes (module docstring)."""
    rate = abs(summary.fill_rate_error_pp) if summary.fill_rate_error_pp is not None else 0.0
    pnl = summary.pnl_abs_error_pct if summary.pnl_abs_error_pct is not None else 0.0
    return rate + pnl


def calibrate(train: Sequence[tuple[str, Sequence[Record]]], held_out: Sequence[tuple[str, Sequence[Record]]],
              grid: Mapping[str, Sequence[object]],
              progress: Callable[[int, int, Trial], None] = lambda i, n, t: None) -> Calibration:
    """Search ``grid`` on ``train`` (``(log, records)`` pairs), report on ``held_out`` (module docstring)."""
    if not train:
        raise CalibrationError("a calibration needs at least one training session")
    names = sorted(grid)
    profiles = list(dict.fromkeys(_profile(dict(zip(names, values, strict=True)))
                                  for values in itertools.product(*(grid[n] for n in names))))
    trials: list[tuple[Trial, Summary]] = []
    for i, profile in enumerate(profiles, 1):
        s = summarize(measure_with(train, profile))
        trial = Trial(profile=profile, error=error(s), fill_rate_error_pp=s.fill_rate_error_pp, pnl_error_pct=s.pnl_error_pct,
                      pnl_abs_error_pct=s.pnl_abs_error_pct)
        trials.append((trial, s))
        progress(i, len(profiles), trial)
    trials.sort(key=lambda ts: (ts[0].error, msgspec.json.encode(ts[0].profile)))
    chosen, train_chosen = trials[0]
    default = SHIPPED["default"]
    return Calibration(
        grid={n: list(grid[n]) for n in names}, train=[log for log, _ in train], held_out=[log for log, _ in held_out],  # type: ignore[misc]
        trials=[t for t, _ in trials], chosen=chosen.profile, train_chosen=train_chosen,
        train_default=summarize(measure_with(train, default)),
        held_out_chosen=summarize(measure_with(held_out, chosen.profile)) if held_out else None,
        held_out_default=summarize(measure_with(held_out, default)) if held_out else None)
