"""Kalshi's trading fees, exactly, and the rounding that turns a fill into a change of the member's balance.

**The fee model** (Kalshi's published fee schedule, as ../shared/kalshi-protocol.md reports it): a fill of
``C`` contracts at price ``P`` dollars costs a taker ``0.07 × C × P × (1 − P)`` and a maker
``0.0175 × C × P × (1 − P)`` on series that charge makers (nothing on the others), times the series'
``fee_multiplier``. Rates and multipliers are integer parts per million, so the arithmetic is exact integer
arithmetic; the fee is symmetric in ``P ↔ 1 − P`` (the YES and the NO price of a fill pay the same fee).

**Rounding** (Kalshi, "Fee Rounding", docs.kalshi.com/getting_started/fee_rounding), :func:`round_fill`:

1. the *trade fee* is rounded up to $0.0001 (:data:`FEE_STEP`);
2. ``balance_change = revenue − trade_fee`` (revenue signed, negative for a buyer);
3. the balance moves by ``floor(balance_change)`` to the member's precision ($0.01 for a non-direct
   member, :data:`CENT`; $0.0001 for a direct member), toward negative infinity;
4. the *rounding fee* ``balance_change − floor(balance_change)`` is added to the order's *accumulator*,
   which is kept across all of the order's fills, taker or maker; whenever it holds a whole cent
   (:data:`REBATE`) a one-cent *rebate* is paid back and the accumulator drops by a cent. So an order
   filled in many pieces pays, to within the trade fees' own rounding, what one fill of it would.

Assumed where the documentation is not explicit: the rebate is paid once the accumulator *reaches* a
cent (the text says "exceeds"; reaching is what makes many fills converge on one equivalent fill, and
it keeps the accumulator below a cent); and the rebate is not capped, so on a fill whose trade fee is
under a cent the net fee can be negative (the text also says the net fee is never negative, which its
own mechanics do not guarantee).

**Fee terms from the log** (:class:`MarketFees`): a market whose ``MarketInfo`` names its series' ``fee_type`` and
``fee_multiplier`` is charged by those (:func:`fee_terms`: ``quadratic`` charges takers only,
``quadratic_with_maker_fees`` makers too at a quarter of the taker rate, ``quadratic_with_combo_maker_fees`` at
half of it); every other market by the session's configured schedule, as before ``MarketInfo`` existed, so a log
without one is charged as it was. Kalshi's ``flat`` type (its "Specific Trading Fees Table", which the spec does
not give) is charged as ``quadratic`` at the series' multiplier: an approximation, said where it is made.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Protocol

import msgspec

from runtime.events import MarketInfo
from runtime.units import PRICE_MAX

__all__ = [
    "CENT",
    "FEE_STEP",
    "MAKER_RATE_PPM",
    "PPM",
    "REBATE",
    "TAKER_RATE_PPM",
    "FeeSchedule",
    "FillCharge",
    "KalshiFees",
    "MarketFees",
    "SeriesFees",
    "fee_terms",
    "leg_cost",
    "round_fill",
]

PPM = 1_000_000  # parts per million: 1.0
TAKER_RATE_PPM = 70_000  # 0.07
MAKER_RATE_PPM = 17_500  # 0.0175
COMBO_MAKER_RATE_PPM = 35_000  # 0.035: half the taker rate (``quadratic_with_combo_maker_fees``)
FEE_STEP = 100  # $0.0001 in micro-dollars: a trade fee is rounded up to a multiple of it
CENT = 10_000  # $0.01 in micro-dollars: a non-direct member's balance precision
REBATE = CENT  # the accumulator pays back whole cents

# rate_ppm × multiplier_ppm × count × price × (10,000 − price) / _PER_STEP = the fee in units of $0.0001:
# (10^6 · 10^6) for the two ppm factors, 10^2 for 1/100 contract, 10^8 for the two prices, 10^-4 for $0.0001.
_PER_STEP = 10**18
_PER_MICRO = _PER_STEP // FEE_STEP  # the same numerator over this is the exact fee in micro-dollars


class FeeSchedule(Protocol):
    """What a fee model tells the cash pool and the paper matcher.

    ``trade_fee`` must never exceed ``count`` times the fee of one count unit at the same price (true of
    any fee proportional to the count and rounded up), which :meth:`worst_unit_outlay` relies on.
    """

    def trade_fee(self, market: str, price: int, count: int, is_taker: bool) -> int:
        """The trade fee of one fill (``price`` on the YES leg), in micro-dollars, ``>= 0``."""
        ...

    def worst_unit_outlay(self, market: str, leg_price: int) -> int:
        """The most one count unit of a buy limited at ``leg_price`` can cost, price plus trade fee.

        ``leg_price`` is the price of the leg bought (a bid's price; 10,000 − an ask's price); a fill
        may come at any price no worse than it, and in pieces as small as one count unit.
        """
        ...


class SeriesFees(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One series' fee terms: its ``fee_multiplier`` (parts per million), whether makers pay, and their rate."""

    multiplier_ppm: int = PPM
    maker_fees: bool = False
    maker_rate_ppm: int = MAKER_RATE_PPM

    def __post_init__(self) -> None:
        if self.multiplier_ppm < 0:
            raise ValueError(f"multiplier_ppm must be >= 0, got {self.multiplier_ppm}")
        if self.maker_rate_ppm < 0:
            raise ValueError(f"maker_rate_ppm must be >= 0, got {self.maker_rate_ppm}")

    def trade_fee(self, price: int, count: int, is_taker: bool) -> int:
        """The trade fee of one fill on these terms (see :meth:`KalshiFees.trade_fee`)."""
        if not is_taker and not self.maker_fees:
            return 0
        rate = TAKER_RATE_PPM if is_taker else self.maker_rate_ppm
        exact = rate * self.multiplier_ppm * count * price * (PRICE_MAX - price)
        return -(-exact // _PER_STEP) * FEE_STEP

    def worst_unit_outlay(self, leg_price: int) -> int:
        # The taker rate is the higher one; the fee is symmetric, so the leg's price stands for the YES price.
        return _worst_unit_outlay(max(TAKER_RATE_PPM, self.maker_rate_ppm) * self.multiplier_ppm, leg_price)


_MAKERS: dict[str, tuple[bool, int]] = {  # a series' fee_type -> (makers pay, their rate)
    "quadratic": (False, MAKER_RATE_PPM),
    "quadratic_with_maker_fees": (True, MAKER_RATE_PPM),
    "quadratic_with_combo_maker_fees": (True, COMBO_MAKER_RATE_PPM),
}


def fee_terms(info: MarketInfo) -> SeriesFees | None:
    """The fee terms a ``MarketInfo`` names (module docstring), or None if it names none (no fee type or
    multiplier: the series could not be read)."""
    if not info.fee_type or info.fee_multiplier_ppm is None:
        return None
    makers, rate = _MAKERS.get(info.fee_type, (False, MAKER_RATE_PPM))  # flat (or a type added later): quadratic
    return SeriesFees(multiplier_ppm=info.fee_multiplier_ppm, maker_fees=makers, maker_rate_ppm=rate)


class KalshiFees(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Kalshi's fee schedule: ``series`` terms by series ticker, ``default`` for every other series.

    A market's series is its ticker up to the first ``-`` (``KXHIGHNY-24JAN01-T60`` is in ``KXHIGHNY``).
    """

    series: dict[str, SeriesFees] = {}
    default: SeriesFees = SeriesFees()

    def terms(self, market: str) -> SeriesFees:
        return self.series.get(market.partition("-")[0], self.default)

    def trade_fee(self, market: str, price: int, count: int, is_taker: bool) -> int:
        return self.terms(market).trade_fee(price, count, is_taker)

    def worst_unit_outlay(self, market: str, leg_price: int) -> int:
        return self.terms(market).worst_unit_outlay(leg_price)


class MarketFees:
    """The fee schedule a session's log gives (module docstring): ``base`` (the configured schedule) for every
    market, except one whose latest ``MarketInfo`` names fee terms: those. :meth:`learn` folds a ``MarketInfo``;
    :attr:`infos` holds the latest per market, which is all a snapshot needs to rebuild it."""

    __slots__ = ("_terms", "base", "infos")

    def __init__(self, base: FeeSchedule) -> None:
        self.base = base
        self.infos: dict[str, MarketInfo] = {}
        self._terms: dict[str, SeriesFees] = {}

    def learn(self, info: MarketInfo) -> None:
        """``info`` replaces what was known of its market (fee terms it does not name: the base schedule's)."""
        self.infos[info.market] = info
        terms = fee_terms(info)
        if terms is None:
            self._terms.pop(info.market, None)
        else:
            self._terms[info.market] = terms

    def learned(self) -> tuple[MarketInfo, ...]:
        """The latest ``MarketInfo`` of every market, by market (a snapshot's part)."""
        return tuple(self.infos[m] for m in sorted(self.infos))

    def trade_fee(self, market: str, price: int, count: int, is_taker: bool) -> int:
        terms = self._terms.get(market)
        return self.base.trade_fee(market, price, count, is_taker) if terms is None else terms.trade_fee(
            price, count, is_taker)

    def worst_unit_outlay(self, market: str, leg_price: int) -> int:
        terms = self._terms.get(market)
        return self.base.worst_unit_outlay(market, leg_price) if terms is None else terms.worst_unit_outlay(leg_price)


@lru_cache(maxsize=65_536)
def _worst_unit_outlay(rate: int, leg_price: int) -> int:
    """``max(y + fee(y))`` over prices ``y <= leg_price`` for one count unit at ``rate`` (ppm × ppm).

    Below ``rate`` of one (10^12), ``y + exact_fee(y)`` rises with ``y`` and rounding adds under $0.0001,
    so the scan down from ``leg_price`` stops once ``y + exact_fee(y) + $0.0001`` cannot beat the best.
    """
    best = 0
    for y in range(leg_price, -1, -1):
        numerator = rate * y * (PRICE_MAX - y)
        best = max(best, y + -(-numerator // _PER_STEP) * FEE_STEP)
        if rate < 10**12 and (y + FEE_STEP) * _PER_MICRO + numerator <= best * _PER_MICRO:
            break
    return best


def leg_price(side: Literal["bid", "ask"], price: int) -> int:
    """The price of the leg an order buys: YES at ``price`` for a bid, NO at 1 − ``price`` for an ask."""
    return price if side == "bid" else PRICE_MAX - price


def leg_cost(side: Literal["bid", "ask"], price: int, count: int) -> int:
    """What buying the leg costs, in micro-dollars."""
    return leg_price(side, price) * count


class FillCharge(msgspec.Struct, frozen=True):
    """A fill's effect on the member's balance, by Kalshi's rounding rule (all in micro-dollars)."""

    balance_change: int  # revenue − net_fee: what the balance moves by
    trade_fee: int  # the fee model's fee, rounded up to $0.0001
    rounding_fee: int  # what flooring the balance change took, in [0, precision)
    rebate: int  # whole cents paid back from the accumulator
    carry: int  # the order's accumulator after this fill, in [0, REBATE)

    @property
    def net_fee(self) -> int:
        """The fill's whole fee: its trade fee plus the rounding fee less the rebate."""
        return self.trade_fee + self.rounding_fee - self.rebate


def round_fill(revenue: int, trade_fee: int, carry: int, precision: int = CENT) -> FillCharge:
    """Apply Kalshi's balance rounding to one fill of an order whose accumulator holds ``carry``.

    ``revenue`` is signed (negative when buying), ``trade_fee`` already rounded up to $0.0001; the
    result's ``balance_change`` is a multiple of ``precision`` plus any whole-cent rebate.
    """
    change = revenue - trade_fee
    floored = change // precision * precision
    rounding = change - floored
    carry += rounding
    rebate = carry // REBATE * REBATE
    return FillCharge(balance_change=floored + rebate, trade_fee=trade_fee, rounding_fee=rounding, rebate=rebate,
                      carry=carry - rebate)
