"""Market regimes, learned: a Gaussian hidden Markov model over each market's volatility, activity and spread,
fitted on the training tapes and filtered causally for the roles' observations.

**What it sees.** Every market's :class:`~policies.features.FeatureTracker` samples it on a fixed grid of event
time (``FeatureSpec.regime_every_ns``, 10 s; :mod:`policies.features`), the same code live, in replay and in training.
Each step between two consecutive samples gives one observation of :data:`REGIME_FEATURES`:

==============  ==============================================================================================
``volatility``  ``log(1 + mean |mid change| in cents)`` over the step and the steps before it, up to
                :data:`VOLATILITY_STEPS` (6: a minute) as far as the samples go (a step without a mid at either
                end moves 0)
``activity``    ``log(1 + book updates + public trades)`` in the feature window (60 s) ending at the step's end
``spread``      ``log(1 + spread in cents)`` at the step's end (100 cents without both sides)
==============  ==============================================================================================

(The mid moves on few 10-s steps of a quiet book: one step's move alone makes a "the mid just moved" state, not a
regime; a minute's mean move is the volatility a regime has.)

**The model** (:class:`RegimeModel`): ``K`` hidden states, each a Gaussian with a diagonal covariance over those
three, and a Markov chain between them from one step to the next. :func:`fit` (Baum-Welch, scaled forward-backward
in float64 with numpy) is deterministic: the states start from quantiles (the steps sorted by the sum of their
standardised features, split into ``K`` groups of equal size: each group's means and variances), the chain from
0.9 on the diagonal; at most ``iterations`` (100) rounds, stopping when the log-likelihood per step gains less than
``tol`` (1e-6); variances are floored at 1e-3 of each feature's overall variance. The fitted states are then
**ordered canonically** by their mean volatility (then activity, then spread), lowest first: ``regime_0`` is the
calmest, so the same data gives the same labelled states. :func:`fit_regimes` fits one on tapes.

**Inference is causal** (:meth:`RegimeModel.filter`): the forward filter over the history an observation carries
(``MarketView.history``: the samples of the grid points before the decision, the last ``regime_samples`` = 36): the
last :attr:`RegimeModel.steps_filtered` (30) steps, each with its whole volatility look-back, starting from the
chain's stationary distribution (``prior``): the probability of each state at the last sample given the samples up
to it and nothing later (never Viterbi, never smoothing). Early in a tape, fewer: as the fit saw them. A bounded window makes it a pure
function of the observation: a replay from a checkpoint, on another process, computes the same probabilities.
They are rounded to multiples of 1/256 (float32): ``exp`` and ``log`` may differ in the last bit between numpy
builds, and the rounding hides such a difference unless a probability falls on a rounding boundary.

**For the roles**: a model trained with ``tape train --regimes K`` appends the K probabilities (named
``regime_0`` … ``regime_{K-1}``, :func:`regime_names`) to every role's ``obs.vector()``; they pass the scaling
unchanged (centre 0, scale 1). The regime model is saved in ``model.json`` and covered by the version's hash
(:mod:`policies.registry`); its features and grid must be this code's, else the model is refused.

**For evaluation** (:func:`regime_at`): the regime in force at an event time is the most probable state of the
filter at that time; ``tape eval`` splits each set's trades' PnL by the regime in force when each trade's entry was
decided (:mod:`policies.evaluate`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import msgspec
import numpy as np

from actors.book import OrderBook
from runtime.events import BookDelta, BookSnapshot, SeqGapDetected
from runtime.units import PRICE_SCALE

from .data import Tape
from .features import FeatureSpec, FeatureTracker, Sample

__all__ = [
    "REGIME_FEATURES",
    "VOLATILITY_STEPS",
    "RegimeFilter",
    "RegimeModel",
    "emissions",
    "fit",
    "fit_regimes",
    "regime_at",
    "regime_filter",
    "regime_names",
    "tape_samples",
]

REGIME_FEATURES: tuple[str, ...] = ("volatility", "activity", "spread")
VOLATILITY_STEPS = 6
"""the steps a step's volatility averages over (module docstring)"""
_CENTS2 = 2 * PRICE_SCALE // 100  # mid2 units per cent of mid
_CENT = PRICE_SCALE // 100
_LEVELS = 256  # the filter's probabilities are multiples of 1/_LEVELS
_LOG2PI = math.log(2 * math.pi)


def regime_names(k: int) -> tuple[str, ...]:
    """The observation names of ``k`` regime probabilities."""
    return tuple(f"regime_{i}" for i in range(k))


def emissions(history: Sequence[Sample]) -> np.ndarray:
    """One row of :data:`REGIME_FEATURES` per step between consecutive samples (module docstring), float64."""
    rows = []
    moves: list[int] = []  # per step, |mid2 change| (0 without a mid)
    for (mid_a, _, _, _), (mid_b, spread, updates, trades) in pairwise(history):
        moves.append(0 if mid_a is None or mid_b is None else abs(mid_b - mid_a))
        recent = moves[-VOLATILITY_STEPS:]
        rows.append((math.log1p(sum(recent) / len(recent) / _CENTS2), math.log1p(updates + trades),
                     math.log1p(100.0 if spread is None else spread / _CENT)))
    return np.array(rows, dtype=np.float64).reshape(-1, len(REGIME_FEATURES))


class RegimeModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fitted regime model (module docstring): ``K`` states over :data:`REGIME_FEATURES`, on the sample grid
    ``every_ns``, filtering histories of ``samples`` samples; states ordered by mean volatility."""

    features: tuple[str, ...]
    every_ns: int
    samples: int
    means: tuple[tuple[float, ...], ...]
    """per state, per feature"""
    variances: tuple[tuple[float, ...], ...]
    transitions: tuple[tuple[float, ...], ...]
    """``transitions[i][j]``: from state i to state j in one step"""
    prior: tuple[float, ...]
    """the chain's stationary distribution: where the filter starts"""
    loglik: float = 0.0
    """the fitted log-likelihood per step of the training data"""
    steps: int = 0
    """steps it was fitted on"""

    def __post_init__(self) -> None:
        k, d = len(self.prior), len(self.features)
        if (k < 1 or len(self.means) != k or len(self.variances) != k or len(self.transitions) != k
                or any(len(r) != d for r in (*self.means, *self.variances)) or any(len(r) != k for r in self.transitions)
                or min((v for r in self.variances for v in r), default=1.0) <= 0):
            raise ValueError(f"regime model: {k} states need {k} means, variances and transition rows of the right "
                             "lengths, and positive variances")

    @property
    def k(self) -> int:
        return len(self.prior)

    @property
    def names(self) -> tuple[str, ...]:
        return regime_names(self.k)

    @property
    def steps_filtered(self) -> int:
        """The steps of a full history the filter reads: those with their whole volatility look-back."""
        return max(1, self.samples - VOLATILITY_STEPS)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return _arrays(self.means, self.variances, self.transitions, self.prior)

    def filter(self, history: Sequence[Sample]) -> np.ndarray:
        """The state probabilities at the last sample of ``history`` given the samples up to it (module docstring),
        float32, rounded to multiples of 1/256."""
        means, variances, transitions, prior = self._arrays()
        rows = emissions(history[-self.samples:])[-self.steps_filtered:]
        alpha = _forward(rows, means, variances, transitions, prior)[-1]
        return (np.round(alpha * _LEVELS) / _LEVELS).astype(np.float32)

    def forward(self, rows: np.ndarray) -> np.ndarray:
        """The forward filter over a whole sequence of :data:`REGIME_FEATURES` rows, unrounded: row ``t`` the state
        probabilities given rows ``0..t`` only, (T, K) float64."""
        means, variances, transitions, prior = self._arrays()
        return _forward(np.asarray(rows, dtype=np.float64).reshape(-1, len(self.features)), means, variances,
                        transitions, prior)[1:]

    def state(self, history: Sequence[Sample]) -> int:
        """The most probable state of :meth:`filter` (the lowest on a tie)."""
        return int(np.argmax(self.filter(history)))


@lru_cache(maxsize=16)
def _arrays(*tables: tuple) -> tuple[np.ndarray, ...]:
    return tuple(np.array(t, dtype=np.float64) for t in tables)


class RegimeFilter:
    """A model's filter as the roles' observations use it: remembers its last answer, so the roles of one decision
    (which share one history) filter once."""

    def __init__(self, model: RegimeModel) -> None:
        self.model = model
        self._last: tuple[Sequence[Sample] | None, np.ndarray | None] = (None, None)

    def __call__(self, history: Sequence[Sample]) -> np.ndarray:
        last, probabilities = self._last
        if last is not history or probabilities is None:
            probabilities = self.model.filter(history)
            self._last = (history, probabilities)
        return probabilities

    def extend(self, vector: np.ndarray, history: Sequence[Sample]) -> np.ndarray:
        """``vector`` followed by the regime probabilities (float32)."""
        return np.concatenate((np.asarray(vector, dtype=np.float32), self(history)))


def regime_filter(value: object) -> RegimeFilter | None:
    """``regimes`` as an environment's config gives it (a :class:`RegimeModel`, its fields, or None) as a filter."""
    if value is None:
        return None
    return RegimeFilter(value if isinstance(value, RegimeModel) else msgspec.convert(value, RegimeModel))


# --- the forward filter and Baum-Welch ----------------------------------------------------------------------
def _log_emission(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log N(x_t | state) per row t and state: (T, K)."""
    diff = x[:, None, :] - means[None, :, :]
    return -0.5 * ((diff * diff / variances[None, :, :]).sum(axis=2) + np.log(variances).sum(axis=1)[None, :]
                   + x.shape[1] * _LOG2PI)


def _forward(x: np.ndarray, means: np.ndarray, variances: np.ndarray, transitions: np.ndarray,
             prior: np.ndarray) -> np.ndarray:
    """The filtered probabilities: row 0 the prior, row t+1 given ``x[:t+1]``: (T+1, K)."""
    out = np.empty((len(x) + 1, len(prior)))
    out[0] = prior
    if len(x):
        log_b = _log_emission(x, means, variances)
        b = np.exp(log_b - log_b.max(axis=1, keepdims=True))
        alpha = prior
        for t in range(len(x)):
            alpha = (alpha @ transitions) * b[t]
            alpha = alpha / alpha.sum()
            out[t + 1] = alpha
    return out


def _e_step(x: np.ndarray, means: np.ndarray, variances: np.ndarray, transitions: np.ndarray,
            start: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """One sequence: its log-likelihood, the state posteriors (T, K) and the summed transition posteriors (K, K)."""
    n, k = len(x), len(start)
    log_b = _log_emission(x, means, variances)
    top = log_b.max(axis=1, keepdims=True)
    b = np.exp(log_b - top)
    alpha = np.empty((n, k))
    scale = np.empty(n)
    a = start * b[0]
    for t in range(n):
        if t:
            a = (alpha[t - 1] @ transitions) * b[t]
        scale[t] = a.sum()
        alpha[t] = a / scale[t]
    beta = np.empty((n, k))
    beta[-1] = 1.0
    for t in range(n - 2, -1, -1):
        beta[t] = transitions @ (b[t + 1] * beta[t + 1]) / scale[t + 1]
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    xi = np.zeros((k, k))
    for t in range(n - 1):
        xi += transitions * np.outer(alpha[t], b[t + 1] * beta[t + 1]) / scale[t + 1]
    return float(np.log(scale).sum() + top.sum()), gamma, xi


def fit(sequences: Sequence[np.ndarray], k: int, *, every_ns: int, samples: int, iterations: int = 100,
        tol: float = 1e-6) -> RegimeModel:
    """A ``k``-state model of ``sequences`` (rows of :data:`REGIME_FEATURES`), deterministic (module docstring)."""
    seqs = [np.asarray(s, dtype=np.float64).reshape(-1, len(REGIME_FEATURES)) for s in sequences]
    seqs = [s for s in seqs if len(s)]
    if k < 1:
        raise ValueError(f"regimes: the number of states must be >= 1, got {k}")
    rows = np.concatenate(seqs) if seqs else np.empty((0, len(REGIME_FEATURES)))
    if len(rows) < 10 * k:
        raise ValueError(f"regimes: {len(rows)} sample steps from {len(seqs)} tapes are too few to fit {k} regimes "
                         f"(at least {10 * k}: longer or more tapes)")
    spread = rows.std(axis=0)
    floor = np.maximum(1e-3 * rows.var(axis=0), 1e-6)
    z = ((rows - rows.mean(axis=0)) / np.where(spread > 0, spread, 1.0)).sum(axis=1)
    groups = np.array_split(np.argsort(z, kind="stable"), k)
    means = np.array([rows[g].mean(axis=0) for g in groups])
    variances = np.array([np.maximum(rows[g].var(axis=0), floor) for g in groups])
    transitions = np.full((k, k), 0.1 / (k - 1)) if k > 1 else np.ones((1, 1))
    np.fill_diagonal(transitions, 0.9 if k > 1 else 1.0)
    start = np.full(k, 1.0 / k)
    previous = -math.inf
    loglik = -math.inf
    for _ in range(iterations):
        loglik, post_sum, first, xi_sum = 0.0, np.zeros(k), np.zeros(k), np.zeros((k, k))
        weighted, squares = np.zeros_like(means), np.zeros_like(means)
        for x in seqs:
            ll, gamma, xi = _e_step(x, means, variances, transitions, start)
            loglik += ll
            first += gamma[0]
            post_sum += gamma.sum(axis=0)
            xi_sum += xi
            weighted += gamma.T @ x
            squares += gamma.T @ (x * x)
        start = first / first.sum()
        rows_sum = xi_sum.sum(axis=1, keepdims=True)
        transitions = np.where(rows_sum > 0, xi_sum / np.where(rows_sum > 0, rows_sum, 1.0), 1.0 / k)
        weight = np.maximum(post_sum, 1e-12)[:, None]
        means = weighted / weight
        variances = np.maximum(squares / weight - means * means, floor)
        per_step = loglik / len(rows)
        if per_step - previous < tol:
            break
        previous = per_step
    order = np.lexsort(tuple(means[:, j] for j in reversed(range(len(REGIME_FEATURES)))))
    means, variances = means[order], variances[order]
    transitions = transitions[np.ix_(order, order)]
    return RegimeModel(features=REGIME_FEATURES, every_ns=every_ns, samples=samples,
                       means=_rows(means), variances=_rows(variances), transitions=_rows(transitions),
                       prior=tuple(float(p) for p in _stationary(transitions)), loglik=float(loglik / len(rows)),
                       steps=len(rows))


def _rows(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in a)


def _stationary(transitions: np.ndarray) -> np.ndarray:
    """The distribution p with p @ transitions = p (uniform where the chain has none unique)."""
    k = len(transitions)
    system = np.vstack((transitions.T - np.eye(k), np.ones((1, k))))
    p, *_ = np.linalg.lstsq(system, np.r_[np.zeros(k), 1.0], rcond=None)
    p = np.clip(p, 0.0, None)
    return p / p.sum() if p.sum() > 0 else np.full(k, 1.0 / k)


# --- on tapes ---------------------------------------------------------------------------------------------
def tape_samples(tape: Tape, spec: FeatureSpec | None = None) -> list[tuple[int, Sample]]:
    """Every regime sample of ``tape`` with its grid point, as the orchestrator's tracker takes them: the tape's
    events folded through a book and a :class:`FeatureTracker`, each grid point sampled before the book folds the
    first event after it."""
    book = OrderBook(tape.market)
    tracker = FeatureTracker(book, spec)
    tracker.sampled = []
    for seq, (ts, event) in enumerate(tape.events, start=1):
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            tracker.advance(ts)
            book.handle(seq, ts, event)
        elif kind is SeqGapDetected and tape.market in event.markets:  # type: ignore[union-attr]
            book.handle(seq, ts, event)
        tracker.handle(seq, ts, event)
    return tracker.sampled


def fit_regimes(tapes: Sequence[Tape], k: int, *, spec: FeatureSpec | None = None, iterations: int = 100,
                tol: float = 1e-6) -> RegimeModel:
    """A ``k``-state regime model fitted on every sample of ``tapes`` (module docstring), deterministic."""
    spec = spec or FeatureSpec()
    sequences = [emissions([s for _, s in tape_samples(tape, spec)]) for tape in tapes]
    return fit(sequences, k, every_ns=spec.regime_every_ns, samples=spec.regime_samples, iterations=iterations,
               tol=tol)


def regime_at(model: RegimeModel, samples: Sequence[tuple[int, Sample]], ns: int) -> int:
    """The regime in force at event time ``ns`` on a tape whose samples (:func:`tape_samples`) are ``samples``: the
    most probable state given the samples of the grid points before ``ns``, as a decision at ``ns`` sees them."""
    end = bisect_left(samples, ns, key=lambda s: s[0])
    return model.state([s for _, s in samples[max(0, end - model.samples):end]])
