"""A whole synthetic session: N markets of the order-flow model, merged into one time-ordered event stream.

Everything derives from one seed: market ``i`` of a session runs on its own ``random.Random`` seeded
with :func:`derive_seed` ``(seed, "market", i)``, so a market's events do not depend on how many other
markets run beside it. Event time starts at ``start_ns`` (by default the fixed :data:`EPOCH_NS`, never
the wall clock), so the same arguments give the same events, byte for byte once logged.

Per market the stream is: ``activated`` (with the close time), a full :class:`BookSnapshot`, then the
:class:`BookDelta` and :class:`PublicTrade` events the engine produces, and at the close the deltas
that empty the book, ``deactivated``, ``determined`` and ``settled`` (result and settlement value).
Markets are merged by time; at equal times the lower market index comes first.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator

from runtime.events import Event, SessionEnded, SessionStarted

from .flow import FlowConfig, MarketFlow

__all__ = ["EPOCH_NS", "SynthSession", "derive_seed"]

EPOCH_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z: synthetic sessions' event time starts here
_SEED_MASK = (1 << 63) - 1


def derive_seed(seed: int, *path: str | int) -> int:
    """A 63-bit seed for a named part of a seeded run (``derive_seed(7, "market", 3)``), stable across
    platforms and Python versions (sha256 of the text, not ``hash()``)."""
    text = "/".join(str(p) for p in (seed, *path))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & _SEED_MASK


class SynthSession:
    """One seeded synthetic session of ``markets`` markets over ``duration_s`` seconds of event time.

    ``events()`` yields ``(ts_ns, event)`` in time order, once; ``started()`` and ``ended()`` are the
    session's bracketing events. ``flows`` exposes each market's model (engine, latent state, profile).
    """

    def __init__(self, seed: int, markets: int, duration_s: float, *, config: FlowConfig | None = None,
                 start_ns: int = EPOCH_NS, prefix: str = "KXSIM") -> None:
        if markets < 1:
            raise ValueError(f"a session needs at least one market, got {markets}")
        if not duration_s > 0:
            raise ValueError(f"the duration must be positive, got {duration_s} s")
        self.seed = seed
        self.config = config or FlowConfig()
        self.start_ns = start_ns
        self.end_ns = start_ns + round(duration_s * 1_000_000_000)
        self.tickers = tuple(f"{prefix}-{i:03d}" for i in range(markets))
        self.flows = tuple(MarketFlow(ticker, self.config, derive_seed(seed, "market", i), self.start_ns, self.end_ns)
                           for i, ticker in enumerate(self.tickers))
        self._used = False

    def started(self, session_id: str, config_hash: str, code_version: str) -> tuple[int, SessionStarted]:
        return self.start_ns, SessionStarted(session_id=session_id, mode="synth", venue="sim", seed=self.seed,
                                             config_hash=config_hash, code_version=code_version,
                                             markets=self.tickers)

    def ended(self) -> tuple[int, SessionEnded]:
        return self.end_ns, SessionEnded(reason="completed")

    def events(self) -> Iterator[tuple[int, Event]]:
        """Every market's events merged in time order (ties: lower market index, then emission order)."""
        if self._used:
            raise RuntimeError("a SynthSession's events are generated once; build a new session to run again")
        self._used = True
        streams = [_keyed(i, flow) for i, flow in enumerate(self.flows)]
        for ts, _, _, events in heapq.merge(*streams):
            for event in events:
                yield ts, event

    def batches(self, size: int) -> Iterator[list[tuple[int, Event]]]:
        """:meth:`events` in lists of ``size`` (the last one shorter)."""
        batch: list[tuple[int, Event]] = []
        for entry in self.events():
            batch.append(entry)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def _keyed(index: int, flow: MarketFlow) -> Iterator[tuple[int, int, int, list[Event]]]:
    for n, (ts, events) in enumerate(flow.steps()):
        yield ts, index, n, events
