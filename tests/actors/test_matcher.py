"""Paper execution specifications: given a book, when our orders and the market move, then these fills."""

from __future__ import annotations

import random
from fractions import Fraction

import msgspec
import pytest

from actors.limits import TIERS
from actors.matcher import MatcherSnapshot, PaperMatcher
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    CashReserved,
    MarketInfo,
    MarketLifecycle,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PublicTrade,
    SeqGapDetected,
    TimerFired,
)

M = "KXTEST"


def taker_fee(market: str, price: int, count: int, is_taker: bool) -> int:
    """A simple stand-in schedule: 1 micro-dollar per count unit for takers, nothing for makers."""
    return count if is_taker else 0


class Venue:
    """Feeds one matcher events one millisecond apart and collects what it derives."""

    def __init__(self, latency_ms: int = 0, queue_model: str = "conservative", limits: str | None = None) -> None:
        self.m = PaperMatcher(taker_fee, latency_ns=latency_ms * 1_000_000, queue_model=queue_model, limits=limits)
        self.seq = 0
        self.ts = 0

    def feed(self, event, after_ms: int = 1) -> list:
        self.seq += 1
        self.ts += after_ms * 1_000_000
        return list(self.m.handle(self.seq, self.ts, event))

    def book(self, bids=(), asks=()) -> None:
        """A snapshot from YES-leg bids and asks (asks become NO bids at 1 - price)."""
        self.feed(BookSnapshot(market=M, yes_bids=tuple(bids), no_bids=tuple((10_000 - p, n) for p, n in asks)))

    def order(self, coid: str, side: str, price: int, count: int, **kw) -> list:
        self.feed(OrderIntent(cause_seq=max(1, self.seq), client_order_id=coid, market=M, side=side, price=price, count=count, **kw))
        return self.feed(CashReserved(client_order_id=coid, amount=1, cause_seq=self.seq))

    def tick(self, after_ms: int = 1) -> list:
        return self.feed(TimerFired(name="tick", due_ns=self.ts + after_ms * 1_000_000), after_ms)


def fills(events) -> list[tuple[int, int, bool]]:
    return [(e.price, e.count, e.is_taker) for e in events if isinstance(e, OrderFilled)]


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


# -- aggressive orders ------------------------------------------------------------------------------
def test_an_aggressive_bid_walks_the_asks_at_each_levels_price_within_its_limit():
    """Given asks 100@0.42, 200@0.43, 300@0.45, a bid for 250 at 0.43 fills 100@0.42 and 150@0.43."""
    v = Venue()
    v.book(bids=[(4000, 500)], asks=[(4200, 100), (4300, 200), (4500, 300)])
    out = v.order("c1", "bid", 4300, 250)
    assert kinds(out) == ["OrderAccepted", "OrderFilled", "OrderFilled"]
    assert fills(out) == [(4200, 100, True), (4300, 150, True)]
    assert out[1].fee == 100 and out[1].trade_id == f"paper-{v.seq}-1" and out[1].order_id == "paper-c1"
    assert "c1" not in v.m.orders


def test_an_aggressive_ask_walks_the_bids_best_first():
    v = Venue()
    v.book(bids=[(6000, 100), (5900, 100)], asks=[(6500, 100)])
    assert fills(v.order("c1", "ask", 5900, 150, tif="ioc")) == [(6000, 100, True), (5900, 50, True)]


def test_ioc_cancels_what_it_could_not_fill_and_gtc_rests_it():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    out = v.order("ioc", "bid", 4200, 300, tif="ioc")
    assert fills(out) == [(4200, 100, True)]
    assert isinstance(out[-1], OrderCanceled) and out[-1].canceled_count == 200 and out[-1].reason == "ioc_remainder"
    v.feed(BookDelta(market=M, side="no", price=5800, delta=100))  # 100 more at 0.42
    out = v.order("gtc", "bid", 4200, 300)
    assert fills(out) == [(4200, 100, True)] and v.m.orders["gtc"].remaining == 200


def test_fok_fills_whole_or_is_rejected_whole():
    v = Venue()
    v.book(asks=[(4200, 100), (4300, 100)])
    out = v.order("f1", "bid", 4300, 250, tif="fok")
    assert kinds(out) == ["OrderRejected"] and out[0].reason == "fok_unfillable"
    assert out[0].detail == "only 200 of 250 can fill at 4300 or better"
    assert fills(v.order("f2", "bid", 4300, 200, tif="fok")) == [(4200, 100, True), (4300, 100, True)]


def test_post_only_is_rejected_if_it_would_cross_and_rests_otherwise():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    out = v.order("p1", "bid", 4200, 10, post_only=True)
    assert kinds(out) == ["OrderRejected"] and out[0].reason == "post_only_would_cross"
    assert kinds(v.order("p2", "bid", 4100, 10, post_only=True)) == ["OrderAccepted"]


# -- consumed liquidity -----------------------------------------------------------------------------
def test_two_orders_cannot_fill_against_the_same_displayed_size():
    """Size we took stays consumed while the book still displays it."""
    v = Venue()
    v.book(asks=[(4200, 100)])
    assert fills(v.order("a", "bid", 4200, 60, tif="ioc")) == [(4200, 60, True)]
    assert fills(v.order("b", "bid", 4200, 60, tif="ioc")) == [(4200, 40, True)]
    assert fills(v.order("c", "bid", 4200, 60, tif="ioc")) == []


def test_consumed_size_is_replenished_only_by_new_size_at_the_level():
    """consumed = min(consumed, displayed): the level growing makes new size available."""
    v = Venue()
    v.book(asks=[(4200, 100)])
    v.order("a", "bid", 4200, 100, tif="ioc")
    v.feed(BookDelta(market=M, side="no", price=5800, delta=30))  # 130 displayed, 100 of it ours
    assert fills(v.order("b", "bid", 4200, 100, tif="ioc")) == [(4200, 30, True)]
    v.feed(BookDelta(market=M, side="no", price=5800, delta=-130))  # level gone: nothing consumed remains
    v.feed(BookDelta(market=M, side="no", price=5800, delta=50))
    assert fills(v.order("c", "bid", 4200, 100, tif="ioc")) == [(4200, 50, True)]


# -- resting orders and the queue -------------------------------------------------------------------
def test_a_resting_bid_fills_only_after_the_queue_ahead_trades():
    """Given 300 displayed at our price, trades of 200 then 150 fill us 0 then 50."""
    v = Venue()
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    assert v.m.orders["r"].ahead == 300
    assert fills(v.feed(PublicTrade(market=M, trade_id="t1", yes_price=4000, count=200, taker_side="no"))) == []
    assert fills(v.feed(PublicTrade(market=M, trade_id="t2", yes_price=4000, count=150, taker_side="no"))) == [(4000, 50, False)]


def test_a_trade_through_our_price_fills_us_outright():
    """A sale below our bid means our better bid would have been hit first."""
    v = Venue()
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4100, 100)
    assert fills(v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=70, taker_side="no"))) == [(4100, 70, False)]


def test_trades_on_the_other_side_do_not_fill_a_bid():
    v = Venue()
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    assert fills(v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=900, taker_side="yes"))) == []


def test_a_resting_ask_queues_and_fills_like_a_bid():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4500, 200)])
    v.order("r", "ask", 4500, 100)
    assert v.m.orders["r"].ahead == 200
    assert fills(v.feed(PublicTrade(market=M, trade_id="t", yes_price=4500, count=250, taker_side="yes"))) == [(4500, 50, False)]


def test_our_second_order_at_a_price_queues_behind_our_first():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4500, 100)])
    v.order("a", "bid", 4000, 50)
    v.order("b", "bid", 4000, 50)
    assert (v.m.orders["a"].ahead, v.m.orders["b"].ahead) == (100, 150)
    out = v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=170, taker_side="no"))
    assert [(e.client_order_id, e.count) for e in out if isinstance(e, OrderFilled)] == [("a", 50), ("b", 20)]


@pytest.mark.parametrize(("model", "pct", "ahead"), [("conservative", 0, 300), ("proportional", 0, 240),
                                                    ("share", 70, 230), ("share", 0, 300), ("orders", 0, 200)])
def test_cancels_at_our_level_advance_the_queue_by_the_chosen_model(model, pct, ahead):
    """Given 300 ahead of us and 200 joining behind (500 displayed), a cancel of 100 leaves 400:
    conservative keeps ahead at min(300, 400) = 300; proportional advances it by 100 * 300 // 500 = 60;
    share by cancel_ahead_pct percent of the 100 (70 -> 70); orders by all of it (no order of 100 joined behind)."""
    v = Venue(queue_model=model)
    v.m.cancel_ahead_pct = pct
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=200))
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-100))
    assert v.m.orders["r"].ahead == ahead


def test_the_queue_ahead_never_exceeds_the_displayed_size():
    """Whatever the model, when the level shrinks below our queue position, we are that close to the front."""
    for model in ("conservative", "proportional", "share", "orders"):
        v = Venue(queue_model=model)
        v.m.cancel_ahead_pct = 100
        v.book(bids=[(4000, 300)], asks=[(4500, 100)])
        v.order("r", "bid", 4000, 100)
        v.feed(BookDelta(market=M, side="yes", price=4000, delta=-250))
        assert v.m.orders["r"].ahead == 50


def test_orders_a_cancel_the_size_of_an_order_that_joined_behind_us_leaves_the_queue_ahead_alone():
    """queue_model "orders": each delta is one order's event. 300 ahead; orders of 200 and 50 join behind. A cancel
    of 200 is the first of them (ahead stays 300); a cancel of 120 matches nothing behind, so it was ahead (180);
    the 50 leaving is the second (180 still); what a trade left of an order ahead, cancelled, advances us too."""
    v = Venue(queue_model="orders")
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=200))
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=50))
    assert (v.m.orders["r"].ahead, v.m._behind.get("r", [])) == (300, [200, 50])
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-200))
    assert (v.m.orders["r"].ahead, v.m._behind.get("r", [])) == (300, [50])
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-120))
    assert (v.m.orders["r"].ahead, v.m._behind.get("r", [])) == (180, [50])
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-50))
    assert (v.m.orders["r"].ahead, v.m._behind.get("r", [])) == (180, [])
    v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=100, taker_side="no"))
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-100))  # the trade's own shrink: the credit
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-30))  # the rest of the order it hit, cancelled
    assert v.m.orders["r"].ahead == 50
    assert fills(v.feed(PublicTrade(market=M, trade_id="u", yes_price=4000, count=80, taker_side="no"))) == [
        (4000, 30, False)]


def test_orders_what_joined_behind_is_never_more_than_the_level_shows_beyond_the_queue_ahead():
    """A snapshot that shows less than the record of orders behind us drops the oldest of them; a snapshot keeps
    the record (and the matcher's snapshot copies it, so the restored matcher folds on alike)."""
    v = Venue(queue_model="orders")
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    for size in (40, 60, 70):
        v.feed(BookDelta(market=M, side="yes", price=4000, delta=size))
    snap = v.m.snapshot()
    restored = PaperMatcher.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=MatcherSnapshot),
                                    taker_fee, queue_model="orders")
    assert restored._behind == {"r": [40, 60, 70]}
    v.book(bids=[(4000, 400)], asks=[(4500, 100)])
    assert (v.m.orders["r"].ahead, v.m._behind.get("r", [])) == (300, [70])
    assert snap.behind == [("r", [40, 60, 70])]  # the snapshot did not follow the live state
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-400))  # the level empties: nothing behind us
    assert v.m._behind.get("r", []) == [] and v.m.snapshot().behind == []
    assert "behind" not in msgspec.msgpack.decode(msgspec.msgpack.encode(PaperMatcher(taker_fee).snapshot()))


def test_shrinkage_that_follows_a_trade_is_not_counted_as_a_cancel_too():
    """The trade advanced the queue; the level shrinking by the traded size afterwards advances nothing more."""
    v = Venue(queue_model="proportional")
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=100, taker_side="no"))
    assert v.m.orders["r"].ahead == 200
    v.feed(BookDelta(market=M, side="yes", price=4000, delta=-100))
    assert v.m.orders["r"].ahead == 200


def test_an_ask_moving_through_a_resting_bid_fills_it_as_maker_at_its_price():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4500, 100)])
    v.order("r", "bid", 4300, 100)
    out = v.feed(BookDelta(market=M, side="no", price=5800, delta=60))  # a new ask at 0.42
    assert fills(out) == [(4300, 60, False)] and v.m.orders["r"].remaining == 40


# -- time -------------------------------------------------------------------------------------------
def test_an_order_reaches_the_venue_after_the_latency_and_meets_the_book_as_it_is_then():
    v = Venue(latency_ms=50)
    v.book(asks=[(4200, 100)])
    assert v.order("c", "bid", 4200, 100, tif="ioc") == []
    v.feed(BookDelta(market=M, side="no", price=5800, delta=-100), after_ms=10)  # the ask is gone meanwhile
    out = v.tick(after_ms=60)
    assert kinds(out) == ["OrderAccepted", "OrderCanceled"] and out[1].canceled_count == 100


def test_a_cancel_takes_effect_after_the_latency_and_fills_can_happen_meanwhile():
    v = Venue(latency_ms=50)
    v.book(bids=[(4000, 0)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    v.tick(after_ms=60)
    assert v.feed(CancelRequested(cause_seq=1, client_order_id="r")) == []
    assert fills(v.feed(PublicTrade(market=M, trade_id="t", yes_price=4000, count=30, taker_side="no"), after_ms=10)) == [(4000, 30, False)]
    out = v.tick(after_ms=50)
    assert kinds(out) == ["OrderCanceled"] and out[0].canceled_count == 70 and out[0].reason == "requested"


def test_a_resting_order_expires_at_its_expiration_time():
    v = Venue()
    v.book(asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100, expiration_ts_ms=v.ts // 1_000_000 + 100)
    assert v.tick(after_ms=50) == []
    out = v.tick(after_ms=60)
    assert kinds(out) == ["OrderExpired"] and isinstance(out[0], OrderExpired) and out[0].expired_count == 100


# -- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setup", "price", "count", "reason"),
    [
        ("none", 4000, 10, "unknown_market"),
        ("stale", 4000, 10, "book_stale"),
        ("book", 0, 10, "invalid_price"),
        ("book", 10_000, 10, "invalid_price"),
        ("book", 4000, 0, "invalid_count"),
    ],
)
def test_the_venue_refuses_what_it_cannot_trade(setup, price, count, reason):
    v = Venue()
    if setup != "none":
        v.book(asks=[(4500, 100)])
    if setup == "stale":
        v.feed(SeqGapDetected(sid=1, expected=5, received=7, markets=(M,)))
    out = v.order("c", "bid", price, count)
    assert kinds(out) == ["OrderRejected"] and out[0].reason == reason


def test_a_cash_rejection_means_the_order_never_reaches_the_venue():
    v = Venue()
    v.book(asks=[(4200, 100)])
    v.feed(OrderIntent(cause_seq=1, client_order_id="c", market=M, side="bid", price=4200, count=10))
    v.feed(OrderRejected(client_order_id="c", market=M, reason="insufficient_cash", cause_seq=v.seq))
    assert v.feed(CashReserved(client_order_id="c", amount=1, cause_seq=v.seq)) == [] and not v.m.orders


def test_a_closing_market_cancels_resting_orders_and_refuses_new_ones():
    v = Venue()
    v.book(bids=[(4000, 100)], asks=[(4500, 100)])
    v.order("r", "bid", 4000, 100)
    out = v.feed(MarketLifecycle(market=M, kind="determined", result="yes", settlement_value=10_000))
    assert kinds(out) == ["OrderCanceled"] and out[0].reason == "market_closed"
    assert v.order("n", "bid", 4000, 10)[0].reason == "market_closed"


# -- determinism -------------------------------------------------------------------------------------
def random_stream(seed: int, n: int) -> list:
    rng = random.Random(seed)
    events = [BookSnapshot(market=M, yes_bids=((4000, 500), (3900, 500)), no_bids=((5500, 500), (5400, 500)))]
    sizes = {("yes", 4000): 500, ("yes", 3900): 500, ("no", 5500): 500, ("no", 5400): 500}
    for i in range(n):
        r = rng.random()
        if r < 0.5:
            side, price = rng.choice(sorted(sizes))
            delta = rng.randrange(-sizes[(side, price)], 300)
            sizes[(side, price)] += delta
            events.append(BookDelta(market=M, side=side, price=price, delta=delta))
        elif r < 0.7:
            events.append(PublicTrade(market=M, trade_id=f"t{i}", yes_price=rng.choice((3900, 4000, 4500, 4600)),
                                      count=rng.randrange(1, 200), taker_side=rng.choice(("yes", "no"))))
        elif r < 0.9:
            coid = f"c{i}"
            events.append(OrderIntent(cause_seq=1, client_order_id=coid, market=M, side=rng.choice(("bid", "ask")),
                                      price=rng.choice((3900, 4000, 4300, 4500, 4600)), count=rng.randrange(1, 300),
                                      tif=rng.choice(("gtc", "ioc", "fok"))))
            events.append(CashReserved(client_order_id=coid, amount=1, cause_seq=1))
        else:
            events.append(CancelRequested(cause_seq=1, client_order_id=f"c{rng.randrange(max(1, i))}"))
    return events


def run(matcher: PaperMatcher, events, start: int = 0) -> list:
    out = []
    for i, event in enumerate(events, start + 1):
        out.extend(matcher.handle(i, i * 7_000_000, event))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_the_same_events_give_the_same_fills_and_a_snapshot_resumes_exactly(seed):
    events = random_stream(seed, 400)
    full = run(PaperMatcher(taker_fee, latency_ns=20_000_000), events)
    assert any(isinstance(e, OrderFilled) for e in full) and any(isinstance(e, OrderAccepted) for e in full)
    assert full == run(PaperMatcher(taker_fee, latency_ns=20_000_000), events)
    first = PaperMatcher(taker_fee, latency_ns=20_000_000)
    head = run(first, events[:200])
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(first.snapshot()), type=MatcherSnapshot)  # as an actor stores it
    resumed = PaperMatcher.restore(snap, taker_fee, latency_ns=20_000_000)
    assert head + run(resumed, events[200:], start=200) == full


# -- rate limits (the venue's, in event time) ----------------------------------------------------------------
MS = 1_000_000


def admitted_by_kalshi(arrivals_ns: list[int], tier: str, cost: int = 10) -> list[bool]:
    """A reference of Kalshi's write bucket in exact fractions of a token: which requests it admits."""
    t = TIERS[tier]
    level, last, out = Fraction(t.write_capacity), None, []
    for at in arrivals_ns:
        if last is not None:
            level = min(Fraction(t.write_capacity), level + Fraction(t.write_per_s * (at - last), 1_000_000_000))
        last = at
        out.append(level >= cost)
        if out[-1]:
            level -= cost
    return out


def test_a_burst_of_200_orders_in_one_second_is_refused_exactly_where_the_venue_would_refuse_it():
    """Basic tier (100 write tokens a second, 200 in the bucket, 10 an order): 200 intents 5 ms apart in event
    time reach the venue 50 ms later; the bucket's 20 and one per 100 ms of refill are accepted, the rest rejected
    rate_limited (29 pass in all), exactly those the venue's bucket would refuse."""
    v = Venue(latency_ms=50, limits="basic")
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    out, arrivals = [], []
    for i in range(200):
        out += v.feed(OrderIntent(cause_seq=1, client_order_id=f"o{i:03d}", market=M, side="bid", price=3000 - i,
                                  count=1, post_only=True), after_ms=4)
        out += v.feed(CashReserved(client_order_id=f"o{i:03d}", amount=1, cause_seq=v.seq), after_ms=1)
        arrivals.append(v.ts + 50 * MS)
    out += v.tick(after_ms=100)
    verdicts = {e.client_order_id: type(e).__name__ for e in out if isinstance(e, OrderAccepted | OrderRejected)}
    expected = admitted_by_kalshi(arrivals, "basic")
    assert [verdicts[f"o{i:03d}"] == "OrderAccepted" for i in range(200)] == expected
    assert expected.count(True) == 29 and expected[:21] == [True] * 21 and expected[21:24] == [False] * 3
    rejected = [e for e in out if isinstance(e, OrderRejected)]
    assert {e.reason for e in rejected} == {"rate_limited"} and len(rejected) == 171
    assert rejected[0].client_order_id == "o021" and rejected[0].detail == (
        "basic tier: the write bucket holds 0 of the 10 tokens an order costs (100 tokens/s, up to 200); "
        "Kalshi would answer 429")
    assert len(v.m.orders) == 29  # the accepted rest; the rejected are gone


def test_without_a_tier_nothing_is_rate_limited():
    v = Venue(latency_ms=50)
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    out = []
    for i in range(200):
        out += v.order(f"o{i:03d}", "bid", 3000, 1)
    out += v.tick(after_ms=100)
    assert kinds(out) == ["OrderAccepted"] * 200


def test_a_rate_limited_order_is_charged_before_any_other_check_and_a_refused_one_costs_nothing():
    """Kalshi meters a request before it reads it: an order it then refuses (a post-only that would cross) has
    spent its tokens; one refused for the rate has spent none."""
    v = Venue(limits="basic")
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    crossing = [v.order(f"x{i}", "bid", 4200, 1, post_only=True)[0].reason for i in range(20)]
    assert crossing == ["post_only_would_cross"] * 20
    (out,) = v.order("late", "bid", 3000, 1)  # 40 ms after the first: 4 tokens refilled
    assert out.reason == "rate_limited" and v.m.limits.buckets["write"].tokens(v.ts) == 4


def test_a_cancel_past_the_rate_is_delayed_until_the_bucket_holds_it_never_refused():
    """A cancel costs 2 tokens; with the bucket empty it waits for them (20 ms at the basic tier), as a client's
    retry would, then cancels."""
    v = Venue(limits="basic")
    v.book(bids=[(4000, 100)], asks=[(4200, 100)])
    for i in range(20):
        v.m.handle(v.seq + 1, v.ts, OrderIntent(cause_seq=1, client_order_id=f"o{i}", market=M, side="bid",
                                                price=3000, count=1))
        v.seq += 1
        assert kinds(v.m.handle(v.seq + 1, v.ts, CashReserved(client_order_id=f"o{i}", amount=1, cause_seq=1))) == [
            "OrderAccepted"]
        v.seq += 1
    assert v.m.limits.buckets["write"].tokens(v.ts) == 0
    assert v.feed(CancelRequested(cause_seq=1, client_order_id="o0"), after_ms=0) == []
    assert v.tick(after_ms=19) == []  # 1.9 tokens
    (canceled,) = v.tick(after_ms=1)
    assert isinstance(canceled, OrderCanceled) and canceled.client_order_id == "o0" and canceled.reason == "requested"


@pytest.mark.parametrize("seed", range(3))
def test_rate_limits_are_deterministic_and_a_snapshot_resumes_them_exactly(seed):
    events = random_stream(seed, 400)
    full = run(PaperMatcher(taker_fee, latency_ns=20_000_000, limits="basic"), events)
    assert any(isinstance(e, OrderRejected) and e.reason == "rate_limited" for e in full)
    assert full == run(PaperMatcher(taker_fee, latency_ns=20_000_000, limits="basic"), events)
    first = PaperMatcher(taker_fee, latency_ns=20_000_000, limits="basic")
    head = run(first, events[:200])
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(first.snapshot()), type=MatcherSnapshot)
    assert snap.limits is not None and snap.limits.tier == "basic"
    resumed = PaperMatcher.restore(snap, taker_fee, latency_ns=20_000_000, limits="basic")
    assert head + run(resumed, events[200:], start=200) == full


def test_a_snapshot_without_limits_encodes_as_before_and_an_old_one_still_restores():
    m = PaperMatcher(taker_fee)
    run(m, random_stream(1, 50))
    raw = msgspec.msgpack.decode(msgspec.msgpack.encode(m.snapshot()))
    assert "limits" not in raw  # the bytes of a matcher without limits are what they were before the field
    old = msgspec.msgpack.decode(msgspec.msgpack.encode(raw), type=MatcherSnapshot)
    assert old.limits is None and PaperMatcher.restore(old, taker_fee).limits is None


def test_the_session_spec_names_the_tier_and_a_log_from_before_it_has_none():
    from runtime.events import Record, SessionStarted
    from runtime.topology import SessionSpec, session_inputs, spec_from_log
    from runtime.topology import _matcher as build_matcher

    spec = SessionSpec(markets=(M,), rate_limits="basic")
    assert build_matcher(spec).limits.tier.name == "basic"
    assert build_matcher(SessionSpec(markets=(M,))).limits is None
    (_, started), (_, command) = session_inputs(spec, 1, session_id="s")
    assert ("rate_limits", "basic") in command.args
    assert spec_from_log([Record(1, 1, started), Record(2, 1, command)]).rate_limits == "basic"
    older = msgspec.structs.replace(command, args=tuple(a for a in command.args if a[0] != "rate_limits"))
    assert isinstance(started, SessionStarted)
    assert spec_from_log([Record(1, 1, started), Record(2, 1, older)]).rate_limits == "none"


# -- the market's definition from the log (MarketInfo) ------------------------------------------------
DECI = MarketInfo(market=M, price_level_structure="deci_cent", price_ranges=((10, 9_990, 10),), fee_type="quadratic",
                  fee_multiplier_ppm=2_000_000)


def test_a_sub_cent_market_accepts_a_price_on_its_grid_and_refuses_one_off_it():
    """Given the market's grid is 0.001 to 0.999 by 0.001: a bid at 0.4210 is accepted, one at 0.4205 refused."""
    v = Venue()
    v.feed(DECI)
    v.book(bids=[(4000, 500)], asks=[(4500, 300)])
    assert kinds(v.order("c1", "bid", 4210, 100)) == ["OrderAccepted"]
    (refused,) = v.order("c2", "bid", 4205, 100)
    assert (refused.reason, refused.detail) == (
        "invalid_price", "price 4205 is not on the grid of KXTEST (whole cents, 0.0010 to 0.9990 by 0.0010)")


def test_without_a_market_info_any_price_in_range_is_accepted_as_before():
    v = Venue()
    v.book(bids=[(4000, 500)], asks=[(4500, 300)])
    assert kinds(v.order("c1", "bid", 4205, 100)) == ["OrderAccepted"]


def test_whole_cents_are_valid_on_every_grid():
    v = Venue()
    v.feed(msgspec.structs.replace(DECI, price_ranges=((9_000, 10_000, 10),)))
    v.book(bids=[(4000, 500)], asks=[(4500, 300)])
    assert kinds(v.order("c1", "bid", 4100, 100)) == ["OrderAccepted"]
    assert kinds(v.order("c2", "bid", 4110, 100)) == ["OrderRejected"]


def test_a_fill_pays_the_fee_terms_of_its_market_info():
    """Multiplier 2: one contract taken at 0.42 pays 0.07 × 2 × 0.42 × 0.58 = $0.034104, rounded up to $0.0342,
    not the fee function's (1 micro-dollar per count unit)."""
    v = Venue()
    v.feed(DECI)
    v.book(bids=[(4000, 500)], asks=[(4200, 300)])
    out = v.order("c1", "bid", 4200, 100)
    assert [(e.price, e.count, e.fee) for e in out if isinstance(e, OrderFilled)] == [(4200, 100, 34_200)]


def test_market_info_is_in_the_snapshot_and_left_out_when_there_is_none():
    v = Venue()
    v.feed(DECI)
    raw = msgspec.msgpack.encode(v.m.snapshot())
    resumed = PaperMatcher.restore(msgspec.msgpack.decode(raw, type=MatcherSnapshot), taker_fee)
    assert resumed.snapshot() == v.m.snapshot() and resumed.snapshot().market_info == (DECI,)
    resumed.handle(10, 10, BookSnapshot(market=M, yes_bids=((4000, 500),), no_bids=((5800, 300),)))
    resumed.handle(11, 11, OrderIntent(cause_seq=1, client_order_id="c1", market=M, side="bid", price=4200, count=100))
    out = resumed.handle(12, 12, CashReserved(client_order_id="c1", amount=1, cause_seq=11))
    assert [e.fee for e in out if isinstance(e, OrderFilled)] == [34_200]
    plain = PaperMatcher(taker_fee)
    assert "market_info" not in msgspec.msgpack.decode(msgspec.msgpack.encode(plain.snapshot()))


def test_pacing_holds_orders_and_cancels_until_the_tiers_write_bucket_covers_them():
    """Our client paces itself to the basic tier (100 write tokens/s, 200 at most; an order 10, a cancel 2) and sends
    in turn, each once the bucket holds its cost and 50 ms of refill more. Of 22 orders sent from 3 ms to 45 ms, 19
    reach the venue at once; the 20th when the bucket holds 15 tokens (53 ms), the 21st and 22nd 100 ms apart after
    it; a cancel sent behind them waits its turn, then 70 ms for its 2 tokens and the margin. Nothing is refused; the
    bucket and the waiting line are part of the snapshot."""
    from actors.limits import RateLimits

    v = Venue()
    v.m.pacer = RateLimits("basic")
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    accepted = []
    for i in range(22):
        accepted += [e for e in v.order(f"p{i}", "bid", 3000, 100) if isinstance(e, OrderAccepted)]
    assert len(accepted) == 19 and v.ts == 45_000_000
    assert v.feed(CancelRequested(cause_seq=v.seq, client_order_id="p0")) == []
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(v.m.snapshot()), type=MatcherSnapshot)
    assert len(snap.held) == 4 and snap.pacer is not None
    twin = Venue()
    twin.m, twin.seq, twin.ts = PaperMatcher.restore(snap, taker_fee, pacing="basic"), v.seq, v.ts
    for venue in (v, twin):
        when = {}
        for _ in range(300):
            for e in venue.tick():
                when[e.client_order_id] = (type(e).__name__, venue.ts // 1_000_000)
        assert when == {"p19": ("OrderAccepted", 53), "p20": ("OrderAccepted", 153), "p21": ("OrderAccepted", 253),
                        "p0": ("OrderCanceled", 273)}


def test_in_the_pacing_line_a_rounds_orders_go_before_its_cancels():
    """The order gateway starts a round's sends before its cancels: with the line already waiting, a cancel and an
    order of the same round join it order first, whatever their order in the log."""
    from actors.limits import RateLimits

    v = Venue()
    v.m.pacer = RateLimits("basic")
    v.book(bids=[(4000, 300)], asks=[(4500, 100)])
    for i in range(21):
        v.order(f"p{i}", "bid", 3000, 100)
    assert [d.client_order_id for d in v.m._held] == ["p19", "p20"]
    v.ts += 1_000_000
    v.seq += 1
    v.m.handle(v.seq, v.ts, CancelRequested(cause_seq=v.seq, client_order_id="p0"))
    v.m.handle(v.seq + 1, v.ts, OrderIntent(cause_seq=v.seq, client_order_id="q", market=M, side="bid", price=3000,
                                            count=100))
    v.m.handle(v.seq + 2, v.ts, CashReserved(client_order_id="q", amount=1, cause_seq=v.seq + 1))
    assert [(d.kind, d.client_order_id) for d in v.m._held] == [("live", "p19"), ("live", "p20"), ("live", "q"),
                                                                ("cancel", "p0")]
