"""Positions specifications: signed positions, FIFO realized PnL, marks, fees, duplicates and settlement."""

from __future__ import annotations

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.positions import MarketPosition, Positions, settlement_value
from runtime.events import FillDuplicated, MarketLifecycle, OrderFilled, PositionChanged

M = "KXA-1"


def fill(trade_id: str, side: str, price: int, count: int, fee: int = 0, market: str = M) -> OrderFilled:
    return OrderFilled(trade_id=trade_id, order_id="o", client_order_id="c", market=market, side=side,  # type: ignore[arg-type]
                       price=price, count=count, fee=fee, is_taker=True)


def settled(result: str, value: int | None = None, market: str = M) -> MarketLifecycle:
    return MarketLifecycle(market=market, kind="settled", result=result, settlement_value=value)  # type: ignore[arg-type]


def fold(*events) -> tuple[Positions, list]:
    machine, out = Positions(), []
    for seq, event in enumerate(events, start=1):
        out.extend(machine.handle(seq, seq, event))
    return machine, out


def test_a_bid_fill_opens_a_yes_position():
    """Given nothing, when 3 YES are bought at $0.40 with a $0.0504 fee, then +300 at a $1.20 cost basis."""
    _, out = fold(fill("t1", "bid", 4_000, 300, fee=50_400))
    assert out == [PositionChanged(market=M, position=300, cost_basis=1_200_000, realized_pnl=0, fees=50_400,
                                   cause_seq=1)]


def test_an_ask_fill_opens_a_no_position_sold_on_the_yes_leg():
    """Given nothing, when an ask fills 2 at $0.70, then −200 with cost basis −$1.40 (NO bought at $0.30)."""
    machine, _ = fold(fill("t1", "ask", 7_000, 200))
    assert machine.get(M) == MarketPosition(M, position=-200, cost_basis=-1_400_000, realized_pnl=0, fees=0,
                                            lots=((7_000, 200),))


def test_an_ask_closes_yes_first_in_first_out():
    """Given 1 YES at $0.40 then 1 at $0.50, when 1.5 are sold at $0.60, then the $0.40 lot closes first:
    realized (0.60 − 0.40) × 1 + (0.60 − 0.50) × 0.5 = $0.25, and 0.5 at $0.50 remain."""
    machine, _ = fold(fill("t1", "bid", 4_000, 100), fill("t2", "bid", 5_000, 100), fill("t3", "ask", 6_000, 150))
    assert machine.get(M) == MarketPosition(M, position=50, cost_basis=250_000, realized_pnl=250_000, fees=0,
                                            lots=((5_000, 50),))


def test_a_bid_closes_no_and_realizes_on_the_yes_leg():
    """Given −2 (NO) sold at $0.70, when 2 YES are bought at $0.55, then realized (0.70 − 0.55) × 2 = $0.30."""
    machine, _ = fold(fill("t1", "ask", 7_000, 200), fill("t2", "bid", 5_500, 200))
    assert machine.get(M) == MarketPosition(M, position=0, cost_basis=0, realized_pnl=300_000, fees=0)


def test_a_fill_larger_than_the_position_flips_it():
    """Given +1 at $0.40, when 3 are sold at $0.30, then realized −$0.10 and −2 remain sold at $0.30."""
    machine, _ = fold(fill("t1", "bid", 4_000, 100), fill("t2", "ask", 3_000, 300))
    assert machine.get(M) == MarketPosition(M, position=-200, cost_basis=-600_000, realized_pnl=-100_000, fees=0,
                                            lots=((3_000, 200),))


def test_unrealized_pnl_is_marked_at_the_given_mid():
    """+2 at $0.40 marked at $0.45 is up $0.10; −2 sold at $0.70 marked at $0.45 is up $0.50."""
    long, _ = fold(fill("t1", "bid", 4_000, 200))
    short, _ = fold(fill("t1", "ask", 7_000, 200))
    assert (long.unrealized(M, 4_500), short.unrealized(M, 4_500)) == (100_000, 500_000)
    assert long.unrealized("KXNEVER-1", 4_500) == 0


def test_fees_are_attributed_to_their_market():
    """Fees add up per market, apart from PnL."""
    machine, _ = fold(fill("t1", "bid", 4_000, 100, fee=1_700), fill("t2", "bid", 4_000, 100, fee=1_700, market="KXB-2"),
                      fill("t3", "ask", 4_000, 100, fee=1_700))
    assert (machine.get(M).fees, machine.get("KXB-2").fees, machine.get(M).realized_pnl) == (3_400, 1_700, 0)


def test_a_duplicate_fill_changes_nothing_and_is_recorded():
    """Given a fill, when the same trade id arrives again at seq 2, then FillDuplicated(cause_seq=2) only."""
    machine, _ = fold(fill("t1", "bid", 4_000, 300))
    before = machine.snapshot()
    assert machine.handle(2, 2, fill("t1", "bid", 4_000, 300)) == (FillDuplicated(trade_id="t1", cause_seq=2),)
    assert machine.snapshot() == before


def test_settlement_closes_the_position_at_the_settlement_value():
    """Given +3 at $0.40, when YES wins, then realized 3 × ($1 − $0.40) = $1.80 and flat."""
    _, out = fold(fill("t1", "bid", 4_000, 300, fee=5_100), settled("yes"))
    assert out[-1] == PositionChanged(market=M, position=0, cost_basis=0, realized_pnl=1_800_000, fees=5_100,
                                      cause_seq=2)


def test_a_no_position_wins_when_the_market_settles_no():
    """Given −2 sold at $0.70 (NO bought at $0.30), when NO wins, then realized 2 × $0.70 = $1.40."""
    machine, _ = fold(fill("t1", "ask", 7_000, 200), settled("no"))
    assert machine.get(M).realized_pnl == 1_400_000


def test_a_scalar_settlement_uses_its_value():
    """Given +1 at $0.40, when the market settles at $0.25, then realized −$0.15."""
    machine, _ = fold(fill("t1", "bid", 4_000, 100), settled("scalar", 2_500))
    assert machine.get(M).realized_pnl == -150_000


def test_a_settlement_without_a_value_changes_nothing():
    """A void result with no settlement value cannot be priced: the position stays open."""
    machine, out = fold(fill("t1", "bid", 4_000, 100), settled("void"))
    assert len(out) == 1 and machine.get(M).position == 100
    assert settlement_value(settled("void")) is None


def test_a_flat_market_settles_silently():
    """Nothing to close, nothing to say."""
    assert fold(settled("yes"))[1] == []


def test_snapshot_round_trips_through_msgpack():
    """restore(snapshot) is an equal machine, also after encoding the snapshot."""
    machine, _ = fold(fill("t1", "bid", 4_000, 100), fill("t2", "ask", 7_000, 300, market="KXB-2"))
    snap = machine.snapshot()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=type(snap))
    assert Positions.restore(decoded).snapshot() == snap


# -- invariants ----------------------------------------------------------------------------------
MARKETS = ("KXA-1", "KXB-2")


class PositionsMachine(RuleBasedStateMachine):
    """Random fills, duplicates and settlements; the position always agrees with what the fills add up to."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = Positions()
        self.seq = 0
        self.fills: list[OrderFilled] = []
        self.position = dict.fromkeys(MARKETS, 0)
        self.fees = dict.fromkeys(MARKETS, 0)
        self.flow = dict.fromkeys(MARKETS, 0)  # YES-leg cash flow: −price × signed count, + settlement value

    def _handle(self, event):
        self.seq += 1
        return self.machine.handle(self.seq, self.seq, event)

    @rule(market=st.sampled_from(MARKETS), side=st.sampled_from(["bid", "ask"]), price=st.integers(1, 9_999),
          count=st.integers(1, 2_000), fee=st.integers(0, 50_000))
    def a_fill(self, market, side, price, count, fee):
        event = fill(f"t{len(self.fills)}", side, price, count, fee, market)
        self.fills.append(event)
        sign = 1 if side == "bid" else -1
        out = self._handle(event)
        self.position[market] += sign * count
        self.fees[market] += fee
        self.flow[market] -= sign * price * count
        assert out == (PositionChanged(market=market, position=self.position[market],
                                       cost_basis=self.machine.get(market).cost_basis,
                                       realized_pnl=self.machine.get(market).realized_pnl,
                                       fees=self.fees[market], cause_seq=self.seq),)

    @precondition(lambda self: self.fills)
    @rule(data=st.data())
    def a_duplicate(self, data):
        before = self.machine.snapshot()
        event = data.draw(st.sampled_from(self.fills))
        assert self._handle(event) == (FillDuplicated(trade_id=event.trade_id, cause_seq=self.seq),)
        assert self.machine.snapshot() == before

    @rule(market=st.sampled_from(MARKETS), result=st.sampled_from(["yes", "no"]))
    def a_settlement(self, market, result):
        self.flow[market] += self.position[market] * (10_000 if result == "yes" else 0)
        self.position[market] = 0
        self._handle(settled(result, market=market))

    @invariant()
    def the_position_is_the_sum_of_the_fills_since_settlement(self):
        for m in MARKETS:
            assert self.machine.get(m).position == self.position[m]

    @invariant()
    def the_lots_add_up_to_the_position_and_the_cost_basis(self):
        for m in MARKETS:
            p = self.machine.get(m)
            sign = 1 if p.position > 0 else -1
            assert sum(c for _, c in p.lots) == abs(p.position)
            assert p.cost_basis == sign * sum(price * c for price, c in p.lots)
            assert all(c > 0 for _, c in p.lots)

    @invariant()
    def realized_pnl_less_the_open_cost_is_the_cash_flow(self):
        """Nothing is created or lost by closing: realized − cost basis = the fills' YES-leg cash flow."""
        for m in MARKETS:
            p = self.machine.get(m)
            assert p.realized_pnl - p.cost_basis == self.flow[m]

    @invariant()
    def fees_are_the_sum_of_the_unique_fills_fees(self):
        for m in MARKETS:
            assert self.machine.get(m).fees == self.fees[m]

    @invariant()
    def a_restored_machine_is_equal(self):
        snap = self.machine.snapshot()
        assert Positions.restore(snap).snapshot() == snap


PositionsMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPositionsInvariants = PositionsMachine.TestCase


def test_value2_marks_the_open_position_at_the_exact_mid_net_of_fees():
    """+3 at $0.40 with $0.051 of fees, mid $0.405 (bid 0.40 + ask 0.41): 2 × (3 × 0.005 − 0.051); flat or no mid: net."""
    machine, _ = fold(fill("t1", "bid", 4_000, 300, fee=51_000))
    assert machine.value2(M, 4_000 + 4_100) == 2 * (3 * 50 * 100 - 51_000)
    assert machine.value2(M, None) == -2 * 51_000
    assert machine.value2("KXNONE", 8_000) == 0
