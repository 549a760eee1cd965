"""Figures for the local exchange behind ``tape bench sim`` (printed, never asserted): matching-engine
operations per second and synthetic-session events per second.

``engine_ops_per_s``: a pre-built, seeded stream of engine commands — about half limit orders around
the touch from 20 owners (most rest, some cross), a third cancels of earlier orders (some already
gone), the rest immediate-or-cancel takes — applied to one engine, outputs built as in real use.
``model_events_per_s``: events per second that :class:`SynthSession` yields (the order-flow model, its
engines and the merge, without the log; ``tape synth`` prints the rate with the log).
"""

from __future__ import annotations

import random
import time

from .engine import MatchingEngine
from .session import SynthSession


def engine_ops(n: int, seed: int = 1) -> list[tuple]:
    """A seeded stream of ``n`` engine commands (see the module docstring)."""
    rng = random.Random(seed)
    owners = [f"p{i}" for i in range(20)]
    ops: list[tuple] = []
    submitted = 0
    for _ in range(n):
        u = rng.random()
        if u < 0.35 and submitted:
            ops.append(("cancel", rng.randint(max(1, submitted - 500), submitted)))
            continue
        side = "bid" if rng.random() < 0.5 else "ask"
        owner = owners[rng.randrange(20)]
        count = rng.randint(1, 50) * 100
        if u < 0.85:  # a limit order near the touch of a book centred on 50 cents
            away = rng.randint(-1, 10) * 100
            price = 5_000 - away if side == "bid" else 5_100 + away
            ops.append(("gtc", owner, side, price, count))
        else:
            ops.append(("ioc", owner, side, 5_600 if side == "bid" else 4_500, count))
        submitted += 1
    return ops


def bench_engine(n: int) -> float:
    ops = engine_ops(n)
    engine = MatchingEngine("KXBENCH")
    submit, cancel = engine.submit, engine.cancel
    started = time.perf_counter()
    for ts, op in enumerate(ops):
        kind = op[0]
        if kind == "cancel":
            cancel(op[1], ts)
        elif kind == "gtc":
            submit(op[1], op[2], op[3], op[4], ts)
        else:
            submit(op[1], op[2], op[3], op[4], ts, tif="ioc")
    return n / (time.perf_counter() - started)


def bench_model(markets: int, duration_s: float) -> tuple[int, float]:
    session = SynthSession(1, markets, duration_s)
    started = time.perf_counter()
    events = sum(1 for _ in session.events())
    return events, events / (time.perf_counter() - started)
