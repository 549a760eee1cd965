"""The topology: which machines a session runs, what each receives, and how the spec is kept in the log."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from policies.registry import PROVIDER
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    CashReserved,
    ModelLoaded,
    OperatorCommand,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderStatusReported,
    PolicyDecided,
    PublicTrade,
    Record,
    SeqGapDetected,
    SessionStarted,
    TimerFired,
)
from runtime.topology import (
    PolicyProvider,
    Routes,
    SessionSpec,
    SpecMissingError,
    session_inputs,
    snapshot_bytes,
    spec_from_log,
    topology,
)
from tests.runtime.test_sequencer import paper_inputs

SPEC = SessionSpec(markets=("KXA-1", "KXB-2"), starting_cash=5_000_000, latency_ms=30, queue_model="proportional",
                   seed=9, prefix="p9")
NODES = topology(SPEC, PROVIDER)
ROUTES = Routes(NODES)


def names(event) -> list[str]:
    return [NODES[i].name for i in ROUTES.targets(event)]


def test_the_nodes_and_their_order():
    assert [n.name for n in NODES] == ["book:KXA-1", "book:KXB-2", "cash", "execution", "fills", "orchestrator"]


def test_a_book_delta_goes_to_its_book_the_execution_and_the_orchestrator_only():
    delta = BookDelta(market="KXB-2", side="yes", price=4_000, delta=100)
    assert names(delta) == ["book:KXB-2", "execution", "orchestrator"]
    assert names(BookDelta(market="KXZ-9", side="no", price=1, delta=1)) == ["execution", "orchestrator"]


def test_a_seq_gap_goes_to_the_books_it_names():
    gap = SeqGapDetected(sid=1, expected=5, received=7, markets=("KXB-2",))
    assert names(gap) == ["book:KXB-2", "execution", "orchestrator"]


@pytest.mark.parametrize(("event", "expected"), [
    (PublicTrade(market="KXA-1", trade_id="t", yes_price=100, count=100, taker_side="yes"),
     ["execution", "orchestrator"]),
    (OrderIntent(cause_seq=1, client_order_id="c", market="KXA-1", side="bid", price=100, count=100),
     ["cash", "execution", "orchestrator"]),
    (CashReserved(client_order_id="c", amount=1, cause_seq=1), ["execution"]),
    (OrderFilled(trade_id="t", order_id="o", client_order_id="c", market="KXA-1", side="bid", price=100, count=1,
                 fee=0, is_taker=True), ["cash", "fills", "orchestrator"]),
    (TimerFired(name="decide", due_ns=1), ["execution", "orchestrator"]),
    (PolicyDecided(cause_seq=1, role="signal", market="KXA-1", action="hold", version="v"), []),
    (OperatorCommand(command="session_spec"), ["orchestrator"]),  # it acts on "halt" only
])
def test_each_event_reaches_only_the_machines_that_fold_it(event, expected):
    assert names(event) == expected


def test_the_spec_round_trips_through_the_first_input_batch():
    """SessionStarted carries markets, seed and starting cash; the session_spec command the rest."""
    entries = session_inputs(SPEC, 123, session_id="s")
    started, command = entries[0][1], entries[1][1]
    assert type(started) is SessionStarted and (started.markets, started.seed, started.starting_cash) == (
        SPEC.markets, 9, 5_000_000)
    assert command == OperatorCommand(command="session_spec", args=(
        ("fees", "kalshi"), ("latency_ms", "30"), ("queue_model", "proportional"), ("policy", "rule"),
        ("prefix", "p9"), ("books_per_node", "0"), ("execution", "paper"), ("rate_limits", "none"),
            ("shadow", "False"), ("cancel_ahead_pct", "0"), ("pacing", "none"), ("profile", "")))
    assert spec_from_log([Record(i + 1, ts, e) for i, (ts, e) in enumerate(entries)]) == SPEC
    older = OperatorCommand(command="session_spec", args=command.args[:-3])  # logged before books_per_node
    assert spec_from_log([Record(1, 123, started), Record(2, 123, older)]) == SPEC


def test_the_execution_is_recorded_and_a_log_from_before_it_existed_is_paper():
    venue = msgspec.structs.replace(SPEC, execution="venue")
    started, command = (e for _, e in session_inputs(venue, 5, session_id="s"))
    assert ("execution", "venue") in command.args
    assert spec_from_log([Record(1, 5, started), Record(2, 5, command)]) == venue
    without = OperatorCommand(command="session_spec", args=tuple(a for a in command.args if a[0] != "execution"))
    assert spec_from_log([Record(1, 5, started), Record(2, 5, without)]).execution == "paper"
    bad = OperatorCommand(command="session_spec", args=(("execution", "live"),))
    with pytest.raises(SpecMissingError, match="does not hold a valid spec"):
        spec_from_log([Record(1, 5, started), Record(2, 5, bad)])


def test_with_venue_execution_the_execution_node_is_the_router_and_derives_nothing():
    from actors.router import Router

    venue = msgspec.structs.replace(SPEC, execution="venue")
    nodes = topology(venue, PROVIDER)
    assert [n.name for n in nodes] == [n.name for n in NODES]
    (execution,) = [n for n in nodes if n.name == "execution"]
    router = execution.build()
    assert type(router) is Router and type(next(n for n in NODES if n.name == "execution").build()) is not Router
    routes = Routes(nodes)
    at = [i for i, n in enumerate(nodes) if n.name == "execution"]

    def to_execution(event) -> bool:
        return any(i in at for i in routes.targets(event))

    accepted = OrderAccepted(client_order_id="c", order_id="o-1", market="KXA-1")
    intent = OrderIntent(cause_seq=1, client_order_id="c", market="KXA-1", side="bid", price=100, count=100)
    stream = [intent, CashReserved(client_order_id="c", amount=1, cause_seq=2), accepted,
              CancelRequested(cause_seq=3, client_order_id="c"),
              OrderStatusReported(order_id="o-1", client_order_id="c", market="KXA-1", status="resting", side="bid",
                                  price=100, fill_count=0, remaining_count=100)]
    assert all(to_execution(e) for e in stream)
    assert not to_execution(BookDelta(market="KXA-1", side="yes", price=4_000, delta=100))  # no market data
    assert not to_execution(TimerFired(name="decide", due_ns=1))
    for seq, event in enumerate(stream, start=1):
        assert router.handle(seq, 0, event) == ()
    assert [w.order_id for w in router.pending_cancels()] == ["o-1"]
    restored = pickle.loads(pickle.dumps(execution)).restore(snapshot_bytes(router))
    assert snapshot_bytes(restored) == snapshot_bytes(router)


def test_a_log_without_the_spec_is_refused_naming_what_is_missing():
    started = session_inputs(SPEC, 0, session_id="s")[0][1]
    with pytest.raises(SpecMissingError, match="does not start with session_started"):
        spec_from_log([])
    with pytest.raises(SpecMissingError, match="seq 2 is not the 'session_spec' operator command"):
        spec_from_log([Record(1, 0, started), Record(2, 0, TimerFired(name="x", due_ns=0))])
    bad = OperatorCommand(command="session_spec", args=(("latency_ms", "soon"),))
    with pytest.raises(SpecMissingError, match="does not hold a valid spec"):
        spec_from_log([Record(1, 0, started), Record(2, 0, bad)])


def test_nodes_cross_process_boundaries_and_restore_what_they_snapshot():
    """Every node pickles (they go to Ray actors), and restore(snapshot) gives an equal machine after a fold."""
    spec, inputs = paper_inputs(markets=2, duration_s=120)
    nodes = pickle.loads(pickle.dumps(topology(spec, PROVIDER)))
    routes = Routes(nodes)
    machines = [n.build() for n in nodes]
    for seq, (ts, event) in enumerate(inputs[:400], start=1):
        for i in routes.targets(event):
            machines[i].handle(seq, ts, event)
    for node, machine in zip(nodes, machines, strict=True):
        data = snapshot_bytes(machine)
        assert msgspec.msgpack.encode(node.restore(data).snapshot()) == data, node.name
    assert any(type(e) is BookSnapshot for _, e in inputs[:400])


class _Named:
    """A stand-in policy: what it was named, and which role it plays."""

    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role

    def decide(self, obs):  # never asked here
        raise AssertionError("not called")


def _named(name: str) -> dict:
    return {role: _Named(name, role) for role in ("signal", "sizing", "entry", "exit")}


def _load(event: ModelLoaded) -> _Named:
    return _Named(event.model_id, event.role)


def test_the_orchestrator_takes_its_policies_and_loader_from_the_provider_it_is_given():
    """The kernel imports no policies: the orchestrator node builds (and restores) with the injected provider's
    policies for the spec's name and its loader, and the provider crosses a process boundary with the node."""
    provider = PolicyProvider(named=_named, load=_load)
    (orchestrator,) = [n for n in pickle.loads(pickle.dumps(topology(SPEC, provider))) if n.name == "orchestrator"]
    for machine in (built := orchestrator.build(), orchestrator.restore(snapshot_bytes(built))):
        assert {r: (p.name, p.role) for r, p in machine.policies.items()} == {
            r: ("rule", r) for r in ("signal", "sizing", "entry", "exit")}
        assert machine.loader is _load


def test_above_sixteen_markets_books_are_hosted_in_eight_shards_that_derive_what_single_books_do():
    """300 markets would be 300 actors (processes); shards keep the node count small, and a shard derives
    exactly what its books would."""
    markets = tuple(f"KXM-{i:03d}" for i in range(300))
    nodes = topology(SessionSpec(markets=markets), PROVIDER)
    shards = [n for n in nodes if n.name.startswith("books:")]
    assert len(shards) == 8 and sum(len(n.markets) for n in shards) == 300 and len(nodes) == 12
    assert [n.name for n in nodes if not n.name.startswith("books:")] == ["cash", "execution", "fills", "orchestrator"]
    few = topology(SessionSpec(markets=markets[:16]), PROVIDER)
    assert sum(n.name.startswith("book:") for n in few) == 16
    assert len([n for n in topology(SessionSpec(markets=markets[:10], books_per_node=5), PROVIDER) if n.markets]) == 2

    from actors.book import OrderBook
    from actors.shard import BookShard
    shard, books = BookShard(markets[:2]), {m: OrderBook(m) for m in markets[:2]}
    stream = [BookSnapshot(market=markets[0], yes_bids=((4_000, 100),)),
              BookDelta(market=markets[1], side="yes", price=4_000, delta=-5),  # before a snapshot: stale
              BookDelta(market=markets[0], side="yes", price=4_000, delta=-500),  # inconsistent
              SeqGapDetected(sid=1, expected=2, received=3, markets=markets[:2])]
    for seq, event in enumerate(stream, start=1):
        single = [e for m, b in books.items() for e in b.handle(seq, 0, event)
                  if getattr(event, "market", m) == m or isinstance(event, SeqGapDetected)]
        assert list(shard.handle(seq, 0, event)) == single
    assert BookShard.restore(shard.snapshot()).snapshot() == shard.snapshot()
    routes = Routes(nodes)
    first = next(i for i, n in enumerate(nodes) if markets[0] in n.markets)
    assert first in routes.targets(BookDelta(market=markets[0], side="no", price=1, delta=1))
