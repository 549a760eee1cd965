"""The runtime benchmark behind ``tape bench runtime``: figures to print, never assertions.

* ``latency_p50_ms`` / ``latency_p99_ms`` — tick to order: a book update received from the venue (its
  receive stamp at the edge) to the order intent it caused being durable in the log, measured by the paper
  driver's watch; ``decision_latency_*`` the same for every policy decision a book update caused (the same
  path, more samples); ``*_inprocess_*`` the same with the machines in the driver's process, to show what
  hosting them on Ray actors costs. A real paper session: the local exchange over loopback (every market
  quoted tight), our feed, the sequencer and the topology on Ray actors (batches over their channels:
  :mod:`actors.channel`), a file log with fsync per batch, the seeded ``random`` baseline policies (an order
  on most decisions: many samples).
* ``throughput_eps_10`` / ``throughput_eps_300`` — the whole runtime's sustained rate: a synthetic session's
  market events (prebuilt) submitted as fast as the sequencer takes them, in batches of ``batch``, with every
  node on Ray actors and the log fsynced per batch; records per second including the derived ones.
* ``replay_eps`` — ``tape replay verify`` on the 300-market session just written: records per second, its
  segments (between the checkpoints the sequencer stored) replayed on every core (``replay_jobs``
  processes); ``replay_eps_serial`` the same on one process.

The orchestrator's policies come from the ``policies`` every function takes (the kernel imports no policies:
``tape bench runtime`` passes ``policies.registry.PROVIDER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from config import LogSettings
from replay.bench import TIGHT

from .ids import new_session_id
from .log import SessionMeta, create_log
from .sequencer import InProcessRunner, Sequencer
from .topology import PolicyProvider, SessionSpec, session_inputs, topology
from .venues.sim.session import EPOCH_NS, SynthSession

__all__ = ["measure_latency", "measure_replay", "measure_throughput", "run_runtime_bench"]

CASH = 1_000_000 * 1_000_000  # $1M: cash never limits the benchmark's decisions
_SETTINGS = LogSettings(sync="batch")


def _ray() -> None:
    import ray

    if not ray.is_initialized():
        from .cli.cluster import quiet_ray_notices

        quiet_ray_notices()
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def _market_inputs(markets: int, events: int, seed: int = 1) -> tuple[tuple[str, ...], list]:
    """The first ``events`` market events of a seeded synthetic session of ``markets`` tight markets."""
    duration = 60.0
    while True:
        session = SynthSession(seed, markets, duration, config=TIGHT)
        out = [(ts, e) for ts, e in session.events()][:events]
        if len(out) >= events or duration > 86_400:
            return session.tickers, out
        duration *= 4


async def measure_throughput(markets: int, events: int, *, policies: PolicyProvider, batch: int = 1_000,
                             runner: str = "ray", root: Path | None = None) -> dict[str, float]:
    """Records per second through the sequencer and every node (see the module docstring)."""
    tickers, inputs = _market_inputs(markets, events)
    spec = SessionSpec(markets=tickers, starting_cash=CASH, seed=1)
    scratch = Path(tempfile.mkdtemp(prefix="tape-bench-rt-")) if root is None else root
    meta = SessionMeta(session_id=new_session_id("bench"), mode="bench", venue="synthetic", seed=1,
                       created_ns=time.time_ns())
    log = await create_log(scratch, meta, _SETTINGS)
    if runner == "ray":
        _ray()
        from actors.shell import RayRunner

        hosts = RayRunner(topology(spec, policies), log)
    else:
        hosts = InProcessRunner(topology(spec, policies))
    try:
        async with log:
            sequencer = Sequencer(log, hosts)
            await sequencer.submit(session_inputs(spec, EPOCH_NS, session_id=meta.session_id, mode="bench"))
            await sequencer.submit(inputs[:batch])  # warm-up: every actor has handled a call
            start_seq, started = log.last_seq, time.perf_counter()
            for lo in range(batch, len(inputs), batch):
                await sequencer.submit(inputs[lo : lo + batch])
            seconds = time.perf_counter() - started
            records = log.last_seq - start_seq
            await sequencer.close()
            await log.mark("ended", "bench")
    finally:
        if root is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"eps": records / max(seconds, 1e-9), "records": records, "inputs": len(inputs) - batch,
            "seconds": seconds, "nodes": len(hosts.nodes)}


async def measure_replay(markets: int, events: int, *, policies: PolicyProvider, batch: int = 1_000,
                         jobs: int | None = None) -> dict[str, float]:
    """``tape replay verify``'s records per second on a session written in-process (same machines): in parallel on
    ``jobs`` processes (default: every core) over the session's checkpoints, and serially. Each replay is the command
    itself, in a fresh process, as a user runs it (this one may hold Ray's threads, which change how the segment
    processes start: :func:`replay.verify._context`)."""
    scratch = Path(tempfile.mkdtemp(prefix="tape-bench-replay-"))
    jobs = jobs or os.cpu_count() or 1
    try:
        await measure_throughput(markets, events, policies=policies, batch=batch, runner="inprocess", root=scratch)
        (run,) = [p for p in scratch.iterdir() if p.is_dir()]
        out: dict[str, float] = {}
        for name, n in (("serial", 1), ("parallel", jobs)):
            report = await _replay_command(run, n)
            if not report["ok"]:
                raise RuntimeError(f"the benchmark's session did not replay: {report['divergence']}")
            out |= {f"{name}_eps": report["records_per_s"], f"{name}_segments": report["segments"],
                    f"{name}_jobs": report["jobs"]}
        return {"eps": out["parallel_eps"], "records": report["records"], **out}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _replay_command(run: Path, jobs: int) -> dict:
    """``tape replay verify RUN --jobs N --json`` in a new process: its report."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "runtime.cli", "replay", "verify", str(run), "--jobs", str(jobs), "--json"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2_000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def measure_latency(markets: int = 10, seconds: float = 15.0, *, policies: PolicyProvider, speed: float = 50.0,
                          runner: str = "ray", policy: str = "random:3", placement: Sequence = ()) -> dict[str, float]:
    """Tick-to-order latency in a real paper session, on Ray or in-process (see the module docstring). The seeded
    ``random`` baselines place an order on most decisions, so the figure has tens of samples a run (the ``rule``
    baselines place a few per run); the path from a book update to its intent is the same code either way.
    ``placement`` (:mod:`runtime.placement` rules) puts machines on other nodes of a cluster (``tape bench cluster``)."""
    from actors.shell import RayRunner

    from .paper import PaperSession
    from .venues.kalshi.ws import KalshiFeed
    from .venues.sim.exchange import Exchange
    from .venues.sim.server import ExchangeServer

    if runner == "ray":
        _ray()
    exchange = Exchange(markets, 3, config=TIGHT, start_ns=time.time_ns(), session_s=max(3_600.0, seconds * speed * 2))
    spec = SessionSpec(markets=exchange.tickers, starting_cash=CASH, seed=3, policy=policy)
    scratch = Path(tempfile.mkdtemp(prefix="tape-bench-lat-"))
    meta = SessionMeta(session_id=new_session_id("bench"), mode="bench", venue="sim", seed=3,
                       created_ns=time.time_ns())
    try:
        log = await create_log(scratch, meta, _SETTINGS)
        nodes = topology(spec, policies)
        hosts = RayRunner(nodes, log, placement=placement) if runner == "ray" else InProcessRunner(nodes)
        if isinstance(hosts, RayRunner):
            await hosts.ready()  # the actors are up before the first market data arrives
        async with ExchangeServer(exchange, speed=speed) as server, log, \
                KalshiFeed(server.ws_url, exchange.tickers, channels=("orderbook_delta", "trade")) as feed:
            # no decide timer: every decision (and intent) is then caused by a book update, a venue message
            watch = _DecisionWatch(spec)
            session = PaperSession(log, spec, feed, session_id=meta.session_id, runner=hosts, decide_every_s=3_600.0,
                                   watch=watch)
            summary = await session.run(seconds)
            await log.mark("ended", "bench")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out: dict[str, float] = {"records": summary.records, "eps": summary.records / summary.seconds}
    for name, samples in (("order", summary.latency_ms), ("decision", watch.decision_ms)):
        lat = sorted(samples)
        out[f"{name}_samples"] = len(lat)
        if lat:
            out[f"{name}_p50"] = statistics.median(lat)
            out[f"{name}_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return out


class _DecisionWatch:
    """The paper driver's watch, also timing every policy decision a book update caused (received -> logged):
    the same path as an order intent's, with far more samples."""

    def __new__(cls, spec: SessionSpec):
        from .events import PolicyDecided
        from .paper import Watch

        class DecisionWatch(Watch):
            def __init__(self, spec: SessionSpec) -> None:
                super().__init__(spec)
                self.decision_ms: list[float] = []
                self._seen: set[int] = set()

            def __call__(self, records) -> None:
                super().__call__(records)
                now = time.time_ns()
                for r in records:
                    event = r.event
                    if type(event) is PolicyDecided and event.cause_seq not in self._seen:
                        cause = self._received.get(event.cause_seq)
                        if cause is not None:
                            self._seen.add(event.cause_seq)
                            self.decision_ms.append((now - cause[0]) / 1e6)

        return DecisionWatch(spec)


async def run_runtime_bench(*, policies: PolicyProvider, events: int = 100_000, latency_s: float = 15.0,
                            batch: int = 1_000, say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """Every figure of ``tape bench runtime``, the orchestrator's policies from ``policies``."""
    result: dict[str, object] = {"events": events, "batch": batch}
    nan = float("nan")
    for kind, suffix in (("ray", ""), ("inprocess", "_inprocess")):
        say(f"tick-to-order latency: a {latency_s:g} s paper session, 10 markets, machines "
            f"{'on Ray actors' if kind == 'ray' else 'in process'} …")
        lat = await measure_latency(10, latency_s, policies=policies, runner=kind)
        result.update({f"latency{suffix}_p50_ms": round(lat.get("order_p50", nan), 2),
                       f"latency{suffix}_p99_ms": round(lat.get("order_p99", nan), 2),
                       f"latency{suffix}_samples": lat["order_samples"],
                       f"decision_latency{suffix}_p50_ms": round(lat.get("decision_p50", nan), 2),
                       f"decision_latency{suffix}_p99_ms": round(lat.get("decision_p99", nan), 2),
                       f"decision_latency{suffix}_samples": lat["decision_samples"]})
    for markets in (10, 300):
        say(f"throughput: {events:,} market events over {markets} markets through the runtime on Ray …")
        figures = await measure_throughput(markets, events, policies=policies, batch=batch)
        result[f"throughput_eps_{markets}"] = round(figures["eps"])
        result[f"nodes_{markets}"] = figures["nodes"]
    with contextlib.suppress(Exception):  # replay needs no Ray: its processes would share the cores with it
        import ray

        ray.shutdown()
    say(f"replay: tape replay verify on {events:,} events over 300 markets, serially and on every core …")
    replay = await measure_replay(300, events, policies=policies, batch=batch)
    result["replay_eps"] = round(replay["eps"])
    result["replay_eps_serial"] = round(replay["serial_eps"])
    result["replay_jobs"] = replay["parallel_jobs"]
    result["replay_segments"] = replay["parallel_segments"]
    return result
