"""Shadow execution specifications: the paper matcher beside our live orders, whose footprint the book shows."""

from __future__ import annotations

import msgspec

from actors.matcher import MatcherSnapshot
from actors.shadow import ShadowExecution
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    CashReserved,
    OrderFilled,
    OrderIntent,
    PublicTrade,
    QueuePositionReported,
    ShadowFilled,
    ShadowQueued,
    TimerFired,
)

M = "KXTEST"
MINE = "p1"


def fee(market: str, price: int, count: int, is_taker: bool) -> int:
    return count if is_taker else 0


class Session:
    """Feeds one shadow machine events one millisecond apart; the venue's own events are built by the test."""

    def __init__(self, latency_ms: int = 0, queue_model: str = "conservative") -> None:
        self.s = ShadowExecution(fee, prefix=MINE, latency_ns=latency_ms * 1_000_000, queue_model=queue_model)
        self.seq = 0
        self.ts = 0

    def feed(self, event) -> list:
        self.seq += 1
        self.ts += 1_000_000
        return list(self.s.handle(self.seq, self.ts, event))

    def book(self, bids=(), asks=()) -> list:
        return self.feed(BookSnapshot(market=M, yes_bids=tuple(bids), no_bids=tuple((10_000 - p, n) for p, n in asks)))

    def order(self, coid: str, side: str, price: int, count: int, **kw) -> list:
        self.feed(OrderIntent(cause_seq=max(1, self.seq), client_order_id=coid, market=M, side=side, price=price,
                              count=count, **kw))
        return self.feed(CashReserved(client_order_id=coid, amount=1, cause_seq=self.seq))

    def own(self, coid: str, price: int, delta: int, side: str = "yes") -> list:
        """A delta our own live order caused (Kalshi names its client order id to its owner)."""
        return self.feed(BookDelta(market=M, side=side, price=price, delta=delta, client_order_id=coid))

    def delta(self, price: int, delta: int, side: str = "yes") -> list:
        return self.feed(BookDelta(market=M, side=side, price=price, delta=delta))


def test_the_paper_copy_queues_behind_the_others_not_behind_its_live_twin():
    """Given 1,000 resting at 0.40 and our live bid of 500 there (its delta names our order), the paper copy of
    that bid queues behind the 1,000 alone: ShadowQueued(ahead=1,000, rested=500)."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    s.own("p1-5-1", 4000, 500)
    out = s.order("p1-5-1", "bid", 4000, 500)
    assert out == [ShadowQueued(client_order_id="p1-5-1", market=M, ahead=1_000, rested=500, cause_seq=s.seq)]


def test_its_only_derived_events_are_shadow_events():
    """An aggressive bid fills on paper, but as ShadowFilled: no OrderAccepted, no OrderFilled for the ledger."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    out = s.order("p1-5-1", "bid", 4200, 200, tif="ioc")
    assert out == [ShadowFilled(client_order_id="p1-5-1", market=M, side="bid", price=4200, count=200, fee=200,
                                is_taker=True, cause_seq=s.seq)]


def test_our_live_order_leaving_does_not_advance_the_paper_queue():
    """The live twin's cancel (-500, our id) leaves the paper copy 1,000 behind; another's cancel of 400 (no id)
    advances it, conservatively, only as far as the size left: min(1,000, 600)."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    s.own("p1-5-1", 4000, 500)
    s.order("p1-5-1", "bid", 4000, 500)
    s.own("p1-5-1", 4000, -500)
    assert s.s.matcher.orders["p1-5-1"].ahead == 1_000
    s.delta(4000, -400)
    assert s.s.matcher.orders["p1-5-1"].ahead == 600


def test_a_trade_fills_the_paper_copy_after_the_queue_ahead_and_a_venue_fill_shrinks_our_footprint():
    """A public sell of 1,200 at 0.40 works through the 1,000 ahead: the paper copy fills 200. The venue's maker fill
    of our live order (an OrderFilled input) takes our footprint down by its count."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    s.own("p1-5-1", 4000, 500)
    s.order("p1-5-1", "bid", 4000, 500)
    out = s.feed(PublicTrade(market=M, trade_id="x1", yes_price=4000, count=1_200, taker_side="no"))
    assert out == [ShadowFilled(client_order_id="p1-5-1", market=M, side="bid", price=4000, count=200, fee=0,
                                is_taker=False, cause_seq=s.seq)]
    assert s.s.matcher._own == {(M, "bid", 4000): 500}
    s.feed(OrderFilled(trade_id="x1", order_id="o1", client_order_id="p1-5-1", market=M, side="bid", price=4000,
                       count=500, fee=0, is_taker=False))
    assert s.s.matcher._own == {}


def test_size_our_live_order_took_stays_available_to_its_paper_copy_until_the_level_changes():
    """Our live bid took the 300 offered at 0.42 before its paper copy (50 ms later) reached the simulated venue:
    the copy still takes them. Once someone else changes that level, the race is over."""
    s = Session(latency_ms=50)
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300), (4300, 100)])
    s.feed(OrderIntent(cause_seq=1, client_order_id="p1-3-1", market=M, side="bid", price=4200, count=300, tif="ioc"))
    s.feed(CashReserved(client_order_id="p1-3-1", amount=1, cause_seq=s.seq))
    s.own("p1-3-1", 10_000 - 4200, -300, side="no")  # the live twin took the level
    s.ts += 60_000_000
    out = s.feed(TimerFired(name="decide", due_ns=s.ts))
    assert [(e.price, e.count, e.is_taker) for e in out if type(e) is ShadowFilled] == [(4200, 300, True)]
    s2 = Session(latency_ms=50)
    s2.book(bids=[(4000, 1_000)], asks=[(4200, 300), (4300, 100)])
    s2.feed(OrderIntent(cause_seq=1, client_order_id="p1-3-1", market=M, side="bid", price=4200, count=300, tif="ioc"))
    s2.feed(CashReserved(client_order_id="p1-3-1", amount=1, cause_seq=s2.seq))
    s2.own("p1-3-1", 10_000 - 4200, -300, side="no")
    s2.delta(10_000 - 4200, 50, side="no")  # a maker refills 50 at 0.42: only those are there now
    s2.ts += 60_000_000
    out = s2.feed(TimerFired(name="decide", due_ns=s2.ts))
    assert [(e.price, e.count) for e in out if type(e) is ShadowFilled] == [(4200, 50)]


def test_a_queue_report_is_answered_with_the_paper_queue_at_that_seq():
    """The venue reports our live order 700 behind; the shadow answers with the paper copy's queue at that seq
    (caused by the report), or 0/0 when the paper copy is not resting (filled already, or never live)."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    s.order("p1-5-1", "bid", 4000, 500)
    s.delta(4000, -300)
    out = s.feed(QueuePositionReported(client_order_id="p1-5-1", order_id="o1", market=M, ahead=700))
    assert out == [ShadowQueued(client_order_id="p1-5-1", market=M, ahead=700, rested=500, cause_seq=s.seq)]
    out = s.feed(QueuePositionReported(client_order_id="p1-9-9", order_id="o9", market=M, ahead=10))
    assert out == [ShadowQueued(client_order_id="p1-9-9", market=M, ahead=0, rested=0, cause_seq=s.seq)]


def test_a_cancel_ends_the_paper_copy_and_the_snapshot_restores_the_same_machine():
    """A restored shadow (its snapshot through msgpack) derives what the original does, own footprint included."""
    s = Session()
    s.book(bids=[(4000, 1_000)], asks=[(4200, 300)])
    s.own("p1-5-1", 4000, 500)
    s.order("p1-5-1", "bid", 4000, 500)
    s.order("p1-6-1", "bid", 4000, 100)
    s.feed(CancelRequested(cause_seq=s.seq, client_order_id="p1-6-1"))
    assert "p1-6-1" not in s.s.matcher.orders
    data = msgspec.msgpack.encode(s.s.snapshot())
    twin = ShadowExecution.restore(msgspec.msgpack.decode(data, type=MatcherSnapshot), fee, prefix=MINE)
    trade = PublicTrade(market=M, trade_id="x1", yes_price=4000, count=1_300, taker_side="no")
    assert list(twin.handle(s.seq + 1, s.ts + 1, trade)) == list(s.s.handle(s.seq + 1, s.ts + 1, trade))
    assert twin.snapshot() == s.s.snapshot()
