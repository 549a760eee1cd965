"""Figures for the local exchange (printed, never asserted): matching-engine operations per second and
synthetic-session events per second (``tape bench sim``), and the server's messages per second to one
client over loopback (``server_mps``, in ``tape bench venue``).

``engine_ops_per_s``: a pre-built, seeded stream of engine commands — about half limit orders around
the touch from 20 owners (most rest, some cross), a third cancels of earlier orders (some already
gone), the rest immediate-or-cancel takes — applied to one engine, outputs built as in real use.
``model_events_per_s``: events per second that :class:`SynthSession` yields (the order-flow model, its
engines and the merge, without the log; ``tape synth`` prints the rate with the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from runtime.venues.kalshi import codec

from .engine import MatchingEngine
from .exchange import Exchange
from .server import WS_PATH, ExchangeServer
from .session import SynthSession

_NS = 1_000_000_000
BOOK, TRADE = "orderbook_delta", "trade"


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


# --- the exchange server: messages per second to one client ---------------------------------------------
def _bench_child(markets: int, seed: int, speed: float, session_s: float) -> None:
    """The server process of :func:`measure_server_mps`: prints its port and tickers as one JSON line, serves
    until its stdin closes, then prints how far behind the market's time was (ns)."""
    import json
    import sys

    from config import LoggingSettings
    from runtime.logger import configure_logging

    configure_logging(LoggingSettings(level="warning", format="json"))  # stderr: stdout is the parent's channel

    async def main() -> None:
        exchange = Exchange(markets, seed, session_s=session_s, start_ns=time.time_ns() // _NS * _NS)
        async with ExchangeServer(exchange, speed=speed, queue_limit=10_000_000) as server:
            print(json.dumps({"port": server.port, "tickers": exchange.tickers}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            print(json.dumps({"behind_ns": server.behind_ns}), flush=True)

    asyncio.run(main())


async def measure_server_mps(seconds: float = 3.0, **options: Any) -> float:
    """``server_mps``: how many messages per second the exchange server delivers to one raw WebSocket client
    over loopback (:func:`measure_server`'s figure; ``options`` are its keyword arguments)."""
    return (await measure_server(seconds, **options))["server_mps"]


async def measure_server(seconds: float = 3.0, *, markets: int = 32, seed: int = 1, speed: float = 20_000.0,
                         warmup_s: float = 0.5) -> dict[str, float]:
    """How many messages per second the exchange server delivers to one raw WebSocket client over loopback.

    The server runs in its own process (as it would beside a trading process) with ``markets`` markets at
    ``speed`` times real time — fast enough that the model's output exceeds what one process can send, so
    the server runs flat out (its time falls behind: ``behind_s``), with a send queue large enough not to
    overflow meanwhile. The client, here, subscribes to ``orderbook_delta`` and ``trade`` on every market
    and counts frames, without decoding them, for ``seconds`` after ``warmup_s``. Returns ``server_mps``
    (frames per second), ``frames``, ``bytes_per_frame`` and ``behind_s`` (wall seconds of lag at the end).
    """
    import json
    import sys

    from websockets.asyncio.client import connect

    session_s = max(3600.0, (seconds + warmup_s + 5) * speed * 2)
    code = f"from runtime.venues.sim.bench import _bench_child; _bench_child({markets}, {seed}, {speed!r}, {session_s!r})"
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None
    loop = asyncio.get_running_loop()
    try:
        hello = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        async with connect(f"ws://127.0.0.1:{hello['port']}{WS_PATH}", max_size=None, compression=None,
                           max_queue=None) as ws:
            await ws.send(codec.subscribe(1, [BOOK, TRADE], hello["tickers"], use_yes_price=False))
            warm_until = loop.time() + warmup_s
            async for _ in ws:
                if loop.time() >= warm_until:
                    break
            frames = size = 0
            start = loop.time()
            end = start + seconds
            async for raw in ws:
                frames += 1
                size += len(raw)
                if frames % 256 == 0 and loop.time() >= end:
                    break
            elapsed = loop.time() - start
        child.stdin.close()
        behind_ns = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))["behind_ns"]
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                child.stdin.close()
                await asyncio.wait_for(child.wait(), 10)
        if child.returncode is None:
            child.kill()
            await child.wait()
    return {"server_mps": round(frames / elapsed), "frames": frames, "bytes_per_frame": round(size / max(frames, 1), 1),
            "behind_s": round(behind_ns / _NS / speed, 3), "seconds": seconds, "markets": markets, "speed": speed}
