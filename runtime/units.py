"""Exact integer units and their conversion to and from Kalshi's fixed-point strings.

The runtime never holds money, prices or quantities in floating point (DESIGN §2.4):

* a **price** is an integer number of 1/10,000 dollar (Kalshi's finest tick): ``"0.0800"`` -> ``800``;
* a **count** is an integer number of 1/100 contract (Kalshi's ``_fp`` precision): ``"300.00"`` -> ``30000``;
* **money** is an integer number of micro-dollars: ``"0.012345"`` -> ``12345``.

Parsers accept a decimal string (what Kalshi sends), or a JSON number that arrived instead of a string
(an ``int``, or a ``float`` taken by its shortest repr, so ``0.08`` is exactly ``800``). A value with
more precision than its unit is *off-grid* and refused; trailing zeros beyond the grid are fine.
Every error names the field (``what``) and the offending value.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

__all__ = [
    "COUNT_SCALE",
    "MONEY_SCALE",
    "PRICE_MAX",
    "PRICE_SCALE",
    "UnitError",
    "format_count",
    "format_money",
    "format_price",
    "parse_count",
    "parse_money",
    "parse_price",
]

PRICE_PLACES = 4
COUNT_PLACES = 2
MONEY_PLACES = 6
PRICE_SCALE = 10**PRICE_PLACES  # units per dollar
COUNT_SCALE = 10**COUNT_PLACES  # units per contract
MONEY_SCALE = 10**MONEY_PLACES  # micro-dollars per dollar
PRICE_MAX = PRICE_SCALE  # $1.00: a contract never trades above its payout


class UnitError(ValueError):
    """A value that cannot be represented exactly in the runtime's integer units."""


_DIGITS = frozenset("0123456789")


def _parse_fixed(value: object, places: int, what: str) -> int:
    """Parse ``value`` as an exact decimal with at most ``places`` significant fractional digits."""
    if isinstance(value, str):
        if len(value) > 64:  # no unit needs more digits; Python's int() refuses past 4,300 anyway
            raise UnitError(f"{what}: {value[:20]!r}… ({len(value)} characters) is too long for a decimal number")
        text = value.strip()
        sign = 1
        body = text
        if body[:1] in ("-", "+"):
            sign = -1 if body[0] == "-" else 1
            body = body[1:]
        whole, dot, frac = body.partition(".")
        if (
            not (whole or frac)
            or (dot and not frac and not whole)
            or not _DIGITS.issuperset(whole)
            or not _DIGITS.issuperset(frac)
        ):
            raise UnitError(f"{what}: {value!r} is not a decimal number")
        if len(frac) > places:
            extra = frac[places:]
            if extra.strip("0"):
                raise UnitError(f"{what}: {value!r} is off the {_grid(places)} grid")
            frac = frac[:places]
        return sign * (int(whole or "0") * 10**places + int(frac.ljust(places, "0") or "0"))
    if isinstance(value, bool):
        raise UnitError(f"{what}: {value!r} is a boolean, not a number")
    if isinstance(value, int):
        return value * 10**places
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnitError(f"{what}: {value!r} is not a finite number")
        try:
            scaled = Decimal(repr(value)).scaleb(places)
        except InvalidOperation as exc:  # pragma: no cover - repr of a finite float always parses
            raise UnitError(f"{what}: {value!r} is not a decimal number") from exc
        if scaled != scaled.to_integral_value():
            raise UnitError(f"{what}: {value!r} is off the {_grid(places)} grid")
        return int(scaled)
    raise UnitError(f"{what}: expected a decimal string or number, got {type(value).__name__} {value!r}")


def _grid(places: int) -> str:
    return "1" if places == 0 else "0." + "0" * (places - 1) + "1"


def _format_fixed(units: int, places: int, what: str) -> str:
    if isinstance(units, bool) or not isinstance(units, int):
        raise UnitError(f"{what}: expected integer units, got {type(units).__name__} {units!r}")
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def parse_price(value: object, what: str = "price") -> int:
    """Dollars (``"0.0800"``) -> integer 1/10,000 dollar (``800``); must lie in [$0, $1]."""
    units = _parse_fixed(value, PRICE_PLACES, what)
    if not 0 <= units <= PRICE_MAX:
        raise UnitError(f"{what}: {value!r} is out of range [0, 1] dollars")
    return units


def format_price(units: int, what: str = "price") -> str:
    """Integer 1/10,000 dollar -> Kalshi's dollar string with 4 decimals (``800`` -> ``"0.0800"``)."""
    if isinstance(units, int) and not 0 <= units <= PRICE_MAX:
        raise UnitError(f"{what}: {units!r} is out of range [0, {PRICE_MAX}] price units")
    return _format_fixed(units, PRICE_PLACES, what)


def parse_count(value: object, what: str = "count", *, signed: bool = False) -> int:
    """Contracts (``"300.00"``) -> integer 1/100 contract (``30000``); negative only if ``signed``."""
    units = _parse_fixed(value, COUNT_PLACES, what)
    if units < 0 and not signed:
        raise UnitError(f"{what}: {value!r} is negative")
    return units


def format_count(units: int, what: str = "count") -> str:
    """Integer 1/100 contract -> Kalshi's ``_fp`` string with 2 decimals (``30000`` -> ``"300.00"``)."""
    return _format_fixed(units, COUNT_PLACES, what)


def parse_money(value: object, what: str = "amount") -> int:
    """Dollars (``"0.012345"``) -> signed integer micro-dollars (``12345``)."""
    return _parse_fixed(value, MONEY_PLACES, what)


def format_money(units: int, what: str = "amount") -> str:
    """Integer micro-dollars -> a dollar string with 6 decimals (``12345`` -> ``"0.012345"``)."""
    return _format_fixed(units, MONEY_PLACES, what)
