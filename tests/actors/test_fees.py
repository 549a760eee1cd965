"""Fee specifications: Kalshi's fee model worked by hand, its rounding rule, and the reservation bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.fees import CENT, FillCharge, KalshiFees, SeriesFees, leg_cost, round_fill

KALSHI = KalshiFees()
MAKERS = KalshiFees(series={"KXMAKER": SeriesFees(maker_fees=True)})
HALF = KalshiFees(series={"KXHALF": SeriesFees(multiplier_ppm=500_000, maker_fees=True)})

prices = st.integers(min_value=0, max_value=10_000)
counts = st.integers(min_value=0, max_value=1_000_000)


# -- the fee model -------------------------------------------------------------------------------
def test_taker_fee_on_100_contracts_at_50_cents():
    """0.07 × 100 × 0.50 × 0.50 = $1.75 exactly, so nothing to round: 1,750,000 micro-dollars."""
    assert KALSHI.trade_fee("KXA-1", price=5_000, count=10_000, is_taker=True) == 1_750_000


def test_taker_fee_on_one_contract_at_one_cent_rounds_up_to_the_next_centicent():
    """0.07 × 1 × 0.01 × 0.99 = $0.000693, rounded up to $0.0007 = 700 micro-dollars."""
    assert KALSHI.trade_fee("KXA-1", price=100, count=100, is_taker=True) == 700


def test_taker_fee_on_half_a_contract():
    """0.07 × 0.50 × 0.30 × 0.70 = $0.00735, rounded up to $0.0074 = 7,400 micro-dollars."""
    assert KALSHI.trade_fee("KXA-1", price=3_000, count=50, is_taker=True) == 7_400


def test_taker_fee_on_ten_contracts_at_three_cents():
    """0.07 × 10 × 0.03 × 0.97 = $0.02037, rounded up to $0.0204 = 20,400 micro-dollars."""
    assert KALSHI.trade_fee("KXA-1", price=300, count=1_000, is_taker=True) == 20_400


def test_maker_fee_on_a_series_that_charges_makers():
    """0.0175 × 100 × 0.50 × 0.50 = $0.4375 exactly = 437,500 micro-dollars."""
    assert MAKERS.trade_fee("KXMAKER-26-X", price=5_000, count=10_000, is_taker=False) == 437_500


def test_makers_pay_nothing_on_a_series_that_does_not_charge_them():
    """The default series terms charge takers only."""
    assert MAKERS.trade_fee("KXA-1", price=5_000, count=10_000, is_taker=False) == 0


def test_the_series_multiplier_scales_the_fee():
    """Multiplier 0.5: taker 0.5 × $1.75 = $0.875; maker 0.5 × $0.4375 = $0.21875, rounded up to $0.2188."""
    assert HALF.trade_fee("KXHALF-1", price=5_000, count=10_000, is_taker=True) == 875_000
    assert HALF.trade_fee("KXHALF-1", price=5_000, count=10_000, is_taker=False) == 218_800


def test_a_market_takes_the_terms_of_its_series_the_ticker_up_to_the_first_dash():
    """KXHALF-24JAN01-T60 is in series KXHALF; KXHALFX-1 is not."""
    assert HALF.terms("KXHALF-24JAN01-T60") == SeriesFees(multiplier_ppm=500_000, maker_fees=True)
    assert HALF.terms("KXHALFX-1") == SeriesFees()


def test_a_negative_multiplier_is_refused():
    """Series terms are validated when made."""
    try:
        SeriesFees(multiplier_ppm=-1)
    except ValueError as exc:
        assert str(exc) == "multiplier_ppm must be >= 0, got -1"
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")


@given(prices, counts, st.booleans())
def test_the_fee_is_never_negative(price, count, is_taker):
    """Whatever the price, count and role."""
    assert MAKERS.trade_fee("KXMAKER-1", price, count, is_taker) >= 0


@given(prices, counts, counts, st.booleans())
def test_the_fee_is_monotone_in_count(price, a, b, is_taker):
    """More contracts never cost less in fees."""
    small, large = sorted((a, b))
    fee = MAKERS.trade_fee
    assert fee("KXMAKER-1", price, small, is_taker) <= fee("KXMAKER-1", price, large, is_taker)


@given(prices, counts, st.booleans())
def test_the_fee_is_symmetric_in_the_yes_and_no_price(price, count, is_taker):
    """A fill costs the same fee whether it is quoted at P (YES) or 1 − P (NO)."""
    fee = MAKERS.trade_fee
    assert fee("KXMAKER-1", price, count, is_taker) == fee("KXMAKER-1", 10_000 - price, count, is_taker)


# -- what a leg costs ----------------------------------------------------------------------------
def test_a_bid_buys_yes_at_its_price_and_an_ask_buys_no_at_one_minus_it():
    """3 contracts at $0.45: YES costs $1.35; NO costs 3 × $0.55 = $1.65."""
    assert leg_cost("bid", 4_500, 300) == 1_350_000
    assert leg_cost("ask", 4_500, 300) == 1_650_000


# -- the rounding rule ---------------------------------------------------------------------------
def test_a_subpenny_buy_is_floored_to_the_cent_and_the_rounding_fee_accumulates():
    """Buy 1 at $0.055 (taker fee 0.07 × 0.055 × 0.945 = $0.00363825 -> $0.0037): −0.055 − 0.0037 = −0.0587,
    floored to −$0.06, so the rounding fee is $0.0013 and the accumulator holds it."""
    trade_fee = KALSHI.trade_fee("KXA-1", 550, 100, True)
    assert trade_fee == 3_700
    charge = round_fill(revenue=-55_000, trade_fee=trade_fee, carry=0)
    assert charge == FillCharge(balance_change=-60_000, trade_fee=3_700, rounding_fee=1_300, rebate=0, carry=1_300)
    assert charge.net_fee == 5_000


def test_three_one_lot_fills_cost_what_one_three_lot_fill_costs():
    """Three 1-lot buys at $0.055: −$0.06 each, −$0.18 in all. One 3-lot buy: fee 0.07 × 3 × 0.055 × 0.945 =
    $0.01091475 -> $0.0110, −0.165 − 0.011 = −0.176, floored to −$0.18."""
    carry, total = 0, 0
    for _ in range(3):
        charge = round_fill(-55_000, KALSHI.trade_fee("KXA-1", 550, 100, True), carry)
        carry, total = charge.carry, total + charge.balance_change
    assert (total, carry) == (-180_000, 3_900)
    assert round_fill(-165_000, KALSHI.trade_fee("KXA-1", 550, 300, True), 0).balance_change == -180_000


def test_an_accumulator_past_a_cent_pays_a_one_cent_rebate():
    """Carry $0.0090 + rounding $0.0013 = $0.0103: a $0.01 rebate, $0.0003 stays; −$0.06 + $0.01 = −$0.05."""
    charge = round_fill(-55_000, 3_700, carry=9_000)
    assert charge == FillCharge(balance_change=-50_000, trade_fee=3_700, rounding_fee=1_300, rebate=10_000, carry=300)


def test_a_rebate_larger_than_the_fill_fees_makes_its_net_fee_negative():
    """Assumed, uncapped: $0.0037 trade fee + $0.0013 rounding − $0.01 rebate = −$0.005 on this fill."""
    assert round_fill(-55_000, 3_700, carry=9_000).net_fee == -5_000


def test_an_accumulator_that_reaches_exactly_a_cent_pays_the_rebate():
    """Assumed rule: carry $0.0087 + rounding $0.0013 = $0.0100 pays the cent back and leaves nothing."""
    charge = round_fill(-55_000, 3_700, carry=8_700)
    assert (charge.rebate, charge.carry, charge.balance_change) == (10_000, 0, -50_000)


def test_a_sale_floors_toward_negative_infinity_too():
    """Sell 1 at $0.555 (fee 0.07 × 0.555 × 0.445 = $0.01728675 -> $0.0173): +0.555 − 0.0173 = +0.5377 -> +$0.53."""
    charge = round_fill(revenue=555_000, trade_fee=KALSHI.trade_fee("KXA-1", 5_550, 100, True), carry=0)
    assert (charge.balance_change, charge.rounding_fee) == (530_000, 7_700)


def test_a_direct_member_is_rounded_to_the_centicent():
    """At a $0.0001 precision −$0.0587 is already on the grid: no rounding fee."""
    charge = round_fill(-55_000, 3_700, carry=0, precision=100)
    assert (charge.balance_change, charge.rounding_fee, charge.carry) == (-58_700, 0, 0)


def test_a_net_fee_already_on_the_grid_passes_through_unchanged():
    """A venue fee that already includes the rounding ($0.0050 on a $0.055 buy) leaves nothing to round."""
    charge = round_fill(-55_000, 5_000, carry=0)
    assert (charge.balance_change, charge.rounding_fee, charge.rebate) == (-60_000, 0, 0)


@given(st.integers(-10**9, 10**9), st.integers(0, 10**7), st.integers(0, CENT - 1))
def test_rounding_keeps_the_balance_on_the_grid_and_the_accumulator_below_a_cent(revenue, trade_fee, carry):
    """The balance moves by whole cents, the accumulator stays in [0, $0.01), and nothing is lost."""
    charge = round_fill(revenue, trade_fee * 100, carry)
    assert charge.balance_change % CENT == 0
    assert 0 <= charge.carry < CENT
    assert 0 <= charge.rounding_fee < CENT
    assert charge.balance_change == revenue - charge.net_fee
    assert charge.carry - carry == charge.rounding_fee - charge.rebate


# -- the reservation bound -----------------------------------------------------------------------
def test_the_worst_unit_outlay_at_45_cents():
    """One count unit (0.01 contract) at $0.45: fee 0.07 × 0.01 × 0.45 × 0.55 = $0.00017325 -> $0.0002, so
    $0.0045 + $0.0002 = 4,700 micro-dollars; no better price costs more."""
    assert KALSHI.worst_unit_outlay("KXA-1", 4_500) == 4_700


def test_the_worst_unit_outlay_near_a_dollar():
    """At $0.99 the unit's fee ($0.00000693) rounds up to $0.0001: $0.0099 + $0.0001 = 10,000 micro-dollars."""
    assert KALSHI.worst_unit_outlay("KXA-1", 9_900) == 10_000


def _brute_worst(fees: KalshiFees, market: str, leg_price: int) -> int:
    return max(y + fees.trade_fee(market, y, 1, True) for y in range(leg_price + 1))


@given(st.integers(0, 10_000), st.sampled_from(["KXA-1", "KXHALF-1"]))
def test_the_worst_unit_outlay_is_the_most_any_better_price_costs(leg_price, market):
    """The fast scan agrees with trying every price no worse than the limit."""
    assert HALF.worst_unit_outlay(market, leg_price) == _brute_worst(HALF, market, leg_price)


def test_the_worst_unit_outlay_scans_everything_when_the_fee_rate_is_one_or_more():
    """A multiplier of 20 (rate 1.4): the early stop does not hold, so every price is tried."""
    steep = KalshiFees(default=SeriesFees(multiplier_ppm=20_000_000))
    for leg_price in (0, 2_500, 5_000, 7_777, 10_000):
        assert steep.worst_unit_outlay("KXA-1", leg_price) == _brute_worst(steep, "KXA-1", leg_price)


@given(st.integers(1, 9_999), st.integers(1, 100_000), st.data())
def test_a_fill_at_or_better_than_the_limit_never_costs_more_than_its_count_of_worst_units(limit, count, data):
    """For any piece of an order and any price no worse than its limit: cost + trade fee <= count × unit."""
    price = data.draw(st.integers(1, limit))
    unit = KALSHI.worst_unit_outlay("KXA-1", limit)
    assert leg_cost("bid", price, count) + KALSHI.trade_fee("KXA-1", price, count, True) <= count * unit


# -- fee terms from the log (MarketInfo) ------------------------------------------------------------
def info(market: str = "KXLOG-1", fee_type: str = "quadratic_with_maker_fees", multiplier_ppm: int | None = 1_500_000):
    from runtime.events import MarketInfo

    return MarketInfo(market=market, series="KXLOG", fee_type=fee_type, fee_multiplier_ppm=multiplier_ppm)


def test_a_market_info_names_the_terms_its_market_is_charged_by():
    """Multiplier 1.5 with maker fees: taker 1.5 × $1.75 = $2.625; maker 1.5 × $0.4375 = $0.65625 -> $0.6563."""
    from actors.fees import MarketFees

    fees = MarketFees(KALSHI)
    assert fees.trade_fee("KXLOG-1", 5_000, 10_000, True) == 1_750_000  # before it: the configured schedule
    fees.learn(info())
    assert fees.trade_fee("KXLOG-1", 5_000, 10_000, True) == 2_625_000
    assert fees.trade_fee("KXLOG-1", 5_000, 10_000, False) == 656_300
    assert fees.trade_fee("KXOTHER-1", 5_000, 10_000, True) == 1_750_000  # other markets: unchanged
    assert fees.worst_unit_outlay("KXLOG-1", 5_000) == 5_000 + fees.trade_fee("KXLOG-1", 5_000, 1, True)


@pytest.mark.parametrize(("fee_type", "maker_fee"), [
    ("quadratic", 0),  # takers only
    ("quadratic_with_maker_fees", 437_500),  # makers at a quarter of the taker rate: 0.0175
    ("quadratic_with_combo_maker_fees", 875_000),  # at half of it: 0.035
    ("flat", 0),  # not in the spec: charged as quadratic
])
def test_each_fee_type_of_the_spec(fee_type, maker_fee):
    from actors.fees import fee_terms

    terms = fee_terms(info(fee_type=fee_type, multiplier_ppm=1_000_000))
    assert terms is not None
    assert terms.trade_fee(5_000, 10_000, False) == maker_fee
    assert terms.trade_fee(5_000, 10_000, True) == 1_750_000


def test_a_market_info_without_fee_terms_leaves_the_configured_schedule():
    """No fee type or no multiplier (the series could not be read): the base schedule charges the market, and a
    later MarketInfo replaces an earlier one whole."""
    from actors.fees import MarketFees, fee_terms

    assert fee_terms(info(fee_type="")) is None and fee_terms(info(multiplier_ppm=None)) is None
    fees = MarketFees(KALSHI)
    fees.learn(info(multiplier_ppm=2_000_000))
    fees.learn(info(multiplier_ppm=None))
    assert fees.trade_fee("KXLOG-1", 5_000, 10_000, True) == 1_750_000
    assert fees.learned() == (info(multiplier_ppm=None),)
