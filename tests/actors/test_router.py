"""Live routing specifications: given the log so far, the gateway's work list is exactly this.

The router derives nothing: an intent whose cash is reserved *is* the order to send, a ``CancelRequested`` the
cancel to send; the work list is a pure function of the log prefix, so a restarted gateway resumes exactly.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.router import AmendWork, CancelWork, Router, RouterSnapshot
from runtime.events import (
    AmendRejected,
    AmendRequested,
    CancelRequested,
    CashReserved,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatusReported,
    SessionStarted,
)

M = "KXTEST"


def intent(coid: str, count: int = 100, **kw) -> OrderIntent:
    return OrderIntent(cause_seq=1, client_order_id=coid, market=M, side="bid", price=4_000, count=count, **kw)


def fill(coid: str, trade_id: str, count: int) -> OrderFilled:
    return OrderFilled(trade_id=trade_id, order_id=f"v-{coid}", client_order_id=coid, market=M, side="bid",
                       price=4_000, count=count, fee=0, is_taker=True)


def report(coid: str, status: str) -> OrderStatusReported:
    return OrderStatusReported(client_order_id=coid, order_id=f"v-{coid}", market=M, status=status,  # type: ignore[arg-type]
                               side="bid", price=4_000, fill_count=0, remaining_count=100)


def fold(events: list[Event], router: Router | None = None, start: int = 1) -> Router:
    router = router or Router()
    for seq, event in enumerate(events, start=start):
        assert router.handle(seq, seq * 1_000, event) == ()  # the router never derives an event
    return router


def reserved(*coids: str) -> list[Event]:
    out: list[Event] = []
    for c in coids:
        out += [intent(c), CashReserved(client_order_id=c, amount=1, cause_seq=1)]
    return out


def sends(router: Router) -> list[str]:
    return [i.client_order_id for i in router.pending_sends()]


# --- sends ----------------------------------------------------------------------------------------------
def test_an_intent_waits_for_its_reservation_then_is_to_be_sent_as_it_was_decided():
    router = fold([intent("a")])
    assert router.pending_sends() == []
    fold([CashReserved(client_order_id="a", amount=1, cause_seq=1)], router, start=2)
    assert router.pending_sends() == [intent("a")]


def test_an_intent_the_cash_pool_rejects_is_never_sent():
    router = fold([intent("a"), OrderRejected(client_order_id="a", market=M, reason="insufficient_cash", cause_seq=1),
                   CashReserved(client_order_id="a", amount=1, cause_seq=1)])
    assert router.pending_sends() == [] and not router.is_open("a")


def test_sends_are_in_reservation_order():
    router = fold([intent("a"), intent("b"), CashReserved(client_order_id="b", amount=1, cause_seq=2),
                   CashReserved(client_order_id="a", amount=1, cause_seq=1)])
    assert sends(router) == ["b", "a"]


def test_an_order_leaves_the_send_list_when_the_venue_shows_it_has_it():
    """The create reply, or anything the private channels say first (a fill, a status, a cancel)."""
    router = fold([*reserved("a", "b", "c", "d", "e", "f"),
                   OrderAccepted(client_order_id="a", order_id="v-a", market=M),
                   fill("b", "t1", 10),
                   report("c", "resting"),
                   OrderRejected(client_order_id="d", market=M, reason="invalid_price", detail="off the grid"),
                   OrderCanceled(client_order_id="e", order_id="v-e", canceled_count=100, reason="ioc_remainder")])
    assert sends(router) == ["f"]
    assert [router.is_open(c) for c in "abcdef"] == [True, True, True, False, False, True]


def test_a_restart_mid_flight_resends_with_the_same_client_order_id():
    """A gateway that stopped after sending, before the reply was logged: the log still lists the order, as it
    was decided, so the new gateway sends it again with the same client_order_id (the venue refuses a
    duplicate and the gateway finds the order that landed)."""
    log = [*reserved("a", "b"), OrderAccepted(client_order_id="a", order_id="v-a", market=M)]
    before = fold(log)
    after = Router.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(fold(log[:3]).snapshot()), type=RouterSnapshot))
    fold(log[3:], after, start=4)
    assert before.pending_sends() == after.pending_sends() == [intent("b")]
    assert fold(log[:3]).pending_sends() == [intent("a")]  # stopped before the ack: a is sent again, same id


def test_a_second_reservation_for_an_open_order_changes_nothing():
    """A fill's rebate can reserve again for an open order."""
    router = fold([*reserved("a"), OrderAccepted(client_order_id="a", order_id="v-a", market=M),
                   CashReserved(client_order_id="a", amount=1, cause_seq=3)])
    assert sends(router) == [] and router.is_open("a")


# --- cancels --------------------------------------------------------------------------------------------
def test_a_cancel_of_an_accepted_order_is_to_be_sent_with_the_venues_order_id():
    router = fold([*reserved("a"), OrderAccepted(client_order_id="a", order_id="v-a", market=M),
                   CancelRequested(cause_seq=3, client_order_id="a")])
    assert router.pending_cancels() == [CancelWork("a", "v-a", M, 100, requested_seq=4)]


def test_a_cancel_requested_while_the_order_is_on_its_way_waits_for_its_order_id():
    router = fold([*reserved("a"), CancelRequested(cause_seq=2, client_order_id="a")])
    assert router.pending_cancels() == [] and sends(router) == ["a"]
    fold([OrderAccepted(client_order_id="a", order_id="v-a", market=M)], router, start=4)
    assert router.pending_cancels() == [CancelWork("a", "v-a", M, 100, requested_seq=3)] and sends(router) == []


def test_a_cancel_naming_the_order_id_is_to_be_sent_at_once():
    router = fold([*reserved("a"), CancelRequested(cause_seq=2, client_order_id="a", order_id="v-a")])
    assert router.pending_cancels() == [CancelWork("a", "v-a", M, 100, requested_seq=3)]


def test_a_second_request_is_the_same_cancel_and_cancels_are_in_request_order():
    router = fold([*reserved("a", "b"), OrderAccepted(client_order_id="a", order_id="v-a", market=M),
                   OrderAccepted(client_order_id="b", order_id="v-b", market=M),
                   CancelRequested(cause_seq=6, client_order_id="b"), CancelRequested(cause_seq=6, client_order_id="a"),
                   CancelRequested(cause_seq=6, client_order_id="b")])
    assert [(c.client_order_id, c.requested_seq) for c in router.pending_cancels()] == [("b", 7), ("a", 8)]


def test_a_cancel_ends_with_the_orders_end_however_it_comes():
    done = [OrderCanceled(client_order_id="a", order_id="v-a", canceled_count=100),
            OrderExpired(client_order_id="a", order_id="v-a", expired_count=100),
            report("a", "canceled"), report("a", "executed"), fill("a", "t1", 100)]
    for event in done:
        router = fold([*reserved("a"), OrderAccepted(client_order_id="a", order_id="v-a", market=M),
                       CancelRequested(cause_seq=3, client_order_id="a"), event])
        assert router.pending_cancels() == [] and not router.is_open("a"), event


def test_fills_count_once_per_trade_id_toward_the_orders_end():
    router = fold([*reserved("a"), CancelRequested(cause_seq=2, client_order_id="a"),
                   fill("a", "t1", 60), fill("a", "t1", 60)])
    assert [c.order_id for c in router.pending_cancels()] == ["v-a"]  # the fill named the order id
    fold([fill("a", "t2", 40)], router, start=6)
    assert not router.is_open("a") and router.pending_cancels() == []


def test_a_cancel_of_an_order_done_or_never_routed_is_nothing_to_send():
    router = fold([*reserved("a"), OrderRejected(client_order_id="a", market=M, reason="invalid_price"),
                   CancelRequested(cause_seq=3, client_order_id="a"), CancelRequested(cause_seq=3, client_order_id="z")])
    assert router.pending_cancels() == [] and router.pending_sends() == []


# --- with the cash pool, and snapshots ----------------------------------------------------------------------
def test_folded_with_the_cash_pool_only_the_affordable_intent_is_sent():
    pool, router = CashPool(KalshiFees()), Router()
    log: list[Event] = [SessionStarted(session_id="s", mode="demo", venue="kalshi-demo", seed=1, config_hash="h",
                                       code_version="v", starting_cash=1_000_000),
                        intent("cheap", count=100), intent("dear", count=10_000)]
    seq = 0
    while log:
        event = log.pop(0)
        seq += 1
        log[:0] = pool.handle(seq, seq, event)
        router.handle(seq, seq, event)
    assert sends(router) == ["cheap"]


EVENTS = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(
    ["intent", "reserve", "reject", "accept", "cancel", "canceled", "fill", "status"])), max_size=30)


def build(steps: list[tuple[str, str]]) -> list[Event]:
    return [event(c, kind, n) for n, (c, kind) in enumerate(steps)]


def event(c: str, kind: str, n: int) -> Event:
    match kind:
        case "intent":
            return intent(c)
        case "reserve":
            return CashReserved(client_order_id=c, amount=1, cause_seq=1)
        case "reject":
            return OrderRejected(client_order_id=c, market=M, reason="venue_rejected")
        case "accept":
            return OrderAccepted(client_order_id=c, order_id=f"v-{c}", market=M)
        case "cancel":
            return CancelRequested(cause_seq=1, client_order_id=c)
        case "canceled":
            return OrderCanceled(client_order_id=c, order_id=f"v-{c}", canceled_count=1)
        case "fill":
            return fill(c, f"t{n % 3}", 30)
    return report(c, "resting")


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.integers(0, 30))
def test_snapshot_then_restore_at_any_point_gives_the_same_work_list_as_one_fold(steps, cut):
    events = build(steps)
    cut = min(cut, len(events))
    whole = fold(events)
    head = fold(events[:cut])
    snap = head.snapshot()
    again = Router.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=RouterSnapshot))
    assert again.snapshot() == snap
    fold(events[cut:], again, start=cut + 1)
    assert again.pending_sends() == whole.pending_sends()
    assert again.pending_cancels() == whole.pending_cancels()
    assert again.snapshot() == whole.snapshot()
    listed = [i.client_order_id for i in whole.pending_sends()] + [c.client_order_id for c in whole.pending_cancels()]
    assert all(whole.is_open(c) for c in listed)


# --- amends -----------------------------------------------------------------------------------------------
def accepted(coid: str) -> OrderAccepted:
    return OrderAccepted(client_order_id=coid, order_id=f"v-{coid}", market=M)


def test_an_amend_is_to_send_once_the_cash_pool_answered_it_and_the_order_id_is_known():
    """Given an accepted order, when an amend is requested (seq 4) and the pool reserves for it (cause 4), then it
    is on the amend list with the order's market and side and the amend's terms."""
    router = fold([*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=4_100,
                                                                 count=150)])
    assert router.pending_amends() == []  # no verdict yet
    fold([CashReserved(client_order_id="a", amount=0, cause_seq=2)], router, start=5)  # not the amend's
    assert router.pending_amends() == []
    fold([CashReserved(client_order_id="a", amount=0, cause_seq=4)], router, start=6)
    assert router.pending_amends() == [AmendWork("a", "v-a", M, "bid", 4_100, 150, 4)]


def test_an_amend_of_an_order_on_its_way_waits_for_its_id():
    router = fold([*reserved("a"), AmendRequested(cause_seq=2, client_order_id="a", price=4_100, count=150),
                   CashReserved(client_order_id="a", amount=0, cause_seq=3)])
    assert router.pending_amends() == []
    fold([accepted("a")], router, start=5)
    assert [w.order_id for w in router.pending_amends()] == ["v-a"]


def test_an_amend_leaves_the_list_when_applied_or_refused():
    base = [*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=4_100, count=150),
            CashReserved(client_order_id="a", amount=0, cause_seq=4)]
    done = fold([*base, OrderAmended(client_order_id="a", order_id="v-a", price=4_100, count=150)])
    assert done.pending_amends() == [] and done.is_open("a")
    refused = fold([*base, AmendRejected(client_order_id="a", reason="invalid_price")])
    assert refused.pending_amends() == [] and refused.is_open("a")
    other = fold([*base, AmendRejected(client_order_id="a", reason="amend_pending", cause_seq=99)])
    assert len(other.pending_amends()) == 1  # a refusal of another amend leaves this one


def test_the_pools_refusal_means_the_amend_is_never_sent():
    router = fold([*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=9_000,
                                                                 count=100_000),
                   AmendRejected(client_order_id="a", reason="insufficient_cash", cause_seq=4)])
    assert router.pending_amends() == []


def test_a_cancel_wins_over_an_amend():
    router = fold([*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=4_100,
                                                                 count=150),
                   CashReserved(client_order_id="a", amount=0, cause_seq=4), CancelRequested(cause_seq=3,
                                                                                              client_order_id="a")])
    assert router.pending_amends() == [] and [c.client_order_id for c in router.pending_cancels()] == ["a"]


def test_after_an_increase_fills_complete_the_order_only_at_the_new_count():
    """100 amended to 150: 100 filled leaves it open; 50 more ends it. While the increase is on its way, the
    larger count counts too."""
    base = [*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=4_000, count=150),
            CashReserved(client_order_id="a", amount=0, cause_seq=4)]
    on_its_way = fold([*base, fill("a", "t1", 100)])
    assert on_its_way.is_open("a")
    applied = fold([*base, OrderAmended(client_order_id="a", order_id="v-a", price=4_000, count=150),
                    fill("a", "t1", 100)])
    assert applied.is_open("a")
    fold([fill("a", "t2", 50)], applied, start=20)
    assert not applied.is_open("a")


def test_a_decrease_to_what_has_filled_ends_the_order():
    router = fold([*reserved("a"), accepted("a"), fill("a", "t1", 60),
                   OrderAmended(client_order_id="a", order_id="v-a", price=4_000, count=60)])
    assert not router.is_open("a")


def test_a_snapshot_round_trips_an_amend_on_its_way():
    router = fold([*reserved("a"), accepted("a"), AmendRequested(cause_seq=3, client_order_id="a", price=4_100,
                                                                 count=150),
                   CashReserved(client_order_id="a", amount=0, cause_seq=4)])
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(router.snapshot()), type=RouterSnapshot)
    assert Router.restore(snap).pending_amends() == router.pending_amends()


def test_with_the_cash_pool_in_the_log_an_amend_goes_out_on_its_verdict():
    """The pool and the router folded as one log: the pool's CashReserved for the amend releases it."""
    pool, router, log = CashPool(KalshiFees()), Router(), []
    queue: list[Event] = [SessionStarted(session_id="s", mode="live", venue="kalshi", seed=0, config_hash="",
                                         code_version="", starting_cash=100_000_000),
                          intent("a"), accepted("a"), AmendRequested(cause_seq=1, client_order_id="a", price=4_500,
                                                                     count=200)]
    while queue:
        event = queue.pop(0)
        log.append(event)
        seq = len(log)
        queue[:0] = [*pool.handle(seq, seq, event), *router.handle(seq, seq, event)]
    assert router.pending_amends() == [AmendWork("a", "v-a", M, "bid", 4_500, 200, 5)]

