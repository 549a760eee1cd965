"""How fast a session replays: :func:`replay_rate` writes a sequenced paper session and times :func:`verify` on it.

The session is built in-process the way a paper run builds one (:mod:`runtime.sequencer` over the
topology's machines, rule baselines trading): the local exchange's order-flow model
(:class:`~runtime.venues.sim.session.SynthSession`) for ``markets`` markets over ``duration_s`` of event
time, a ``decide`` timer every second, sequenced in batches of ``batch`` inputs into a scratch log (no
fsync). Then the log is replayed and checked, ``repeat`` times; the best rate counts (the others were
slowed by something else). Everything is seeded: the same arguments write the same log, byte for byte.

``BUSY`` is the flow of a busy collection session (every market quoted tight, a lot of limit-order noise):
mostly book deltas, with a decision per market per second::

    python -c "from replay.bench import replay_rate; print(replay_rate())"
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import msgspec

from config import LogSettings
from config.synth import FlowConfig
from runtime.events import Event, TimerFired
from runtime.log import SessionMeta, create_log, open_log
from runtime.sequencer import InProcessRunner, Sequencer
from runtime.topology import SessionSpec, session_inputs, topology
from runtime.venues.sim.session import SynthSession

from .verify import verify

__all__ = ["BUSY", "TIGHT", "BenchResult", "paper_inputs", "replay_rate"]

BUSY = FlowConfig(tight_share=1.0, noise_limit_rate=0.6, noise_take_rate=0.05, maker_refresh_s=3.0)
TIGHT = FlowConfig(tight_share=1.0)  # every market quoted tight: the rule baselines trade them
_S = 1_000_000_000


class BenchResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`replay_rate` measured."""

    records: int
    """records in the log (inputs and derived events)"""
    seconds: float
    """the best verify's wall time"""
    rate: float
    """records replayed and checked per second, best of the repeats"""
    derived: dict[str, int]
    """derived events by type: what the replay regenerated and compared"""


def replay_rate(*, markets: int = 40, duration_s: float = 600.0, seed: int = 7, config: FlowConfig = BUSY,
                batch: int = 50, repeat: int = 1, directory: str | Path | None = None) -> BenchResult:
    """Write the session (module docstring) under ``directory`` (a temporary one if None) and time its replay.

    Raises ``AssertionError`` if the replay diverges: a rate of a wrong replay means nothing.
    """
    if directory is not None:
        return asyncio.run(_bench(Path(directory), markets, duration_s, seed, config, batch, repeat))
    with tempfile.TemporaryDirectory(prefix="tape-bench-") as tmp:
        return asyncio.run(_bench(Path(tmp), markets, duration_s, seed, config, batch, repeat))


def paper_inputs(seed: int = 1, markets: int = 3, duration_s: float = 600, config: FlowConfig = TIGHT,
                 ) -> tuple[SessionSpec, list[tuple[int, Event]]]:
    """A paper session's spec and all its inputs: the session inputs, the synthetic market data with a
    ``decide`` timer every second of event time, and ``session_ended`` (also the tests' sessions)."""
    session = SynthSession(seed, markets, duration_s, config=config)
    spec = SessionSpec(markets=session.tickers, starting_cash=1_000_000_000, seed=seed, latency_ms=20)
    out = session_inputs(spec, session.start_ns, session_id=f"paper-{seed}")
    tick = session.start_ns + _S
    for ts, event in session.events():
        while tick <= ts:
            out.append((tick, TimerFired(name="decide", due_ns=tick)))
            tick += _S
        out.append((ts, event))
    out.append(session.ended())
    return spec, out


async def _bench(root: Path, markets: int, duration_s: float, seed: int, config: FlowConfig, batch: int,
                 repeat: int) -> BenchResult:
    spec, inputs = paper_inputs(seed, markets, duration_s, config)
    log = await create_log(root, SessionMeta(session_id="bench", mode="paper", seed=seed), LogSettings(sync="none"))
    from policies.registry import PROVIDER  # (replay_rate is an entry point: it composes the session's policies)

    sequencer = Sequencer(log, InProcessRunner(topology(spec, PROVIDER)))
    try:
        await sequencer.submit(inputs[:2])  # the session inputs: one batch of their own
        for start in range(2, len(inputs), batch):
            await sequencer.submit(inputs[start:start + batch])
    finally:
        await sequencer.close()
        await log.close()
    best = None
    for _ in range(max(1, repeat)):
        async with await open_log(root / "bench") as replayed:
            report = await verify(replayed, policies=PROVIDER)
        assert report.ok, f"the benchmark session does not replay: {report.divergence}"
        if best is None or report.seconds < best.seconds:
            best = report
    assert best is not None
    return BenchResult(records=best.records, seconds=best.seconds, rate=best.rate, derived=best.derived)
