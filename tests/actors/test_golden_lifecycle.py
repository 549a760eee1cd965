"""Golden test: one order's whole life — partial fills, a duplicate, a cancel — then a closing sale and the
settlement, folded as one log through the cash pool, the positions and the order lifecycle machines."""

from __future__ import annotations

from actors.cash import CashPool
from actors.fees import KalshiFees, SeriesFees
from actors.orders import Orders
from actors.positions import MarketPosition, Positions
from runtime.events import (
    CancelRequested,
    CashDeposited,
    CashReleased,
    CashReserved,
    CashSettled,
    Event,
    FillDuplicated,
    MarketLifecycle,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    PositionChanged,
)

M = "KXGOLD-26-X"
FEES = KalshiFees(series={"KXGOLD": SeriesFees(maker_fees=True)})


def filled(trade_id: str, cid: str, side: str, price: int, count: int, fee: int, is_taker: bool) -> OrderFilled:
    return OrderFilled(trade_id=trade_id, order_id=f"o-{cid}", client_order_id=cid, market=M, side=side,  # type: ignore[arg-type]
                       price=price, count=count, fee=fee, is_taker=is_taker)


INPUTS: list[Event] = [
    CashDeposited(amount=100_000_000),
    OrderIntent(cause_seq=1, client_order_id="c1", market=M, side="bid", price=4_500, count=1_000),
    OrderAccepted(client_order_id="c1", order_id="o-c1", market=M),
    filled("t1", "c1", "bid", 4_400, 400, 69_000, is_taker=True),
    filled("t2", "c1", "bid", 4_500, 300, 13_000, is_taker=False),
    filled("t2", "c1", "bid", 4_500, 300, 13_000, is_taker=False),  # the same fill again (a reconnect)
    filled("t3", "c1", "bid", 4_500, 100, 4_400, is_taker=False),
    CancelRequested(cause_seq=13, client_order_id="c1", order_id="o-c1"),
    OrderCanceled(client_order_id="c1", order_id="o-c1", canceled_count=200),
    OrderIntent(cause_seq=18, client_order_id="c2", market=M, side="ask", price=6_000, count=300, tif="ioc"),
    OrderAccepted(client_order_id="c2", order_id="o-c2", market=M),
    filled("t4", "c2", "ask", 6_100, 300, 50_000, is_taker=True),
    MarketLifecycle(market=M, kind="settled", result="yes", settlement_value=10_000),
]


def run_log(inputs: list[Event]) -> tuple[list[tuple[int, Event]], CashPool, Positions, Orders]:
    """Sequence each input, then what it derives (fed back to every machine), as the runtime's log does."""
    cash, positions, orders = CashPool(FEES), Positions(), Orders()
    machines = (cash, positions, orders)
    log: list[tuple[int, Event]] = []
    for event in inputs:
        queue = [event]
        while queue:
            current = queue.pop(0)
            seq = len(log) + 1
            log.append((seq, current))
            for machine in machines:
                queue.extend(machine.handle(seq, seq * 1_000, current))
    return log, cash, positions, orders


def test_golden_order_lifecycle_to_settlement():
    """Market KXGOLD-26-X charges makers. Start with $100.

    1. Bid 10 YES at $0.45 (c1). Worst unit (0.01 contract): $0.0045 + fee 0.07 × 0.01 × 0.45 × 0.55 =
       $0.00017325 -> $0.0002, so $0.0047; hold 1,000 × $0.0047 + $0.01 allowance = $4.71.
    2. 4 fill at $0.44, taker: fee 0.07 × 4 × 0.44 × 0.56 = $0.068992 -> $0.0690. −$1.76 − $0.069 = −$1.829,
       floored to −$1.83 (rounding $0.001, carry $0.001). Cash $98.17. Hold 600 × $0.0047 + $0.01 − $0.001
       = $2.829: $1.881 released.
    3. 3 fill at $0.45, maker: fee 0.0175 × 3 × 0.45 × 0.55 = $0.01299375 -> $0.0130. −$1.35 − $0.013 =
       −$1.363 -> −$1.37 (rounding $0.007, carry $0.008). Cash $96.80. Hold 300 × $0.0047 + $0.01 − $0.008
       = $1.412: $1.417 released. The same fill again: recorded as a duplicate, nothing moves.
    4. 1 fills at $0.45, maker: fee 0.0175 × 1 × 0.2475 = $0.00433125 -> $0.0044. −$0.45 − $0.0044 = −$0.4544
       -> −$0.46 (rounding $0.0056, carry $0.0136 -> a $0.01 rebate, carry $0.0036): −$0.45. Cash $96.35.
       Hold 200 × $0.0047 + $0.01 − $0.0036 = $0.9464: $0.4656 released.
    5. The 2 left are canceled: $0.9464 released. c1 ends canceled with 8 filled; the venue keeps $0.0036.
    6. Ask 3 at $0.60 (c2, IOC): NO leg at $0.40, worst unit $0.0040 + $0.0002, hold 300 × $0.0042 + $0.01
       = $1.27. 3 fill at $0.61, taker: fee 0.07 × 3 × 0.61 × 0.39 = $0.049959 -> $0.0500. 3 NO at $0.39 cost
       $1.17, pair off 3 YES for $3.00: +$1.83 − $0.05 = +$1.78. Cash $98.13. All $1.27 released.
       FIFO: the $0.44 lot closes, realized 3 × ($0.61 − $0.44) = $0.51; left 1 @ $0.44, 3 @ $0.45, 1 @ $0.45
       (cost basis $0.44 + $1.35 + $0.45 = $2.24).
    7. Settled YES: 5 × $1 = $5.00. Cash $103.13. Realized $0.51 + ($5.00 − $2.24) = $3.27.

    Check: $100 + $3.27 realized − $0.1364 fees ($0.069 + $0.013 + $0.0044 + $0.05) − $0.0036 rounding kept
    = $103.13.
    """
    for trade_fee, (price, count, is_taker) in [(69_000, (4_400, 400, True)), (13_000, (4_500, 300, False)),
                                                (4_400, (4_500, 100, False)), (50_000, (6_100, 300, True))]:
        assert FEES.trade_fee(M, price, count, is_taker) == trade_fee

    log, cash, positions, orders = run_log(INPUTS)

    inputs = {id(e) for e in INPUTS}
    derived = [(seq, e) for seq, e in log if id(e) not in inputs]
    assert derived == [
        (3, CashReserved(client_order_id="c1", amount=4_710_000, cause_seq=2)),
        (6, CashReleased(client_order_id="c1", amount=1_881_000, cause_seq=5)),
        (7, PositionChanged(market=M, position=400, cost_basis=1_760_000, realized_pnl=0, fees=69_000, cause_seq=5)),
        (9, CashReleased(client_order_id="c1", amount=1_417_000, cause_seq=8)),
        (10, PositionChanged(market=M, position=700, cost_basis=3_110_000, realized_pnl=0, fees=82_000, cause_seq=8)),
        (12, FillDuplicated(trade_id="t2", cause_seq=11)),
        (14, CashReleased(client_order_id="c1", amount=465_600, cause_seq=13)),
        (15, PositionChanged(market=M, position=800, cost_basis=3_560_000, realized_pnl=0, fees=86_400, cause_seq=13)),
        (18, CashReleased(client_order_id="c1", amount=946_400, cause_seq=17)),
        (20, CashReserved(client_order_id="c2", amount=1_270_000, cause_seq=19)),
        (23, CashReleased(client_order_id="c2", amount=1_270_000, cause_seq=22)),
        (24, PositionChanged(market=M, position=500, cost_basis=2_240_000, realized_pnl=510_000, fees=136_400,
                             cause_seq=22)),
        (26, CashSettled(market=M, amount=5_000_000, cause_seq=25)),
        (27, PositionChanged(market=M, position=0, cost_basis=0, realized_pnl=3_270_000, fees=136_400, cause_seq=25)),
    ]

    assert (cash.cash, cash.reserved, cash.available, cash.rounding_paid) == (103_130_000, 0, 103_130_000, 3_600)
    assert positions.get(M) == MarketPosition(M, position=0, cost_basis=0, realized_pnl=3_270_000, fees=136_400)
    c1, c2 = orders.get("c1"), orders.get("c2")
    assert (c1.state, c1.filled, c1.remaining) == ("canceled", 800, 0)
    assert (c2.state, c2.filled, c2.remaining) == ("filled", 300, 0)
    assert cash.cash == 100_000_000 + 3_270_000 - 136_400 - 3_600


def test_the_golden_log_replays_identically_from_snapshots_taken_midway():
    """Restoring all three machines from their snapshots after the cancel and folding the rest gives the same end."""
    _, cash, positions, orders = run_log(INPUTS)
    head_log, c, p, o = run_log(INPUTS[:9])
    c, p, o = (CashPool.restore(c.snapshot(), FEES), Positions.restore(p.snapshot()), Orders.restore(o.snapshot()))
    seq = len(head_log)
    for event in INPUTS[9:]:
        queue = [event]
        while queue:
            seq += 1
            current = queue.pop(0)
            for machine in (c, p, o):
                queue.extend(machine.handle(seq, seq * 1_000, current))
    assert (c.snapshot(), p.snapshot(), o.snapshot()) == (cash.snapshot(), positions.snapshot(), orders.snapshot())
