"""The market core as one fold: matcher, cash pool, positions and order lifecycle over one log.

The sequencer here is the minimum the contract needs: every event, input or derived, gets the next
seq and is handed to every machine in a fixed order; what they derive is sequenced after it.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.matcher import PaperMatcher
from actors.orders import Orders
from actors.positions import Positions
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    MarketLifecycle,
    OrderFilled,
    OrderIntent,
    OrderTransitionRefused,
    PublicTrade,
    Record,
    SessionStarted,
)

MARKETS = ("KXA-1", "KXB-2")


class Core:
    def __init__(self, latency_ms: int = 20) -> None:
        fees = KalshiFees()
        self.cash, self.positions, self.orders = CashPool(fees), Positions(), Orders()
        self.matcher = PaperMatcher(fees.trade_fee, latency_ns=latency_ms * 1_000_000)
        self.machines = (self.orders, self.cash, self.matcher, self.positions)
        self.log: list[Record] = []
        self.lowest_available: int | None = None

    def feed(self, ts_ns: int, event) -> None:
        queue = deque([event])
        while queue:
            event = queue.popleft()
            seq = len(self.log) + 1
            self.log.append(Record(seq, ts_ns, event))
            for machine in self.machines:
                queue.extend(machine.handle(seq, ts_ns, event))
            low = self.cash.available
            self.lowest_available = low if self.lowest_available is None else min(self.lowest_available, low)


def session(seed: int, steps: int = 600) -> list[tuple[int, object]]:
    """A random paper session: books moving, public trades, and our orders and cancels."""
    rng = random.Random(seed)
    inputs: list[tuple[int, object]] = [(0, SessionStarted(session_id="s", mode="paper", venue="sim", seed=seed,
                                                             config_hash="", code_version="", starting_cash=50_000_000))]
    sizes = {}
    for m in MARKETS:
        inputs.append((0, BookSnapshot(market=m, yes_bids=((4000, 3000), (3900, 5000)), no_bids=((5500, 3000), (5400, 5000)))))
        sizes.update({(m, "yes", 4000): 3000, (m, "yes", 3900): 5000, (m, "no", 5500): 3000, (m, "no", 5400): 5000})
    ts = 0
    for i in range(steps):
        ts += rng.randrange(1, 30) * 1_000_000
        m = rng.choice(MARKETS)
        r = rng.random()
        if r < 0.45:
            key = rng.choice(sorted(k for k in sizes if k[0] == m))
            delta = rng.randrange(-sizes[key], 2000)
            sizes[key] += delta
            inputs.append((ts, BookDelta(market=m, side=key[1], price=key[2], delta=delta)))
        elif r < 0.65:
            inputs.append((ts, PublicTrade(market=m, trade_id=f"t{i}", yes_price=rng.choice((3900, 4000, 4500, 4600)),
                                           count=rng.randrange(100, 3000), taker_side=rng.choice(("yes", "no")))))
        elif r < 0.9:
            inputs.append((ts, OrderIntent(cause_seq=1, client_order_id=f"c{i}", market=m, side=rng.choice(("bid", "ask")),
                                           price=rng.choice((3900, 4000, 4400, 4500, 4600)), count=rng.randrange(1, 40) * 100,
                                           tif=rng.choice(("gtc", "gtc", "ioc", "fok")))))
        else:
            inputs.append((ts, CancelRequested(cause_seq=1, client_order_id=f"c{rng.randrange(max(1, i))}")))
    ts += 1_000_000_000
    inputs.append((ts, MarketLifecycle(market=MARKETS[0], kind="settled", result="yes", settlement_value=10_000)))
    inputs.append((ts + 1, MarketLifecycle(market=MARKETS[1], kind="settled", result="no", settlement_value=0)))
    return inputs


def run(seed: int) -> Core:
    core = Core()
    for ts, event in session(seed):
        core.feed(ts, event)
    return core


@pytest.mark.parametrize("seed", range(6))
def test_a_random_paper_session_keeps_the_books_straight(seed):
    """Cash never goes below zero, every order ends in a state the lifecycle allows, fills move both the
    cash pool and positions, and after settlement nothing is reserved and positions are flat."""
    core = run(seed)
    fills = [r.event for r in core.log if isinstance(r.event, OrderFilled)]
    assert fills, "the session should trade"
    assert core.lowest_available is not None and core.lowest_available >= 0
    assert not [r for r in core.log if isinstance(r.event, OrderTransitionRefused)]
    assert core.cash.reserved == 0 and not core.matcher.orders
    for m in MARKETS:
        assert core.positions.get(m).position == 0, f"{m} settled, so its position is closed"
    fees = sum(f.fee for f in fills)
    realized = sum(core.positions.get(m).realized_pnl for m in MARKETS)
    assert core.cash.cash + core.cash.rounding_paid == 50_000_000 + realized - fees


@pytest.mark.parametrize("seed", range(3))
def test_the_same_inputs_derive_the_same_log(seed):
    """Determinism: two folds of the same inputs produce identical logs, derived events included."""
    assert run(seed).log == run(seed).log


def test_the_derived_log_does_not_depend_on_the_process_hash_seed():
    """Set and dict order over strings changes with PYTHONHASHSEED: two processes must still agree byte for byte."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import hashlib, msgspec; from tests.actors.test_market_core import run; "
            "print(hashlib.sha256(msgspec.msgpack.encode(run(1).log)).hexdigest())")
    root = Path(__file__).resolve().parents[2]
    digests = {
        subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}).stdout.strip()
        for hash_seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64
