"""The dashboard's fold as a specification: given these records, the channels show this."""

from __future__ import annotations

from runtime.dashboard import SessionView
from runtime.events import (
    BookDelta,
    BookSnapshot,
    MalformedInput,
    OrderIntent,
    PolicyDecided,
    PublicTrade,
    Record,
    SeqGapDetected,
    SessionStarted,
    TimerFired,
)

MARKETS = ("KXA", "KXB", "KXC")
T0 = 1_800_000_000_000_000_000


def records(*events, first: int = 1, step_ns: int = 1_000_000) -> list[Record]:
    return [Record(seq=first + i, ts_ns=T0 + (first + i) * step_ns, event=e) for i, e in enumerate(events)]


def market_batches(n: int, size: int = 30):
    """``n`` batches of book deltas on three markets, after their snapshots (for the hub's tests)."""
    seq = 1
    head = [SessionStarted(session_id="s", mode="paper", venue="sim", seed=1, config_hash="", code_version="",
                           markets=MARKETS, starting_cash=10_000_000)]
    head += [BookSnapshot(market=m, yes_bids=((4000, 1000),), no_bids=((5000, 1000),)) for m in MARKETS]
    batch = records(*head)
    seq += len(batch)
    yield batch
    for i in range(n):
        events = [BookDelta(market=MARKETS[j % 3], side="yes", price=4000 - 100 * (j % 5), delta=100)
                  for j in range(i, i + size)]
        batch = records(*events, first=seq)
        seq += len(batch)
        yield batch


def folded(*events) -> SessionView:
    view = SessionView()
    view.fold(records(*events))
    return view


def test_a_book_shows_its_top_levels_and_last_trades():
    view = folded(BookSnapshot(market="KXA", yes_bids=((4000, 500), (4100, 300)), no_bids=((5500, 200),)),
                  BookDelta(market="KXA", side="yes", price=4200, delta=100),
                  PublicTrade(market="KXA", trade_id="t1", yes_price=4300, count=200, taker_side="yes"))
    row = view.market()["markets"]["KXA"]
    assert row["bids"] == [(4200, 100), (4100, 300), (4000, 500)] and row["asks"] == [(4500, 200)]
    assert (row["best_bid"], row["best_ask"], row["stale"], row["updates"]) == (4200, 4500, False, 3)
    assert [t[2:] for t in row["trades"]] == [[4300, 200, "yes"]]


def test_a_seq_gap_makes_its_books_stale_and_is_counted_with_where_it_was():
    view = folded(BookSnapshot(market="KXA", yes_bids=((4000, 500),), no_bids=((5500, 200),)),
                  SeqGapDetected(sid=1, expected=5, received=9, markets=("KXA",)),
                  MalformedInput(source="ws", raw=b"{", error="truncated JSON"))
    health = view.market()["health"]
    assert view.market()["markets"]["KXA"]["stale"] and health["stale_markets"] == 1
    assert (health["gaps"], health["malformed"]) == (1, 1)
    assert health["problems"] == [
        [2, T0 + 2_000_000, "gaps", "seq gap on subscription 1: expected 5, received 9 (KXA)"],
        [3, T0 + 3_000_000, "malformed", "ws: truncated JSON"]]


def test_an_order_carries_the_decisions_of_the_input_that_caused_it_and_the_book_then():
    view = folded(BookSnapshot(market="KXA", yes_bids=((4000, 500),), no_bids=((5500, 200),)),
                  TimerFired(name="decide", due_ns=0),
                  PolicyDecided(cause_seq=2, role="signal", market="KXA", action="buy_yes", version="sig@1", score=1.0),
                  PolicyDecided(cause_seq=2, role="entry", market="KXA", action="passive", version="ent@2", price=4000),
                  PolicyDecided(cause_seq=2, role="signal", market="KXB", action="hold", version="sig@1"),
                  OrderIntent(cause_seq=2, client_order_id="t-2-1", market="KXA", side="bid", price=4000, count=100))
    (order,) = view.trades()["orders"]
    assert [(d["role"], d["action"], d["version"]) for d in order["trace"]] == [
        ("signal", "buy_yes", "sig@1"), ("entry", "passive", "ent@2")]
    assert order["cause"] == {"type": "timer_fired", "ts_ns": T0 + 2_000_000, "best_bid": 4000, "best_ask": 4500}
    assert order["state"] == "intent" and len(view.trades()["decisions"]) == 3


def test_changes_are_taken_once():
    view = folded(BookSnapshot(market="KXA", yes_bids=((4000, 500),), no_bids=((5500, 200),)))
    assert view.take_changes()["markets"] == {"KXA"}
    assert view.take_changes()["markets"] == set()
