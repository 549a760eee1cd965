"""Exact units: Kalshi's fixed-point strings <-> integers, with clear errors for off-grid values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.units import (
    PRICE_MAX,
    UnitError,
    format_count,
    format_money,
    format_price,
    parse_count,
    parse_money,
    parse_price,
)


@pytest.mark.parametrize(
    ("text", "units"),
    [("0.0800", 800), ("0.08", 800), ("0.0001", 1), ("1.0000", 10_000), ("0", 0), (".5", 5000), ("0.99990", 9999)],
)
def test_price_strings_parse_exactly(text, units):
    assert parse_price(text) == units


@pytest.mark.parametrize(("number", "units"), [(0.08, 800), (0.0001, 1), (1, 10_000), (0, 0), (0.29, 2900)])
def test_prices_that_arrive_as_json_numbers_parse_exactly(number, units):
    """Floats are read by their shortest repr, so 0.29 is 2900, not 2899."""
    assert parse_price(number) == units


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.08005", "price: '0.08005' is off the 0.0001 grid"),
        (0.00005, "price: 5e-05 is off the 0.0001 grid"),
        ("1.0001", "price: '1.0001' is out of range [0, 1] dollars"),
        ("-0.01", "price: '-0.01' is out of range [0, 1] dollars"),
        ("abc", "price: 'abc' is not a decimal number"),
        ("", "price: '' is not a decimal number"),
        (".", "price: '.' is not a decimal number"),
        ("1e-2", "price: '1e-2' is not a decimal number"),
        ("٠.٥", "price: '٠.٥' is not a decimal number"),
        (True, "price: True is a boolean, not a number"),
        (float("nan"), "price: nan is not a finite number"),
        (None, "price: expected a decimal string or number, got NoneType None"),
    ],
)
def test_bad_prices_are_refused_with_the_value_named(value, message):
    with pytest.raises(UnitError) as info:
        parse_price(value)
    assert str(info.value) == message


def test_errors_name_the_field():
    with pytest.raises(UnitError, match=r"^orderbook_delta\.price_dollars: '0\.12345' is off the 0\.0001 grid$"):
        parse_price("0.12345", "orderbook_delta.price_dollars")


def test_counts_are_hundredths_and_signed_only_when_asked():
    assert parse_count("300.00") == 30_000
    assert parse_count("0.01") == 1
    assert parse_count(12) == 1200
    assert parse_count("-5.50", "delta_fp", signed=True) == -550
    with pytest.raises(UnitError, match=r"^delta_fp: '-5\.50' is negative$"):
        parse_count("-5.50", "delta_fp")
    with pytest.raises(UnitError, match=r"^count: '1\.005' is off the 0\.01 grid$"):
        parse_count("1.005")


def test_money_is_micro_dollars():
    assert parse_money("0.012345") == 12_345
    assert parse_money("-3.5") == -3_500_000
    assert format_money(12_345) == "0.012345"
    assert format_money(-3_500_000) == "-3.500000"


def test_formatting_uses_kalshis_fixed_decimals():
    assert format_price(800) == "0.0800"
    assert format_price(10_000) == "1.0000"
    assert format_count(30_000) == "300.00"
    assert format_count(-1) == "-0.01"
    with pytest.raises(UnitError, match="out of range"):
        format_price(10_001)
    with pytest.raises(UnitError, match="expected integer units, got float 0.5"):
        format_price(0.5)


@given(st.integers(0, PRICE_MAX))
def test_price_round_trips(units):
    assert parse_price(format_price(units)) == units


@given(st.integers(-(10**12), 10**12))
def test_count_and_money_round_trip(units):
    assert parse_count(format_count(units), signed=True) == units
    assert parse_money(format_money(units)) == units


@given(st.decimals(min_value=0, max_value=1, places=8, allow_nan=False))
def test_a_decimal_parses_iff_it_is_on_the_grid(value):
    """Any decimal in [0, 1] parses to exactly value * 10,000 when on the grid, and is refused otherwise."""
    text = format(value, "f")
    scaled = value * 10_000
    if scaled == scaled.to_integral_value():
        assert parse_price(text) == int(scaled)
    else:
        with pytest.raises(UnitError, match="off the 0.0001 grid"):
            parse_price(text)


@given(st.text(max_size=12))
def test_arbitrary_text_parses_or_raises_unit_error(text):
    try:
        units = parse_price(text)
    except UnitError:
        return
    assert Decimal(units) / 10_000 == Decimal(text.strip())


def test_an_absurdly_long_number_is_refused_by_name():
    with pytest.raises(UnitError, match=r"^count: '11111111111111111111'… \(5000 characters\) is too long for a decimal number$"):
        parse_count("1" * 5000)
