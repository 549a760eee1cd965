"""The dashboard benchmark behind ``tape bench dashboard``: figures to print, never assertions.

Two paper sessions, one after the other in the same run, each on the local exchange (over loopback, every market
tight, at ``speed`` x event time: every market's book and trades at the rate the exchange makes them), ``markets``
markets, the machines in this process, a file log fsynced per batch, the seeded ``random`` baselines (an order on
most decisions: many samples), decisions only on book updates:

* **off**: no dashboard;
* **on**: the dashboard served beside it as ``tape paper --dashboard`` serves it (its own process, following the
  log), with ``clients`` WebSocket clients in another process (as browsers are) reading every message.

``latency_off_*`` / ``latency_on_*``: tick to order (a book update's receive stamp to the order intent it caused
being durable), p50 and p99 over every order of the session; ``latency_ratio`` = on p50 / off p50
(``latency_ratio_p99`` the same at p99). ``stream_p50_ms`` / ``stream_p99_ms``: the staleness a client sees — for
every delta it receives, its receive time less the receive stamp of the newest record the delta reflects (the
log's ``ts_ns`` of its ``through``): the edge, the log, the dashboard's read and fold, the 10/s coalescing and the
socket, together.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from config import LogSettings

__all__ = ["run_dashboard_bench"]

_SETTINGS = LogSettings(sync="batch")


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


async def _session(markets: int, seconds: float, speed: float, policies, dashboard: bool, clients: int,
                   say: Callable[[str], None]) -> dict[str, object]:
    from replay.bench import TIGHT
    from runtime.ids import new_session_id
    from runtime.log import SessionMeta, create_log
    from runtime.paper import PaperSession
    from runtime.topology import SessionSpec
    from runtime.venues.kalshi.ws import KalshiFeed
    from runtime.venues.sim.exchange import Exchange
    from runtime.venues.sim.server import ExchangeServer

    from . import LiveDashboard

    exchange = Exchange(markets, 3, config=TIGHT, start_ns=time.time_ns(), session_s=max(3_600.0, seconds * speed * 2))
    spec = SessionSpec(markets=exchange.tickers, starting_cash=1_000_000 * 1_000_000, seed=3, policy="random:3")
    scratch = Path(tempfile.mkdtemp(prefix="tape-bench-dash-"))
    meta = SessionMeta(session_id=new_session_id("bench"), mode="bench", venue="sim", seed=3, created_ns=time.time_ns())
    board = child = None
    try:
        log = await create_log(scratch, meta, _SETTINGS)
        if dashboard:
            board = LiveDashboard.start(str(scratch / meta.session_id), host="127.0.0.1", port=0, token=None)
            await board.wait_ready()  # serving and following before the session starts, not catching up during it
            child = subprocess.Popen([sys.executable, "-c", "import sys; from runtime.dashboard.bench import _clients; "
                                      "_clients(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))",
                                      f"http://127.0.0.1:{board.port}/ws", str(clients), str(seconds + 5)],
                                     stdout=subprocess.PIPE, text=True)
        async with ExchangeServer(exchange, speed=speed) as server, log, \
                KalshiFeed(server.ws_url, exchange.tickers, channels=("orderbook_delta", "trade")) as feed:
            session = PaperSession(log, spec, feed, session_id=meta.session_id, decide_every_s=3_600.0,
                                   policies=policies)
            summary = await session.run(seconds)
            await log.mark("ended", "bench")
        out: dict[str, object] = {"records": summary.records, "eps": summary.records / summary.seconds,
                                  "orders": len(summary.latency_ms), "p50": statistics.median(summary.latency_ms or [0]),
                                  "p99": _pct(summary.latency_ms, 0.99)}
        if child is not None:
            stdout, _ = await asyncio.to_thread(child.communicate, timeout=seconds + 60)
            out["stream"] = json.loads(stdout.strip().splitlines()[-1])
        return out
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        if board is not None:
            board.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _clients(url: str, n: int, seconds: float) -> None:
    """(In a child process.) ``n`` clients read every message for ``seconds``; prints their staleness samples' figures."""
    import aiohttp

    samples: list[float] = []
    counts = {"messages": 0, "snapshots": 0, "gaps": 0}

    async def one() -> None:
        n_seen: dict[str, int] = {}
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str('{"op": "hello"}')
            async with asyncio.timeout(seconds):
                async for msg in ws:
                    now = time.time_ns()
                    m = json.loads(msg.data)
                    counts["messages"] += 1
                    if m["type"] == "snapshot":
                        counts["snapshots"] += 1
                        n_seen[m["channel"]] = m["n"]
                    elif m["type"] == "delta":
                        if m["n"] != n_seen.get(m["channel"], m["n"] - 1) + 1:
                            counts["gaps"] += 1
                        n_seen[m["channel"]] = m["n"]
                        if m["ts_ns"]:
                            samples.append((now - m["ts_ns"]) / 1e6)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)

    asyncio.run(main())
    print(json.dumps({"samples": len(samples), "p50": statistics.median(samples) if samples else None,
                      "p99": _pct(samples, 0.99) if samples else None, **counts}))


async def run_dashboard_bench(*, policies, markets: int = 300, clients: int = 10, seconds: float = 15.0,
                              speed: float = 50.0, say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """Every figure of ``tape bench dashboard`` (module docstring)."""
    say(f"tick-to-order latency, dashboard off: a {seconds:g} s paper session on {markets} markets …")
    off = await _session(markets, seconds, speed, policies, False, clients, say)
    say(f"the same with the dashboard on and {clients} clients reading …")
    on = await _session(markets, seconds, speed, policies, True, clients, say)
    stream = on["stream"]
    assert isinstance(stream, dict)
    r = lambda x: round(float(x), 2)  # noqa: E731
    return {"markets": markets, "clients": clients, "seconds": seconds, "speed": speed,
            "stream_p50_ms": r(stream["p50"] or float("nan")), "stream_p99_ms": r(stream["p99"] or float("nan")),
            "stream_deltas": stream["samples"], "stream_snapshots": stream["snapshots"], "stream_gaps": stream["gaps"],
            "latency_off_p50_ms": r(off["p50"]), "latency_off_p99_ms": r(off["p99"]), "orders_off": off["orders"],
            "latency_on_p50_ms": r(on["p50"]), "latency_on_p99_ms": r(on["p99"]), "orders_on": on["orders"],
            "latency_ratio": r(float(on["p50"]) / max(float(off["p50"]), 1e-9)),
            "latency_ratio_p99": r(float(on["p99"]) / max(float(off["p99"]), 1e-9)),
            "records_per_s_off": round(float(off["eps"])), "records_per_s_on": round(float(on["eps"]))}
