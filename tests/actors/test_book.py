"""The order-book specification, run on both books: the fast one and the naive reference."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from actors.book import NO, YES, BookState, OrderBook, apply_deltas_by_market
from actors.machine import NOTHING
from actors.refbook import ReferenceBook
from runtime.events import (
    BookDelta,
    BookInconsistent,
    BookResynced,
    BookSnapshot,
    MarketLifecycle,
    PublicTrade,
    SeqGapDetected,
)

M = "KXTEST-1"


@pytest.fixture(params=[OrderBook, ReferenceBook], ids=["fast", "reference"])
def Book(request):
    """Each book class in turn."""
    return request.param


def snap(yes=(), no=(), market=M) -> BookSnapshot:
    return BookSnapshot(market=market, yes_bids=tuple(yes), no_bids=tuple(no))


def delta(side, price, change, market=M) -> BookDelta:
    return BookDelta(market=market, side=side, price=price, delta=change)


def given(Book, *events):
    """A book that has folded ``events`` at seqs 1, 2, …"""
    book = Book(M)
    for seq, event in enumerate(events, start=1):
        book.handle(seq, seq * 1_000, event)
    return book


def reads(book) -> dict:
    """Every read of a book, for comparing two states."""
    return {"bids": book.bids(), "asks": book.asks(), "best_bid": book.best_bid(), "best_ask": book.best_ask(),
            "spread": book.spread(), "mid2": book.mid2(), "depth": book.depth(), "stale": book.stale,
            "last_update_seq": book.last_update_seq}


# --- a new book -------------------------------------------------------------------------------------
def test_a_new_book_is_empty(Book):
    """A book that has seen nothing has no levels, no best prices and no spread."""
    book = Book(M)
    assert (book.bids(), book.asks(), book.best_bid(), book.best_ask(), book.spread(), book.mid2()) == (
        [], [], None, None, None, None)


def test_a_new_book_is_stale_until_its_first_snapshot(Book):
    """A book that has never seen the market's state must not be traded on."""
    assert Book(M).stale is True


def test_a_new_book_ignores_deltas(Book):
    """Deltas before the first snapshot apply to an unknown state, so they change nothing."""
    book = given(Book, delta("yes", 4000, 500))
    assert book.bids() == [] and book.last_update_seq == 0


# --- snapshots ---------------------------------------------------------------------------------------
def test_a_snapshot_sets_both_sides_on_the_yes_leg(Book):
    """YES bids are bids at their price; NO bids at q are asks at 10000 - q."""
    book = given(Book, snap(yes=[(4000, 300), (4100, 200)], no=[(5700, 100), (5800, 400)]))
    assert book.bids() == [(4100, 200), (4000, 300)]
    assert book.asks() == [(4200, 400), (4300, 100)]


def test_a_snapshot_gives_best_prices_spread_and_mid2(Book):
    """Best bid is the highest YES bid, best ask is 10000 - the highest NO bid."""
    book = given(Book, snap(yes=[(4000, 300), (4100, 200)], no=[(5700, 100), (5800, 400)]))
    assert (book.best_bid(), book.best_ask(), book.spread(), book.mid2()) == (4100, 4200, 100, 8300)


def test_a_snapshot_clears_stale(Book):
    """A snapshot is the market's whole state, so the book is current after it."""
    assert given(Book, snap(yes=[(4000, 300)])).stale is False


def test_a_snapshot_with_both_sides_empty_gives_an_empty_current_book(Book):
    """An empty market is a known state: no levels, not stale."""
    book = given(Book, snap())
    assert (book.bids(), book.asks(), book.stale) == ([], [], False)
    assert (book.spread(), book.mid2(), book.depth(), book.imbalance()) == (None, None, (0, 0), 0.0)


def test_a_snapshot_with_only_yes_bids_has_no_ask(Book):
    """Without NO bids there is no ask, hence no spread and no mid."""
    book = given(Book, snap(yes=[(4000, 300)]))
    assert (book.best_bid(), book.best_ask(), book.spread(), book.mid2()) == (4000, None, None, None)


def test_a_snapshot_with_only_no_bids_has_no_bid(Book):
    """Without YES bids there is no bid, hence no spread and no mid."""
    book = given(Book, snap(no=[(5700, 100)]))
    assert (book.best_bid(), book.best_ask(), book.spread(), book.mid2()) == (None, 4300, None, None)


def test_a_snapshot_replaces_the_previous_book(Book):
    """Levels absent from a new snapshot are gone."""
    book = given(Book, snap(yes=[(4000, 300)], no=[(5700, 100)]), snap(yes=[(3900, 50)]))
    assert (book.bids(), book.asks()) == ([(3900, 50)], [])


def test_a_snapshot_sums_repeated_prices_and_drops_empty_levels(Book):
    """Two entries at one price are one level of their total; a zero count is no level."""
    book = given(Book, snap(yes=[(4000, 300), (4000, 200), (3900, 0)]))
    assert book.bids() == [(4000, 500)]


def test_a_snapshot_of_another_market_changes_nothing(Book):
    """A book only follows its own market."""
    book = given(Book, snap(yes=[(4000, 300)]), snap(yes=[(1000, 1)], market="KXOTHER"))
    assert book.bids() == [(4000, 300)] and book.last_update_seq == 1


def test_a_snapshot_with_an_out_of_range_level_is_an_error(Book):
    """A level outside the schema's ranges is a bug upstream, named with its market and level."""
    with pytest.raises(ValueError, match=r"KXTEST-1: snapshot no level \(10001, 5\) is outside"):
        given(Book, snap(no=[(10001, 5)]))


# --- deltas ------------------------------------------------------------------------------------------
def test_a_delta_adds_to_an_existing_level(Book):
    """A positive delta increases the resting count at its level."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, 250))
    assert book.bids() == [(4000, 550)]


def test_a_negative_delta_reduces_an_existing_level(Book):
    """A negative delta smaller than the level leaves the rest."""
    book = given(Book, snap(no=[(5700, 300)]), delta("no", 5700, -120))
    assert book.asks() == [(4300, 180)]


def test_a_delta_to_a_new_level_creates_it(Book):
    """A delta at a price with no size opens a level there."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 3500, 100))
    assert book.bids() == [(4000, 300), (3500, 100)]


def test_a_delta_at_a_better_price_becomes_the_best(Book):
    """A new NO bid above the best NO bid lowers the best ask."""
    book = given(Book, snap(no=[(5700, 100)]), delta("no", 5750, 40))
    assert (book.best_ask(), book.ask_size(4250)) == (4250, 40)


def test_a_delta_to_zero_removes_the_level(Book):
    """The level disappears at zero and the next one becomes the best."""
    book = given(Book, snap(yes=[(4000, 300), (4100, 200)]), delta("yes", 4100, -200))
    assert (book.bids(), book.best_bid(), book.bid_size(4100)) == ([(4000, 300)], 4000, 0)


def test_removing_the_last_level_empties_the_side(Book):
    """With its only level gone a side has no best price."""
    book = given(Book, snap(yes=[(4000, 300)], no=[(5700, 10)]), delta("no", 5700, -10))
    assert (book.asks(), book.best_ask(), book.spread()) == ([], None, None)


def test_a_zero_delta_on_a_missing_level_opens_nothing(Book):
    """A delta of zero changes no level, but it is an applied update."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 3000, 0))
    assert (book.bids(), book.last_update_seq) == ([(4000, 300)], 2)


def test_deltas_reach_the_edges_of_the_price_grid(Book):
    """Prices 0 and 10000 are ordinary levels."""
    book = given(Book, snap(), delta("yes", 0, 5), delta("no", 10_000, 7))
    assert (book.bids(), book.asks()) == ([(0, 5)], [(0, 7)])


def test_a_delta_of_another_market_changes_nothing(Book):
    """A book only follows its own market."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, 5, market="KXOTHER"))
    assert book.bids() == [(4000, 300)] and book.last_update_seq == 1


# --- inconsistency -----------------------------------------------------------------------------------
def test_a_delta_below_zero_is_an_inconsistency_event(Book):
    """The event names the market, the delta's side, price and size, what rested, and the cause."""
    book = given(Book, snap(yes=[(4000, 300)]))
    out = book.handle(7, 7_000, delta("yes", 4000, -301))
    assert list(out) == [BookInconsistent(market=M, side="yes", price=4000, delta=-301, resting=300, cause_seq=7)]


def test_a_delta_below_zero_changes_nothing_and_marks_stale(Book):
    """Never a silent clamp: the level keeps its count and the book is stale."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, -301))
    assert (book.bids(), book.stale, book.last_update_seq) == ([(4000, 300)], True, 1)


def test_a_negative_delta_on_a_missing_level_reports_nothing_resting(Book):
    """Reducing a level that does not exist is inconsistent, with resting 0."""
    book = given(Book, snap(no=[(5700, 100)]))
    (event,) = book.handle(2, 2_000, delta("no", 5600, -50))
    assert (event.resting, event.price, event.side) == (0, 5600, "no")


def test_a_stale_book_ignores_deltas_until_a_snapshot(Book):
    """After an inconsistency, deltas neither apply nor report again."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, -301))
    assert book.handle(3, 3_000, delta("yes", 4000, -1000)) == NOTHING
    assert book.handle(4, 4_000, delta("yes", 3900, 5)) == NOTHING
    assert book.bids() == [(4000, 300)]


def test_a_snapshot_after_an_inconsistency_resumes_the_book(Book):
    """The resync snapshot clears stale and deltas apply again."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, -301), snap(yes=[(4000, 10)]),
                 delta("yes", 4000, -4))
    assert (book.bids(), book.stale, book.last_update_seq) == ([(4000, 6)], False, 4)


# --- gaps and resyncs ---------------------------------------------------------------------------------
def test_a_seq_gap_listing_the_market_marks_it_stale(Book):
    """The venue skipped messages of this market's subscription."""
    book = given(Book, snap(yes=[(4000, 300)]), SeqGapDetected(sid=1, expected=5, received=7, markets=("X", M)))
    assert book.stale is True


def test_a_seq_gap_not_listing_the_market_changes_nothing(Book):
    """Another subscription's gap does not touch this book."""
    book = given(Book, snap(yes=[(4000, 300)]), SeqGapDetected(sid=1, expected=5, received=7, markets=("X",)))
    assert book.stale is False


def test_after_a_seq_gap_deltas_are_ignored_until_a_snapshot(Book):
    """A stale book's picture is frozen until the market's state arrives again."""
    book = given(Book, snap(yes=[(4000, 300)]), SeqGapDetected(sid=1, expected=5, received=7, markets=(M,)),
                 delta("yes", 4000, 100))
    assert (book.bids(), book.stale) == ([(4000, 300)], True)


def test_a_snapshot_after_a_seq_gap_clears_stale(Book):
    """The resync snapshot replaces the book and makes it current."""
    book = given(Book, snap(yes=[(4000, 300)]), SeqGapDetected(sid=1, expected=5, received=7, markets=(M,)),
                 snap(yes=[(4100, 1)]), delta("yes", 4100, 1))
    assert (book.bids(), book.stale) == ([(4100, 2)], False)


def test_a_resynced_marker_does_not_clear_stale(Book):
    """Only a snapshot makes a stale book current; the gateway's marker is not data."""
    book = given(Book, snap(yes=[(4000, 300)]), SeqGapDetected(sid=1, expected=5, received=7, markets=(M,)),
                 BookResynced(market=M, sid=1))
    assert book.stale is True


@pytest.mark.parametrize("event", [
    PublicTrade(market=M, trade_id="t1", yes_price=4000, count=100, taker_side="yes"),
    MarketLifecycle(market=M, kind="close_date_updated", close_ts_ms=1_800_000_000_000),
    BookResynced(market=M),
], ids=["trade", "lifecycle", "resynced"])
def test_other_events_change_nothing(Book, event):
    """Events that are not book data return nothing and leave the book as it was."""
    book = given(Book, snap(yes=[(4000, 300)], no=[(5700, 100)]))
    before = reads(book)
    assert book.handle(9, 9_000, event) == NOTHING
    assert reads(book) == before


def test_last_update_seq_follows_applied_snapshots_and_deltas(Book):
    """Ignored and inconsistent deltas and other events do not move it."""
    book = given(Book, snap(yes=[(4000, 300)]), delta("yes", 4000, 1), delta("yes", 4000, -1000),
                 PublicTrade(market=M, trade_id="t1", yes_price=4000, count=100, taker_side="yes"))
    assert book.last_update_seq == 2


# --- crossed and locked books ---------------------------------------------------------------------------
def test_a_crossed_book_is_kept_as_sent(Book):
    """A bid above the ask stays; the spread is negative."""
    book = given(Book, snap(yes=[(4500, 10)], no=[(5700, 20)]))
    assert (book.best_bid(), book.best_ask(), book.spread(), book.mid2()) == (4500, 4300, -200, 8800)


def test_a_locked_book_is_kept_as_sent(Book):
    """A bid equal to the ask stays; the spread is zero."""
    book = given(Book, snap(yes=[(4300, 10)]), delta("no", 5700, 20))
    assert (book.spread(), book.bid_size(4300), book.ask_size(4300)) == (0, 10, 20)


# --- reads -----------------------------------------------------------------------------------------------
def test_bids_and_asks_are_limited_to_the_top_n_best_first(Book):
    """``n`` counts levels from the best; more than there are gives them all."""
    book = given(Book, snap(yes=[(3800, 1), (3900, 2), (4000, 3)], no=[(5700, 4), (5600, 5), (5500, 6)]))
    assert (book.bids(2), book.asks(2)) == ([(4000, 3), (3900, 2)], [(4300, 4), (4400, 5)])
    assert (book.bids(0), book.asks(10)) == ([], [(4300, 4), (4400, 5), (4500, 6)])


def test_depth_sums_the_top_n_levels_of_each_side(Book):
    """Depth is (bid count, ask count) over the best ``n`` levels; None means all."""
    book = given(Book, snap(yes=[(3800, 1), (3900, 2), (4000, 3)], no=[(5700, 4), (5600, 5), (5500, 6)]))
    assert (book.depth(2), book.depth(), book.depth(0), book.depth(9)) == ((5, 9), (6, 15), (0, 0), (6, 15))


def test_top_is_the_touch_its_sizes_and_the_depth_in_one_read():
    """``top(n)`` is (best bid, best ask, size at each, depth(n)) as the separate reads give them; an empty side
    reads None and zeros; fewer than one level is a bug, said plainly."""
    full = given(OrderBook, snap(yes=[(3800, 1), (3900, 2), (4000, 3)], no=[(5700, 4), (5600, 5), (5500, 6)]))
    one_sided = given(OrderBook, snap(no=[(5700, 4)]))
    for book in (full, one_sided, OrderBook(M)):
        for n in (1, 2, 3, 9):
            bid, ask = book.best_bid(), book.best_ask()
            assert book.top(n) == (bid, ask, 0 if bid is None else book.bid_size(bid),
                                   0 if ask is None else book.ask_size(ask), *book.depth(n))
    assert full.top(2) == (4000, 4300, 3, 4, 5, 9)
    with pytest.raises(ValueError, match=r"number of levels must be >= 1, got 0"):
        full.top(0)


def test_imbalance_compares_bid_and_ask_depth(Book):
    """(bid - ask) / (bid + ask) over the top ``n`` levels."""
    book = given(Book, snap(yes=[(3900, 100), (4000, 300)], no=[(5700, 100)]))
    assert (book.imbalance(1), book.imbalance()) == (0.5, 0.6)


def test_sizes_are_read_at_yes_leg_prices(Book):
    """ask_size(p) is the NO bid at 10000 - p; an absent or off-grid price has size 0."""
    book = given(Book, snap(yes=[(4000, 300)], no=[(5700, 100)]))
    assert (book.bid_size(4000), book.ask_size(4300), book.ask_size(5700)) == (300, 100, 0)
    assert (book.bid_size(-1), book.ask_size(10_001)) == (0, 0)


def test_a_negative_level_count_is_an_error(Book):
    """Asking for fewer than zero levels is a bug, said plainly."""
    with pytest.raises(ValueError, match=r"number of levels must be >= 0 or None \(all levels\), got -1"):
        Book(M).bids(-1)


# --- state ------------------------------------------------------------------------------------------------
def test_snapshot_lists_both_ladders_as_kalshi_sends_them(Book):
    """The state holds YES and NO bids ascending by price, the stale flag and the last update's seq."""
    book = given(Book, snap(yes=[(4100, 200), (4000, 300)], no=[(5800, 400), (5700, 100)]))
    assert book.snapshot() == BookState(market=M, yes_bids=((4000, 300), (4100, 200)),
                                        no_bids=((5700, 100), (5800, 400)), stale=False, last_update_seq=1)


@pytest.mark.parametrize("stale", [False, True], ids=["current", "stale"])
def test_restore_rebuilds_an_equal_book(Book, stale):
    """restore(snapshot()) reads the same as the original, and snapshots equal after one more delta."""
    events = [snap(yes=[(4000, 300), (4100, 5)], no=[(5700, 100)]), delta("no", 5600, 7)]
    if stale:
        events.append(delta("yes", 4000, -999))
    book = given(Book, *events)
    copy = Book.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(book.snapshot()), type=BookState))
    assert reads(copy) == reads(book)
    for b in (book, copy):
        b.handle(9, 9_000, snap(yes=[(4000, 1)]))
        b.handle(10, 10_000, delta("yes", 4100, 2))
    assert copy.snapshot() == book.snapshot()


# --- the raw and batch operations ---------------------------------------------------------------------------
def test_apply_delta_reports_a_negative_level_and_changes_nothing(Book):
    """The raw operation returns False, leaves the level and does not touch stale."""
    book = given(Book, snap(yes=[(4000, 300)]))
    assert book.apply_delta("yes", 4000, -301) is False
    assert (book.bids(), book.stale) == ([(4000, 300)], False)


def test_apply_delta_applies_even_to_a_stale_book(Book):
    """The raw operation is below the stale rule; ``handle`` applies that rule."""
    book = Book(M)
    assert book.apply_delta("no", 5700, 10) is True
    assert book.asks() == [(4300, 10)]


def test_apply_delta_names_a_bad_side(Book):
    """A side other than 'yes' or 'no' is a bug, named in the error."""
    with pytest.raises(ValueError, match=r"KXTEST-1: side must be 'yes' or 'no', got 'bid'"):
        Book(M).apply_delta("bid", 4000, 1)


def test_apply_deltas_applies_columns_in_order(Book):
    """Columns give the same book as the same deltas one by one."""
    book = given(Book, snap(yes=[(4000, 300)], no=[(5700, 100)]))
    bad = book.apply_deltas(np.array([YES, NO, YES, YES], np.int8), np.array([4000, 5700, 4100, 4000], np.int32),
                            np.array([-300, 50, 10, 20], np.int64), seq=np.array([5, 6, 7, 8]))
    assert (bad, book.bids(), book.asks(), book.last_update_seq) == (-1, [(4100, 10), (4000, 20)], [(4300, 150)], 8)


def test_apply_deltas_stops_at_the_first_inconsistent_delta(Book):
    """The deltas before it apply, it and the rest do not, its index is returned and the book is stale."""
    book = given(Book, snap(yes=[(4000, 300)]))
    bad = book.apply_deltas(np.array([YES, YES, YES, YES]), np.array([4000, 3900, 4000, 3900]),
                            np.array([-100, 5, -201, 1]), seq=np.array([2, 3, 4, 5]))
    assert (bad, book.bids(), book.stale, book.last_update_seq) == (2, [(4000, 200), (3900, 5)], True, 3)


def test_apply_deltas_on_a_stale_book_applies_nothing(Book):
    """A stale book ignores columns as it ignores events."""
    book = Book(M)
    assert book.apply_deltas(np.array([YES]), np.array([4000]), np.array([5])) == -1
    assert book.bids() == []


def test_apply_deltas_refuses_a_bad_side_code(Book):
    """Side codes other than YES (0) and NO (1) are a bug, said plainly."""
    book = given(Book, snap())
    with pytest.raises(ValueError, match=r"column side must hold 0 \(yes\) or 1 \(no\)"):
        book.apply_deltas(np.array([0, 2]), np.array([4000, 4000]), np.array([1, 1]))


def test_apply_deltas_by_market_routes_each_row_to_its_book():
    """Each book gets its own rows in order; the first inconsistent row of each is reported by index."""
    books = [given(OrderBook, snap(yes=[(4000, 10)])), OrderBook(M), given(OrderBook, snap(no=[(5700, 10)]))]
    books[1].handle(1, 1_000, snap())
    bad = apply_deltas_by_market(books, np.array([0, 2, 0, 2, 1]), np.array([YES, NO, YES, NO, YES]),
                                 np.array([4000, 5700, 4000, 5700, 100]), np.array([5, -11, -20, 3, 7]))
    assert bad.tolist() == [2, -1, 1]
    assert [b.bids() + b.asks() for b in books] == [[(4000, 15)], [(100, 7)], [(4300, 10)]]


def test_apply_deltas_removes_levels_brought_to_zero_and_opens_new_ones(Book):
    """Within one batch a level can empty, another open, and the best prices follow."""
    book = given(Book, snap(yes=[(4000, 300), (4100, 100)], no=[(5700, 100)]))
    book.apply_deltas(np.array([YES, NO, NO, YES]), np.array([4100, 5700, 5600, 3900]), np.array([-100, -100, 20, 5]))
    assert (book.bids(), book.asks(), book.spread()) == ([(4000, 300), (3900, 5)], [(4400, 20)], 400)


# --- the benchmark's stream and command (figures are printed, never asserted) ---------------------------------
def test_the_benchmark_stream_is_seeded_and_consistent():
    """Same seed, same stream; fed to the books it never makes a level negative."""
    from actors.bench import book_stream

    one, two = book_stream(3_000, markets=3, seed=5), book_stream(3_000, markets=3, seed=5)
    assert one.deltas == two.deltas and one.delta.tolist() == two.delta.tolist()
    books = {name: OrderBook(name) for name in one.markets}
    for r in one.snapshots + one.deltas:
        assert books[r.event.market].handle(r.seq, r.ts_ns, r.event) == NOTHING
    assert not any(b.stale for b in books.values())


def test_tape_bench_book_prints_both_rates_as_json():
    """The command runs both paths on one stream and says whether they agree."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    tape = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
    done = subprocess.run([tape, "bench", "book", "--deltas", "2000", "--repeat", "1", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["book_event_dps"] > 0 and figures["book_batch_dps"] > 0
    import importlib.util

    nautilus = importlib.util.find_spec("nautilus_trader") is not None  # an optional, benchmark-only extra
    assert (figures["paths_agree"], figures["inconsistencies"], "nautilus_dps" in figures) == (True, 0, nautilus)
