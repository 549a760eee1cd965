"""The observation features: one fixed layout, computed from the book and the events folded after it."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from actors.book import OrderBook
from actors.machine import NOTHING
from policies.features import FEATURE_NAMES, FeatureSpec, FeatureTracker, TrackerState
from runtime.events import BookDelta, BookSnapshot, MarketLifecycle, PublicTrade, SeqGapDetected

M = "KXFEAT-1"
S = 1_000_000_000  # one second in ns


def tracker(*timed_events, spec: FeatureSpec | None = None) -> FeatureTracker:
    """A tracker and its book that have folded ``(ts_ns, event)`` pairs at seqs 1, 2, …"""
    t = FeatureTracker(OrderBook(M), spec)
    for seq, (ts, event) in enumerate(timed_events, start=1):
        t.book.handle(seq, ts, event)
        t.handle(seq, ts, event)
    return t


def snap(yes=(), no=()) -> BookSnapshot:
    return BookSnapshot(market=M, yes_bids=tuple(yes), no_bids=tuple(no))


def trade(count: int, market: str = M) -> PublicTrade:
    return PublicTrade(market=market, trade_id="t", yes_price=4_000, count=count, taker_side="yes")


def features(t: FeatureTracker, now_ns: int, position: int = 0, cash: int = 0) -> dict[str, float]:
    vector = t.observe(position, cash, now_ns)
    return dict(zip(FEATURE_NAMES, vector.tolist(), strict=True))


def test_the_vector_is_float32_in_the_named_layout():
    """One float32 entry per name, in the order of FEATURE_NAMES."""
    vector = tracker().observe(0, 0, 0)
    assert (vector.dtype, vector.shape, len(set(FEATURE_NAMES))) == (np.float32, (len(FEATURE_NAMES),), len(FEATURE_NAMES))


def test_handle_derives_nothing():
    """Features are read, never logged: folding returns NOTHING."""
    t = FeatureTracker(OrderBook(M))
    assert t.handle(1, 0, snap(yes=[(4_000, 100)])) == NOTHING


def test_book_features_are_in_dollars_and_contracts():
    """Prices become dollars and counts contracts; spread and mid follow the best prices."""
    f = features(tracker((0, snap(yes=[(4_000, 300), (3_900, 100)], no=[(5_500, 200)]))), 0)
    assert (f["has_bid"], f["has_ask"], f["best_bid"], f["best_ask"]) == (1.0, 1.0, pytest.approx(0.40), pytest.approx(0.45))
    assert (f["spread"], f["mid"]) == (pytest.approx(0.05), pytest.approx(0.425))
    assert (f["bid_depth"], f["ask_depth"], f["imbalance"]) == (4.0, 2.0, pytest.approx(1 / 3))


def test_a_missing_side_takes_the_bounds_of_the_price_range():
    """Without an ask the ask reads $1.00, so the spread shows the whole distance."""
    f = features(tracker((0, snap(yes=[(4_000, 300)]))), 0)
    assert (f["has_ask"], f["best_ask"], f["spread"], f["mid"]) == (0.0, 1.0, pytest.approx(0.6), pytest.approx(0.7))


def test_depth_and_imbalance_use_the_top_levels_of_the_spec():
    """Levels beyond ``levels`` do not count."""
    t = tracker((0, snap(yes=[(4_000, 100), (3_900, 900)], no=[(5_500, 100)])), spec=FeatureSpec(levels=1))
    f = features(t, 0)
    assert (f["bid_depth"], f["ask_depth"], f["imbalance"]) == (1.0, 1.0, 0.0)


def test_stale_is_flagged():
    """A book after a seq gap reads stale = 1.0."""
    t = tracker((0, snap(yes=[(4_000, 100)])), (S, SeqGapDetected(sid=1, expected=2, received=4, markets=(M,))))
    assert features(t, S)["stale"] == 1.0


def test_momentum_is_the_mid_change_over_the_last_k_updates():
    """With k = 2, the mid after the latest update minus the mid two updates before it."""
    t = tracker((0, snap(yes=[(4_000, 100)], no=[(5_000, 100)])),  # mid 0.45
                (1, BookDelta(market=M, side="yes", price=4_200, delta=100)),  # mid 0.46
                (2, BookDelta(market=M, side="no", price=5_400, delta=100)),  # mid 0.44
                (3, BookDelta(market=M, side="yes", price=4_400, delta=100)),  # mid 0.45
                spec=FeatureSpec(momentum_updates=2))
    assert features(t, 3)["momentum"] == pytest.approx(0.45 - 0.46)


def test_momentum_uses_the_oldest_mid_while_fewer_updates_are_kept():
    """Before k updates, the change since the first one."""
    t = tracker((0, snap(yes=[(4_000, 100)], no=[(5_000, 100)])),
                (1, BookDelta(market=M, side="yes", price=4_200, delta=100)))
    assert features(t, 1)["momentum"] == pytest.approx(0.01)


def test_momentum_is_zero_when_an_end_has_no_mid():
    """A one-sided book has no mid, so no change is measured."""
    t = tracker((0, snap(yes=[(4_000, 100)])), (1, BookDelta(market=M, side="no", price=5_000, delta=100)))
    assert features(t, 1)["momentum"] == 0.0


def test_activity_counts_updates_and_trades_in_the_window():
    """Only events with now - window < ts <= now count."""
    t = tracker((0, snap(yes=[(4_000, 100)])), (5 * S, BookDelta(market=M, side="yes", price=4_000, delta=1)),
                (6 * S, trade(250)), (8 * S, trade(100)), spec=FeatureSpec(window_ns=4 * S))
    f = features(t, 8 * S)
    assert (f["updates"], f["trades"], f["traded_volume"]) == (1.0, 2.0, 3.5)


def test_activity_leaves_the_window_as_event_time_passes():
    """An observation later in event time sees fewer recent events."""
    t = tracker((0, snap(yes=[(4_000, 100)])), (6 * S, trade(250)), (8 * S, trade(100)), spec=FeatureSpec(window_ns=3 * S))
    f = features(t, 10 * S)
    assert (f["updates"], f["trades"], f["traded_volume"]) == (0.0, 1.0, 1.0)


def test_signed_flow_is_yes_takers_minus_no_takers_in_the_window():
    """The informed trade ahead of the makers: the direction of the flow, in contracts and as a share."""
    no = PublicTrade(market=M, trade_id="n", yes_price=4_000, count=100, taker_side="no")
    t = tracker((0, snap(yes=[(4_000, 100)])), (S, trade(700)), (6 * S, trade(250)), (7 * S, no), (8 * S, trade(150)),
                spec=FeatureSpec(window_ns=4 * S))
    f = features(t, 8 * S)  # the trade at 1 s is out of the window
    assert (f["signed_volume"], f["flow_imbalance"]) == (pytest.approx(3.0), pytest.approx(3.0 / 5.0))
    assert (features(t, 20 * S)["signed_volume"], features(t, 20 * S)["flow_imbalance"]) == (0.0, 0.0)
    restored = FeatureTracker.restore(t.snapshot(), t.book)
    assert np.array_equal(restored.observe(0, 0, 8 * S), t.observe(0, 0, 8 * S))


def test_other_markets_do_not_count():
    """Trades and updates of another market are not this market's activity."""
    t = tracker((0, snap(yes=[(4_000, 100)])), (S, trade(500, market="KXOTHER")))
    assert (features(t, S)["trades"], features(t, S)["traded_volume"]) == (0.0, 0.0)


def test_time_since_the_last_update_is_in_seconds():
    """Measured from the last snapshot or delta, not from trades."""
    t = tracker((2 * S, snap(yes=[(4_000, 100)])), (3 * S, trade(100)))
    assert features(t, 4_500_000_000)["since_update_s"] == 2.5


def test_time_to_close_comes_from_the_lifecycle_close_time():
    """Seconds until close_ts_ms, flagged as known."""
    t = tracker((0, MarketLifecycle(market=M, kind="activated", close_ts_ms=100_000)))
    f = features(t, 40 * S)
    assert (f["has_close"], f["to_close_s"]) == (1.0, 60.0)


def test_a_moved_close_time_replaces_the_old_one():
    """close_date_updated wins over the earlier close time."""
    t = tracker((0, MarketLifecycle(market=M, kind="activated", close_ts_ms=100_000)),
                (1, MarketLifecycle(market=M, kind="close_date_updated", close_ts_ms=200_000)))
    assert features(t, 0)["to_close_s"] == 200.0


def test_time_to_close_is_zero_after_the_close_and_when_unknown():
    """Past the close it floors at 0; without a close time it is 0 and flagged unknown."""
    closed = tracker((0, MarketLifecycle(market=M, kind="activated", close_ts_ms=1_000)))
    assert features(closed, 5 * S)["to_close_s"] == 0.0
    assert (features(tracker(), 0)["has_close"], features(tracker(), 0)["to_close_s"]) == (0.0, 0.0)


def test_position_and_cash_are_passed_through_in_contracts_and_dollars():
    """-1250 (1/100 contract) is -12.5 contracts; 2,500,000 micro-dollars is $2.50."""
    f = features(tracker(), 0, position=-1_250, cash=2_500_000)
    assert (f["position"], f["cash"]) == (-12.5, 2.5)


def test_the_same_events_give_the_same_bytes():
    """Deterministic: a second tracker fed the same stream observes identical bytes."""
    stream = [(0, snap(yes=[(4_000, 100)], no=[(5_500, 70)])), (S, trade(300)),
              (2 * S, BookDelta(market=M, side="no", price=5_600, delta=40))]
    assert tracker(*stream).observe(700, 9_000_000, 3 * S).tobytes() == tracker(*stream).observe(700, 9_000_000, 3 * S).tobytes()


def test_snapshot_and_restore_round_trip():
    """A restored tracker on a restored book observes what the original does, now and after more events."""
    t = tracker((0, snap(yes=[(4_000, 100)], no=[(5_500, 70)])), (S, trade(300)),
                (2 * S, MarketLifecycle(market=M, kind="activated", close_ts_ms=90_000)),
                (3 * S, BookDelta(market=M, side="yes", price=4_100, delta=40)))
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(t.snapshot()), type=TrackerState)
    copy = FeatureTracker.restore(state, OrderBook.restore(t.book.snapshot()))
    assert copy.observe(1, 2, 4 * S).tobytes() == t.observe(1, 2, 4 * S).tobytes()
    for x in (t, copy):
        x.book.handle(9, 5 * S, BookDelta(market=M, side="no", price=5_600, delta=10))
        x.handle(9, 5 * S, BookDelta(market=M, side="no", price=5_600, delta=10))
    assert copy.snapshot() == t.snapshot()
    assert copy.observe(1, 2, 6 * S).tobytes() == t.observe(1, 2, 6 * S).tobytes()


def test_restore_refuses_the_book_of_another_market():
    """A tracker follows exactly one market's book."""
    with pytest.raises(ValueError, match="tracker state of KXFEAT-1 cannot follow the book of KXOTHER"):
        FeatureTracker.restore(tracker().snapshot(), OrderBook("KXOTHER"))


def test_a_spec_that_looks_back_over_nothing_is_refused():
    """Each look-back length must be at least 1."""
    for field in ("levels", "regime_every_ns", "regime_samples"):
        with pytest.raises(ValueError, match="feature spec: levels, momentum_updates, window_ns, regime_every_ns and "
                           "regime_samples must be >= 1"):
            FeatureSpec(**{field: 0})


def test_updates_the_book_refused_are_not_counted():
    """Deltas a stale book ignores are not book updates: activity and the time since an update stay put."""
    from actors.book import OrderBook
    from policies.features import FeatureTracker
    from runtime.events import BookDelta

    book = OrderBook("KXF")  # no snapshot yet: stale, so deltas are ignored
    tracker = FeatureTracker(book)
    for seq in range(1, 4):
        event = BookDelta(market="KXF", side="yes", price=4000, delta=100)
        book.handle(seq, seq * 1_000_000_000, event)
        tracker.handle(seq, seq * 1_000_000_000, event)
    assert book.stale and book.last_update_seq == 0
    assert list(tracker._update_ts) == [] and tracker._last_update_ns is None
