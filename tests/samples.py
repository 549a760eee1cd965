"""One instance of every event type, with non-default values: shared by the schema, log and export tests."""

from __future__ import annotations

from runtime import events as ev


def one_of_each() -> list[ev.Event]:
    samples: list[ev.Event] = [
        ev.BookSnapshot(market="KXA-1", yes_bids=((800, 30000), (900, 150)), no_bids=((50, 100),), sid=3, venue_seq=17, venue_ts_ms=1_700_000_000_000),
        ev.BookDelta(market="KXA-1", side="no", price=9100, delta=-250, sid=3, venue_seq=18, client_order_id="c-1", venue_ts_ms=1_700_000_000_001),
        ev.PublicTrade(market="KXA-1", trade_id="t-9", yes_price=4500, count=1250, taker_side="yes", sid=4, venue_seq=2, venue_ts_ms=5),
        ev.MarketLifecycle(market="KXA-1", kind="settled", result="yes", settlement_value=10_000, close_ts_ms=9, venue_ts_ms=10),
        ev.SessionStarted(session_id="s-1", mode="paper", venue="sim", seed=42, config_hash="ab" * 32, code_version="0.1.0", markets=("KXA-1", "KXB-2"), starting_cash=1_000_000_000),
        ev.SessionEnded(reason="duration reached"),
        ev.SessionCrashed(error="writer died", last_seq=77),
        ev.SessionRecovered(last_seq=77, truncated_bytes=123),
        ev.SeqGapDetected(sid=3, expected=19, received=21, markets=("KXA-1",)),
        ev.BookResynced(market="KXA-1", sid=3),
        ev.BookInconsistent(market="KXA-1", side="yes", price=800, delta=-40000, resting=30000, cause_seq=12),
        ev.VenueError(where="ws", message="subscription buffer overflow", code=25),
        ev.MalformedInput(source="ws", raw=b"\x00{not json\xff", error="invalid JSON at byte 1"),
        ev.TimerFired(name="heartbeat", due_ns=1_000_000_000),
        ev.OperatorCommand(command="halt", args=(("reason", "manual"),)),
        ev.OrderIntent(cause_seq=5, client_order_id="c-1", market="KXA-1", side="bid", price=801, count=500, tif="ioc", post_only=False, reduce_only=True, expiration_ts_ms=99),
        ev.OrderAccepted(client_order_id="c-1", order_id="o-1", market="KXA-1", cause_seq=6, venue_ts_ms=7),
        ev.OrderRejected(client_order_id="c-2", market="KXA-1", reason="insufficient_cash", detail="needs $8.01, has $2.00", cause_seq=6),
        ev.CancelRequested(cause_seq=8, client_order_id="c-1", order_id="o-1"),
        ev.OrderCanceled(client_order_id="c-1", order_id="o-1", canceled_count=200, reason="requested", cause_seq=9),
        ev.OrderExpired(client_order_id="c-3", order_id="o-3", expired_count=100, cause_seq=10),
        ev.OrderTransitionRefused(client_order_id="c-1", from_state="filled", to_state="canceled", cause_seq=12, detail="canceled after the last fill"),
        ev.OrderStatusReported(client_order_id="c-1", order_id="o-1", market="KXA-1", status="resting", side="ask", price=4200, fill_count=100, remaining_count=400, initial_count=500, venue_ts_ms=11),
        ev.OrderFilled(trade_id="t-1", order_id="o-1", client_order_id="c-1", market="KXA-1", side="bid", price=801, count=300, fee=16_800, is_taker=True, post_position=300, cause_seq=7, venue_ts_ms=8),
        ev.FillDuplicated(trade_id="t-1", cause_seq=11),
        ev.CashDeposited(amount=1_000_000_000, note="paper bankroll"),
        ev.CashReserved(client_order_id="c-1", amount=4_021_000, cause_seq=6),
        ev.CashReleased(client_order_id="c-1", amount=1_600_000, cause_seq=9),
        ev.CashSettled(market="KXA-1", amount=3_000_000, cause_seq=13),
        ev.PositionChanged(market="KXA-1", position=-300, cost_basis=-2_403_000, realized_pnl=12_000, fees=16_800, cause_seq=7),
        ev.PositionReported(market="KXA-1", position=-300, cost=2_403_000, realized_pnl=-12_000, fees_paid=16_800, venue_ts_ms=12),
        ev.ModelLoaded(role="entry", model_id="ppo-entry", version_hash="f00d" * 8, source="models/entry"),
        ev.PolicyDecided(cause_seq=5, role="signal", market="KXA-1", action="long", version="rule-1", score=0.25, size=500, price=801),
        ev.EventLifecycle(event_ticker="KXA", series_ticker="KX", title="A?", subtitle="on Jan 1", collateral_return_type="MECNET", strike_date_ms=1_694_721_600_000, strike_period="day", venue_ts_ms=13),
        ev.AmendRequested(cause_seq=14, client_order_id="c-1", price=850, count=700, order_id="o-1"),
        ev.OrderAmended(client_order_id="c-1", order_id="o-1", price=850, count=700, remaining_count=400, cause_seq=15, venue_ts_ms=14),
        ev.AmendRejected(client_order_id="c-1", reason="order_not_open", detail="order o-1 is executed", cause_seq=15),
        ev.MarketInfo(market="KXA-1", series="KXA", market_type="binary", price_level_structure="tapered_deci_cent", price_ranges=((0, 1000, 10), (1000, 9000, 100), (9000, 10_000, 10)), fee_type="quadratic_with_maker_fees", fee_multiplier_ppm=500_000, fee_waiver_until_ms=1_700_000_000_000, close_ts_ms=1_700_000_600_000, latest_expiration_ts_ms=1_700_001_000_000, settlement_timer_s=300, can_close_early=True, rules_primary="Yes if A.", rules_secondary="Source: B.", source="kalshi"),
        ev.ShadowFilled(client_order_id="c-1", market="KXA-1", side="bid", price=801, count=300, fee=6_300, is_taker=False, cause_seq=16),
        ev.ShadowQueued(client_order_id="c-1", market="KXA-1", ahead=1_200, rested=500, cause_seq=6),
        ev.QueuePositionReported(client_order_id="c-1", order_id="o-1", market="KXA-1", ahead=1_100, venue_ts_ms=15),
    ]
    assert {type(e) for e in samples} == set(ev.EVENT_TYPES.values()), "add the new event type to one_of_each()"
    return samples
