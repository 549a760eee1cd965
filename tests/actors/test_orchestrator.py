"""The orchestrator as specifications: given these events, when this one arrives, then these derived events.

The sequencer here is the minimum the contract needs (as in ``test_market_core``): every event gets the
next seq and goes to every machine in a fixed order; what they derive is sequenced after it. Alone, the
orchestrator's own events come back to it; with ``paper=True`` the cash pool, the positions, the order
lifecycle and the paper matcher run beside it, over the same log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.cash import CashPool
from actors.fees import KalshiFees
from actors.matcher import PaperMatcher
from actors.orchestrator import HALT, Orchestrator, OrchestratorSnapshot, worst_case_cost
from actors.orders import Orders
from actors.positions import Positions
from config.synth import FlowConfig
from policies.base import EntryDecision, ExitDecision, SignalDecision, SizingDecision
from policies.rules import ExitParams, SignalParams, SizingParams, baselines
from runtime.events import (
    BookDelta,
    BookSnapshot,
    CancelRequested,
    CashDeposited,
    Event,
    MarketInfo,
    MarketLifecycle,
    ModelLoaded,
    OperatorCommand,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PolicyDecided,
    PositionChanged,
    PublicTrade,
    Record,
    SeqGapDetected,
    SessionStarted,
    TimerFired,
)
from runtime.venues.sim.session import SynthSession

M, N = "KXA-1", "KXB-2"
FEES = KalshiFees()
S = 1_000_000_000
MS = 1_000_000
T0 = 1_000 * S
RULES = baselines()
V = {role: p.version for role, p in RULES.items()}
CONFIDENCE = float(np.float32(0.8))  # the imbalance feature is float32


# --- the fold ----------------------------------------------------------------------------------------
class Fold:
    """One log folded through the orchestrator (and, with ``paper``, the market core beside it)."""

    def __init__(self, orchestrator: Orchestrator, *, paper: bool = False, latency_ms: int = 20) -> None:
        self.orch = orchestrator
        self.cash, self.positions, self.orders = CashPool(FEES), Positions(), Orders()
        self.matcher = PaperMatcher(FEES.trade_fee, latency_ns=latency_ms * MS)
        self.paper = paper
        self.log: list[Record] = []
        self.watch: Callable[[int, int, Sequence[Event]], None] | None = None  # (seq, free cash before, derived)

    def machines(self):
        return (self.orch, self.orders, self.cash, self.matcher, self.positions) if self.paper else (self.orch,)

    def feed(self, ts: int, *events: Event) -> list[Event]:
        """Sequence ``events`` at ``ts``; returns everything they derived, in seq order."""
        start = len(self.log)
        for event in events:
            queue = deque([event])
            while queue:
                current = queue.popleft()
                seq = len(self.log) + 1
                self.log.append(Record(seq, ts, current))
                for machine in self.machines():
                    if machine is self.orch:
                        free = self.orch.free_cash
                        out = self.orch.handle(seq, ts, current)
                        if self.watch is not None:
                            self.watch(seq, free, out)
                    else:
                        out = machine.handle(seq, ts, current)
                    queue.extend(out)
        fed = {id(e) for e in events}
        return [r.event for r in self.log[start:] if id(r.event) not in fed]


def orchestrator(markets=(M,), policies=None, **kwargs) -> Orchestrator:
    return Orchestrator(markets, policies or RULES, fees=FEES, prefix="t", **kwargs)


def book(bid: int = 4_800, ask: int = 5_000, bid_size: int = 45_000, ask_size: int = 5_000, market: str = M) -> BookSnapshot:
    """One level a side: by default 48¢ / 50¢, 450 contracts bid and 50 offered (imbalance 0.8: buy YES)."""
    return BookSnapshot(market=market, yes_bids=((bid, bid_size),), no_bids=((10_000 - ask, ask_size),))


def balanced(bid: int = 4_800, ask: int = 5_000, market: str = M) -> BookSnapshot:
    return book(bid, ask, 5_000, 5_000, market)


def dollars(amount: int) -> CashDeposited:
    return CashDeposited(amount=amount * 1_000_000)


def timer(ts: int) -> TimerFired:
    return TimerFired(name="decide", due_ns=ts)


def decided(log: list[Event]) -> list[tuple[str, str]]:
    return [(e.role, e.action) for e in log if type(e) is PolicyDecided]


def intents(log: list[Event]) -> list[OrderIntent]:
    return [e for e in log if type(e) is OrderIntent]


class Fixed:
    """A policy that always decides the same, and keeps what it was shown."""

    def __init__(self, role: str, decision, version: str = "fixed-1") -> None:
        self.role, self.decision, self.version = role, decision, version
        self.seen: list = []

    def decide(self, obs):
        self.seen.append(obs)
        return self.decision


def fixed(**decisions) -> dict:
    """The baselines, with the roles named replaced by Fixed policies."""
    return {**RULES, **{role: Fixed(role, d) for role, d in decisions.items()}}


def holding(fold: Fold, position: int = 1_000, price: int = 5_000, ts: int = T0) -> None:
    """Given: a long (or short) position from one of our entries, filled whole."""
    side = "bid" if position > 0 else "ask"
    fold.feed(ts, OrderIntent(cause_seq=1, client_order_id="t-1-1", market=M, side=side, price=price,
                              count=abs(position), tif="ioc"),
              OrderAccepted(client_order_id="t-1-1", order_id="o-1", market=M),
              OrderFilled(trade_id="x1", order_id="o-1", client_order_id="t-1-1", market=M, side=side, price=price,
                          count=abs(position), fee=0, is_taker=True))


# --- entries -----------------------------------------------------------------------------------------
def test_a_liquid_bid_heavy_book_with_a_narrow_spread_is_entered_by_crossing():
    """$1,000 free; 48¢ / 50¢ with imbalance 0.8. Signal buy_yes (0.8); size: 5% × 0.8 of $1,000 is $40, capped at
    $25 a market, and at half the 50-contract ask: 25 contracts; 2¢ spread <= 0.8 × 4¢ edge: cross at 50¢, IOC."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    then = fold.feed(T0, book())
    assert then == [
        PolicyDecided(cause_seq=2, role="signal", market=M, action="buy_yes", version=V["signal"], score=CONFIDENCE),
        PolicyDecided(cause_seq=2, role="sizing", market=M, action="size", version=V["sizing"], size=2_500),
        PolicyDecided(cause_seq=2, role="entry", market=M, action="cross", version=V["entry"], score=CONFIDENCE,
                      size=2_500, price=5_000),
        OrderIntent(cause_seq=2, client_order_id="t-2-1", market=M, side="bid", price=5_000, count=2_500, tif="ioc"),
    ]


def test_a_spread_wider_than_the_edge_is_joined_passively_post_only():
    """A 4¢ spread is more than the 3.2¢ that confidence 0.8 foresees: join the 46¢ bid, GTC post-only."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    then = intents(fold.feed(T0, book(bid=4_600)))
    assert then == [OrderIntent(cause_seq=2, client_order_id="t-2-1", market=M, side="bid", price=4_600, count=2_500,
                                tif="gtc", post_only=True)]


def test_an_ask_heavy_book_sells_yes_at_the_bid():
    """Imbalance -0.8: buy NO, which on the YES leg is an ask, crossing at the 48¢ bid."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    (intent,) = intents(fold.feed(T0, book(bid_size=5_000, ask_size=45_000)))
    assert (intent.side, intent.price, intent.tif) == ("ask", 4_800, "ioc")


def test_a_market_with_a_working_entry_order_is_not_entered_again():
    """While our entry rests, more book updates bring exit decisions about it, not a second entry."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    assert len(intents(fold.feed(T0, book(bid=4_600)))) == 1
    later = fold.feed(T0 + 5 * S, book(bid=4_600)) + fold.feed(T0 + 10 * S, book(bid=4_600))
    assert (intents(later), decided(later)) == ([], [("exit", "hold")])


def test_a_halt_cancels_every_working_order_once_and_nothing_is_decided_after_it():
    """Ctrl-C: the operator's halt asks to cancel our resting entry (once), and later books and timers decide
    nothing; a snapshot after the halt keeps it halted."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    (intent,) = intents(fold.feed(T0, book(bid=4_600)))
    fold.feed(T0, OrderAccepted(client_order_id=intent.client_order_id, order_id="o-9", market=M))
    halted = fold.feed(T0 + S, OperatorCommand(command=HALT))
    assert [(type(e), e.client_order_id, e.order_id) for e in halted] == [(CancelRequested, intent.client_order_id,
                                                                          "o-9")]
    assert fold.feed(T0 + S, OperatorCommand(command=HALT)) == []
    assert fold.feed(T0 + 20 * S, book(bid=4_600)) + fold.feed(T0 + 30 * S, timer(T0 + 30 * S)) == []
    assert fold.orch.halted and fold.orch.snapshot().halted


# --- stale books and closed markets ----------------------------------------------------------------------
def test_a_stale_book_is_never_traded():
    """Before its first snapshot and after a seq gap a book decides nothing, on deltas or timers; a new snapshot
    makes it tradable again."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    assert fold.feed(T0, timer(T0), BookDelta(market=M, side="yes", price=4_800, delta=100)) == []
    fold.feed(T0, balanced())
    gap = SeqGapDetected(sid=1, expected=5, received=7, markets=(M,))
    then = fold.feed(T0 + 2 * S, gap, BookDelta(market=M, side="yes", price=4_800, delta=40_000), timer(T0 + 3 * S))
    assert then == []
    assert intents(fold.feed(T0 + 4 * S, book())) != []


def test_an_inconsistent_delta_makes_the_book_stale_and_is_not_logged_here():
    """The book actor logs BookInconsistent; the orchestrator only stops trading the book."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced())
    assert fold.feed(T0 + 2 * S, BookDelta(market=M, side="yes", price=4_800, delta=-6_000), timer(T0 + 3 * S)) == []


def test_a_closed_market_is_not_traded_and_a_determined_one_never_again():
    """deactivated stops trading until activated; determined is final."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced())
    assert fold.feed(T0 + 2 * S, MarketLifecycle(market=M, kind="deactivated"), book()) == []
    assert intents(fold.feed(T0 + 4 * S, MarketLifecycle(market=M, kind="activated"), book())) != []
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(), MarketLifecycle(market=M, kind="determined", result="yes"))
    assert fold.feed(T0 + 2 * S, MarketLifecycle(market=M, kind="activated"), book(), timer(T0 + 2 * S)) == []


def test_no_entry_within_the_cutoff_before_the_close():
    """Closing in 120 s: no entry (not even a logged signal). In 121 s: the entry goes out."""
    for close_in_s, entries in ((120, 0), (121, 1)):
        fold = Fold(orchestrator())
        fold.feed(T0, dollars(1_000), MarketLifecycle(market=M, kind="activated", close_ts_ms=(T0 // MS) + close_in_s * 1_000))
        assert len(intents(fold.feed(T0, book()))) == entries


# --- decision volume -----------------------------------------------------------------------------------
def test_book_updates_decide_at_most_once_per_interval_of_event_time():
    """Updates 999 ms apart: one decision; at 1,000 ms: the next. Timers decide whatever the throttle."""
    signal = Fixed("signal", SignalDecision("hold"))
    fold = Fold(orchestrator(policies={**RULES, "signal": signal}))
    fold.feed(T0, dollars(1_000), balanced())
    fold.feed(T0 + 999 * MS, balanced())
    assert len(signal.seen) == 1
    fold.feed(T0 + 1_000 * MS, balanced())
    fold.feed(T0 + 1_001 * MS, timer(T0 + 1_001 * MS))
    assert len(signal.seen) == 3


def test_a_market_that_keeps_holding_logs_one_hold():
    """Ten seconds of hold decisions log one PolicyDecided; a change of outcome is logged again."""
    fold = Fold(orchestrator())
    then = fold.feed(T0, balanced())  # no cash: a buy signal would be sized 0
    for k in range(1, 10):
        then += fold.feed(T0 + k * S, balanced())
    then += fold.feed(T0 + 10 * S, book())
    then += fold.feed(T0 + 11 * S, book())
    assert decided(then) == [("signal", "hold"), ("signal", "buy_yes"), ("sizing", "skip")]


# --- cash ------------------------------------------------------------------------------------------------
def test_an_entry_that_does_not_fit_the_free_cash_is_a_skip_not_an_intent():
    """Cash for exactly the worst case goes out; a micro-dollar less is skip_cash."""
    cost = worst_case_cost(FEES, M, "bid", 5_000, 2_500)
    for cash, outcome in ((cost, "cross"), (cost - 1, "skip_cash")):
        fold = Fold(orchestrator(policies=fixed(sizing=SizingDecision(2_500))))
        fold.feed(T0, CashDeposited(amount=cash))
        then = fold.feed(T0, book())
        assert decided(then)[-1] == ("entry", outcome)
        assert len(intents(then)) == (outcome == "cross")


def test_intents_on_their_way_to_the_log_hold_their_cash():
    """Cash for one entry; two markets decide before the first intent is logged back: the second is skip_cash.
    Within one timer's decisions the same holds."""
    cash = CashDeposited(amount=worst_case_cost(FEES, M, "bid", 5_000, 2_500) + 5_000_000)
    orch = orchestrator(markets=(M, N), policies=fixed(sizing=SizingDecision(2_500)))
    orch.handle(1, T0, cash)
    assert decided(orch.handle(2, T0, book()))[-1] == ("entry", "cross")  # not fed back: pending
    assert decided(orch.handle(3, T0, book(market=N)))[-1] == ("entry", "skip_cash")

    fold = Fold(orchestrator(markets=(M, N), policies=fixed(sizing=SizingDecision(2_500))))
    fold.feed(T0, cash, balanced(), balanced(market=N))  # both hold
    fold.feed(T0 + MS, book(), book(market=N))  # throttled: no decision yet
    then = fold.feed(T0 + 2 * MS, timer(T0 + 2 * MS))
    assert [(e.market, e.action) for e in then if type(e) is PolicyDecided and e.role == "entry"] == [
        (M, "cross"), (N, "skip_cash")]


def test_free_cash_follows_fills_and_releases_exactly_as_the_cash_pool():
    """Over a paper session the orchestrator's free cash equals the pool's available cash whenever nothing is
    pending."""
    fold = Fold(orchestrator(), paper=True)
    fold.feed(T0, dollars(1_000), book())
    fold.feed(T0 + S, timer(T0 + S))  # the entry reaches the paper venue 20 ms after its intent, and fills
    assert fold.positions.get(M).position == 2_500
    assert fold.orch.free_cash == fold.cash.available < 1_000_000_000 - 2_500 * 5_000


# --- exits ---------------------------------------------------------------------------------------------
def test_take_profit_closes_the_whole_position_at_the_bid_reduce_only():
    """Long 10 from 50¢; the bid rises to 53¢: take_profit, an IOC ask at 53¢ for 10."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    holding(fold)
    then = fold.feed(T0 + 2 * S, balanced(5_300, 5_400))
    assert then == [
        PolicyDecided(cause_seq=then[0].cause_seq, role="exit", market=M, action="take_profit", version=V["exit"],
                      size=1_000, price=5_300),
        OrderIntent(cause_seq=then[0].cause_seq, client_order_id=f"t-{then[0].cause_seq}-1", market=M, side="ask",
                    price=5_300, count=1_000, tif="ioc", reduce_only=True),
    ]


def test_stop_loss_closes_a_no_position_at_the_ask():
    """Short YES 10 from 50¢; the book rises to 53¢ / 55¢ (mid 54¢, 4¢ against us): stop, buy back at 55¢."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    holding(fold, position=-1_000)
    (intent,) = intents(fold.feed(T0 + 2 * S, balanced(5_300, 5_500)))
    assert (intent.side, intent.price, intent.count, intent.reduce_only) == ("bid", 5_500, 1_000, True)


def test_max_hold_closes_after_five_minutes_on_a_timer():
    """Nothing moves; the timer 300 s after the fill closes the position."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    holding(fold)
    assert intents(fold.feed(T0 + 299 * S, timer(T0 + 299 * S))) == []
    then = fold.feed(T0 + 300 * S, timer(T0 + 300 * S))
    assert decided(then) == [("exit", "max_hold")] and intents(then)[0].price == 4_900


def test_a_resting_entry_order_is_canceled_after_its_timeout():
    """A passive entry not filled in 30 s: CancelRequested with the venue's order id, once."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000))
    (intent,) = intents(fold.feed(T0, book(bid=4_600)))
    fold.feed(T0, OrderAccepted(client_order_id=intent.client_order_id, order_id="o-9", market=M))
    assert fold.feed(T0 + 29 * S, timer(T0 + 29 * S)) == [
        PolicyDecided(cause_seq=8, role="exit", market=M, action="hold", version=V["exit"])]
    then = fold.feed(T0 + 30 * S, timer(T0 + 30 * S))
    seq = then[0].cause_seq
    assert then == [PolicyDecided(cause_seq=seq, role="exit", market=M, action="entry_timeout", version=V["exit"]),
                    CancelRequested(cause_seq=seq, client_order_id=intent.client_order_id, order_id="o-9")]
    assert fold.feed(T0 + 31 * S, timer(T0 + 31 * S)) == []
    fold.feed(T0 + 32 * S, OrderCanceled(client_order_id=intent.client_order_id, order_id="o-9", canceled_count=2_500))
    assert decided(fold.feed(T0 + 33 * S, timer(T0 + 33 * S))) == [("signal", "buy_yes"), ("sizing", "size"),
                                                                    ("entry", "passive")]


def test_a_close_cancels_the_rest_of_a_partly_filled_entry_first():
    """Entry for 10 rests with 4 filled; take-profit: cancel the rest, then close the 4."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    fold.feed(T0, OrderIntent(cause_seq=1, client_order_id="t-1-1", market=M, side="bid", price=5_000, count=1_000),
              OrderFilled(trade_id="x1", order_id="o-1", client_order_id="t-1-1", market=M, side="bid", price=5_000,
                          count=400, fee=0, is_taker=False))
    then = fold.feed(T0 + 2 * S, balanced(5_300, 5_400))
    assert [type(e).__name__ for e in then] == ["PolicyDecided", "CancelRequested", "OrderIntent"]
    assert (then[1].client_order_id, then[2].count, then[2].side) == ("t-1-1", 400, "ask")


def test_a_close_that_does_not_complete_waits_before_trying_again():
    """An exit IOC that found nothing: no new exit for 5 s of event time."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    holding(fold)
    (close,) = intents(fold.feed(T0 + 2 * S, balanced(5_300, 5_400)))
    fold.feed(T0 + 2 * S, OrderCanceled(client_order_id=close.client_order_id, order_id="o", canceled_count=1_000,
                                        reason="ioc_remainder"))
    assert fold.feed(T0 + 6_999 * MS, timer(T0 + 6_999 * MS)) == []
    assert decided(fold.feed(T0 + 7 * S, timer(T0 + 7 * S))) == [("exit", "take_profit")]


def test_an_exit_on_a_book_without_the_touch_it_needs_is_skipped():
    """A close forced by the policy on a book with no bid is skip_book, with no intent."""
    fold = Fold(orchestrator(policies=fixed(exit=ExitDecision("close", "forced"))))
    fold.feed(T0, dollars(1_000), balanced(4_900, 5_000))
    holding(fold)
    then = fold.feed(T0 + 2 * S, BookSnapshot(market=M, no_bids=((5_000, 5_000),)))
    assert decided(then) == [("exit", "skip_book")] and intents(then) == []


def test_prices_off_the_tick_grid_are_never_sent():
    """A touch at 50.5¢ on a whole-cent grid: skip_price."""
    fold = Fold(orchestrator(policies=fixed(entry=EntryDecision("cross"))))
    fold.feed(T0, dollars(1_000))
    then = fold.feed(T0, book(ask=5_050))
    assert decided(then)[-1] == ("entry", "skip_price") and intents(then) == []


# --- models and configuration ----------------------------------------------------------------------------
def test_a_loaded_model_replaces_its_role_and_its_version_is_logged():
    """ModelLoaded goes through the loader; the next decisions carry the new version."""
    def loader(event: ModelLoaded):
        return Fixed(event.role, SignalDecision("hold"), version=f"{event.model_id}@{event.version_hash}")

    fold = Fold(orchestrator(loader=loader))
    fold.feed(T0, ModelLoaded(role="signal", model_id="ppo-signal", version_hash="abc"))
    (decision,) = fold.feed(T0, book())
    assert (decision.action, decision.version) == ("hold", "ppo-signal@abc")
    restored = Orchestrator.restore(fold.orch.snapshot(), RULES, fees=FEES, loader=loader)
    assert restored.policies["signal"].version == "ppo-signal@abc"


def test_the_policies_must_cover_each_role_with_a_policy_of_that_role():
    """A missing or mislabeled role is refused, naming the roles."""
    with pytest.raises(ValueError, match=r"needs one policy per role \('signal', 'sizing', 'entry', 'exit'\)"):
        orchestrator(policies={**RULES, "exit": RULES["entry"]})


# --- determinism and snapshots ------------------------------------------------------------------------------
TIGHT = FlowConfig(tight_share=1.0)  # every market quoted tight: the baselines trade them all


def synthetic(seed: int, markets: int = 3, duration_s: float = 1_200, config: FlowConfig = TIGHT
              ) -> list[tuple[int, Event]]:
    """A synthetic session's inputs, with a decide timer every second of event time."""
    session = SynthSession(seed, markets, duration_s, config=config)
    inputs: list[tuple[int, Event]] = [(session.start_ns, SessionStarted(
        session_id="s", mode="paper", venue="sim", seed=seed, config_hash="", code_version="",
        markets=session.tickers, starting_cash=1_000_000_000))]
    tick = session.start_ns + S
    for ts, event in session.events():
        while tick <= ts:
            inputs.append((tick, timer(tick)))
            tick += S
        inputs.append((ts, event))
    return inputs


def tickers(markets: int = 3) -> tuple[str, ...]:
    return tuple(f"KXSIM-{i:03d}" for i in range(markets))


def run(inputs, *, restore_at: int | None = None, markets: int = 3) -> Fold:
    fold = Fold(orchestrator(markets=tickers(markets)), paper=True)
    for n, (ts, event) in enumerate(inputs):
        if n == restore_at:
            encoded = msgspec.msgpack.encode(fold.orch.snapshot())
            fold.orch = Orchestrator.restore(msgspec.msgpack.decode(encoded, type=OrchestratorSnapshot), RULES, fees=FEES)
        fold.feed(ts, event)
    return fold


def test_the_same_inputs_derive_the_same_log():
    """Two folds of one synthetic session agree event for event, the orchestrator's decisions included."""
    inputs = synthetic(4)
    first, second = run(inputs), run(inputs)
    assert first.log == second.log
    assert sum(type(r.event) is OrderFilled for r in first.log) >= 5


def test_restoring_from_a_snapshot_midway_derives_the_same_log():
    """Snapshot (through msgpack) and restore the orchestrator while it holds positions or working orders, and
    while it is flat: the rest of the log is unchanged."""
    inputs = synthetic(4)
    fold = Fold(orchestrator(markets=tickers()), paper=True)
    busy, idle = [], []
    for n, (ts, event) in enumerate(inputs):
        fold.feed(ts, event)
        trading = any(fold.orch.position(m) or fold.orch.working(m) for m in tickers())
        (busy if trading else idle).append(n + 1)
    assert len(busy) >= 10
    for n in (busy[0], busy[len(busy) // 2], busy[-1], idle[len(idle) // 2]):
        assert run(inputs, restore_at=n).log == fold.log


def test_free_cash_flat_and_working_agree_with_the_orders_and_intents_of_the_snapshot():
    """What a decision reads per market (kept in indexes, so as not to scan every order and intent) is, after every
    event of a trading session, what the snapshot's orders, pending intents and cash say."""
    fold = Fold(orchestrator(markets=tickers()), paper=True)
    for ts, event in synthetic(4):
        fold.feed(ts, event)
        orch, snap = fold.orch, fold.orch.snapshot()
        available = snap.cash.cash - sum(r.hold for r in snap.cash.reservations)
        assert orch.free_cash == available - sum(cost for _, _, cost in snap.pending)
        for m in tickers():
            mine = [o for o in snap.orders if o.market == m]
            assert orch.working(m) == mine
            assert orch.flat(m) == (not orch.position(m) and not mine and not any(pm == m for _, pm, _ in snap.pending))


def test_the_derived_log_does_not_depend_on_the_process_hash_seed():
    """Set and dict order over strings changes with PYTHONHASHSEED: three processes must agree byte for byte."""
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import hashlib, msgspec; from tests.actors.test_orchestrator import run, synthetic; "
            "print(hashlib.sha256(msgspec.msgpack.encode(run(synthetic(4)).log)).hexdigest())")
    root = Path(__file__).resolve().parents[2]
    digests = {
        subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}).stdout.strip()
        for hash_seed in ("1", "2", "3")
    }
    here = hashlib.sha256(msgspec.msgpack.encode(run(synthetic(4)).log)).hexdigest()
    assert digests == {here}


def test_a_snapshot_round_trips_through_msgpack_with_an_intent_pending():
    """Books, features, cash, positions, orders, per-market state and an intent not yet logged back all survive;
    the restored orchestrator then goes on exactly as the original."""
    fold = Fold(orchestrator(markets=(M, N)), paper=True)
    fold.feed(T0, dollars(1_000), book(), PublicTrade(market=M, trade_id="p1", yes_price=4_900, count=300,
                                                      taker_side="no"))
    fold.feed(T0 + S, timer(T0 + S))  # M's entry filled: a position, features with a trade in their window
    orch, seq, ts = fold.orch, len(fold.log), T0 + 2 * S
    (intent,) = intents(list(orch.handle(seq + 1, ts, book(market=N))))  # N's entry, not logged back: pending
    snap = orch.snapshot()
    assert snap.pending and orch.position(M) == 2_500
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=OrchestratorSnapshot)
    assert copy == snap
    restored = Orchestrator.restore(copy, RULES, fees=FEES)
    assert restored.snapshot() == snap and restored.free_cash == orch.free_cash
    assert [(restored.flat(m), restored.working(m)) for m in (M, N)] == [(orch.flat(m), orch.working(m)) for m in (M, N)]
    for machine in (orch, restored):
        machine.handle(seq + 2, ts, intent)
        machine.handle(seq + 3, ts + S, timer(ts + S))
    assert restored.snapshot() == orch.snapshot() and not orch.snapshot().pending


# --- properties ----------------------------------------------------------------------------------------------
GREEDY = fixed(signal=SignalDecision("buy_yes", 1.0), sizing=SizingDecision(3_000), entry=EntryDecision("cross"))
EAGER = baselines(signal=SignalParams(min_touch=0, min_depth=0, threshold=0.05),
                  sizing=SizingParams(max_fraction=1.0, max_touch_share=10.0, max_market_cost=10**12),
                  exit=ExitParams(take_profit=50, stop_loss=50, max_hold_s=5, entry_timeout_s=2))


@st.composite
def book_streams(draw) -> tuple[int, list[tuple[int, Event]]]:
    """Starting cash, then snapshots, deltas (never below zero), public trades and timers on two markets. Prices
    are within 10¢ of each market's mid on its side, and one in ten anywhere in 1..99¢ in half-cent steps (so
    books cross, and touches fall off the whole-cent grid)."""
    mids = {m: draw(st.integers(5, 95)) * 100 for m in (M, N)}

    def price(market: str, side: str) -> int:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.integers(2, 198)) * 50
        away = draw(st.integers(1, 10)) * 100
        return max(100, mids[market] - away) if side == "yes" else max(100, 10_000 - mids[market] - away)

    sizes: dict[tuple[str, str, int], int] = {}
    events: list[tuple[int, Event]] = []
    ts = T0
    for _ in range(draw(st.integers(10, 80))):
        ts += draw(st.integers(1, 3_000)) * MS
        market = draw(st.sampled_from((M, N)))
        kind = draw(st.sampled_from(("snapshot", "delta", "delta", "delta", "trade", "timer")))
        if kind == "snapshot" or not any(k[0] == market for k in sizes):
            for key in [k for k in sizes if k[0] == market]:
                del sizes[key]
            ladders = {}
            for side in ("yes", "no"):
                ladders[side] = tuple((price(market, side), draw(st.integers(1, 40_000)))
                                      for _ in range(draw(st.integers(0, 4))))
                for p, count in ladders[side]:
                    sizes[(market, side, p)] = sizes.get((market, side, p), 0) + count
            events.append((ts, BookSnapshot(market=market, yes_bids=ladders["yes"], no_bids=ladders["no"])))
        elif kind == "delta":
            side = draw(st.sampled_from(("yes", "no")))
            p = price(market, side)
            delta = draw(st.integers(-sizes.get((market, side, p), 0), 20_000))
            sizes[(market, side, p)] = sizes.get((market, side, p), 0) + delta
            events.append((ts, BookDelta(market=market, side=side, price=p, delta=delta)))
        elif kind == "trade":
            events.append((ts, PublicTrade(market=market, trade_id=f"p{len(events)}", yes_price=draw(st.integers(1, 99)) * 100,
                                           count=draw(st.integers(1, 20_000)), taker_side=draw(st.sampled_from(("yes", "no"))))))
        else:
            events.append((ts, timer(ts)))
    return draw(st.integers(0, 100)) * 1_000_000 + draw(st.integers(0, 999_999)), events  # up to $101


@settings(max_examples=150, deadline=None)
@given(book_streams(), st.sampled_from(("baselines", "eager", "greedy")))
def test_no_intent_ever_exceeds_the_free_cash_or_leaves_the_grid(stream, which):
    """Over random books, trades and timers, with the market core beside it: the intents derived at one seq never
    cost more, at worst, than the free cash the orchestrator knew before it; every price is on the whole-cent grid
    inside (0, $1), every count positive; the cash pool never refuses one; and once the log is quiet the
    orchestrator's free cash is the pool's available cash."""
    cash, events = stream
    policies = {"baselines": RULES, "eager": EAGER, "greedy": GREEDY}[which]
    fold = Fold(orchestrator(markets=(M, N), policies=policies, decide_every_ms=200), paper=True)

    def watch(seq: int, free: int, out) -> None:
        sent = intents(list(out))
        assert sum(worst_case_cost(FEES, i.market, i.side, i.price, i.count) for i in sent) <= free
        for i in sent:
            assert 0 < i.price < 10_000 and i.price % 100 == 0 and i.count > 0

    fold.watch = watch
    fold.feed(T0, CashDeposited(amount=cash))
    for ts, event in events:
        fold.feed(ts, event)
        assert fold.orch.free_cash == fold.cash.available
    assert not [r for r in fold.log if type(r.event) is OrderRejected and r.event.reason == "insufficient_cash"]


# --- end to end ----------------------------------------------------------------------------------------------
class Recording:
    """Wraps a policy and keeps every (observation, decision)."""

    def __init__(self, inner) -> None:
        self.inner, self.role, self.version = inner, inner.role, inner.version
        self.calls: list = []

    def decide(self, obs):
        decision = self.inner.decide(obs)
        self.calls.append((obs, decision))
        return decision


def round_trips(log: list[Record], market: str) -> int:
    """Positions opened and brought back to flat by our own fills (not by settlement)."""
    trips, held = 0, 0
    for r in log:
        if type(r.event) is PositionChanged and r.event.market == market:
            if held and not r.event.position and type(log[r.event.cause_seq - 1].event) is OrderFilled:
                trips += 1
            held = r.event.position
    return trips


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_the_baselines_trade_round_trips_on_a_synthetic_session(seed):
    """Five synthetic markets for an hour, paper-traded by the rule baselines: entries fill, positions are closed
    by our own exits, the cash pool never refuses an intent, nothing is left reserved, and every crossing order
    crossed a spread of at most 10¢ (wide books are joined or left alone)."""
    policies = {role: Recording(p) for role, p in RULES.items()}
    fold = Fold(Orchestrator(tickers(5), policies, fees=FEES, prefix="t"), paper=True)
    for ts, event in synthetic(seed, markets=5, duration_s=3_600, config=FlowConfig()):
        fold.feed(ts, event)
    log = fold.log
    trips = sum(round_trips(log, m) for m in tickers(5))
    assert trips >= 2
    assert not [r for r in log if type(r.event) is OrderRejected and r.event.reason == "insufficient_cash"]
    assert fold.cash.reserved == 0 and fold.orch.free_cash == fold.cash.available
    crossed = [obs.view.spread for obs, d in policies["entry"].calls if d.action == "cross"]
    closed = [obs.view.spread for obs, d in policies["exit"].calls if d.action == "close"]
    assert crossed and max(crossed + closed) <= 1_000
    fills = [r.event for r in log if type(r.event) is OrderFilled]
    realized = sum(fold.positions.get(m).realized_pnl for m in tickers(5))
    assert fold.cash.cash + fold.cash.rounding_paid == 1_000_000_000 + realized - sum(f.fee for f in fills)


# --- the market's definition from the log (MarketInfo) ---------------------------------------------------
DECI_CENT = MarketInfo(market=M, price_level_structure="deci_cent", price_ranges=((10, 9_990, 10),),
                       fee_type="quadratic", fee_multiplier_ppm=2_000_000)


def test_a_touch_on_the_grid_of_the_markets_info_is_sent():
    """A touch at 50.5¢: off the whole-cent tick, but on the market's logged grid (0.1¢ steps): the cross goes out."""
    fold = Fold(orchestrator(policies=fixed(entry=EntryDecision("cross"))))
    fold.feed(T0, dollars(1_000), DECI_CENT)
    then = fold.feed(T0, book(ask=5_050))
    assert decided(then)[-1][1] == "cross" and [i.price for i in intents(then)] == [5_050]
    fold = Fold(orchestrator(policies=fixed(entry=EntryDecision("cross"))))
    fold.feed(T0, dollars(1_000), msgspec.structs.replace(DECI_CENT, price_ranges=((100, 9_900, 100),)))
    assert decided(fold.feed(T0, book(ask=5_050)))[-1] == ("entry", "skip_price")


def test_the_close_time_of_a_market_info_is_an_entry_cutoff_too():
    """Closing in 120 s by its MarketInfo: no entry. A later close_date_updated moving it out: the entry goes out."""
    fold = Fold(orchestrator())
    fold.feed(T0, dollars(1_000), msgspec.structs.replace(DECI_CENT, close_ts_ms=T0 // MS + 120_000))
    assert intents(fold.feed(T0, book())) == []
    fold.feed(T0, MarketLifecycle(market=M, kind="close_date_updated", close_ts_ms=T0 // MS + 3_600_000))
    assert len(intents(fold.feed(T0 + 2 * S, book()))) == 1


def test_the_fee_terms_of_a_market_info_price_what_the_orchestrator_reserves():
    """One contract at 50¢, reserved in its smallest pieces (1/100 contract, each fee rounded up to $0.0001): at
    multiplier 1 a piece's fee is $0.000175 -> $0.0002, at multiplier 2 (the MarketInfo's) $0.00035 -> $0.0004; so
    100 × ($0.50 + fee) + the one-cent allowance is $0.53 before and $0.55 after."""
    orch = orchestrator()
    before = worst_case_cost(orch.fees, M, "bid", 5_000, 100)
    orch.handle(1, T0, DECI_CENT)
    after = worst_case_cost(orch.fees, M, "bid", 5_000, 100)
    assert (before, after) == (530_000, 550_000)
    assert worst_case_cost(orch.fees, N, "bid", 5_000, 100) == before  # another market: as configured


def test_market_info_survives_a_snapshot_and_is_left_out_of_one_without_it():
    orch = orchestrator()
    plain = msgspec.msgpack.decode(msgspec.msgpack.encode(orch.snapshot()))
    assert "market_info" not in plain and plain["halted"] is False  # the bytes of a session without MarketInfo
    orch.handle(1, T0, DECI_CENT)
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(orch.snapshot()), type=OrchestratorSnapshot)
    assert snap.market_info == (DECI_CENT,)
    restored = Orchestrator.restore(snap, RULES, fees=FEES)
    assert restored.snapshot() == orch.snapshot()
    assert worst_case_cost(restored.fees, M, "bid", 5_000, 100) == worst_case_cost(orch.fees, M, "bid", 5_000, 100)
