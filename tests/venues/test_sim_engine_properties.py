"""Properties of the matching engine over random order streams: the deltas it emits fold into its own
book, the book never crosses, and a naive reference matcher fed the same stream agrees on every fill."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book import OrderBook
from runtime.events import BookDelta, BookSnapshot, PublicTrade
from runtime.venues.sim import MatchingEngine

M = "KXPROP"
PRICES = [100, 4_800, 4_900, 5_000, 5_100, 5_200, 9_900]  # clustered, so orders often meet; and the edges


@dataclass
class _Ref:
    order_id: int
    owner: str
    side: str
    price: int
    remaining: int


class ReferenceMatcher:
    """Price-time priority written for obviousness: a list of orders, sorted from scratch on every match."""

    def __init__(self) -> None:
        self.orders: list[_Ref] = []  # in arrival order
        self.next_id = 1
        self.next_trade = 1
        self.client_ids: set[tuple[str, str]] = set()

    def _opposite(self, side: str, price: int) -> list[_Ref]:
        if side == "bid":
            crossing = [o for o in self.orders if o.side == "ask" and o.price <= price]
            return sorted(crossing, key=lambda o: (o.price, o.order_id))
        crossing = [o for o in self.orders if o.side == "bid" and o.price >= price]
        return sorted(crossing, key=lambda o: (-o.price, o.order_id))

    def submit(self, owner, side, price, count, tif, post_only, client_order_id, stp):
        if not 100 <= price <= 9_900 or price % 100:
            return ("rejected", "invalid_price")
        if count <= 0:
            return ("rejected", "invalid_count")
        if client_order_id is not None and (owner, client_order_id) in self.client_ids:
            return ("rejected", "duplicate_client_order_id")
        queue = self._opposite(side, price)
        if queue and post_only:
            return ("rejected", "post_only_would_cross")
        if tif == "fok":
            fillable = 0
            for o in queue:
                if o.owner == owner:
                    if stp == "taker_at_cross":
                        break
                    continue
                fillable += o.remaining
            if fillable < count:
                return ("rejected", "fok_unfillable")
        if client_order_id is not None:
            self.client_ids.add((owner, client_order_id))
        order_id = self.next_id
        self.next_id += 1
        fills, makers_canceled, left, stopped = [], [], count, False
        for o in queue:
            if not left:
                break
            if o.owner == owner:
                if stp == "taker_at_cross":
                    stopped = True
                    break
                makers_canceled.append(o.order_id)
                self.orders.remove(o)
                continue
            n = min(left, o.remaining)
            trade_id = f"{M}:{self.next_trade}"
            self.next_trade += 1
            left -= n
            o.remaining -= n
            fills.append((trade_id, order_id, o.order_id, o.price, n))
            if not o.remaining:
                self.orders.remove(o)
        if left and tif == "gtc" and not stopped:
            self.orders.append(_Ref(order_id, owner, side, price, left))
            return ("resting", order_id, count - left, left, 0, fills, makers_canceled)
        return ("filled" if not left else "canceled", order_id, count - left, 0, left, fills, makers_canceled)

    def cancel(self, order_id: int) -> int | None:
        for o in self.orders:
            if o.order_id == order_id:
                self.orders.remove(o)
                return o.remaining
        return None

    def levels(self):
        yes: dict[int, int] = {}
        no: dict[int, int] = {}
        for o in self.orders:
            if o.side == "bid":
                yes[o.price] = yes.get(o.price, 0) + o.remaining
            else:
                no[10_000 - o.price] = no.get(10_000 - o.price, 0) + o.remaining
        return tuple(sorted(yes.items())), tuple(sorted(no.items()))


submit = st.tuples(
    st.just("submit"),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["bid", "ask"]),
    st.one_of(st.sampled_from(PRICES), st.integers(-100, 10_100)),
    st.one_of(st.integers(1, 5).map(lambda k: k * 100), st.integers(-10, 700)),
    st.sampled_from(["gtc", "gtc", "gtc", "ioc", "fok"]),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from(["x", "y"])),
    st.sampled_from(["taker_at_cross", "maker"]),
)
cancel = st.tuples(st.just("cancel"), st.integers(1, 40))
stream = st.lists(st.one_of(submit, submit, cancel), max_size=80)


def _normalize(placed):
    if placed.status == "rejected":
        return (placed.status, placed.reason)
    takers = [f for f in placed.fills if f.is_taker]
    makers = [f for f in placed.fills if not f.is_taker]
    fills = [(t.trade_id, t.order_id, m.order_id, m.price, t.count) for t, m in zip(takers, makers, strict=True)]
    return (placed.status, placed.order_id, placed.filled, placed.remaining, placed.canceled, fills,
            [c.order_id for c in placed.makers_canceled])


@settings(max_examples=400, deadline=None)
@given(stream)
def test_the_engine_agrees_with_a_naive_matcher_and_its_deltas_fold_into_its_book(ops):
    """Same stream into the engine and the reference: the same outcome for every order and cancel, the
    same book and the same place in the queue for every order after every step; the emitted deltas folded
    by ``actors.book`` give that book; it never crosses; the trades account for the level changes."""
    engine, ref = MatchingEngine(M), ReferenceMatcher()
    folded = OrderBook(M)
    folded.handle(1, 0, BookSnapshot(M))
    seq = 1
    for ts, op in enumerate(ops):
        if op[0] == "submit":
            _, owner, side, price, count, tif, post_only, cid, stp = op
            placed = engine.submit(owner, side, price, count, ts, tif=tif, post_only=post_only, client_order_id=cid,
                                   self_trade=stp)
            expected = ref.submit(owner, side, price, count, tif, post_only, cid, stp)
            assert _normalize(placed) == expected
            events = placed.events
            traded = sum(e.count for e in events if type(e) is PublicTrade)
            assert traded == placed.filled
            maker_side = "no" if side == "bid" else "yes"
            taken = -sum(e.delta for e in events if type(e) is BookDelta and e.side == maker_side)
            assert taken == placed.filled + sum(c.count for c in placed.makers_canceled)
        else:
            canceled = engine.cancel(op[1], ts)
            assert (canceled.count if canceled else None) == ref.cancel(op[1])
            events = canceled.events if canceled else ()
        for event in events:
            seq += 1
            assert folded.handle(seq, ts, event) == ()
        state = folded.snapshot()
        assert (state.yes_bids, state.no_bids) == engine.levels() == ref.levels()
        bid, ask = engine.best_bid(), engine.best_ask()
        assert bid is None or ask is None or bid < ask
        assert engine.resting_count() == len(ref.orders)
        for o in ref.orders:  # every order's place in its queue
            ahead = sum(p.remaining for p in ref.orders if (p.side, p.price) == (o.side, o.price) and p.order_id < o.order_id)
            assert engine.queue_ahead(o.order_id) == ahead
