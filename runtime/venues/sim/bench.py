"""Figures for the local exchange (printed, never asserted): matching-engine operations per second and
synthetic-session events per second (``tape bench sim``), and the server's messages per second to one
client over loopback (``server_mps``, in ``tape bench venue``) and the signed REST requests per second it
answers one client (``rest_rps``, likewise).

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


def _rest_child(markets: int, seed: int, public_pem_path: str) -> None:
    """The server process of :func:`measure_rest`: the exchange checking RSA-PSS signatures against the key at
    ``public_pem_path``, no rate limits; prints its port and tickers as one JSON line, serves until stdin closes."""
    import json
    import sys
    from pathlib import Path

    from config import LoggingSettings
    from runtime.logger import configure_logging
    from runtime.venues.kalshi.auth import Verifier

    configure_logging(LoggingSettings(level="warning", format="json"))

    async def main() -> None:
        exchange = Exchange(markets, seed, session_s=86_400.0, start_ns=time.time_ns() // _NS * _NS)
        verifier = Verifier.from_pem(Path(public_pem_path).read_bytes())
        async with ExchangeServer(exchange, verifier=verifier) as server:
            print(json.dumps({"port": server.port, "tickers": exchange.tickers}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


async def measure_rest(seconds: float = 3.0, *, markets: int = 8, seed: int = 1, in_flight: int = 4,
                       warmup_s: float = 0.5) -> dict[str, float]:
    """``rest_rps``: signed REST requests per second the local exchange answers one client over loopback.

    The server runs in its own process and checks every request's RSA-PSS signature (2,048-bit key), as Kalshi
    does; the client is one :class:`~runtime.venues.kalshi.http.KalshiRest` signing every request, unpaced
    (``tier=None``: this measures the server, not an account's limits), with ``in_flight`` requests at a time in
    a fixed rotation of what a session reads: the balance, a market, its order book, the resting orders. Counts
    the replies (each parsed into its typed form) for ``seconds`` after ``warmup_s``."""
    import json
    import sys
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import rsa

    from runtime.venues.kalshi.auth import Signer
    from runtime.venues.kalshi.http import KalshiRest

    signer = Signer("bench", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with tempfile.TemporaryDirectory(prefix="tape-bench-rest-") as scratch:
        pem = Path(scratch) / "bench_pub.pem"
        pem.write_bytes(signer.public_key_pem())
        code = f"from runtime.venues.sim.bench import _rest_child; _rest_child({markets}, {seed}, {str(pem)!r})"
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.DEVNULL)
        assert child.stdin is not None and child.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            hello = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
            url = f"http://127.0.0.1:{hello['port']}/trade-api/v2"
            tickers = hello["tickers"]
            async with KalshiRest(url, signer=signer, tier=None) as rest:
                calls = [rest.balance, lambda t: rest.market(t), lambda t: rest.orderbook(t), rest.orders]
                done = 0
                counting = False

                async def worker(k: int) -> None:
                    nonlocal done
                    i = k
                    while not stop.is_set():
                        call = calls[i % len(calls)]
                        ticker = tickers[i % len(tickers)]
                        await (call(ticker) if i % len(calls) in (1, 2) else call())
                        if counting:
                            done += 1
                        i += in_flight

                stop = asyncio.Event()
                workers = [asyncio.create_task(worker(k)) for k in range(in_flight)]
                await asyncio.sleep(warmup_s)
                counting, start = True, loop.time()
                await asyncio.sleep(seconds)
                counting, elapsed = False, loop.time() - start
                counted = done
                stop.set()
                await asyncio.gather(*workers)
        finally:
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError, BrokenPipeError):
                child.stdin.close()
                await asyncio.wait_for(child.wait(), 10)
            if child.returncode is None:
                child.kill()
                await child.wait()
    return {"rest_rps": round(counted / elapsed), "requests": counted, "seconds": seconds, "in_flight": in_flight}
