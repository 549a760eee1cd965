"""The order-book benchmark behind ``tape bench book``: figures to print, never assertions.

Both paths consume the same realistic stream of book deltas, generated here (``book_stream``) and
measured in the same run:

* ``book_event_dps`` — the per-event path: log records decoded by msgspec into ``Record`` objects
  beforehand (decoding is the log reader's cost, measured by ``tape bench log``), then the loop a
  replay or a book actor runs: for each record, pick the market's book by ``event.market`` and call
  ``handle(seq, ts_ns, event)``. The timed region is that loop and nothing else.
* ``book_batch_dps`` — the batch path: the same deltas as columns (market index, side, price, delta,
  seq: the columnar form of a session), applied by :func:`actors.book.apply_deltas_by_market`. The
  timed region is that one call, which includes partitioning the rows by market.

Snapshots that open the stream are applied before timing and not counted. The stream keeps every
level non-negative, so both paths do all their work (a stale book would ignore deltas); the benchmark
checks that both paths end in identical books and reports it as ``paths_agree``.

Other figures are added by passing ``measures``: a mapping from a key (``"matcher_ops"``) to a function
of the :class:`BookStream` that returns a rate; each is reported as the median over the repeats.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
import numpy as np

from runtime.events import BookDelta, BookSnapshot, Record

from .book import PRICE_MAX, OrderBook, apply_deltas_by_market

__all__ = ["BookStream", "book_stream", "matcher_ops", "run_book_bench"]

TICK = 100  # one cent in price units


@dataclass(frozen=True)
class BookStream:
    """One stream in two forms: decoded log records, and columns of its deltas."""

    markets: tuple[str, ...]
    snapshots: list[Record]  # one per market, first in the log
    deltas: list[Record]  # BookDelta records, decoded from msgpack as the log reader yields them
    market: np.ndarray  # int16 index into ``markets``
    side: np.ndarray  # int8: 0 yes, 1 no
    price: np.ndarray  # int32, the ladder's price
    delta: np.ndarray  # int64, the signed count change
    seq: np.ndarray  # int64
    level_after: np.ndarray  # int64, the level's count after the delta (absolute form, for L2 books)


def book_stream(deltas: int, *, markets: int = 16, seed: int = 1) -> BookStream:
    """A seeded, consistent stream of Kalshi book data: a snapshot per market, then ``deltas`` deltas.

    Per market and ladder: about half the deltas add a lot (1-50 contracts) at a level a geometric
    number of ticks behind the best (sometimes improving it, never crossing), a third reduce a level
    near the top in part, and the rest take out a whole level (mostly the best, as a trade would).
    Levels never go negative. Same arguments, same stream.
    """
    rng = random.Random(seed)
    names = tuple(f"KXBENCH-{i:03d}" for i in range(markets))
    books: list[tuple[dict[int, int], dict[int, int]]] = []
    snapshots: list[Record] = []
    ts = 1_700_000_000_000_000_000
    for i, name in enumerate(names):
        mid = rng.randrange(20, 81) * TICK
        yes = {mid - TICK * k: rng.randrange(1, 200) * 100 for k in range(1, 8)}
        no = {PRICE_MAX - mid - TICK * k: rng.randrange(1, 200) * 100 for k in range(1, 8)}
        books.append((yes, no))
        snapshots.append(Record(i + 1, ts, BookSnapshot(market=name, yes_bids=tuple(sorted(yes.items())),
                                                        no_bids=tuple(sorted(no.items())), sid=1, venue_seq=i + 1)))
    rows_market, rows_side, rows_price, rows_delta, rows_after = [], [], [], [], []
    records: list[Record] = []
    for n in range(deltas):
        m = rng.randrange(markets)
        s = rng.randrange(2)
        ladder, other = books[m][s], books[m][1 - s]
        best = max(ladder) if ladder else None
        ceiling = PRICE_MAX - max(other) - TICK if other else PRICE_MAX - TICK  # highest bid that does not cross
        action = rng.random()
        if best is None or action < 0.5:
            start = best if best is not None else ceiling - 5 * TICK
            price = start - TICK * min(int(rng.expovariate(0.4)), 20)
            if best is not None and rng.random() < 0.08:
                price = best + TICK  # improve the best
            price = max(TICK, min(price, ceiling))
            change = rng.randrange(1, 51) * 100
        else:
            top = sorted(ladder, reverse=True)[:6]
            price = top[min(int(rng.expovariate(0.7)), len(top) - 1)]
            change = -ladder[price] if action > 0.85 else -rng.randrange(1, ladder[price] + 1)
        after = ladder.get(price, 0) + change
        if after:
            ladder[price] = after
        else:
            del ladder[price]
        ts += rng.randrange(20_000, 2_000_000)
        seq = markets + n + 1
        records.append(Record(seq, ts, BookDelta(market=names[m], side=("yes", "no")[s], price=price, delta=change,
                                                 sid=1, venue_seq=seq)))
        rows_market.append(m)
        rows_side.append(s)
        rows_price.append(price)
        rows_delta.append(change)
        rows_after.append(after)
    decoded = msgspec.msgpack.Decoder(list[Record]).decode(msgspec.msgpack.encode(records))
    return BookStream(markets=names, snapshots=snapshots, deltas=decoded,
                      market=np.array(rows_market, np.int16), side=np.array(rows_side, np.int8),
                      price=np.array(rows_price, np.int32), delta=np.array(rows_delta, np.int64),
                      seq=np.arange(markets + 1, markets + 1 + deltas, dtype=np.int64),
                      level_after=np.array(rows_after, np.int64))


def _opened(stream: BookStream) -> dict[str, OrderBook]:
    books = {name: OrderBook(name) for name in stream.markets}
    for r in stream.snapshots:
        books[r.event.market].handle(r.seq, r.ts_ns, r.event)  # type: ignore[union-attr]
    return books


def _event_path(stream: BookStream) -> tuple[float, dict[str, OrderBook], int]:
    books = _opened(stream)
    inconsistencies = 0
    start = time.perf_counter()
    for r in stream.deltas:
        event = r.event
        if books[event.market].handle(r.seq, r.ts_ns, event):  # type: ignore[union-attr]
            inconsistencies += 1
    return time.perf_counter() - start, books, inconsistencies


def _batch_path(stream: BookStream) -> tuple[float, dict[str, OrderBook]]:
    books = _opened(stream)
    ordered = [books[name] for name in stream.markets]
    start = time.perf_counter()
    apply_deltas_by_market(ordered, stream.market, stream.side, stream.price, stream.delta, stream.seq)
    return time.perf_counter() - start, books


def _nautilus(stream: BookStream) -> Callable[[], float] | None:
    """A timer of NautilusTrader's L2 book on the same stream, or None if it is not installed.

    Nautilus takes absolute level sizes (add / update / delete), so its deltas are built from
    ``level_after`` before timing: the "prebuilt deltas" figure of DESIGN §6.
    """
    try:
        from nautilus_trader.model.book import OrderBook as NautilusBook
        from nautilus_trader.model.data import BookOrder, OrderBookDelta
        from nautilus_trader.model.enums import BookAction, BookType, OrderSide
        from nautilus_trader.model.identifiers import InstrumentId
        from nautilus_trader.model.objects import Price, Quantity
    except ImportError:
        return None
    ids = [InstrumentId.from_str(f"{name}.KALSHI") for name in stream.markets]
    prepared = []
    for r, m, s, p, after in zip(stream.deltas, stream.market.tolist(), stream.side.tolist(), stream.price.tolist(),
                                 stream.level_after.tolist(), strict=True):
        before = after - r.event.delta  # type: ignore[union-attr]
        action = BookAction.DELETE if after == 0 else BookAction.ADD if before == 0 else BookAction.UPDATE
        yes_price = p if s == 0 else PRICE_MAX - p
        order = BookOrder(OrderSide.BUY if s == 0 else OrderSide.SELL, Price(yes_price / 10_000, 4),
                          Quantity(after / 100, 2), 0)
        prepared.append((m, OrderBookDelta(ids[m], action, order, 0, r.seq, r.ts_ns, r.ts_ns)))

    def run() -> float:
        books = [NautilusBook(i, BookType.L2_MBP) for i in ids]
        for r in stream.snapshots:  # opening levels, untimed
            m = stream.markets.index(r.event.market)  # type: ignore[union-attr]
            for price, count in r.event.yes_bids:  # type: ignore[union-attr]
                books[m].apply_delta(OrderBookDelta(ids[m], BookAction.ADD, BookOrder(
                    OrderSide.BUY, Price(price / 10_000, 4), Quantity(count / 100, 2), 0), 0, r.seq, r.ts_ns, r.ts_ns))
            for price, count in r.event.no_bids:  # type: ignore[union-attr]
                books[m].apply_delta(OrderBookDelta(ids[m], BookAction.ADD, BookOrder(
                    OrderSide.SELL, Price((PRICE_MAX - price) / 10_000, 4), Quantity(count / 100, 2), 0), 0, r.seq,
                    r.ts_ns, r.ts_ns))
        start = time.perf_counter()
        for m, d in prepared:
            books[m].apply_delta(d)
        return time.perf_counter() - start

    return run


def matcher_ops(stream: BookStream, orders: int = 20_000, seed: int = 7, *, step_ns: int = 1_000,
                **settings: object) -> float:
    """Orders per second through the paper matcher, with Kalshi's fee schedule and zero latency (or ``settings``:
    the matcher's keyword settings, e.g. a paper profile's; events are ``step_ns`` of event time apart).

    Each order is an ``OrderIntent`` and its ``CashReserved`` (the matcher's admission, validation and
    matching run on the second); a quarter are IOC, the rest GTC, a third of which are cancelled at
    once; prices lie within a few ticks of the touch, so orders both take and rest. One book delta from
    the stream is folded between orders, so consumed-size, queue and crossing rules run as in a session.
    The timed region is the whole fold; the figure counts orders.
    """
    from runtime.events import CancelRequested, CashReserved, OrderIntent

    from .fees import KalshiFees
    from .matcher import PaperMatcher

    matcher = PaperMatcher(KalshiFees().trade_fee, **settings)  # type: ignore[arg-type]
    for record in stream.snapshots:
        matcher.handle(record.seq, record.ts_ns, record.event)
    rng = random.Random(seed)
    events: list[object] = []
    deltas = iter(stream.deltas)
    for i in range(orders):
        market = stream.markets[rng.randrange(len(stream.markets))]
        book = matcher.books[market]
        side = "bid" if rng.random() < 0.5 else "ask"
        touch = (book.best_ask() if side == "bid" else book.best_bid()) or 5_000
        price = min(9_900, max(100, touch + TICK * rng.randrange(-3, 2) * (1 if side == "bid" else -1)))
        tif = "ioc" if rng.random() < 0.25 else "gtc"
        coid = f"b{i}"
        events.append(OrderIntent(cause_seq=1, client_order_id=coid, market=market, side=side, price=price,
                                  count=rng.randrange(1, 20) * 100, tif=tif))
        events.append(CashReserved(client_order_id=coid, amount=1, cause_seq=1))
        if tif == "gtc" and rng.random() < 0.33:
            events.append(CancelRequested(cause_seq=1, client_order_id=coid))
        record = next(deltas, None)
        if record is not None:
            events.append(record.event)
    seq = len(stream.snapshots)
    ts = stream.snapshots[-1].ts_ns
    handle = matcher.handle
    start = time.perf_counter()
    for event in events:
        seq += 1
        ts += step_ns
        handle(seq, ts, event)  # type: ignore[arg-type]
    return orders / max(time.perf_counter() - start, 1e-9)


def run_book_bench(deltas: int = 1_000_000, *, markets: int = 16, seed: int = 1, repeat: int = 3,
                   measures: Mapping[str, Callable[[BookStream], float]] | None = None,
                   say: Callable[[str], None] = lambda _: None) -> dict[str, object]:
    """Measure both book paths (and ``measures``, and NautilusTrader's book when it is installed) on one
    stream; each rate is the median over ``repeat`` runs. Returns the figures as a JSON-able dict."""
    say(f"generating {deltas:,} book deltas over {markets} markets (seed {seed}) …")
    stream = book_stream(deltas, markets=markets, seed=seed)
    nautilus_error = None
    try:
        nautilus = _nautilus(stream)
    except Exception as exc:  # installed but not the API this was written for: say so, measure the rest
        nautilus, nautilus_error = None, f"{type(exc).__name__}: {exc}"
    event_s, batch_s, nautilus_s, agree, inconsistent = [], [], [], True, 0
    extra: dict[str, list[float]] = {key: [] for key in (measures or {})}
    for i in range(max(1, repeat)):
        say(f"run {i + 1}/{repeat}: per-event path, then batch path …")
        seconds, by_event, inconsistent = _event_path(stream)
        event_s.append(seconds)
        seconds, by_batch = _batch_path(stream)
        batch_s.append(seconds)
        agree = agree and all(by_event[m].snapshot() == by_batch[m].snapshot() for m in stream.markets)
        if nautilus is not None:
            try:
                nautilus_s.append(nautilus())
            except Exception as exc:
                nautilus, nautilus_error = None, f"{type(exc).__name__}: {exc}"
        for key, measure in (measures or {}).items():
            extra[key].append(measure(stream))
    result: dict[str, object] = {
        "deltas": deltas, "markets": markets, "seed": seed, "repeat": max(1, repeat),
        "book_event_dps": round(deltas / max(statistics.median(event_s), 1e-9)),
        "book_batch_dps": round(deltas / max(statistics.median(batch_s), 1e-9)),
    }
    if nautilus_s and nautilus_error is None:
        result["nautilus_dps"] = round(deltas / max(statistics.median(nautilus_s), 1e-9))
    if nautilus_error is not None:
        result["nautilus_error"] = nautilus_error
    for key, rates in extra.items():
        result[key] = round(statistics.median(rates))
    result["paths_agree"] = agree
    result["inconsistencies"] = inconsistent
    return result
