"""The codec benchmark behind ``tape bench venue``: figures to print, never assertions.

``codec_decode_mps`` — WebSocket frames decoded to tape events per second, on one core, by one
:class:`.codec.WsDecoder`. The frames are a realistic mix, built before timing by the codec's own encoder
(the fixed-point format, values as strings): the seeded market stream of :func:`runtime.synthetic.market_events`
(a snapshot per market first, then about 90% ``orderbook_delta`` and 10% ``trade``), with an
``orderbook_snapshot`` of ten levels a side replacing one frame in 250, as resyncs do. The timed region is the loop ``decoder.decode(frame,
received_ns)`` over the frames, whose result holds the events, and nothing else. Each figure is the
median of ``repeat`` runs.

``server_mps`` (the local exchange's rate to one client over loopback) is measured by
:func:`runtime.venues.sim.bench.measure_server`; ``tape bench venue`` prints both.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable

from runtime.events import BookDelta, BookSnapshot, MalformedInput, PublicTrade
from runtime.synthetic import market_events

from .codec import WsDecoder, encode_event

__all__ = ["codec_frames", "run_codec_bench"]

SNAPSHOT_EVERY = 250
_WIRE_TYPE = {BookDelta: "orderbook_delta", PublicTrade: "trade", BookSnapshot: "orderbook_snapshot"}


def codec_frames(n: int, *, markets: int = 16, seed: int = 1) -> tuple[list[bytes], Counter[str]]:
    """``n`` encoded frames of the benchmark's mix, and how many of each type."""
    rng = random.Random(seed)
    frames: list[bytes] = []
    mix: Counter[str] = Counter()
    for i, (_, event) in enumerate(market_events(n, markets=markets, seed=seed)):
        if i % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1:
            mid = rng.randrange(2_000, 8_000, 100)
            event = BookSnapshot(market=f"KXDEMO-{rng.randrange(markets):03d}",
                                 yes_bids=tuple((mid - 100 * k, rng.randrange(1, 500) * 100) for k in range(10, 0, -1)),
                                 no_bids=tuple((10_000 - mid - 100 * k, rng.randrange(1, 500) * 100) for k in range(10, 0, -1)))
        frame = encode_event(event, sid=1, seq=i + 1, market_id=f"m-{event.market}")  # type: ignore[union-attr]
        frames.append(frame)
        mix[_WIRE_TYPE[type(event)]] += 1
    return frames, mix


def run_codec_bench(n: int, *, repeat: int = 3, seed: int = 1, say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """Measure ``codec_decode_mps`` on ``n`` frames, the median of ``repeat`` runs."""
    say(f"encoding {n:,} frames …")
    frames, mix = codec_frames(n, seed=seed)
    decoder = WsDecoder()
    rates = []
    events = malformed = 0
    for i in range(max(1, repeat)):
        say(f"run {i + 1}/{repeat}: decoding …")
        decode = decoder.decode
        start = time.perf_counter()
        out = [decode(frame, 0) for frame in frames]
        rates.append(n / max(time.perf_counter() - start, 1e-9))
        events = sum(len(f.events) for f in out)
        malformed = sum(1 for f in out for e in f.events if type(e) is MalformedInput)
    return {
        "messages": n,
        "repeat": max(1, repeat),
        "seed": seed,
        "mix": dict(sorted(mix.items())),
        "bytes_per_message": round(sum(map(len, frames)) / n, 1),
        "codec_decode_mps": round(statistics.median(rates)),
        "events": events,
        "malformed": malformed,
    }
