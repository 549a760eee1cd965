"""The event schema: tagged, frozen, versioned, and exact through msgpack and JSON."""

from __future__ import annotations

import msgspec
import pytest

from runtime import events as ev
from tests.samples import one_of_each

RECORDS = msgspec.msgpack.Decoder(list[ev.Record])


def test_every_event_round_trips_through_msgpack_and_json():
    records = [ev.Record(seq=i + 1, ts_ns=i * 7, event=e) for i, e in enumerate(one_of_each())]
    assert RECORDS.decode(msgspec.msgpack.encode(records)) == records
    assert msgspec.json.decode(msgspec.json.encode(records), type=list[ev.Record]) == records


def test_events_are_frozen():
    event = ev.BookDelta(market="KX", side="yes", price=1, delta=1)
    with pytest.raises(AttributeError):
        event.price = 2  # type: ignore[misc]


def test_tags_are_unique_snake_case_names():
    tags = list(ev.EVENT_TYPES)
    assert len(tags) == len(set(tags)) == len(ev.Event.__args__)
    assert all(t == t.lower() and " " not in t for t in tags)
    assert ev.event_type(ev.SessionEnded()) == "session_ended"


def test_derived_events_name_their_cause():
    """Every event that a state machine can emit has a cause_seq field."""
    derived = {"book_inconsistent", "order_intent", "cancel_requested", "fill_duplicated", "cash_reserved",
               "cash_released", "cash_settled", "position_changed", "policy_decided"}
    for tag in derived:
        assert "cause_seq" in ev.EVENT_TYPES[tag].__struct_fields__, tag
    assert ev.is_derived(ev.CashReserved(client_order_id="c", amount=1, cause_seq=3))
    assert not ev.is_derived(ev.OrderAccepted(client_order_id="c", order_id="o", market="m"))


def test_decoding_validates_units_and_names_the_field():
    """msgspec refuses the price at the place of the field (its words for why are its own)."""
    bad = msgspec.msgpack.encode([1, 0, ["book_delta", "KX", "yes", 10_001, 5]])
    with pytest.raises(msgspec.ValidationError, match=r"\$\[2\]\[3\]"):
        msgspec.msgpack.decode(bad, type=ev.Record)
    edge = msgspec.msgpack.encode([1, 0, ["book_delta", "KX", "yes", 10_000, 5]])
    assert msgspec.msgpack.decode(edge, type=ev.Record).event.price == 10_000


def test_an_unknown_event_type_is_an_error_naming_the_tag():
    bad = msgspec.msgpack.encode([1, 0, ["book_exploded", "KX"]])
    with pytest.raises(msgspec.ValidationError, match="'book_exploded'"):
        msgspec.msgpack.decode(bad, type=ev.Record)


def test_an_old_record_without_a_field_added_later_still_decodes():
    """Schema rule: new fields are appended with defaults, so a record written before them decodes."""
    old = msgspec.msgpack.encode([1, 0, ["book_delta", "KX", "no", 500, -100]])
    record = msgspec.msgpack.decode(old, type=ev.Record)
    assert record.event == ev.BookDelta(market="KX", side="no", price=500, delta=-100)


def test_a_retired_event_version_is_upcast_on_read(monkeypatch):
    """A breaking change keeps the old Struct and an upcaster; upcast() yields the current event."""

    class TimerFiredV0(msgspec.Struct, frozen=True, array_like=True, tag="timer_fired.0", tag_field="type"):
        name: str
        due_ms: int

    monkeypatch.setitem(ev.UPCASTERS, TimerFiredV0, lambda old: ev.TimerFired(name=old.name, due_ns=old.due_ms * 1_000_000))
    assert ev.upcast(TimerFiredV0("tick", 5)) == ev.TimerFired(name="tick", due_ns=5_000_000)
    current = ev.SessionEnded()
    assert ev.upcast(current) is current


def test_to_builtins_names_the_fields():
    record = ev.Record(seq=3, ts_ns=9, event=ev.BookDelta(market="KX", side="yes", price=800, delta=-5))
    assert ev.to_builtins(record) == {
        "seq": 3, "ts_ns": 9, "type": "book_delta", "market": "KX", "side": "yes", "price": 800, "delta": -5,
        "sid": None, "venue_seq": None, "client_order_id": None, "venue_ts_ms": None,
    }
