"""Order lifecycle specifications: the transition table, and the machine that moves orders through it."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from actors.orders import TRANSITIONS, IllegalTransition, OrderRecord, Orders, transition
from runtime.events import (
    AmendRejected,
    AmendRequested,
    CashDeposited,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderTransitionRefused,
)

M = "KXA-1"
STATES = tuple(TRANSITIONS)
ALLOWED = [(a, b) for a, b in itertools.product(STATES, STATES) if b in TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in itertools.product(STATES, STATES) if b not in TRANSITIONS[a]]


def intent(cid: str = "c1", count: int = 1_000) -> OrderIntent:
    return OrderIntent(cause_seq=1, client_order_id=cid, market=M, side="bid", price=4_500, count=count)


def accepted(cid: str = "c1") -> OrderAccepted:
    return OrderAccepted(client_order_id=cid, order_id=f"o-{cid}", market=M)


def fill(trade_id: str, count: int, cid: str = "c1") -> OrderFilled:
    return OrderFilled(trade_id=trade_id, order_id=f"o-{cid}", client_order_id=cid, market=M, side="bid",
                       price=4_500, count=count, fee=0, is_taker=False)


def canceled(count: int, cid: str = "c1") -> OrderCanceled:
    return OrderCanceled(client_order_id=cid, order_id=f"o-{cid}", canceled_count=count)


def fold(*events) -> tuple[Orders, list]:
    machine, out = Orders(), []
    for seq, event in enumerate(events, start=1):
        out.extend(machine.handle(seq, seq, event))
    return machine, out


# -- the table -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "to"), ALLOWED)
def test_every_move_in_the_table_is_allowed(state, to):
    """transition() returns the new state for each listed move."""
    assert transition("c1", state, to) == to


@pytest.mark.parametrize(("state", "to"), REFUSED)
def test_every_move_outside_the_table_raises_naming_both_states(state, to):
    """transition() raises IllegalTransition for every other move."""
    with pytest.raises(IllegalTransition, match=rf"^order 'c1': illegal transition {state} -> {to}$"):
        transition("c1", state, to)


def test_terminal_states_go_nowhere_and_nothing_returns_to_intent():
    """filled, canceled, rejected and expired are final; intent is only ever the first state."""
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {"filled", "canceled", "rejected", "expired"}
    assert not any("intent" in nxt for nxt in TRANSITIONS.values())


# -- the machine ---------------------------------------------------------------------------------
def test_an_intent_starts_an_order_with_everything_remaining():
    """Given nothing, when an intent for 10 arrives, then the order is an intent with 10 remaining."""
    machine, out = fold(intent())
    assert out == []
    assert machine.get("c1") == OrderRecord("c1", M, "bid", 4_500, 1_000, state="intent")
    assert machine.get("c1").remaining == 1_000


def test_an_order_goes_through_partial_fills_to_filled():
    """Accepted, then 4 and 6 of 10 fill: partially_filled with 6 remaining, then filled with none."""
    machine, _ = fold(intent(), accepted(), fill("t1", 400))
    assert (machine.get("c1").state, machine.get("c1").remaining, machine.get("c1").order_id) == (
        "partially_filled", 600, "o-c1")
    machine.handle(4, 4, fill("t2", 600))
    assert (machine.get("c1").state, machine.get("c1").remaining) == ("filled", 0)


def test_a_cancel_ends_a_partially_filled_order_with_nothing_remaining():
    """Given 4 of 10 filled, when the rest is canceled, then canceled, 4 filled, nothing remaining."""
    machine, out = fold(intent(), accepted(), fill("t1", 400), canceled(600))
    assert out == []
    assert (machine.get("c1").state, machine.get("c1").filled, machine.get("c1").remaining) == ("canceled", 400, 0)


@pytest.mark.parametrize(("end", "state"), [
    (OrderRejected(client_order_id="c1", market=M, reason="insufficient_cash"), "rejected"),
    (OrderExpired(client_order_id="c1", order_id="o-c1", expired_count=1_000), "expired"),
], ids=["rejected", "expired"])
def test_rejection_and_expiry_end_an_order(end, state):
    """A rejected intent and an expired accepted order are done."""
    events = (intent(), end) if state == "rejected" else (intent(), accepted(), end)
    machine, _ = fold(*events)
    assert (machine.get("c1").state, machine.get("c1").remaining) == (state, 0)


def test_a_fill_may_arrive_before_the_acknowledgement():
    """The fill channel can beat the REST reply: intent -> partially_filled, and the fill names the order id."""
    machine, out = fold(intent(), fill("t1", 400))
    assert out == [] and machine.get("c1").state == "partially_filled" and machine.get("c1").order_id == "o-c1"


def test_a_cancel_after_the_last_fill_is_recorded_and_not_applied():
    """Given a filled order, when a cancel arrives at seq 4, then OrderTransitionRefused and still filled."""
    machine, out = fold(intent(), accepted(), fill("t1", 1_000), canceled(0))
    assert out == [OrderTransitionRefused(client_order_id="c1", from_state="filled", to_state="canceled",
                                          cause_seq=4, detail="illegal transition filled -> canceled")]
    assert machine.get("c1").state == "filled"


def test_a_repeated_or_late_acknowledgement_of_the_same_order_changes_nothing():
    """The gateway and the user_orders channel both acknowledge; an ack may also trail the fill that raced it."""
    machine, out = fold(intent(), accepted(), accepted())
    assert out == [] and machine.get("c1").state == "accepted"
    machine, out = fold(intent(), fill("t1", 1_000), accepted())
    assert out == [] and machine.get("c1").state == "filled"


def test_an_acknowledgement_naming_another_venue_order_is_recorded_and_not_applied():
    other = OrderAccepted(client_order_id="c1", order_id="o-other", market=M)
    machine, out = fold(intent(), accepted(), other)
    assert out == [OrderTransitionRefused(client_order_id="c1", from_state="accepted", to_state="accepted",
                                          cause_seq=3, detail="illegal transition accepted -> accepted")]
    assert machine.get("c1").order_id == "o-c1"


def test_an_acknowledgement_after_a_rejection_is_recorded_and_not_applied():
    machine, out = fold(intent(), OrderRejected(client_order_id="c1", market=M, reason="venue_rejected"), accepted())
    assert [type(e) for e in out] == [OrderTransitionRefused] and machine.get("c1").state == "rejected"


def test_a_fill_beyond_the_remaining_count_is_recorded_and_not_applied():
    """Given 4 of 10 filled, when a fill of 7 arrives, then it is refused and 6 still remain."""
    machine, out = fold(intent(), accepted(), fill("t1", 400), fill("t2", 700))
    assert out == [OrderTransitionRefused(client_order_id="c1", from_state="partially_filled", to_state="filled",
                                          cause_seq=4, detail="a fill of 7.00 exceeds the remaining 6.00")]
    assert machine.get("c1").remaining == 600


def test_an_event_for_an_order_never_placed_is_recorded():
    """A fill of an unknown order is refused from the state "unknown"."""
    _, out = fold(fill("t1", 100, cid="ghost"))
    assert out == [OrderTransitionRefused(client_order_id="ghost", from_state="unknown", to_state="filled",
                                          cause_seq=1, detail="no such order")]


def test_a_duplicate_fill_is_ignored():
    """The same trade id twice counts once."""
    machine, out = fold(intent(), accepted(), fill("t1", 400), fill("t1", 400))
    assert out == [] and machine.get("c1").filled == 400


def test_a_client_order_id_used_twice_is_a_bug():
    """Our own ids are unique by construction: a second intent raises, naming both states."""
    machine, _ = fold(intent(), accepted())
    with pytest.raises(IllegalTransition, match=r"^order 'c1': illegal transition accepted -> intent$"):
        machine.handle(3, 3, intent())


def test_other_events_pass_by():
    """A deposit is no business of the order lifecycle."""
    assert fold(CashDeposited(amount=1))[1] == []


def test_get_returns_a_copy():
    """Changing what get() returned does not change the machine."""
    machine, _ = fold(intent())
    machine.get("c1").state = "filled"
    assert machine.get("c1").state == "intent" and machine.get("nope") is None


def test_snapshot_round_trips_through_msgpack():
    """restore(snapshot) is an equal machine, also after encoding the snapshot."""
    machine, _ = fold(intent(), accepted(), fill("t1", 400), intent("c2"))
    snap = machine.snapshot()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=type(snap))
    assert Orders.restore(decoded).snapshot() == snap


# -- amends -------------------------------------------------------------------------------------------
def amended(price: int, count: int, cid: str = "c1") -> OrderAmended:
    return OrderAmended(client_order_id=cid, order_id=f"o-{cid}", price=price, count=count)


def test_an_amend_changes_the_terms_not_the_state():
    machine, out = fold(intent(), accepted(), fill("t1", 300), AmendRequested(cause_seq=3, client_order_id="c1",
                                                                             price=4_600, count=1_500),
                        amended(4_600, 1_500))
    o = machine.get("c1")
    assert out == [] and (o.state, o.price, o.count, o.filled, o.remaining) == ("partially_filled", 4_600, 1_500, 300,
                                                                                1_200)


def test_while_an_increase_is_on_its_way_fills_up_to_the_new_count_are_allowed():
    """The venue applied the increase before its fills reached us: 1,200 filled of an order of 1,000 is no error."""
    machine, out = fold(intent(), accepted(), AmendRequested(cause_seq=2, client_order_id="c1", price=4_500,
                                                             count=1_500), fill("t1", 1_200))
    assert out == [] and machine.get("c1").state == "partially_filled"
    machine.handle(10, 10, fill("t2", 300))
    assert machine.get("c1").state == "filled"


def test_a_refused_amend_returns_to_the_old_count():
    _, out = fold(intent(), accepted(), AmendRequested(cause_seq=2, client_order_id="c1", price=4_500,
                                                             count=1_500),
                        AmendRejected(client_order_id="c1", reason="invalid_price"), fill("t1", 1_200))
    assert [(e.to_state, e.detail) for e in out] == [("filled", "a fill of 12.00 exceeds the remaining 10.00")]


def test_a_decrease_to_what_has_filled_fills_the_order():
    machine, _ = fold(intent(), accepted(), fill("t1", 400), amended(4_500, 400))
    assert machine.get("c1").state == "filled"


def test_an_amend_of_a_done_or_unknown_order_is_refused():
    _, out = fold(intent(), accepted(), canceled(1_000), amended(4_600, 1_000), amended(4_600, 10, cid="zz"))
    assert [(e.client_order_id, e.from_state, e.to_state, e.detail) for e in out] == [
        ("c1", "canceled", "amended", "the order is canceled"), ("zz", "unknown", "amended", "no such order")]


def test_the_venue_amending_an_order_before_its_ack_shows_it_accepted():
    machine, _ = fold(intent(), amended(4_600, 1_000))
    assert machine.get("c1").state == "accepted"

