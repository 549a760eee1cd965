"""Specifications of the bounded fill dedupe (actors.dedupe) and of the machines that fold fills through it."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cash import CashPool, CashSnapshot
from actors.dedupe import GENERATION, PRECISION_MS, FillWindow, FillWindowSnapshot, Verdict
from actors.fees import KalshiFees
from actors.orders import Orders, OrdersSnapshot
from actors.positions import Positions, PositionsSnapshot
from runtime.events import FillDuplicated, OrderFilled, OrderIntent, PositionChanged
from runtime.venues.kalshi.tracker import FeedTracker

T0 = 1_767_225_600_000  # venue time of the first fill, Unix ms


def fill(n: int, *, ts: int | None = None, venue: bool = True, count: int = 100, coid: str = "t-1-1") -> OrderFilled:
    """Fill ``n``: a venue's (stamped ``ts``, by default a second after fill ``n - 1``) or the paper matcher's."""
    if not venue:
        return OrderFilled(trade_id=f"paper-{n}-1", order_id="paper-" + coid, client_order_id=coid, market="KX",
                           side="bid", price=5_000, count=count, fee=0, is_taker=True, cause_seq=n)
    return OrderFilled(trade_id=f"trade-{n}", order_id="o-1", client_order_id=coid, market="KX", side="bid",
                       price=5_000, count=count, fee=0, is_taker=True, venue_ts_ms=T0 + 1_000 * n if ts is None else ts)


# --- the window ------------------------------------------------------------------------------------------------
def test_a_fill_is_new_once_and_seen_after():
    window = FillWindow()
    assert window.admit(fill(1)) is Verdict.NEW
    assert window.admit(fill(1)) is Verdict.SEEN
    assert len(window) == 1


def test_ids_are_kept_for_at_least_a_generation_and_at_most_two():
    """A generation of 3: fills 1-3 become the older one at the 3rd, and are forgotten when 4-6 fill the next."""
    window = FillWindow(3)
    for n in range(1, 4):
        window.admit(fill(n))
    assert len(window) == 3 and window.horizon_ms is None
    for n in range(4, 6):
        window.admit(fill(n))
    assert len(window) == 5 and window.admit(fill(1)) is Verdict.SEEN
    window.admit(fill(6))
    assert len(window) == 3 and 1 not in window and window.horizon_ms == T0 + 3_000


def test_a_copy_of_a_forgotten_fill_is_refused_as_stale():
    """Its venue time is at most the horizon: it may be a forgotten one, so it is never applied again."""
    window = FillWindow(2)
    for n in range(1, 5):
        window.admit(fill(n))
    assert "trade-1" not in window and window.horizon_ms == T0 + 2_000
    assert window.admit(fill(1)) is Verdict.STALE
    assert window.admit(fill(2)) is Verdict.STALE
    assert "trade-2" not in window  # a stale fill is not remembered


def test_a_copy_stamped_to_the_millisecond_of_a_fill_stamped_to_the_second_is_stale_too():
    """The fill channel's ``ts`` is in seconds, REST's ``created_time`` in ms: up to PRECISION_MS later."""
    window = FillWindow(1)
    window.admit(fill(1, ts=T0))  # 12:00:00, as the fill channel says it
    window.admit(fill(2, ts=T0 + 5_000))
    assert window.horizon_ms == T0
    assert window.admit(fill(1, ts=T0 + PRECISION_MS - 1)) is Verdict.STALE  # 12:00:00.999 by REST


def test_a_fill_newer_than_the_horizon_is_new_however_late():
    """An outage adds no fills: a fill reconciled long after, but made after what was forgotten, is applied."""
    window = FillWindow(2)
    for n in range(1, 5):
        window.admit(fill(n))
    assert window.admit(fill(50, ts=T0 + 2_000 + PRECISION_MS)) is Verdict.NEW


def test_a_venue_fill_without_a_venue_time_is_kept_for_good():
    unstamped = msgspec.structs.replace(fill(1), venue_ts_ms=None)
    window = FillWindow(1)
    assert window.admit(unstamped) is Verdict.NEW
    for n in range(2, 10):
        window.admit(fill(n))
    assert window.admit(unstamped) is Verdict.SEEN and len(window) == 2  # itself, and the older generation


def test_the_paper_matchers_fills_are_forgotten_with_their_generation():
    """Derived (``cause_seq`` set): made once and logged once, they cannot come again."""
    window = FillWindow(2)
    for n in range(1, 6):
        window.admit(fill(n, venue=False))
    assert len(window) == 3 and window.horizon_ms is None


def test_snapshot_parts_round_trip():
    window = FillWindow(2)
    for n in range(1, 6):
        window.admit(fill(n))
    window.admit(msgspec.structs.replace(fill(9), venue_ts_ms=None))
    current, rest = window.snapshot_parts()
    again = FillWindow.restore(current, rest, 2)
    assert again.snapshot_parts() == (current, rest)
    assert rest == FillWindowSnapshot(older=("trade-3", "trade-4"), kept=("trade-9",), current_ms=T0 + 5_000,
                                      older_ms=T0 + 4_000, horizon_ms=T0 + 2_000)
    assert [again.check(fill(n)) for n in (1, 3, 5, 9, 6)] == [Verdict.STALE, *[Verdict.SEEN] * 3, Verdict.NEW]


def test_a_snapshot_from_before_the_window_keeps_its_venue_fills_for_good():
    """Their venue times are not known, so they are never forgotten (as before); the matcher's stay current."""
    window = FillWindow.restore(("paper-4-1", "trade-1"), None, 1)
    assert window.snapshot_parts() == (("paper-4-1",), FillWindowSnapshot(kept=("trade-1",)))
    for n in range(2, 6):
        window.admit(fill(n))
    assert window.check(fill(1)) is Verdict.SEEN


# --- the property --------------------------------------------------------------------------------------------
@st.composite
def deliveries(draw, bounded: bool):
    """A generation, then fills a second apart (as the fill channel stamps them) delivered with some late — by at
    most half a generation of fills when ``bounded`` — and copies of delivered ones at any later point, stamped to
    the second or to the millisecond (REST)."""
    generation = draw(st.integers(1, 6))
    n = draw(st.integers(1, 60))
    most = generation // 2 if bounded else n
    late = [draw(st.integers(0, most)) for _ in range(n)]
    order = sorted(range(n), key=lambda i: i + late[i])  # each overtaken by at most `most` later fills
    out: list[OrderFilled] = []
    for k, i in enumerate(order):
        out.append(fill(i))
        for j in draw(st.lists(st.sampled_from(order[: k + 1]), max_size=2)):
            out.append(fill(j, ts=T0 + 1_000 * j + draw(st.integers(0, PRECISION_MS - 1))))
    return generation, out


@settings(max_examples=300, deadline=None)
@given(deliveries(bounded=False))
def test_no_interleaving_of_fills_and_copies_applies_a_fill_twice(case):
    generation, stream = case
    window = FillWindow(generation)
    applied = [f.trade_id for f in stream if window.admit(f) is Verdict.NEW]
    assert len(applied) == len(set(applied))
    assert len(window) <= 2 * generation


@settings(max_examples=300, deadline=None)
@given(deliveries(bounded=True))
def test_within_the_guarantee_every_fill_is_applied_once(case):
    """Fills a second apart, each overtaken by at most half a generation of later ones (so fewer than a generation
    come between any fill and one it overtook): every one applied, none twice."""
    generation, stream = case
    window = FillWindow(generation)
    applied = [f.trade_id for f in stream if window.admit(f) is Verdict.NEW]
    assert sorted(applied) == sorted({f.trade_id for f in stream})


# --- the machines ----------------------------------------------------------------------------------------------
MANY = 2 * GENERATION + 10  # enough that the first generation is forgotten


def fold(machine, events) -> list:
    out = []
    for seq, e in enumerate(events, 1):
        out.extend(machine.handle(seq, 0, e))
    return out


def test_positions_refuse_a_copy_long_after_and_stay_bounded():
    """Fills 1..MANY, then fill 1 again: recorded as a duplicate, the position unchanged; two generations held."""
    machine = Positions()
    fold(machine, [fill(n, count=1) for n in range(1, MANY + 1)])
    before = machine.get("KX")
    assert fold(machine, [fill(1, count=1)]) == [FillDuplicated(trade_id="trade-1", cause_seq=1)]
    assert machine.get("KX") == before and before.position == MANY
    assert len(machine._fills) <= 2 * GENERATION


def test_the_cash_pool_and_the_orders_apply_a_copy_long_after_once():
    pool = CashPool(KalshiFees())
    orders = Orders()
    intent = OrderIntent(client_order_id="t-1-1", market="KX", side="bid", price=5_000, count=MANY, cause_seq=1)
    fold(orders, [intent])
    fold(pool, [fill(n, count=1) for n in range(1, MANY + 1)])
    fold(orders, [fill(n, count=1) for n in range(1, MANY + 1)])
    cash = pool.cash
    assert fold(pool, [fill(1, count=1)]) == [] and pool.cash == cash
    assert fold(orders, [fill(1, count=1)]) == [] and orders.get("t-1-1").filled == MANY
    assert len(pool._fills) <= 2 * GENERATION and len(orders._fills) <= 2 * GENERATION


@pytest.mark.parametrize(("machine", "snapshot_type"), [
    (Positions, PositionsSnapshot), (Orders, OrdersSnapshot), (lambda: CashPool(KalshiFees()), CashSnapshot)])
def test_snapshots_round_trip_a_window_that_has_forgotten(machine, snapshot_type):
    m = machine()
    fold(m, [fill(n, count=1) for n in range(1, MANY + 1)])
    snap = m.snapshot()
    assert snap.seen_window is not None and snap.seen_window.horizon_ms is not None
    data = msgspec.msgpack.encode(snap)
    again = type(m).restore(msgspec.msgpack.decode(data, type=snapshot_type), *(
        [KalshiFees()] if snapshot_type is CashSnapshot else []))
    assert msgspec.msgpack.encode(again.snapshot()) == data


class OldPositionsSnapshot(msgspec.Struct, frozen=True):
    """``PositionsSnapshot`` as it was before the window."""

    markets: tuple
    seen_trades: tuple[str, ...]


def test_a_paper_sessions_snapshot_is_byte_for_byte_what_it_was():
    """Fewer than a generation of the matcher's fills: ``seen_window`` is left out, the bytes are the old ones."""
    m = Positions()
    fold(m, [fill(n, venue=False) for n in range(1, 4)])
    snap = m.snapshot()
    assert snap.seen_window is None
    old = OldPositionsSnapshot(markets=snap.markets, seen_trades=snap.seen_trades)
    assert msgspec.msgpack.encode(snap) == msgspec.msgpack.encode(old)


def test_an_old_snapshot_restores_and_still_refuses_its_fills():
    old = msgspec.msgpack.encode(OldPositionsSnapshot(markets=(), seen_trades=("trade-1",)))
    m = Positions.restore(msgspec.msgpack.decode(old, type=PositionsSnapshot))
    fold(m, [fill(n, count=1) for n in range(2, MANY + 1)])
    assert fold(m, [fill(1, count=1)]) == [FillDuplicated(trade_id="trade-1", cause_seq=1)]
    assert type(fold(m, [fill(MANY + 1, count=1)])[0]) is PositionChanged


def test_the_feed_drops_copies_it_remembers_and_delivers_older_ones_for_the_log_to_refuse():
    tracker = FeedTracker(["KX"], channels=("fill",))
    tracker._fills = FillWindow(2)
    first = [fill(n) for n in range(1, 6)]
    assert tracker.reconciled(first) == first
    assert tracker.reconciled([fill(5), fill(1)]) == [fill(1)]
    assert tracker.stats.duplicate_fills == 1 and tracker.stats.stale_fills == 1


def test_the_feed_reconciles_from_the_last_fill_before_the_break_not_after():
    """Fills the new subscription brings first must not move the REST read past the ones the break lost; a failed
    read is due again from the same point."""
    tracker = FeedTracker(["KX"], channels=("fill",))
    tracker.connect()
    tracker.reconciled([fill(1)])
    tracker._reconcile_due = False  # the first connection's reconciliation ran (its subscribe confirmed)
    tracker.disconnect()
    tracker.connect()  # due now, from fill 1
    tracker.reconciled([fill(5)])  # the new connection's first fill
    assert tracker.last_fill_ms == T0 + 5_000 and tracker.reconcile_from_ms == T0 + 1_000
    tracker.reconcile_failed(T0 + 1_000)
    assert tracker.reconcile_from_ms == T0 + 1_000
