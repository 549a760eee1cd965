"""A small, deterministic stream of plausible Kalshi market data, for the demo and the benchmarks.

Not the exchange's order-flow model (that belongs to the venue simulator): a seeded random walk of
book deltas around a drifting mid, with occasional public trades. Same arguments, same events.
"""

from __future__ import annotations

import random

from .events import BookDelta, BookSnapshot, Event, PublicTrade


def market_events(n: int, *, markets: int = 4, seed: int = 0, start_ns: int = 0) -> list[tuple[int, Event]]:
    """``n`` (ts_ns, event) entries: one snapshot per market, then deltas (~90%) and trades (~10%).

    The deltas keep every level's size >= 0, so the stream folds into consistent books."""
    rng = random.Random(seed)
    tickers = [f"KXDEMO-{i:03d}" for i in range(markets)]
    mids = {t: rng.randrange(2_000, 8_000, 100) for t in tickers}
    sizes: dict[tuple[str, str, int], int] = {}  # resting size per level, so deltas never go negative
    out: list[tuple[int, Event]] = []
    ts = start_ns
    for ticker in tickers:
        mid = mids[ticker]
        yes = tuple((mid - 100 * k, rng.randrange(1, 500) * 100) for k in range(1, 6))
        no = tuple((10_000 - mid - 100 * k, rng.randrange(1, 500) * 100) for k in range(1, 6))
        sizes.update({(ticker, "yes", p): n for p, n in yes})
        sizes.update({(ticker, "no", p): n for p, n in no})
        out.append((ts, BookSnapshot(market=ticker, yes_bids=yes, no_bids=no, sid=1, venue_seq=len(out) + 1)))
    venue_seq = len(out)
    trade_id = 0
    while len(out) < n:
        ts += rng.randrange(50_000, 2_000_000)
        ticker = tickers[rng.randrange(markets)]
        mid = min(9_000, max(1_000, mids[ticker] + rng.choice((-100, 0, 0, 0, 100))))
        mids[ticker] = mid
        venue_seq += 1
        if rng.random() < 0.1:
            trade_id += 1
            out.append((ts, PublicTrade(market=ticker, trade_id=f"T{trade_id}", yes_price=mid,
                                        count=rng.randrange(1, 50) * 100, taker_side=rng.choice(("yes", "no")),
                                        sid=2, venue_seq=trade_id)))
            continue
        side = rng.choice(("yes", "no"))
        price = (mid if side == "yes" else 10_000 - mid) - 100 * rng.randrange(1, 6)
        resting = sizes.get((ticker, side, price), 0)
        delta = max(-resting, rng.randrange(-300, 301) * 10) or 10
        sizes[(ticker, side, price)] = resting + delta
        out.append((ts, BookDelta(market=ticker, side=side, price=price, delta=delta, sid=1, venue_seq=venue_seq)))
    return out[:n]
