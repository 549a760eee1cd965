"""The local exchange's core as a specification: the same market data as ``tape synth``, our orders in the
engine's queues with the participants', Kalshi's fees and rounding to the micro-dollar, cash that never
goes negative, and settlement that conserves money. No network here (see test_sim_server.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.fees import KalshiFees, SeriesFees
from runtime.events import MarketInfo, MarketLifecycle, OrderFilled, OrderStatusReported, PositionReported, PublicTrade
from runtime.units import MONEY_SCALE, PRICE_MAX
from runtime.venues.kalshi.rest import OrderRequest
from runtime.venues.sim import EPOCH_NS, SynthSession
from runtime.venues.sim.exchange import PUBLIC, Exchange

S = 1_000_000_000
ENCODER = msgspec.msgpack.Encoder()


def order(market: str, side: str, price: int, count: int, tif: str = "gtc", **kw) -> OrderRequest:
    return OrderRequest(market=market, side=side, price=price, count=count, tif=tif, **kw)  # type: ignore[arg-type]


def exchange(markets: int = 3, seed: int = 5, session_s: float = 900.0, **kw) -> Exchange:
    return Exchange(markets, seed, session_s=session_s, start_ns=EPOCH_NS, **kw)


def public(entries) -> list:
    return [(t, e) for t, audience, events in entries if audience == PUBLIC for e in events]


def private(entries, owner: str) -> list:
    return [e for _, audience, events in entries if audience == owner for e in events]


def wide_market(ex: Exchange) -> tuple[str, int, int]:
    """A market whose spread holds at least three ticks now: (ticker, best bid, best ask)."""
    tick = ex.config.tick
    for ticker, flow in zip(ex.tickers, ex.flows, strict=True):
        bid, ask = flow.engine.best_bid(), flow.engine.best_ask()
        if bid is not None and ask is not None and ask - bid >= 3 * tick:
            return ticker, bid, ask
    raise AssertionError("no wide market")


# --- the market data ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seed", "markets", "duration"), [(9, 4, 900.0), (2, 3, 1_800.0)])
def test_without_orders_the_exchange_publishes_exactly_tape_synths_events(seed, markets, duration):
    """Same seed, same tickers, same events at the same times, in the same order — and nothing private. (tape synth
    opens with each market's MarketInfo, which the exchange serves over REST: its definitions are those.)"""
    ex = exchange(markets, seed, duration)
    entries = ex.advance(ex.end_ns)
    assert all(audience == PUBLIC for _, audience, _ in entries)
    synth = list(SynthSession(seed, markets, duration).events())
    assert [type(e) for _, e in synth[:markets]] == [MarketInfo] * markets
    assert public(entries) == synth[markets:]
    assert ex.now_ns == ex.end_ns


def test_advancing_in_many_small_steps_gives_the_same_events_as_one_step():
    """Time comes in from outside; how it is cut up (here one action per call, or by arbitrary times)
    changes nothing."""
    whole = public(exchange().advance(EPOCH_NS + 900 * S))
    by_action, ex = [], exchange()
    while ex.now_ns < EPOCH_NS + 900 * S:
        before = ex.now_ns
        by_action += public(ex.advance(EPOCH_NS + 900 * S, limit=1))
        assert ex.now_ns >= before
    by_time, ex = [], exchange()
    for k in range(1, 451):
        by_time += public(ex.advance(EPOCH_NS + k * 2 * S - 7))
    by_time += public(ex.advance(EPOCH_NS + 900 * S))
    assert by_action == whole and by_time == whole


def test_the_clock_never_goes_back():
    ex = exchange()
    ex.advance(EPOCH_NS + 60 * S)
    assert ex.advance(EPOCH_NS + 10 * S) == [] and ex.now_ns == EPOCH_NS + 60 * S


def script(ex: Exchange) -> list[bytes]:
    """A fixed sequence of (time, command) against an exchange; everything it produced, encoded."""
    out = []
    ticker, bid, ask = None, None, None
    ex.advance(EPOCH_NS + 5 * S)
    ticker, bid, ask = wide_market(ex)
    t = EPOCH_NS + 6 * S
    for k, (owner, side, price, count, tif) in enumerate([
        ("a", "bid", bid, 300, "gtc"), ("b", "ask", ask, 200, "gtc"), ("a", "bid", ask, 100, "ioc"),
        ("b", "ask", bid, 500, "ioc"), ("a", "bid", bid - 100, 700, "gtc"),
    ]):
        result = ex.create_order(owner, order(ticker, side, price, count, tif, client_order_id=f"c{k}"), t + k * S)
        out.append(ENCODER.encode(result))
    out += [ENCODER.encode(e) for e in ex.advance(EPOCH_NS + 900 * S)]
    for owner in ("a", "b"):
        out += [ENCODER.encode(ex.orders(owner)), ENCODER.encode(ex.fills(owner)), ENCODER.encode(ex.account(owner))]
    return out


def test_the_same_seed_and_commands_give_the_same_everything():
    """Order ids, fills, fees, balances, events: all a function of the seed and the (time, command) sequence."""
    first, second = script(exchange()), script(exchange())
    assert first == second
    assert script(exchange(seed=6)) != first


# --- our orders in the queue ------------------------------------------------------------------------------
def test_our_order_joins_the_back_of_the_queue_and_fills_after_the_makers_ahead():
    """A bid at the best bid rests behind the participants' orders at that price (queue_ahead = the level's
    size before it); a sell of that size plus 3 contracts fills the makers first, then exactly 3 of ours."""
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    ticker, bid, _ = wide_market(ex)
    engine = ex.flows[ex.tickers.index(ticker)].engine
    ahead = engine.bid_size(bid)
    now = ex.now_ns
    ours = ex.create_order("a", order(ticker, "bid", bid, 1_000), now).order
    assert ours is not None and ours.status == "resting"
    engine_id = ex.engine_order_id(ours.order_id)
    assert ex.queue_ahead(ours.order_id) == engine.queue_ahead(engine_id) == ahead > 0  # type: ignore[arg-type]
    assert engine.queue("bid", bid)[-1].order_id == engine_id
    taken = ex.create_order("b", order(ticker, "ask", bid, ahead + 300, "ioc"), now)
    assert taken.order is not None and taken.order.fill_count == ahead + 300
    fills_a = private(taken.events, "a")
    filled = [e for e in fills_a if type(e) is OrderFilled]
    assert [(f.count, f.price, f.is_taker) for f in filled] == [(300, bid, False)]
    trades = [e for _, e in public(taken.events) if type(e) is PublicTrade]
    assert sum(t.count for t in trades) == ahead + 300 and trades[-1].trade_id == filled[0].trade_id
    assert ex.queue_ahead(ours.order_id) == 0
    assert ex.order("a", ours.order_id).remaining_count == 700  # type: ignore[union-attr]


def test_the_flow_fills_our_resting_orders_only_once_every_order_ahead_has_gone():
    """One action at a time: whenever a participant's order fills one of ours, every order that was ahead
    of ours at its price (by the engine's own queue) has traded or canceled."""
    ex = exchange(8, seed=3, session_s=3_600.0)
    ex.advance(EPOCH_NS + S)
    ours = {}
    for i, (ticker, flow) in enumerate(zip(ex.tickers, ex.flows, strict=True)):
        bid = flow.engine.best_bid()
        if bid is not None:
            placed = ex.create_order(f"acct{i}", order(ticker, "bid", bid, 200), ex.now_ns).order
            ours[placed.order_id] = (f"acct{i}", i)  # type: ignore[union-attr]
    first_fills = 0
    while ex.now_ns < ex.end_ns and ours:
        ahead = {}
        for order_id, (_, i) in ours.items():
            engine_id = ex.engine_order_id(order_id)
            resting = ex.order(ours[order_id][0], order_id)
            queue = ex.flows[i].engine.queue("bid", resting.price)  # type: ignore[union-attr]
            ids = [o.order_id for o in queue]
            ahead[order_id] = ids[: ids.index(engine_id)]  # type: ignore[arg-type]
        entries = ex.advance(ex.end_ns, limit=1)
        for order_id, (owner, i) in list(ours.items()):
            if any(type(e) is OrderFilled and e.order_id == order_id for e in private(entries, owner)):
                engine = ex.flows[i].engine
                assert not any(engine.is_resting(o) for o in ahead[order_id]), "filled before an order ahead of it"
                first_fills += 1
                del ours[order_id]
            elif ex.order(owner, order_id).status != "resting":  # type: ignore[union-attr]
                del ours[order_id]  # canceled at the close
    assert first_fills >= 3


# --- fees and money --------------------------------------------------------------------------------------------
def fee(rate: Fraction, count: int, price: int) -> int:
    """The trade fee in micro-dollars, rounded up to $0.0001, computed independently with fractions."""
    dollars = rate * Fraction(count, 100) * Fraction(price, PRICE_MAX) * (1 - Fraction(price, PRICE_MAX))
    return math.ceil(dollars * 10_000) * 100


@pytest.mark.parametrize("maker_fees", [False, True])
def test_fees_and_balances_follow_kalshis_rounding_exactly(maker_fees):
    """A sells 7 contracts into B's resting bid inside the spread. The taker pays 0.07·C·P·(1−P) rounded up
    to $0.0001, the maker 0.0175·C·P·(1−P) where the series charges makers; each balance moves by the leg's
    cost plus that fee, floored to the cent (the rest kept in the order's accumulator)."""
    fees = KalshiFees(default=SeriesFees(maker_fees=maker_fees))
    ex = exchange(fees=fees)
    ex.advance(EPOCH_NS + 5 * S)
    ticker, bid, _ = wide_market(ex)
    price = bid + ex.config.tick  # inside the spread: B's bid becomes the only order at the best bid
    now = ex.now_ns
    ex.create_order("maker", order(ticker, "bid", price, 700), now)
    result = ex.create_order("taker", order(ticker, "ask", price, 700, "ioc"), now)
    (taker_fill,) = [e for e in private(result.events, "taker") if type(e) is OrderFilled]
    (maker_fill,) = [e for e in private(result.events, "maker") if type(e) is OrderFilled]
    taker_fee, maker_fee = fee(Fraction(7, 100), 700, price), fee(Fraction(175, 10_000), 700, price) if maker_fees else 0
    assert (taker_fill.fee, taker_fill.is_taker, taker_fill.post_position) == (taker_fee, True, -700)
    assert (maker_fill.fee, maker_fill.is_taker, maker_fill.post_position) == (maker_fee, False, 700)
    cent = 10_000
    start = 10_000 * MONEY_SCALE
    taker_change = (-(PRICE_MAX - price) * 700 - taker_fee) // cent * cent  # buys NO at 1 - price
    maker_change = (-price * 700 - maker_fee) // cent * cent
    assert ex.account("taker").cash == start + taker_change
    assert ex.account("maker").cash == start + maker_change
    assert ex.account("maker").reserved == ex.account("taker").reserved == 0
    assert ex.balance("taker") == start + taker_change


def test_a_resting_order_reserves_its_worst_cost_and_a_cancel_releases_it_all():
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    ticker, bid, _ = wide_market(ex)
    start = 10_000 * MONEY_SCALE
    placed = ex.create_order("a", order(ticker, "bid", bid, 1_000, client_order_id="x"), ex.now_ns)
    view = ex.account("a")
    reserve = KalshiFees().worst_unit_outlay(ticker, bid) * 1_000 + 10_000
    assert (view.cash, view.reserved, view.available) == (start, reserve, start - reserve)
    canceled = ex.cancel_order("a", placed.order.order_id, ex.now_ns)  # type: ignore[union-attr]
    assert canceled.error is None and canceled.canceled == 1_000
    assert canceled.order.status == "canceled" and canceled.order.remaining_count == 0  # type: ignore[union-attr]
    assert ex.account("a").available == start
    delta = [e for _, e in public(canceled.events)][-1]
    assert (delta.side, delta.price, delta.delta) == ("yes", bid, -1_000)  # type: ignore[union-attr]
    assert not ex.flows[ex.tickers.index(ticker)].engine.is_resting(ex.engine_order_id(placed.order.order_id))  # type: ignore[union-attr, arg-type]
    again = ex.cancel_order("a", placed.order.order_id, ex.now_ns)  # type: ignore[union-attr]
    assert again.error == msgspec.structs.replace(again.error, status=404, code="not_found")  # type: ignore[arg-type]
    assert again.error.message.endswith("is canceled, not resting")  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["bid", "ask"]), st.integers(1, 99),
                          st.integers(1, 4_000), st.sampled_from(["gtc", "ioc"]), st.integers(0, 30)),
                min_size=1, max_size=25))
def test_cash_never_goes_negative(commands):
    """Whatever orders two small accounts send, at any prices and times: every balance stays >= 0, what is
    reserved is >= 0, and an order the balance cannot cover is refused with insufficient_cash."""
    ex = exchange(2, seed=4, starting_balance=25 * MONEY_SCALE)
    t = EPOCH_NS + S
    for owner, side, cents, count, tif, wait_s in commands:
        t += wait_s * S
        result = ex.create_order(owner, order(ex.tickers[0], side, cents * 100, count, tif), t)
        assert result.error is None or result.error.code in ("insufficient_cash", "market_closed", "fok_unfillable")
        for who in ("a", "b"):
            view = ex.account(who)
            assert view.cash >= 0 and view.reserved >= 0 and view.available >= 0, view
    ex.advance(ex.end_ns)
    for who in ("a", "b"):
        view = ex.account(who)
        assert view.cash >= 0 and view.reserved == 0, view


def test_settlement_pays_the_winners_and_conserves_money():
    """A buys 9 YES from B inside the spread (nobody else can take part); at settlement the winner gets $1
    a contract, positions go to zero, and the two balances plus every fee the venue kept add up to what
    they started with."""
    ex = exchange(seed=8)
    ex.advance(EPOCH_NS + 5 * S)
    ticker, bid, _ = wide_market(ex)
    price = bid + ex.config.tick
    ex.create_order("a", order(ticker, "bid", price, 900), ex.now_ns)
    ex.create_order("b", order(ticker, "ask", price, 900, "ioc"), ex.now_ns)
    entries = ex.advance(ex.end_ns)
    (settled,) = [e for _, e in public(entries) if type(e) is MarketLifecycle and e.kind == "settled" and e.market == ticker]
    for owner, position in (("a", 900), ("b", -900)):
        reports = [e for e in private(entries, owner) if type(e) is PositionReported]
        assert reports[-1].position == 0 and reports[-1].market == ticker
        assert ex.positions(owner)[0].position == 0
        assert ex.fills(owner)[0].post_position == position
    a, b = ex.account("a"), ex.account("b")
    kept = a.fees_paid + b.fees_paid + a.rounding_paid + b.rounding_paid
    assert a.cash + b.cash + kept == 2 * 10_000 * MONEY_SCALE
    winner = a if settled.result == "yes" else b
    leg = price if winner is a else PRICE_MAX - price
    assert winner.cash == 10_000 * MONEY_SCALE + (PRICE_MAX - leg) * 900 - winner.fees_paid - winner.rounding_paid
    assert ex.market(ticker).status == "settled" and ex.market(ticker).result == settled.result  # type: ignore[union-attr]


def test_the_close_cancels_our_resting_orders_and_releases_their_cash():
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    ticker = ex.tickers[0]
    placed = ex.create_order("a", order(ticker, "bid", 100, 500), ex.now_ns).order
    entries = ex.advance(ex.end_ns)
    close_ms = ex.flows[0].profile.close_ns // 1_000_000
    reports = [e for e in private(entries, "a") if type(e) is OrderStatusReported]
    assert [(r.order_id, r.status, r.venue_ts_ms) for r in reports] == [(placed.order_id, "canceled", close_ms)]  # type: ignore[union-attr]
    assert ex.account("a").reserved == 0 and ex.account("a").available == 10_000 * MONEY_SCALE
    late = ex.create_order("a", order(ticker, "bid", 100, 500), ex.now_ns)
    assert late.error is not None and (late.error.status, late.error.code) == (400, "market_closed")
    assert late.error.message == f"market {ticker} is settled"


def test_an_order_expires_when_its_expiration_passes():
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    expires_ms = (EPOCH_NS + 20 * S) // 1_000_000
    placed = ex.create_order("a", order(ex.tickers[0], "bid", 100, 500, expiration_ts_ms=expires_ms), ex.now_ns).order
    assert ex.advance(EPOCH_NS + 20 * S - 1) == [] or ex.order("a", placed.order_id).status == "resting"  # type: ignore[union-attr]
    entries = ex.advance(EPOCH_NS + 21 * S)
    (report,) = [e for e in private(entries, "a") if type(e) is OrderStatusReported]
    assert (report.status, report.venue_ts_ms) == ("canceled", expires_ms)
    assert ex.account("a").reserved == 0


def test_an_ioc_remainder_is_canceled_and_private_events_reach_only_their_owner():
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    ticker, _, ask = wide_market(ex)
    size = ex.flows[ex.tickers.index(ticker)].engine.ask_size(ask)
    result = ex.create_order("a", order(ticker, "bid", ask, size + 500, "ioc", client_order_id="take"), ex.now_ns)
    o = result.order
    assert o is not None and (o.status, o.fill_count, o.remaining_count, o.client_order_id) == ("canceled", size, 0, "take")
    assert {audience for _, audience, _ in result.events} == {PUBLIC, "a"}
    mine = private(result.events, "a")
    assert [type(e).__name__ for e in mine][-2:] == ["OrderStatusReported", "PositionReported"]
    assert sum(e.count for e in mine if type(e) is OrderFilled) == size
    assert ex.account("a").reserved == 0


# --- refusals ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("request_", "status", "code", "message"), [
    (order("KXNOPE-1", "bid", 5_000, 100), 404, "unknown_market", "market 'KXNOPE-1' does not exist"),
    (order("KXSIM-000", "bid", 5_050, 100), 400, "invalid_price",
     "price 0.5050 is off KXSIM-000's grid (0.0100 to 0.9900 in steps of 0.0100)"),
    (order("KXSIM-000", "bid", 0, 100), 400, "invalid_price",
     "price 0.0000 is off KXSIM-000's grid (0.0100 to 0.9900 in steps of 0.0100)"),
    (order("KXSIM-000", "bid", 5_000, 0), 400, "invalid_count", "count 0.00 is not positive"),
    (order("KXSIM-000", "bid", 5_000, 100, self_trade_prevention="never"), 400, "bad_request",
     "self_trade_prevention_type 'never' is not one of maker, taker_at_cross"),
    (order("KXSIM-000", "bid", 5_000, 100, expiration_ts_ms=EPOCH_NS // 1_000_000), 400, "bad_request",
     "expiration_time 1767225600 is not in the future"),
    (order("KXSIM-000", "bid", 5_000, 100, "ioc", expiration_ts_ms=EPOCH_NS // 1_000_000 + 10**6), 400, "bad_request",
     "expiration_time goes with time_in_force good_till_canceled only, not ioc"),
    (order("KXSIM-000", "ask", 5_000, 100, reduce_only=True), 400, "reduce_only_violation",
     "a reduce-only ask of 1.00 would not only reduce the position of 0.00 in KXSIM-000"),
    (order("KXSIM-000", "bid", 9_900, 100, post_only=True), 400, "post_only_would_cross",
     "post-only bid at 9900 would take liquidity"),
    (order("KXSIM-000", "bid", 100, 100, "fok"), 400, "fok_unfillable", "fill-or-kill bid 100 at 100 cannot fill whole"),
    (order("KXSIM-000", "bid", 5_000, 10**12), 400, "insufficient_cash",
     "the order needs $5200000000.010000, has $10000.000000 available"),
])
def test_a_refused_order_says_why_and_changes_nothing(request_, status, code, message):
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    before = (ex.account("a"), [f.engine.levels() for f in ex.flows])
    result = ex.create_order("a", request_, ex.now_ns)
    assert result.order is None and result.error is not None
    assert (result.error.status, result.error.code, result.error.message) == (status, code, message)
    assert (ex.account("a"), [f.engine.levels() for f in ex.flows]) == before
    assert ex.orders("a") == []


def test_markets_open_at_the_start_and_a_command_runs_what_is_due_first():
    """Before time reaches the start the markets read as initialized; a command (even one stamped earlier:
    the clock never goes back) first runs the opening, so the order meets the opening book."""
    ex = exchange()
    assert {m.status for m in ex.markets()} == {"initialized"}
    result = ex.create_order("a", order("KXSIM-000", "bid", 100, 100), EPOCH_NS - S)
    assert result.error is None and result.order.venue_ts_ms == EPOCH_NS // 1_000_000  # type: ignore[union-attr]
    opening = [e for _, e in public(result.events) if e.market == "KXSIM-000"]  # type: ignore[attr-defined]
    assert [type(e).__name__ for e in opening][:2] == ["MarketLifecycle", "BookSnapshot"]
    assert {m.status for m in ex.markets()} == {"active"}


def test_a_client_order_id_is_used_once_per_owner():
    """The idempotency key: the same id again is refused with 409 and the first order stands; another
    owner may use it."""
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    first = ex.create_order("a", order("KXSIM-000", "bid", 100, 100, client_order_id="k-1"), ex.now_ns)
    again = ex.create_order("a", order("KXSIM-000", "bid", 200, 300, client_order_id="k-1"), ex.now_ns)
    assert again.error is not None
    assert (again.error.status, again.error.code, again.error.message) == (
        409, "duplicate_client_order_id", "client_order_id 'k-1' was already used")
    assert [o.order_id for o in ex.orders("a")] == [first.order.order_id]  # type: ignore[union-attr]
    other = ex.create_order("b", order("KXSIM-000", "bid", 100, 100, client_order_id="k-1"), ex.now_ns)
    assert other.error is None


def test_cancel_refuses_another_owners_order_and_unknown_ids():
    ex = exchange()
    ex.advance(EPOCH_NS + 5 * S)
    placed = ex.create_order("a", order("KXSIM-000", "bid", 100, 100), ex.now_ns).order
    for owner, order_id in (("b", placed.order_id), ("a", "no-such-order")):  # type: ignore[union-attr]
        result = ex.cancel_order(owner, order_id, ex.now_ns)
        assert result.error is not None and (result.error.status, result.error.message) == (
            404, f"order {order_id!r} not found")
    assert ex.order("a", placed.order_id).status == "resting"  # type: ignore[union-attr]
