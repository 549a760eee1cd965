"""Matching-engine specifications: given resting orders, when an order or a cancel arrives, then these
fills, public trades, book deltas and book."""

from __future__ import annotations

import pytest

from runtime.events import BookDelta, BookSnapshot, PublicTrade
from runtime.venues.sim import Canceled, Fill, MatchingEngine, RestingOrder

M = "KXENG"


def book(*orders: tuple[str, str, int, int]) -> MatchingEngine:
    """An engine with these (owner, side, price, count) orders resting, placed at ts 1, 2, 3, …"""
    engine = MatchingEngine(M)
    for ts, (owner, side, price, count) in enumerate(orders, start=1):
        placed = engine.submit(owner, side, price, count, ts)  # type: ignore[arg-type]
        assert placed.status == "resting", placed
    return engine


def delta(side: str, price: int, change: int, ts: int) -> BookDelta:
    return BookDelta(M, side, price, change, venue_ts_ms=ts)  # type: ignore[arg-type]


def trade(n: int, yes_price: int, count: int, taker_side: str, ts: int) -> PublicTrade:
    return PublicTrade(M, f"{M}:{n}", yes_price, count, taker_side, venue_ts_ms=ts)  # type: ignore[arg-type]


# --- resting ---------------------------------------------------------------------------------------
def test_a_bid_that_crosses_nothing_rests_on_the_yes_ladder():
    """A bid with no ask at or below it rests; its level grows on the yes ladder by its count."""
    engine = MatchingEngine(M)
    placed = engine.submit("a", "bid", 4_500, 1_000, 7, client_order_id="c1")
    assert (placed.order_id, placed.client_order_id, placed.status) == (1, "c1", "resting")
    assert (placed.filled, placed.remaining, placed.canceled, placed.fills) == (0, 1_000, 0, ())
    assert placed.events == (delta("yes", 4_500, 1_000, 7),)
    assert engine.best_bid() == 4_500 and engine.best_ask() is None
    assert engine.order(1) == RestingOrder(1, "a", "c1", "bid", 4_500, 1_000, 1_000, 7)


def test_an_ask_rests_on_the_no_ladder_at_the_complementary_price():
    """An ask at p is a NO bid at 10000 - p: its delta is on the no ladder at that price."""
    engine = MatchingEngine(M)
    placed = engine.submit("a", "ask", 5_800, 300, 1)
    assert placed.events == (delta("no", 4_200, 300, 1),)
    assert engine.best_ask() == 5_800 and engine.ask_size(5_800) == 300


def test_orders_at_one_price_add_up_in_the_level_and_queue_in_arrival_order():
    """Two bids at one price make one level of their summed count, first come first in the queue."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 250))
    assert engine.levels() == (((4_000, 350),), ())
    assert [(o.owner, o.remaining) for o in engine.queue("bid", 4_000)] == [("a", 100), ("b", 250)]


def test_snapshot_lists_both_ladders_ascending_as_kalshi_sends_them():
    """The snapshot holds YES bids and NO bids, each ascending by its own price, counts summed per level."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_100, 200), ("c", "bid", 4_000, 50),
                  ("d", "ask", 4_500, 300), ("e", "ask", 4_700, 400))
    assert engine.snapshot(9) == BookSnapshot(M, yes_bids=((4_000, 150), (4_100, 200)),
                                              no_bids=((5_300, 400), (5_500, 300)), venue_ts_ms=9)


# --- matching --------------------------------------------------------------------------------------
def test_a_crossing_bid_takes_the_best_priced_ask_first():
    """Price priority: of two asks, the lower one fills first, even though it arrived later."""
    engine = book(("a", "ask", 5_100, 100), ("b", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_200, 100, 10)
    assert placed.status == "filled"
    assert [(f.owner, f.price) for f in placed.fills if not f.is_taker] == [("b", 5_000)]
    assert engine.best_ask() == 5_100


def test_at_one_price_the_first_order_fills_first():
    """Time priority: at one price, the order that rested first is filled first, whoever owns it."""
    engine = book(("a", "ask", 5_000, 100), ("b", "ask", 5_000, 100), ("c", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 150, 10)
    makers = [(f.owner, f.count, f.remaining) for f in placed.fills if not f.is_taker]
    assert makers == [("a", 100, 0), ("b", 50, 50)]
    assert [(o.owner, o.remaining) for o in engine.queue("ask", 5_000)] == [("b", 50), ("c", 100)]


def test_queue_ahead_is_the_count_that_must_go_before_an_order_fills():
    """An order's place in its queue: what rests ahead of it at its price, shrinking as those trade or cancel."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 200), ("c", "bid", 4_000, 300), ("d", "bid", 4_100, 50))
    assert [engine.queue_ahead(i) for i in (1, 2, 3, 4)] == [0, 100, 300, 0]
    engine.submit("t", "ask", 4_000, 110, 10)  # takes d (better price), then 60 of a
    engine.cancel(2, 11)
    assert [engine.queue_ahead(i) for i in (1, 2, 3, 4)] == [0, None, 40, None]


def test_a_partly_filled_maker_keeps_its_place_at_the_front():
    """A maker filled in part stays first in its queue with what remains."""
    engine = book(("a", "bid", 4_000, 300), ("b", "bid", 4_000, 100))
    engine.submit("t", "ask", 4_000, 100, 10)
    assert [(o.owner, o.remaining) for o in engine.queue("bid", 4_000)] == [("a", 200), ("b", 100)]
    engine.submit("t", "ask", 4_000, 250, 11)
    assert [(o.owner, o.remaining) for o in engine.queue("bid", 4_000)] == [("b", 50)]


def test_a_trade_prints_at_the_makers_price():
    """A bid limited at 5,500 that meets an ask at 5,000 trades at 5,000 (the resting order's price)."""
    engine = book(("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_500, 100, 10)
    assert {f.price for f in placed.fills} == {5_000}
    assert placed.events[0] == trade(1, 5_000, 100, "yes", 10)


def test_fills_come_in_pairs_sharing_a_trade_id():
    """Each match gives the taker and the maker one fill each, with one trade id, sides and remainders."""
    engine = book(("m", "bid", 4_200, 500))
    placed = engine.submit("t", "ask", 4_200, 200, 10, client_order_id="x")
    assert placed.fills == (
        Fill(f"{M}:1", 2, "t", "x", "ask", 4_200, 200, True, 0, 10),
        Fill(f"{M}:1", 1, "m", None, "bid", 4_200, 200, False, 300, 10),
    )


def test_a_sweep_prints_a_trade_per_maker_and_one_delta_per_level():
    """Taking through three levels: trades for each maker in priority order, then each level's net change."""
    engine = book(("a", "ask", 5_000, 100), ("b", "ask", 5_000, 50), ("c", "ask", 5_100, 100), ("d", "ask", 5_200, 100))
    placed = engine.submit("t", "bid", 5_200, 300, 10)
    assert placed.events == (
        trade(1, 5_000, 100, "yes", 10), trade(2, 5_000, 50, "yes", 10), delta("no", 5_000, -150, 10),
        trade(3, 5_100, 100, "yes", 10), delta("no", 4_900, -100, 10),
        trade(4, 5_200, 50, "yes", 10), delta("no", 4_800, -50, 10),
    )
    assert engine.levels() == ((), ((4_800, 50),))


def test_a_sell_prints_with_taker_side_no():
    """An ask taking a bid is a NO-side taker on the public tape, at the bid's YES price."""
    engine = book(("m", "bid", 3_300, 100))
    placed = engine.submit("t", "ask", 3_000, 100, 10)
    assert placed.events == (trade(1, 3_300, 100, "no", 10), delta("yes", 3_300, -100, 10))


def test_a_gtc_taker_rests_what_it_could_not_fill_at_its_limit():
    """Partial fill of the taker: the rest rests at its own price, and the delta for it comes last."""
    engine = book(("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_100, 250, 10)
    assert (placed.status, placed.filled, placed.remaining, placed.canceled) == ("resting", 100, 150, 0)
    assert placed.events[-1] == delta("yes", 5_100, 150, 10)
    assert engine.best_bid() == 5_100 and engine.best_ask() is None
    assert engine.order(2) == RestingOrder(2, "t", None, "bid", 5_100, 250, 150, 10)


# --- time in force, post-only ----------------------------------------------------------------------
def test_ioc_cancels_what_it_cannot_fill_at_once():
    """Immediate-or-cancel: it trades what it can and the rest is canceled, not rested."""
    engine = book(("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 300, 10, tif="ioc")
    assert (placed.status, placed.filled, placed.remaining, placed.canceled) == ("canceled", 100, 0, 200)
    assert engine.levels() == ((), ())


def test_ioc_that_fills_whole_is_filled():
    engine = book(("a", "ask", 5_000, 300))
    placed = engine.submit("t", "bid", 5_000, 300, 10, tif="ioc")
    assert (placed.status, placed.filled, placed.canceled) == ("filled", 300, 0)


def test_ioc_that_crosses_nothing_is_canceled_with_no_events():
    engine = book(("a", "ask", 5_000, 300))
    placed = engine.submit("t", "bid", 4_900, 100, 10, tif="ioc")
    assert (placed.status, placed.canceled, placed.events) == ("canceled", 100, ())


def test_fok_fills_whole_across_levels():
    """Fill-or-kill that the book can fill whole trades like any taker."""
    engine = book(("a", "ask", 5_000, 100), ("b", "ask", 5_100, 100))
    placed = engine.submit("t", "bid", 5_100, 200, 10, tif="fok")
    assert (placed.status, placed.filled) == ("filled", 200)


def test_fok_that_cannot_fill_whole_is_rejected_and_changes_nothing():
    """Fill-or-kill short of size within its limit is refused: no fills, no events, the book unchanged."""
    engine = book(("a", "ask", 5_000, 100), ("b", "ask", 5_200, 100))
    before = engine.snapshot()
    placed = engine.submit("t", "bid", 5_100, 200, 10, tif="fok")
    assert (placed.order_id, placed.status, placed.reason, placed.events) == (None, "rejected", "fok_unfillable", ())
    assert engine.snapshot() == before


def test_fok_does_not_count_the_takers_own_resting_orders():
    """Own orders would not trade (self-trade prevention), so they do not make a fill-or-kill fillable."""
    engine = book(("t", "ask", 5_000, 100), ("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 150, 10, tif="fok", self_trade="maker")
    assert (placed.status, placed.reason) == ("rejected", "fok_unfillable")


def test_post_only_that_would_take_is_rejected():
    engine = book(("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 100, 10, post_only=True)
    assert (placed.status, placed.reason) == ("rejected", "post_only_would_cross")
    assert placed.detail == "post-only bid at 5000 would take liquidity"
    assert engine.levels() == ((), ((5_000, 100),))


def test_post_only_that_does_not_cross_rests():
    engine = book(("a", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 4_900, 100, 10, post_only=True)
    assert placed.status == "resting"


# --- cancels ---------------------------------------------------------------------------------------
def test_cancel_removes_the_order_and_its_count_from_the_level():
    """A cancel takes what remains off the book: one delta, and the order is gone."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 200))
    canceled = engine.cancel(1, 20)
    assert canceled == Canceled(1, "a", None, "bid", 4_000, 100, "requested", (delta("yes", 4_000, -100, 20),))
    assert engine.order(1) is None and engine.levels() == (((4_000, 200),), ())


def test_cancel_of_a_partly_filled_order_cancels_what_remains():
    engine = book(("a", "ask", 6_000, 500))
    engine.submit("t", "bid", 6_000, 200, 10)
    canceled = engine.cancel(1, 11)
    assert canceled is not None and canceled.count == 300
    assert canceled.events == (delta("no", 4_000, -300, 11),)


def test_cancel_of_an_unknown_filled_or_canceled_order_is_none():
    engine = book(("a", "ask", 6_000, 100))
    engine.submit("t", "bid", 6_000, 100, 10)
    assert engine.cancel(1, 11) is None  # filled
    assert engine.cancel(99, 11) is None  # unknown
    engine.submit("a", "bid", 4_000, 100, 12)
    assert engine.cancel(3, 13) is not None
    assert engine.cancel(3, 14) is None  # already canceled


def test_a_cancel_in_the_middle_of_a_queue_keeps_the_others_in_order():
    engine = book(*[(o, "bid", 4_000, 100) for o in "abcde"])
    engine.cancel(3, 10)
    assert [o.owner for o in engine.queue("bid", 4_000)] == ["a", "b", "d", "e"]
    placed = engine.submit("t", "ask", 4_000, 300, 11)
    assert [f.owner for f in placed.fills if not f.is_taker] == ["a", "b", "d"]


def test_many_cancels_deep_in_a_queue_keep_priority_exact():
    """Canceled orders are dropped lazily; the queue still matches in exact arrival order."""
    engine = MatchingEngine(M)
    ids = [engine.submit(f"o{i}", "bid", 4_000, 100, i).order_id for i in range(200)]
    for order_id in ids[1:-1:2] + ids[2:-1:4]:
        engine.cancel(order_id, 500)  # type: ignore[arg-type]
    live = [o.order_id for o in engine.queue("bid", 4_000)]
    assert live == [i for i in ids if engine.is_resting(i)]  # type: ignore[comparison-overlap]
    placed = engine.submit("t", "ask", 4_000, 100 * len(live), 600)
    assert [f.order_id for f in placed.fills if not f.is_taker] == live
    assert engine.levels() == ((), ())


# --- self-trade prevention -------------------------------------------------------------------------
def test_taker_at_cross_stops_the_taker_at_its_own_resting_order():
    """Default self-trade prevention: the taker fills up to its own order and the rest is canceled."""
    engine = book(("a", "ask", 5_000, 100), ("t", "ask", 5_000, 100), ("b", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 300, 10)
    assert (placed.status, placed.filled, placed.canceled) == ("canceled", 100, 200)
    assert [(o.owner, o.remaining) for o in engine.queue("ask", 5_000)] == [("t", 100), ("b", 100)]


def test_maker_mode_cancels_the_takers_own_resting_order_and_goes_on():
    engine = book(("a", "ask", 5_000, 100), ("t", "ask", 5_000, 100), ("b", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 300, 10, self_trade="maker")
    assert (placed.status, placed.filled, placed.remaining) == ("resting", 200, 100)
    assert [(c.order_id, c.count, c.reason) for c in placed.makers_canceled] == [(2, 100, "self_trade")]
    assert placed.events == (trade(1, 5_000, 100, "yes", 10), trade(2, 5_000, 100, "yes", 10),
                             delta("no", 5_000, -300, 10), delta("yes", 5_000, 100, 10))


# --- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("price", "count", "reason"), [
    (0, 100, "invalid_price"), (10_000, 100, "invalid_price"), (4_050, 100, "invalid_price"),
    (4_000, 0, "invalid_count"), (4_000, -5, "invalid_count"),
])
def test_orders_off_the_grid_or_without_size_are_rejected(price, count, reason):
    engine = MatchingEngine(M)
    placed = engine.submit("a", "bid", price, count, 1)
    assert (placed.order_id, placed.status, placed.reason) == (None, "rejected", reason)
    assert engine.levels() == ((), ())


def test_a_sub_cent_market_accepts_sub_cent_prices():
    engine = MatchingEngine(M, tick=10)
    assert engine.submit("a", "bid", 4_050, 100, 1).status == "resting"


def test_a_client_order_id_is_used_once_per_owner():
    engine = MatchingEngine(M)
    engine.submit("a", "bid", 4_000, 100, 1, client_order_id="x")
    again = engine.submit("a", "bid", 3_900, 100, 2, client_order_id="x")
    assert (again.status, again.reason, again.client_order_id) == ("rejected", "duplicate_client_order_id", "x")
    assert engine.submit("b", "bid", 3_900, 100, 3, client_order_id="x").status == "resting"


def test_a_closed_market_cancels_everything_and_refuses_orders_until_reopened():
    """Closing cancels every resting order (one delta each, emptying the book); orders are refused."""
    engine = book(("a", "bid", 4_000, 100), ("b", "ask", 5_000, 200))
    canceled = engine.close(30)
    assert [(c.order_id, c.reason, c.events) for c in canceled] == [
        (1, "market_closed", (delta("yes", 4_000, -100, 30),)),
        (2, "market_closed", (delta("no", 5_000, -200, 30),)),
    ]
    assert engine.levels() == ((), ()) and not engine.is_open
    assert engine.submit("a", "bid", 4_000, 100, 31).reason == "market_closed"
    engine.reopen()
    assert engine.submit("a", "bid", 4_000, 100, 32).status == "resting"


def test_a_side_that_is_neither_bid_nor_ask_is_a_callers_bug():
    with pytest.raises(ValueError, match="KXENG: side must be 'bid' or 'ask', got 'buy'"):
        MatchingEngine(M).submit("a", "buy", 4_000, 100, 1)  # type: ignore[arg-type]


def test_ids_count_up_per_engine():
    """Order ids are 1, 2, 3 … and trade ids <market>:1, :2 … — no clock, no randomness."""
    engine = book(("a", "ask", 5_000, 100), ("b", "ask", 5_000, 100))
    placed = engine.submit("t", "bid", 5_000, 200, 10)
    assert placed.order_id == 3
    assert sorted({f.trade_id for f in placed.fills}) == [f"{M}:1", f"{M}:2"]


# --- amend and decrease (Kalshi: a decrease keeps the order's place; a new price or a larger size loses it) ---
def test_a_decrease_keeps_the_orders_place_in_the_queue():
    """Taking 60 off the first of three bids at one price leaves it first, its level 60 smaller."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 200), ("c", "bid", 4_000, 50))
    placed = engine.decrease(1, 40, 9)
    assert placed is not None
    assert (placed.order_id, placed.status, placed.remaining, placed.canceled) == (1, "resting", 40, 60)
    assert placed.events == (delta("yes", 4_000, -60, 9),)
    assert [(o.owner, o.remaining) for o in engine.queue("bid", 4_000)] == [("a", 40), ("b", 200), ("c", 50)]
    assert engine.queue_ahead(2) == 40 and engine.levels() == (((4_000, 290),), ())


def test_a_decrease_to_zero_cancels_the_order():
    """reduce_to 0 is a cancel: the order leaves the book with one delta."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 200))
    placed = engine.decrease(1, 0, 5)
    assert placed is not None and (placed.status, placed.remaining, placed.canceled) == ("canceled", 0, 100)
    assert placed.events == (delta("yes", 4_000, -100, 5),)
    assert not engine.is_resting(1) and engine.queue_ahead(2) == 0


def test_a_decrease_cannot_add_and_an_unknown_order_is_none():
    """A count above what rests is refused and changes nothing; an order not resting gives None."""
    engine = book(("a", "bid", 4_000, 100))
    refused = engine.decrease(1, 150, 5)
    assert refused is not None and (refused.status, refused.reason, refused.order_id) == ("rejected", "invalid_count", 1)
    assert engine.order(1).remaining == 100  # type: ignore[union-attr]
    assert engine.decrease(99, 0, 5) is None and engine.amend(99, 4_000, 10, 5) is None


def test_an_amend_to_a_smaller_size_at_the_same_price_keeps_the_place():
    """amend(same price, fewer) is a decrease: still first."""
    engine = book(("a", "ask", 6_000, 100), ("b", "ask", 6_000, 100))
    placed = engine.amend(1, 6_000, 30, 8)
    assert placed is not None and (placed.status, placed.remaining, placed.canceled) == ("resting", 30, 70)
    assert [o.owner for o in engine.queue("ask", 6_000)] == ["a", "b"] and engine.queue_ahead(2) == 30


def test_an_amend_that_changes_nothing_keeps_the_place_and_says_nothing():
    """The same price and the same size (an expiry-only amend, or a retry): no events, same place."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 100))
    placed = engine.amend(1, 4_000, 100, 8)
    assert placed is not None and (placed.status, placed.remaining, placed.events) == ("resting", 100, ())
    assert engine.queue_ahead(1) == 0


def test_an_amend_to_a_larger_size_goes_to_the_back_of_the_queue():
    """More size at the same price loses priority: the order is removed and rests again, last."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_000, 200))
    placed = engine.amend(1, 4_000, 150, 9)
    assert placed is not None and (placed.order_id, placed.status, placed.remaining) == (1, "resting", 150)
    assert placed.events == (delta("yes", 4_000, -100, 9), delta("yes", 4_000, 150, 9))
    assert [(o.owner, o.remaining) for o in engine.queue("bid", 4_000)] == [("b", 200), ("a", 150)]
    assert engine.queue_ahead(1) == 200 and engine.order(1) == RestingOrder(1, "a", None, "bid", 4_000, 150, 150, 9)


def test_an_amend_to_a_new_price_rests_behind_what_was_there():
    """A new price is a new place: behind the orders already at that price, the old level shrunk."""
    engine = book(("a", "bid", 4_000, 100), ("b", "bid", 4_100, 200))
    placed = engine.amend(1, 4_100, 100, 9)
    assert placed is not None and placed.events == (delta("yes", 4_000, -100, 9), delta("yes", 4_100, 100, 9))
    assert engine.levels() == (((4_100, 300),), ()) and engine.queue_ahead(1) == 200


def test_an_amend_that_crosses_takes_first_then_rests_the_rest():
    """Moved through the spread, the order trades as a taker at the makers' prices, then rests the remainder."""
    engine = book(("a", "bid", 4_000, 500), ("m", "ask", 4_200, 200))
    placed = engine.amend(1, 4_300, 500, 9)
    assert placed is not None
    assert (placed.status, placed.filled, placed.remaining) == ("resting", 200, 300)
    assert placed.fills == (Fill(f"{M}:1", 1, "a", None, "bid", 4_200, 200, True, 300, 9),
                            Fill(f"{M}:1", 2, "m", None, "ask", 4_200, 200, False, 0, 9))
    assert placed.events == (delta("yes", 4_000, -500, 9), trade(1, 4_200, 200, "yes", 9),
                             delta("no", 5_800, -200, 9), delta("yes", 4_300, 300, 9))
    assert engine.order(1).count == 500 and engine.order(1).remaining == 300  # type: ignore[union-attr]


def test_an_amend_keeps_the_filled_part_in_the_orders_count():
    """After a fill, amending the rest keeps count = filled + resting."""
    engine = book(("a", "bid", 4_000, 500))
    engine.submit("t", "ask", 4_000, 200, 5)
    placed = engine.amend(1, 4_100, 100, 9)
    assert placed is not None and engine.order(1) == RestingOrder(1, "a", None, "bid", 4_100, 300, 100, 9)


def test_a_post_only_amend_that_would_take_is_refused_and_changes_nothing():
    engine = book(("a", "bid", 4_000, 100), ("m", "ask", 4_200, 100))
    placed = engine.amend(1, 4_200, 100, 9, post_only=True)
    assert placed is not None and (placed.status, placed.reason) == ("rejected", "post_only_would_cross")
    assert engine.order(1).price == 4_000 and engine.levels() == (((4_000, 100),), ((5_800, 100),))  # type: ignore[union-attr]


def test_an_amend_into_its_owners_order_stops_under_taker_at_cross():
    """Self-trade prevention as at placement: taker_at_cross cancels the amended order's remainder."""
    engine = book(("a", "bid", 4_000, 100), ("a", "ask", 4_200, 100))
    placed = engine.amend(1, 4_200, 100, 9)
    assert placed is not None and (placed.status, placed.filled, placed.canceled) == ("canceled", 0, 100)
    assert not engine.is_resting(1) and engine.is_resting(2)


def test_an_amend_off_the_grid_or_to_nothing_is_refused():
    engine = book(("a", "bid", 4_000, 100))
    assert engine.amend(1, 4_050, 100, 9).reason == "invalid_price"  # type: ignore[union-attr]
    assert engine.amend(1, 4_000, 0, 9).reason == "invalid_count"  # type: ignore[union-attr]
    assert engine.order(1).remaining == 100  # type: ignore[union-attr]
