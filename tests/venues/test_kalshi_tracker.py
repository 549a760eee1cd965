"""The feed tracker as a specification: given these frames, when this one arrives, then these events and
commands — seq per sid, stale books and resyncs, error replies, reconnects, reconciliation, fill dedupe."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book import OrderBook
from runtime import events as ev
from runtime.units import format_count, format_price
from runtime.venues.kalshi.codec import decode_ws
from runtime.venues.kalshi.tracker import (
    ENDED,
    MAX_RESUBSCRIBES,
    FeedTracker,
    GetSnapshot,
    Step,
    Subscribe,
    Unsubscribe,
)

T = 1_700_000_000_000_000_000
A, B = "KXA-1", "KXB-1"
BOOK, TRADE, FILL, ORDERS, POSITIONS, LIFECYCLE = (
    "orderbook_delta", "trade", "fill", "user_orders", "market_positions", "market_lifecycle_v2")
SIDS = {BOOK: 1, TRADE: 2, FILL: 3, ORDERS: 4, POSITIONS: 5, LIFECYCLE: 6}


# --- frames, as the venue writes them ----------------------------------------------------------------------
def raw(type_: str, msg: object, **envelope: object) -> bytes:
    return msgspec.json.encode({"type": type_, **envelope, "msg": msg})


def snapshot(sid: int, seq: int, market: str, yes: tuple = (), no: tuple = ()) -> bytes:
    levels = {}
    if yes:
        levels["yes_dollars_fp"] = [[format_price(p), format_count(c)] for p, c in yes]
    if no:
        levels["no_dollars_fp"] = [[format_price(p), format_count(c)] for p, c in no]
    return raw("orderbook_snapshot", {"market_ticker": market, **levels}, sid=sid, seq=seq)


def delta(sid: int, seq: int, market: str, price: int = 5_000, change: int = 100, side: str = "yes") -> bytes:
    return raw("orderbook_delta", {"market_ticker": market, "price_dollars": format_price(price),
                                   "delta_fp": format_count(change), "side": side}, sid=sid, seq=seq)


def trade(sid: int, seq: int, market: str = A) -> bytes:
    return raw("trade", {"trade_id": f"p-{seq}", "market_ticker": market, "yes_price_dollars": "0.5000",
                         "count_fp": "1.00", "taker_outcome_side": "yes"}, sid=sid, seq=seq)


def fill(trade_id: str, ts_ms: int = 1_000, sid: int = SIDS[FILL]) -> bytes:
    return raw("fill", {"trade_id": trade_id, "order_id": "o-1", "market_ticker": A, "is_taker": True,
                        "yes_price_dollars": "0.5000", "count_fp": "1.00", "fee_cost": "0.017500",
                        "book_side": "bid", "ts_ms": ts_ms}, sid=sid)


def error(code: int, id: int | None = None, sid: int | None = None) -> bytes:
    envelope: dict = {}
    if id is not None:
        envelope["id"] = id
    if sid is not None:
        envelope["sid"] = sid
    return raw("error", {"code": code, "msg": f"error {code}"}, **envelope)


def fill_event(trade_id: str, ts_ms: int = 1_000) -> ev.OrderFilled:
    return ev.OrderFilled(trade_id=trade_id, order_id="o-1", client_order_id="", market=A, side="bid", price=5_000,
                          count=100, fee=17_500, is_taker=True, venue_ts_ms=ts_ms)


def feed(tracker: FeedTracker, frame: bytes) -> Step:
    return tracker.frame(decode_ws(frame, T))


def kinds(events: list[ev.Event]) -> list[str]:
    return [ev.event_type(e) for e in events]


def connected(markets=(A, B), channels=tuple(SIDS), sids=SIDS) -> tuple[FeedTracker, list[Step]]:
    """A tracker whose subscriptions are all confirmed (sids as given), nothing received yet."""
    tracker = FeedTracker(markets, channels)
    steps = [feed(tracker, raw("subscribed", {"channel": c.channel, "sid": sids[c.channel]}, id=c.id))
             for c in tracker.connect()]
    return tracker, steps


def synced(markets=(A, B), first_seq: int = 1) -> FeedTracker:
    """Connected, and every book has its snapshot (seq from ``first_seq`` on the book sid)."""
    tracker, _ = connected(markets)
    for i, market in enumerate(markets):
        feed(tracker, snapshot(SIDS[BOOK], first_seq + i, market))
    return tracker


# --- subscriptions ----------------------------------------------------------------------------------------
def test_connecting_subscribes_each_channel_once_naming_tickers_only_where_markets_apply():
    """Books and trades name the tickers explicitly; private channels and lifecycle are for everything."""
    tracker = FeedTracker([A, B])
    assert tracker.connect() == [Subscribe(1, BOOK, (A, B)), Subscribe(2, TRADE, (A, B)), Subscribe(3, FILL),
                                 Subscribe(4, ORDERS), Subscribe(5, POSITIONS), Subscribe(6, LIFECYCLE)]


def test_books_need_tickers_and_a_channel_is_named_once():
    with pytest.raises(ValueError, match="the orderbook_delta channel needs explicit market tickers"):
        FeedTracker([], [BOOK])
    with pytest.raises(ValueError, match="name a channel twice"):
        FeedTracker([A], [TRADE, TRADE])


def test_every_book_is_stale_until_its_first_snapshot_which_announces_nothing():
    """The first snapshot is not a resync: no BookResynced."""
    tracker, _ = connected()
    assert tracker.stale == {A, B}
    step = feed(tracker, snapshot(1, 41, A, yes=((4_000, 500),)))
    assert kinds(step.events) == ["book_snapshot"] and step.commands == []
    assert tracker.stale == {B}


# --- seq per sid --------------------------------------------------------------------------------------------
def test_the_first_seq_of_a_sid_is_its_baseline_whatever_it_is():
    tracker = synced(first_seq=977)
    step = feed(tracker, delta(1, 979, A))
    assert kinds(step.events) == ["book_delta"] and tracker.stats.gaps == 0


def test_seq_is_per_subscription_not_per_market():
    """Books and trades interleave, each sid counting on its own."""
    tracker = synced()
    steps = [feed(tracker, f) for f in (trade(2, 70), delta(1, 3, A), delta(1, 4, B), trade(2, 71), delta(1, 5, A))]
    assert all(s.events and "seq_gap_detected" not in kinds(s.events) for s in steps)
    assert tracker.stats.gaps == 0 and tracker.stale == set()


def test_a_gap_on_a_book_sid_is_announced_before_the_frame_marks_its_books_stale_and_asks_a_snapshot():
    tracker = synced()  # book seqs 1, 2
    step = feed(tracker, delta(1, 5, A))
    assert step.events[0] == ev.SeqGapDetected(sid=1, expected=3, received=5, markets=(A, B))
    assert kinds(step.events) == ["seq_gap_detected", "book_delta"]
    assert step.commands == [GetSnapshot(7, 1, (A, B))]
    assert tracker.stale == {A, B} and tracker.stats.gaps == 1 and tracker.stats.resyncs == 1
    assert kinds(feed(tracker, delta(1, 6, B)).events) == ["book_delta"]  # the sid goes on from 5


def test_each_stale_book_leaves_stale_with_its_own_snapshot_then_book_resynced():
    tracker = synced()
    feed(tracker, delta(1, 9, A))
    step = feed(tracker, snapshot(1, 10, B, no=((3_000, 100),)))
    assert kinds(step.events) == ["book_snapshot", "book_resynced"]
    assert step.events[1] == ev.BookResynced(market=B, sid=1)
    assert tracker.stale == {A}
    assert kinds(feed(tracker, snapshot(1, 11, A)).events) == ["book_snapshot", "book_resynced"]
    assert tracker.stale == set() and tracker.stats.books_resynced == 2


def test_a_repeated_or_backward_seq_is_a_gap_too():
    tracker = synced()
    assert feed(tracker, delta(1, 2, A)).events[0] == ev.SeqGapDetected(sid=1, expected=3, received=2, markets=(A, B))
    assert feed(tracker, delta(1, 1, A)).events[0] == ev.SeqGapDetected(sid=1, expected=3, received=1, markets=(A, B))


def test_every_gap_asks_for_a_snapshot_again():
    """A snapshot asked for may itself be the frame that was lost."""
    tracker = synced()
    first = feed(tracker, delta(1, 4, A))
    second = feed(tracker, delta(1, 8, A))
    assert [type(c) for c in first.commands + second.commands] == [GetSnapshot, GetSnapshot]


def test_a_gap_on_a_trade_sid_names_no_market_and_asks_for_nothing():
    """No book depends on trades, and trades cannot be resent."""
    tracker = synced()
    feed(tracker, trade(2, 10))
    step = feed(tracker, trade(2, 12))
    assert step.events[0] == ev.SeqGapDetected(sid=2, expected=11, received=12)
    assert step.commands == [] and tracker.stale == set()


def test_a_delta_before_its_markets_first_snapshot_means_the_snapshot_was_lost():
    """Asked once for the subscription; the book is stale anyway, so no marker."""
    tracker, _ = connected()
    feed(tracker, snapshot(1, 5, B))
    step = feed(tracker, delta(1, 6, A))
    assert kinds(step.events) == ["book_delta"] and step.commands == [GetSnapshot(7, 1, (A, B))]
    assert feed(tracker, delta(1, 7, A)).commands == []
    assert tracker.stale == {A}


def test_a_resync_asks_every_book_sid_for_snapshots_and_its_books_wait_for_them_without_a_marker():
    tracker = synced()
    assert tracker.resync() == [GetSnapshot(7, 1, (A, B))]
    assert tracker.stale == {A, B}
    assert kinds(feed(tracker, snapshot(1, 3, A)).events) == ["book_snapshot"]
    assert tracker.stale == {B}


# --- unreadable frames ------------------------------------------------------------------------------------
def test_an_unreadable_book_frame_marks_its_sids_books_stale_and_asks_a_snapshot():
    """The marker's expected == received: that frame came, but what it said is lost."""
    tracker = synced()
    bad = delta(1, 3, A).replace(b'"0.5000"', b'"0.12345"')
    step = feed(tracker, bad)
    assert kinds(step.events) == ["malformed_input", "seq_gap_detected"]
    assert step.events[1] == ev.SeqGapDetected(sid=1, expected=3, received=3, markets=(A, B))
    assert step.commands == [GetSnapshot(7, 1, (A, B))]
    assert tracker.stats.malformed == 1
    assert kinds(feed(tracker, delta(1, 4, A)).events) == ["book_delta"]  # seq 3 counted: no gap


def test_an_unreadable_private_frame_asks_for_a_reconciliation():
    """A lost fill can only come back over REST."""
    tracker, _ = connected()
    step = feed(tracker, fill("t-1").replace(b'"0.5000"', b'"half"'))
    assert kinds(step.events) == ["malformed_input"] and step.reconcile


def test_a_frame_that_is_not_json_is_only_malformed_input():
    tracker = synced()
    step = feed(tracker, b"}{")
    assert kinds(step.events) == ["malformed_input"] and step.commands == [] and tracker.stale == set()


# --- error replies ------------------------------------------------------------------------------------------
def test_buffer_overflow_on_a_book_sid_resubscribes_the_channel_and_its_books_stay_stale_until_snapshots():
    tracker = synced()
    step = feed(tracker, error(25, sid=1))
    assert kinds(step.events) == ["venue_error", "seq_gap_detected"]
    assert step.events[0] == ev.VenueError(where="kalshi.ws", message="error 25", code=25)
    assert step.events[1] == ev.SeqGapDetected(sid=1, expected=3, received=ENDED, markets=(A, B))
    assert step.commands == [Subscribe(7, BOOK, (A, B))]  # the venue has dropped sid 1: nothing to unsubscribe
    assert tracker.stale == {A, B}
    feed(tracker, raw("subscribed", {"channel": BOOK, "sid": 9}, id=7))
    assert kinds(feed(tracker, snapshot(9, 1, A)).events) == ["book_snapshot", "book_resynced"]
    assert kinds(feed(tracker, delta(1, 3, B)).events) == ["book_delta"]  # the old sid is no longer tracked


def test_a_channel_error_answering_a_subscribe_resubscribes_that_channel():
    tracker = FeedTracker([A, B])
    commands = tracker.connect()
    step = feed(tracker, error(10, id=commands[1].id))
    assert kinds(step.events) == ["venue_error"] and step.commands == [Subscribe(7, TRADE, (A, B))]


def test_a_terminal_error_that_names_nothing_resubscribes_every_channel():
    tracker = synced()
    step = feed(tracker, error(25))
    assert [c.channel for c in step.commands] == list(SIDS)


def test_a_refused_get_snapshot_falls_back_to_resubscribing():
    tracker = synced()
    ask = feed(tracker, delta(1, 9, A)).commands[0]
    step = feed(tracker, error(11, id=ask.id))
    assert step.commands == [Unsubscribe(8, 1), Subscribe(9, BOOK, (A, B))]


def test_a_subscribe_refused_for_another_reason_is_not_retried():
    """It would be refused again; the VenueError is in the log."""
    tracker = FeedTracker([A], [TRADE])
    (ask,) = tracker.connect()
    step = feed(tracker, error(14, id=ask.id))
    assert kinds(step.events) == ["venue_error"] and step.commands == [] and not step.reconnect


def test_subscribes_refused_again_and_again_ask_for_a_reconnect():
    tracker = FeedTracker([A], [TRADE])
    (ask,) = tracker.connect()
    steps = []
    for _ in range(MAX_RESUBSCRIBES):
        steps.append(feed(tracker, error(10, id=ask.id)))
        ask = steps[-1].commands[-1]
    assert [s.reconnect for s in steps] == [False] * (MAX_RESUBSCRIBES - 1) + [True]


def test_other_replies_carry_no_event_and_their_seq_is_not_a_frames():
    """An ok (to get_snapshot) or unsubscribed reply repeats the sid's current seq."""
    tracker = synced()  # book seqs 1, 2
    for frame in (raw("ok", {"market_tickers": [A, B]}, id=9, sid=1, seq=2), raw("unsubscribed", None, id=9, sid=1, seq=2)):
        assert feed(tracker, frame) == Step([], [])
    assert kinds(feed(tracker, delta(1, 3, A)).events) == ["book_delta"]


# --- connections --------------------------------------------------------------------------------------------
def test_a_lost_connection_marks_every_book_stale_with_one_marker_per_book_subscription():
    tracker = synced()
    feed(tracker, delta(1, 3, A))
    assert tracker.disconnect() == [ev.SeqGapDetected(sid=1, expected=4, received=ENDED, markets=(A, B))]
    assert tracker.stale == {A, B}


def test_a_reconnect_subscribes_everything_afresh_and_new_sids_restart_their_seq():
    tracker = synced()
    tracker.disconnect()
    commands = tracker.connect()
    assert [c.channel for c in commands] == list(SIDS) and tracker.stats.reconnects == 1
    for c in commands:
        feed(tracker, raw("subscribed", {"channel": c.channel, "sid": 100 + SIDS[c.channel]}, id=c.id))
    step = feed(tracker, snapshot(101, 1, A))
    assert kinds(step.events) == ["book_snapshot", "book_resynced"] and step.events[1].sid == 101
    assert kinds(feed(tracker, snapshot(1, 3, B)).events) == ["book_snapshot"]  # a stale sid's frame clears nothing
    assert tracker.stale == {B}


# --- reconciliation -----------------------------------------------------------------------------------------
def test_reconciliation_is_due_once_every_private_channel_is_confirmed():
    _, steps = connected()
    assert [s.reconcile for s in steps] == [False, False, False, False, True, False]


def test_reconciliation_is_due_at_the_first_confirmation_when_no_private_channel_is_subscribed():
    _, steps = connected(channels=(BOOK, TRADE))
    assert [s.reconcile for s in steps] == [True, False]


def test_reconciliation_is_due_again_when_a_private_channel_is_resubscribed():
    tracker, _ = connected()
    step = feed(tracker, error(25, sid=SIDS[FILL]))
    assert not step.reconcile
    resubscribe = step.commands[-1]
    assert feed(tracker, raw("subscribed", {"channel": FILL, "sid": 33}, id=resubscribe.id)).reconcile


def test_a_private_channel_refused_for_good_does_not_hold_reconciliation_back():
    tracker = FeedTracker([A], [TRADE, FILL])
    trades, fills = tracker.connect()
    feed(tracker, error(9, id=fills.id))
    assert feed(tracker, raw("subscribed", {"channel": TRADE, "sid": 1}, id=trades.id)).reconcile


# --- fills ---------------------------------------------------------------------------------------------------
def test_a_fill_is_delivered_once_by_trade_id_whichever_path_brings_it():
    tracker, _ = connected()
    assert kinds(feed(tracker, fill("t-1", ts_ms=5_000)).events) == ["order_filled"]
    assert feed(tracker, fill("t-1", ts_ms=5_000)).events == []
    assert tracker.reconciled([fill_event("t-1"), fill_event("t-2", ts_ms=4_000), ev.PositionReported(A, 100)]) == [
        fill_event("t-2", ts_ms=4_000), ev.PositionReported(A, 100)]
    assert feed(tracker, fill("t-2")).events == []
    assert tracker.stats.duplicate_fills == 3 and tracker.last_fill_ms == 5_000


# --- properties ------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(1, 12)), max_size=40))
def test_a_gap_event_comes_exactly_when_a_sids_seq_is_not_its_last_plus_one(stream):
    """Any interleaving, drop, repeat or reordering of seqs over two sids: one marker per break, naming the
    expected and received seq; none otherwise (the first seq of a sid is its baseline)."""
    tracker, _ = connected(channels=(BOOK, TRADE), sids={BOOK: 1, TRADE: 2})
    last: dict[int, int] = {}
    for sid, seq in stream:
        frame = delta(1, seq, A) if sid == 1 else trade(2, seq)
        gaps = [e for e in feed(tracker, frame).events if type(e) is ev.SeqGapDetected]
        if sid in last and seq != last[sid] + 1:
            assert gaps == [ev.SeqGapDetected(sid=sid, expected=last[sid] + 1, received=seq,
                                              markets=(A, B) if sid == 1 else ())]
        else:
            assert gaps == []
        last[sid] = seq


@st.composite
def venue_streams(draw):
    """A book sid's frames as the venue sends them — both snapshots, then deltas and resent snapshots — each
    with the venue's true books after it, and which frames the network loses."""
    books = {A: {}, B: {}}
    frames = []
    seq = draw(st.integers(1, 1_000))

    def send(frame):
        frames.append((frame, {m: dict(levels) for m, levels in books.items()}))

    for market in (A, B):
        send(snapshot(1, seq, market, yes=tuple(sorted(books[market].items()))))
        seq += 1
    for _ in range(draw(st.integers(0, 30))):
        market = draw(st.sampled_from([A, B]))
        if draw(st.integers(0, 5)) == 0:
            send(snapshot(1, seq, market, yes=tuple(sorted(books[market].items()))))
        else:
            price = draw(st.sampled_from([4_000, 4_500, 5_000]))
            have = books[market].get(price, 0)
            change = draw(st.integers(-have, 300).filter(lambda c: c != 0))
            books[market][price] = have + change
            if not books[market][price]:
                del books[market][price]
            send(delta(1, seq, market, price=price, change=change))
        seq += 1
    lost = draw(st.lists(st.booleans(), min_size=len(frames), max_size=len(frames)))
    return frames, lost


@settings(max_examples=300, deadline=None)
@given(venue_streams())
def test_a_book_the_tracker_calls_fresh_equals_the_venues_book_whatever_frames_are_lost(case):
    """Fold the tracker's events through the real order book: after every frame received, every market the
    tracker does not call stale has exactly the venue's book, and the book agrees that it is fresh."""
    frames, lost = case
    tracker, _ = connected(channels=(BOOK,), sids={BOOK: 1})
    books = {A: OrderBook(A), B: OrderBook(B)}
    seq = 0
    for (frame, truth), gone in zip(frames, lost, strict=True):
        if gone:
            continue
        for event in feed(tracker, frame).events:
            seq += 1
            for book in books.values():
                book.handle(seq, T, event)
        for market in {A, B} - tracker.stale:
            book = books[market]
            assert not book.stale
            assert dict(book.snapshot().yes_bids) == truth[market], market
