"""Properties of the fast book: it agrees with the naive reference on every read after every step of
random streams, and its batch path agrees with its per-event path."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book import OrderBook, apply_deltas_by_market
from actors.refbook import ReferenceBook
from runtime.events import BookDelta, BookResynced, BookSnapshot, PublicTrade, SeqGapDetected

M = "KXPROP-1"
# A few clustered prices (so deltas often meet existing levels) and the edges of the grid.
PRICES = [0, 1, 4_000, 4_010, 4_100, 4_200, 5_000, 5_800, 5_900, 6_000, 9_999, 10_000]
price = st.sampled_from(PRICES)
# Round lots make levels return exactly to zero often; odd sizes exercise everything else.
count = st.one_of(st.integers(0, 5).map(lambda k: k * 100), st.integers(0, 1_000))
change = st.one_of(st.integers(-5, 5).map(lambda k: k * 100), st.integers(-600, 600))
side = st.sampled_from(["yes", "no"])
levels = st.lists(st.tuples(price, count), max_size=6).map(tuple)

event = st.one_of(
    st.builds(BookSnapshot, market=st.just(M), yes_bids=levels, no_bids=levels),
    st.builds(BookDelta, market=st.just(M), side=side, price=price, delta=change),
    st.builds(BookDelta, market=st.just(M), side=side, price=price, delta=change),
    st.builds(BookDelta, market=st.just(M), side=side, price=price, delta=st.integers(1, 300)),
    st.builds(BookDelta, market=st.just("KXOTHER"), side=side, price=price, delta=change),
    st.builds(SeqGapDetected, sid=st.just(1), expected=st.just(2), received=st.just(5),
              markets=st.sampled_from([(M,), ("KXOTHER",), ()])),
    st.builds(BookResynced, market=st.just(M)),
    st.just(PublicTrade(market=M, trade_id="t", yes_price=4_000, count=100, taker_side="no")),
    st.just("restore"),  # not an event: round-trip the fast book through its snapshot here
)


def every_read(book) -> dict:
    out: dict = {"snapshot": book.snapshot(), "best_bid": book.best_bid(), "best_ask": book.best_ask(),
                 "spread": book.spread(), "mid2": book.mid2(), "stale": book.stale,
                 "last_update_seq": book.last_update_seq}
    for n in (None, 0, 1, 2, 3, 7):
        out[f"bids({n})"], out[f"asks({n})"] = book.bids(n), book.asks(n)
        out[f"depth({n})"], out[f"imbalance({n})"] = book.depth(n), book.imbalance(n)
    for p in PRICES:
        out[f"bid_size({p})"], out[f"ask_size({p})"] = book.bid_size(p), book.ask_size(p)
        out[f"ask_size({10_000 - p})"] = book.ask_size(10_000 - p)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=60))
def test_the_fast_book_agrees_with_the_reference_after_every_step(stream):
    """Same events in, same derived events out and the same answer to every read, step by step."""
    fast, ref = OrderBook(M), ReferenceBook(M)
    assert every_read(fast) == every_read(ref)
    for seq, ev in enumerate(stream, start=1):
        if ev == "restore":
            fast = OrderBook.restore(fast.snapshot())
        else:
            assert list(fast.handle(seq, seq * 10, ev)) == list(ref.handle(seq, seq * 10, ev))
        assert every_read(fast) == every_read(ref)


def test_levels_are_never_negative_on_a_long_random_stream():
    """A long seeded stream that keeps hitting negative deltas never leaves a level below zero."""
    rng = np.random.default_rng(3)
    book = OrderBook(M)
    for seq in range(1, 20_001):
        if seq % 500 == 1:
            book.handle(seq, seq, BookSnapshot(market=M, yes_bids=((4_000, 300),), no_bids=((5_900, 300),)))
            continue
        book.handle(seq, seq, BookDelta(market=M, side=("yes", "no")[int(rng.integers(2))],
                                        price=int(rng.choice(PRICES)), delta=int(rng.integers(-400, 401))))
        state = book.snapshot()
        assert all(c > 0 for _, c in state.yes_bids + state.no_bids)


rows = st.lists(st.tuples(st.integers(0, 1), price, change), max_size=200)
# Few levels and round lots: levels come back to exactly zero and reopen within one batch.
few = st.sampled_from([4_000, 4_010, 5_900])
round_levels = st.lists(st.tuples(few, st.integers(0, 3).map(lambda k: k * 100)), max_size=3).map(tuple)
round_rows = st.lists(st.tuples(st.integers(0, 1), few, st.sampled_from([-200, -100, 100, 200])), max_size=60)


def per_event(book: OrderBook, table: list[tuple[int, int, int]], first_seq: int) -> int:
    """Feed rows through ``handle``; the index of the row that caused an inconsistency, or -1."""
    bad = -1
    for i, (s, p, d) in enumerate(table):
        out = book.handle(first_seq + i, 0, BookDelta(market=book.market, side=("yes", "no")[s], price=p, delta=d))
        if out and bad < 0:
            bad = i
    return bad


def columns(table: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows -> the batch path's (side int8, price int32, delta int64) columns."""
    return (np.array([r[0] for r in table], np.int8), np.array([r[1] for r in table], np.int32),
            np.array([r[2] for r in table], np.int64))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(levels, levels, rows), st.tuples(round_levels, round_levels, round_rows)))
def test_the_batch_path_agrees_with_the_per_event_path(case):
    """Columns give the same book, the same first inconsistent row and the same last seq as events."""
    yes, no, table = case
    start = BookSnapshot(market=M, yes_bids=yes, no_bids=no)
    one, batch, ref = OrderBook(M), OrderBook(M), ReferenceBook(M)
    for book in (one, batch, ref):
        book.handle(1, 0, start)
    expected = per_event(one, table, first_seq=2)
    side, prices, deltas = columns(table)
    seqs = np.arange(2, 2 + len(table))
    assert batch.apply_deltas(side, prices, deltas, seq=seqs) == expected
    assert ref.apply_deltas(side, prices, deltas, seq=seqs) == expected
    assert batch.snapshot() == one.snapshot() == ref.snapshot()
    assert every_read(batch) == every_read(one)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), price, change), max_size=300))
def test_the_multi_market_batch_agrees_with_the_per_event_path(starts, table):
    """Rows of several markets, each routed to its book, give what per-market events give."""
    table = [(m % len(starts), s, p, d) for m, s, p, d in table]
    names = [f"KXM-{i}" for i in range(len(starts))]
    one = [OrderBook(n) for n in names]
    batch = [OrderBook(n) for n in names]
    for i, (yes, no) in enumerate(starts):
        for book in (one[i], batch[i]):
            book.handle(1, 0, BookSnapshot(market=names[i], yes_bids=yes, no_bids=no))
    expected = [-1] * len(starts)
    for i, (m, s, p, d) in enumerate(table):
        if one[m].handle(2 + i, 0, BookDelta(market=names[m], side=("yes", "no")[s], price=p, delta=d)):
            expected[m] = i
    cols = [np.array([r[k] for r in table], dtype=np.int64) for k in range(4)]
    got = apply_deltas_by_market(batch, cols[0], cols[1], cols[2], cols[3], seq=np.arange(2, 2 + len(table)))
    assert got.tolist() == expected
    assert [b.snapshot() for b in batch] == [b.snapshot() for b in one]
