"""Cash pool specifications: one balance, a reservation per open order, fills, releases and settlement."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.cash import ALLOWANCE, CashPool
from actors.fees import KalshiFees, SeriesFees, leg_cost, round_fill
from actors.positions import Positions
from runtime.events import (
    AmendRejected,
    AmendRequested,
    CashDeposited,
    CashReleased,
    CashReserved,
    CashSettled,
    MarketLifecycle,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    SessionStarted,
)

M = "KXA-1"
KALSHI = KalshiFees()
FREE = KalshiFees(default=SeriesFees(multiplier_ppm=0))


def dollars(amount: int) -> CashDeposited:
    return CashDeposited(amount=amount * 1_000_000)


def intent(cid: str, side: str, price: int, count: int, market: str = M) -> OrderIntent:
    return OrderIntent(cause_seq=1, client_order_id=cid, market=market, side=side, price=price, count=count)  # type: ignore[arg-type]


def fill(trade_id: str, cid: str, side: str, price: int, count: int, fee: int = 0, market: str = M) -> OrderFilled:
    return OrderFilled(trade_id=trade_id, order_id=f"o-{cid}", client_order_id=cid, market=market, side=side,  # type: ignore[arg-type]
                       price=price, count=count, fee=fee, is_taker=True)


def settled(result: str, market: str = M) -> MarketLifecycle:
    return MarketLifecycle(market=market, kind="settled", result=result)  # type: ignore[arg-type]


class Fold:
    """Feeds one cash pool events in seq order and keeps what each event derived."""

    def __init__(self, fees: KalshiFees = KALSHI) -> None:
        self.pool = CashPool(fees)
        self.seq = 0

    def __call__(self, *events):
        out = []
        for event in events:
            self.seq += 1
            out.extend(self.pool.handle(self.seq, self.seq, event))
        return out


def amend_req(cid: str, price: int, count: int, seq: int = 1) -> AmendRequested:
    return AmendRequested(cause_seq=seq, client_order_id=cid, price=price, count=count)


def amended(cid: str, price: int, count: int) -> OrderAmended:
    return OrderAmended(client_order_id=cid, order_id=f"o-{cid}", price=price, count=count)


# -- balance -------------------------------------------------------------------------------------
def test_the_session_opens_the_balance_and_deposits_add_to_it():
    """starting_cash $100, then a $25 deposit: $125, all of it available."""
    f = Fold()
    f(SessionStarted(session_id="s", mode="paper", venue="sim", seed=0, config_hash="h", code_version="v",
                     starting_cash=100_000_000), dollars(25))
    assert (f.pool.cash, f.pool.reserved, f.pool.available) == (125_000_000, 0, 125_000_000)


# -- reservations --------------------------------------------------------------------------------
def test_a_bid_reserves_its_worst_unit_outlay_per_count_unit_plus_the_rounding_allowance():
    """Bid 10 at $0.45: a unit costs at most $0.0045 + $0.0002 fee = $0.0047, so 1,000 × 4,700 + $0.01 = $4.71."""
    f = Fold()
    assert f(dollars(100), intent("c1", "bid", 4_500, 1_000)) == [CashReserved(client_order_id="c1", amount=4_710_000,
                                                                               cause_seq=2)]
    assert (f.pool.reserved, f.pool.available, f.pool.hold("c1")) == (4_710_000, 95_290_000, 4_710_000)


def test_an_ask_reserves_on_the_no_leg():
    """Ask 3 at $0.60 buys NO at $0.40: a unit costs at most $0.0040 + $0.0002 fee, so 300 × 4,200 + $0.01 = $1.27."""
    f = Fold()
    assert f(dollars(100), intent("c1", "ask", 6_000, 300))[0].amount == 1_270_000


def test_an_order_that_would_close_a_position_reserves_the_same():
    """Holding 3 YES, an ask for 3 at $0.60 still reserves $1.27 (the $1 per closed pair comes at the fill)."""
    f = Fold(FREE)
    f(dollars(100), intent("c1", "bid", 4_000, 300), fill("t1", "c1", "bid", 4_000, 300))
    assert f(intent("c2", "ask", 6_000, 300)) == [CashReserved(client_order_id="c2", amount=300 * 4_000 + ALLOWANCE,
                                                               cause_seq=4)]


def test_an_order_beyond_the_available_cash_is_rejected_with_the_amounts():
    """$4.70 cannot cover the $4.71 a bid of 10 at $0.45 needs."""
    f = Fold()
    f(CashDeposited(amount=4_700_000))
    assert f(intent("c1", "bid", 4_500, 1_000)) == [OrderRejected(
        client_order_id="c1", market=M, reason="insufficient_cash",
        detail="needs $4.710000, has $4.700000 available", cause_seq=2)]
    assert f.pool.reserved == 0


def test_an_order_that_needs_exactly_the_available_cash_is_accepted():
    """$4.71 covers the $4.71 a bid of 10 at $0.45 needs, leaving nothing available."""
    f = Fold()
    f(CashDeposited(amount=4_710_000), intent("c1", "bid", 4_500, 1_000))
    assert f.pool.available == 0


def test_reservations_share_one_balance_across_markets():
    """Two $4.71 bids in two markets leave $10 − $9.42 = $0.58; a third is refused."""
    f = Fold()
    f(dollars(10), intent("c1", "bid", 4_500, 1_000), intent("c2", "bid", 4_500, 1_000, market="KXB-2"))
    assert f.pool.available == 580_000
    assert f(intent("c3", "bid", 4_500, 1_000))[0].reason == "insufficient_cash"


def test_a_client_order_id_used_twice_while_open_is_a_bug():
    """Ids come from the runtime, unique by construction: a repeat raises."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 100))
    with pytest.raises(ValueError, match=r"^cash pool: order 'c1' is already open \(client order ids must be unique\)$"):
        f(intent("c1", "bid", 4_500, 100))


@pytest.mark.parametrize("end", [
    OrderCanceled(client_order_id="c1", order_id="o1", canceled_count=1_000),
    OrderExpired(client_order_id="c1", order_id="o1", expired_count=1_000),
    OrderRejected(client_order_id="c1", market=M, reason="venue_rejected"),
], ids=["canceled", "expired", "rejected"])
def test_an_order_that_ends_unfilled_releases_its_whole_hold(end):
    """The $4.71 held for a bid of 10 at $0.45 comes back."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000))
    assert f(end) == [CashReleased(client_order_id="c1", amount=4_710_000, cause_seq=3)]
    assert (f.pool.reserved, f.pool.available) == (0, 100_000_000)


def test_a_rejection_the_pool_made_itself_releases_nothing():
    """The pool's own insufficient-cash rejection comes back through the log; nothing was held."""
    f = Fold()
    rejection = f(intent("c1", "bid", 4_500, 1_000))[0]
    assert f(rejection) == []


# -- fills ---------------------------------------------------------------------------------------
def test_a_partial_fill_debits_cost_and_fee_and_releases_its_share():
    """Bid 10 at $0.45 ($4.71 held); 4 fill at $0.44 with fee 0.07 × 4 × 0.44 × 0.56 = $0.068992 -> $0.0690:
    −1.76 − 0.069 = −1.829, floored to −$1.83 (carry $0.001); the hold becomes 600 × 4,700 + $0.01 − $0.001
    = $2.829, so $4.71 − $2.829 = $1.881 is released."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000))
    fee = KALSHI.trade_fee(M, 4_400, 400, True)
    assert fee == 69_000
    assert f(fill("t1", "c1", "bid", 4_400, 400, fee)) == [CashReleased(client_order_id="c1", amount=1_881_000,
                                                                         cause_seq=3)]
    assert (f.pool.cash, f.pool.reserved, f.pool.rounding_paid) == (98_170_000, 2_829_000, 1_000)


def test_the_last_fill_releases_everything_left():
    """After the fill above, 6 fill at $0.45 with fee 0.07 × 6 × 0.45 × 0.55 = $0.10395 -> $0.1040:
    −2.70 − 0.104 = −2.804 -> −$2.81; the whole $2.829 hold is released; cash $98.17 − $2.81 = $95.36."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), fill("t1", "c1", "bid", 4_400, 400, 69_000))
    assert f(fill("t2", "c1", "bid", 4_500, 600, KALSHI.trade_fee(M, 4_500, 600, True))) == [
        CashReleased(client_order_id="c1", amount=2_829_000, cause_seq=4)]
    assert (f.pool.cash, f.pool.reserved, f.pool.hold("c1"), f.pool.rounding_paid) == (95_360_000, 0, 0, 7_000)


def test_a_fill_that_closes_a_position_pays_a_dollar_per_pair():
    """Holding 3 YES bought at $0.40, an ask fill of 3 at $0.60 buys 3 NO at $0.40 and pairs them off for $3:
    $10 − $1.20 − $1.20 + $3.00 = $10.60."""
    f = Fold(FREE)
    f(dollars(10), intent("c1", "bid", 4_000, 300), fill("t1", "c1", "bid", 4_000, 300),
      intent("c2", "ask", 6_000, 300), fill("t2", "c2", "ask", 6_000, 300))
    assert (f.pool.cash, f.pool.reserved) == (10_600_000, 0)


def test_a_duplicate_fill_is_ignored():
    """The same trade id twice moves the balance once."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), fill("t1", "c1", "bid", 4_400, 400, 69_000))
    before = f.pool.snapshot()
    assert f(fill("t1", "c1", "bid", 4_400, 400, 69_000)) == []
    assert f.pool.snapshot() == before


def test_a_fill_of_an_order_the_pool_never_held_for_only_moves_the_balance():
    """A fill of an order placed outside the session: −$0.40 − $0.0168 fee = −$0.4168 -> −$0.42."""
    f = Fold()
    f(dollars(1))
    assert f(fill("t1", "elsewhere", "bid", 4_000, 100, 16_800)) == []
    assert (f.pool.cash, f.pool.reserved) == (580_000, 0)


# -- settlement ----------------------------------------------------------------------------------
def test_settlement_pays_a_dollar_per_winning_yes_contract():
    """+3 YES bought at $0.40 and YES wins: $10 − $1.20 + $3.00 = $11.80."""
    f = Fold(FREE)
    f(dollars(10), intent("c1", "bid", 4_000, 300), fill("t1", "c1", "bid", 4_000, 300))
    assert f(settled("yes")) == [CashSettled(market=M, amount=3_000_000, cause_seq=4)]
    assert f.pool.cash == 11_800_000


def test_settlement_pays_no_holders_when_no_wins():
    """−2 (NO bought at $0.30) and NO wins: $10 − $0.60 + $2.00 = $11.40."""
    f = Fold(FREE)
    f(dollars(10), intent("c1", "ask", 7_000, 200), fill("t1", "c1", "ask", 7_000, 200))
    assert f(settled("no")) == [CashSettled(market=M, amount=2_000_000, cause_seq=4)]
    assert f.pool.cash == 11_400_000


def test_a_losing_position_settles_for_nothing_once():
    """+3 YES and NO wins: CashSettled of $0; a second settlement says nothing."""
    f = Fold(FREE)
    f(dollars(10), intent("c1", "bid", 4_000, 300), fill("t1", "c1", "bid", 4_000, 300))
    assert f(settled("no")) == [CashSettled(market=M, amount=0, cause_seq=4)]
    assert f(settled("no")) == []


def test_snapshot_round_trips_through_msgpack():
    """restore(snapshot) is an equal pool, also after encoding the snapshot."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), fill("t1", "c1", "bid", 4_400, 400, 69_000))
    snap = f.pool.snapshot()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=type(snap))
    restored = CashPool.restore(decoded, KALSHI)
    assert restored.snapshot() == snap and restored.reserved == f.pool.reserved


def test_a_precision_that_does_not_divide_a_cent_is_refused():
    """The balance grid must fit the one-cent rebates."""
    with pytest.raises(ValueError, match=r"^precision must divide one cent \(10000 micro-dollars\), got 3000$"):
        CashPool(KALSHI, precision=3_000)


# -- invariants ----------------------------------------------------------------------------------
MARKETS = ("KXA-1", "KXMAKER-1", "KXHALF-1")
FEES = KalshiFees(series={"KXMAKER": SeriesFees(maker_fees=True),
                          "KXHALF": SeriesFees(multiplier_ppm=500_000, maker_fees=True)})


class _Order(msgspec.Struct):
    market: str
    side: str
    price: int
    remaining: int
    unit: int
    carry: int = 0


class CashMachine(RuleBasedStateMachine):
    """Random deposits, orders, partial fills at any price within the limit, duplicates, cancels and
    settlements, folded through the cash pool and the positions machine as one log."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = CashPool(FEES)
        self.positions = Positions()
        self.seq = 0
        self.deposits = 0
        self.orders: dict[str, _Order] = {}  # the model of open orders
        self.fills: list[OrderFilled] = []
        self.placed = 0

    def _log(self, event):
        """Sequence ``event`` and everything it derives, feeding both machines in log order."""
        queue, first = [event], []
        while queue:
            self.seq += 1
            current = queue.pop(0)
            derived = [*self.pool.handle(self.seq, self.seq, current), *self.positions.handle(self.seq, self.seq, current)]
            first = first or derived
            queue.extend(derived)
        return first

    @rule(amount=st.integers(0, 20_000_000))
    def a_deposit(self, amount):
        self.deposits += amount
        self._log(CashDeposited(amount=amount))

    @rule(market=st.sampled_from(MARKETS), side=st.sampled_from(["bid", "ask"]), price=st.integers(1, 9_999),
          count=st.integers(1, 3_000))
    def an_order(self, market, side, price, count):
        cid = f"c{self.placed}"
        self.placed += 1
        unit = FEES.worst_unit_outlay(market, price if side == "bid" else 10_000 - price)
        need = count * unit + ALLOWANCE
        available = self.pool.available
        (verdict,) = self._log(intent(cid, side, price, count, market))
        if need <= available:
            assert verdict == CashReserved(client_order_id=cid, amount=need, cause_seq=verdict.cause_seq)
            self.orders[cid] = _Order(market, side, price, count, unit)
        else:
            assert verdict.reason == "insufficient_cash"

    @rule(market=st.sampled_from(MARKETS), side=st.sampled_from(["bid", "ask"]), price=st.integers(1, 9_999))
    def an_order_for_every_cent_available(self, market, side, price):
        """Top the balance up so the next order needs all of it: rounding then meets an empty balance."""
        unit = FEES.worst_unit_outlay(market, price if side == "bid" else 10_000 - price)
        count = max(0, self.pool.available - ALLOWANCE) // unit + 1
        self.a_deposit(count * unit + ALLOWANCE - self.pool.available)
        self.an_order(market, side, price, count)
        assert self.pool.available == 0

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), is_taker=st.booleans())
    def a_fill(self, data, is_taker):
        cid = data.draw(st.sampled_from(sorted(self.orders)))
        o = self.orders[cid]
        count = data.draw(st.integers(1, o.remaining))
        price = data.draw(st.integers(1, o.price) if o.side == "bid" else st.integers(o.price, 9_999))
        fee = FEES.trade_fee(o.market, price, count, is_taker)
        event = OrderFilled(trade_id=f"t{len(self.fills)}", order_id="o", client_order_id=cid, market=o.market,
                            side=o.side, price=price, count=count, fee=fee, is_taker=is_taker)  # type: ignore[arg-type]
        self.fills.append(event)
        o.carry = round_fill(-leg_cost(o.side, price, count), fee, o.carry).carry  # type: ignore[arg-type]
        o.remaining -= count
        if not o.remaining:
            del self.orders[cid]
        self._log(event)

    @precondition(lambda self: self.fills)
    @rule(data=st.data())
    def a_duplicate_fill(self, data):
        before = self.pool.snapshot()
        self._log(data.draw(st.sampled_from(self.fills)))
        assert self.pool.snapshot() == before

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), how=st.sampled_from(["canceled", "expired", "rejected"]))
    def an_order_ends(self, data, how):
        cid = data.draw(st.sampled_from(sorted(self.orders)))
        o = self.orders.pop(cid)
        end = {"canceled": OrderCanceled(client_order_id=cid, order_id="o", canceled_count=o.remaining),
               "expired": OrderExpired(client_order_id=cid, order_id="o", expired_count=o.remaining),
               "rejected": OrderRejected(client_order_id=cid, market=o.market, reason="venue_rejected")}[how]
        self._log(end)

    @rule(market=st.sampled_from(MARKETS), result=st.sampled_from(["yes", "no"]))
    def a_settlement(self, market, result):
        """The venue cancels the market's resting orders, then settles it."""
        for cid in sorted(c for c, o in self.orders.items() if o.market == market):
            o = self.orders.pop(cid)
            self._log(OrderCanceled(client_order_id=cid, order_id="o", canceled_count=o.remaining))
        self._log(settled(result, market))

    @invariant()
    def available_cash_is_never_negative(self):
        assert self.pool.available >= 0

    @invariant()
    def reserved_is_the_worst_case_of_the_open_orders_remaining_counts(self):
        assert self.pool.reserved == sum(o.remaining * o.unit + ALLOWANCE - o.carry for o in self.orders.values())
        assert all(0 <= o.carry < ALLOWANCE for o in self.orders.values())

    @invariant()
    def money_is_conserved(self):
        """cash + what open positions tied up + rounding kept by the venue = deposits + realized − fees."""
        tied, realized, fees = 0, 0, 0
        for m in MARKETS:
            p = self.positions.get(m)
            tied += p.cost_basis if p.position >= 0 else -10_000 * p.position + p.cost_basis
            realized += p.realized_pnl
            fees += p.fees
        assert self.pool.cash + tied + self.pool.rounding_paid == self.deposits + realized - fees

    @invariant()
    def the_pool_and_the_positions_machine_agree_on_positions(self):
        held = dict(self.pool.snapshot().positions)
        assert all(held.get(m, 0) == self.positions.get(m).position for m in MARKETS)

    @invariant()
    def a_restored_pool_is_equal(self):
        snap = self.pool.snapshot()
        restored = CashPool.restore(snap, FEES)
        assert restored.snapshot() == snap and restored.reserved == self.pool.reserved


CashMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestCashInvariants = CashMachine.TestCase


# -- amends --------------------------------------------------------------------------------------
def test_an_amend_to_a_higher_bid_reserves_the_difference_at_once_with_the_amends_seq_as_cause():
    """Bid 10 at $0.45 holds $4.71; amended to $0.50 (unit $0.0050 + $0.0002): $5.21 while on its way, and after."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000))
    assert f(amend_req("c1", 5_000, 1_000)) == [CashReserved(client_order_id="c1", amount=500_000, cause_seq=3)]
    assert f.pool.hold("c1") == 5_210_000
    assert f(amended("c1", 5_000, 1_000)) == []
    assert f.pool.hold("c1") == 5_210_000 and f.pool.reserved == 5_210_000


def test_a_decrease_holds_the_old_terms_until_the_venue_says_so_then_releases_the_difference():
    """Down from 10 to 4 at $0.45: nothing more to hold on the way (a CashReserved of 0: the verdict), $2.82
    released once the venue has applied it (it could fill at the old size until then)."""
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000))
    assert f(amend_req("c1", 4_500, 400)) == [CashReserved(client_order_id="c1", amount=0, cause_seq=3)]
    assert f.pool.hold("c1") == 4_710_000
    assert f(amended("c1", 4_500, 400)) == [CashReleased(client_order_id="c1", amount=2_820_000, cause_seq=4)]
    assert f.pool.hold("c1") == 400 * 4_700 + ALLOWANCE


def test_a_venue_refusal_returns_to_the_old_terms():
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), amend_req("c1", 5_000, 1_000))
    assert f(AmendRejected(client_order_id="c1", reason="invalid_price")) == [
        CashReleased(client_order_id="c1", amount=500_000, cause_seq=4)]
    assert f.pool.hold("c1") == 4_710_000


def test_an_amend_the_cash_cannot_cover_is_refused_and_holds_nothing_more():
    f = Fold()
    f(CashDeposited(amount=4_800_000), intent("c1", "bid", 4_500, 1_000))
    assert f(amend_req("c1", 5_000, 1_000)) == [AmendRejected(
        client_order_id="c1", reason="insufficient_cash", detail="the amend needs $0.500000 more, has $0.090000 available",
        cause_seq=3)]
    assert f.pool.hold("c1") == 4_710_000
    assert f(f.pool.handle(9, 9, amend_req("c1", 5_000, 1_000))[0]) == []  # its own refusal logged back: nothing


def test_amends_of_unknown_or_filled_orders_and_a_second_amend_on_the_way_are_refused():
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), fill("t1", "c1", "bid", 4_500, 300))
    assert [e.reason for e in f(amend_req("zz", 4_500, 100))] == ["order_not_open"]
    assert [e.reason for e in f(amend_req("c1", 4_500, 300))] == ["invalid_count"]  # nothing left to rest
    assert type(f(amend_req("c1", 4_600, 1_000))[0]) is CashReserved
    (second,) = f(amend_req("c1", 4_700, 1_000))
    assert second.reason == "amend_pending"
    assert f(second) == [] and f.pool._reservations["c1"].pending_unit is not None  # the first stays pending


def test_the_count_is_the_total_so_fills_before_and_after_the_amend_are_counted_once():
    """3 filled of 10, amended to 13 total: 10 rest. A fill the venue made before the amend but logged after it
    (the feed races the reply) still leaves the right remainder."""
    f = Fold(FREE)
    f(dollars(100), intent("c1", "bid", 4_000, 1_000), fill("t1", "c1", "bid", 4_000, 300),
      amend_req("c1", 4_000, 1_300), amended("c1", 4_000, 1_300))
    r = f.pool._reservations["c1"]
    assert (r.filled, r.remaining, f.pool.hold("c1")) == (300, 1_000, 1_000 * 4_000 + ALLOWANCE)
    f(fill("t2", "c1", "bid", 4_000, 1_000))
    assert f.pool.hold("c1") == 0 and f.pool.reserved == 0


def test_fills_beyond_the_old_count_while_an_increase_is_on_its_way_keep_the_order_open():
    """An increase from 10 to 20 that the venue applied before its fills were logged: the 10th contract filled
    does not end the order, since the amend may leave 10 more resting."""
    f = Fold(FREE)
    f(dollars(100), intent("c1", "bid", 4_000, 1_000), amend_req("c1", 4_000, 2_000))
    f(fill("t1", "c1", "bid", 4_000, 1_500))
    assert f.pool.hold("c1") == 500 * 4_000 + ALLOWANCE
    assert f(amended("c1", 4_000, 2_000)) == []
    f(fill("t2", "c1", "bid", 4_000, 500))
    assert f.pool.reserved == 0


def test_a_snapshot_round_trips_an_amend_on_its_way():
    f = Fold()
    f(dollars(100), intent("c1", "bid", 4_500, 1_000), amend_req("c1", 5_000, 1_000))
    restored = CashPool.restore(f.pool.snapshot(), KALSHI)
    assert restored.snapshot() == f.pool.snapshot() and restored.reserved == f.pool.reserved

