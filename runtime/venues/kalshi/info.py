"""A market's definition as a ``MarketInfo`` input: Kalshi's ``GET /markets/{ticker}`` and its series' fee terms.

What the state machines need from the venue about a market (:class:`runtime.events.MarketInfo`), read when a
session subscribes to it and again when its close moves, so that fees and price checks come from the log:

* from the spec's ``Market``: ``price_ranges`` (the grid, exact: ``(start, end, step)`` in 1/10,000 dollar) and
  ``price_level_structure``; ``close_time``, ``latest_expiration_time``, ``fee_waiver_expiration_time`` (ISO-8601,
  kept in Unix ms); ``settlement_timer_seconds``, ``can_close_early``, ``market_type``, ``rules_primary`` and
  ``rules_secondary`` (clipped to :data:`~runtime.events.MARKET_RULES_MAX` characters);
* from the spec's ``Series`` (``GET /series/{series_ticker}``): ``fee_type`` and ``fee_multiplier`` (a JSON number:
  read exactly, as parts per million; a multiplier finer than that is refused). The spec's ``Market`` names its
  ``event_ticker`` but not its series: the series is the event ticker up to its first ``-`` (Kalshi's ticker
  convention, which :class:`actors.fees.KalshiFees` also follows).

A reply without a field the spec requires is a :class:`~.convert.WireError` naming it (never a silent None).
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct

from runtime.events import MARKET_RULES_MAX, MarketInfo
from runtime.units import UnitError, parse_money

from . import convert as cv
from . import messages as m
from . import rest

__all__ = ["Series", "SeriesResponse", "market_info", "series_ticker"]

_FEE_TYPES: Final = frozenset({"quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees", "flat"})


class Series(Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The spec's ``Series`` (unknown keys ignored): a ``MarketInfo`` takes ``fee_type`` and ``fee_multiplier``; the
    other fields the spec requires are here for the local exchange to send."""

    ticker: str
    frequency: str | None = None
    title: str | None = None
    category: str | None = None
    categories: list[str] | None = None
    tags: list[str] | None = None
    settlement_sources: list[dict[str, str]] | None = None
    contract_url: str | None = None
    contract_terms_url: str | None = None
    fee_type: str | None = None
    fee_multiplier: m.Num | None = None
    additional_prohibitions: list[str] | None = None


class SeriesResponse(Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """``GET /series/{series_ticker}``."""

    series: Series


def series_ticker(market: m.Market) -> str:
    """The market's series: its event ticker up to the first ``-`` (its own ticker's, if it names no event)."""
    return (market.event_ticker or market.ticker).partition("-")[0]


def market_info(market: m.Market, series: Series | None, source: str) -> MarketInfo:
    """The ``MarketInfo`` of a market and its series (None: the series could not be read, so no fee terms).
    Raises ``ValueError`` naming a field the spec requires that is missing or cannot be read."""
    grid = rest.price_grid(market)
    fee_type, multiplier = "", None
    if series is not None:
        fee_type = _required(series.fee_type, "series.fee_type")
        if fee_type not in _FEE_TYPES:
            raise cv.WireError(f"series.fee_type: {fee_type!r} is not one of {', '.join(sorted(_FEE_TYPES))}")
        try:
            multiplier = parse_money(_required(series.fee_multiplier, "series.fee_multiplier"), "series.fee_multiplier")
        except UnitError as exc:
            raise cv.WireError(f"{exc} (read in parts per million)") from None
        if multiplier < 0:
            raise cv.WireError(f"series.fee_multiplier: {series.fee_multiplier!r} is negative")
    timer = market.settlement_timer_seconds
    return MarketInfo(
        market=market.ticker, series=series_ticker(market) if series is None else series.ticker,
        market_type=market.market_type or "", price_level_structure=market.price_level_structure or "",
        price_ranges=grid.ranges, fee_type=fee_type, fee_multiplier_ppm=multiplier,
        fee_waiver_until_ms=_ms(market.fee_waiver_expiration_time, "market.fee_waiver_expiration_time"),
        close_ts_ms=cv.iso_ms(_required(market.close_time, "market.close_time"), "market.close_time"),
        latest_expiration_ts_ms=_ms(market.latest_expiration_time, "market.latest_expiration_time"),
        settlement_timer_s=None if timer is None else int(timer), can_close_early=market.can_close_early,
        rules_primary=_clip(market.rules_primary), rules_secondary=_clip(market.rules_secondary), source=source)


def _required(value, what: str):  # type: ignore[no-untyped-def]
    if value is None:
        raise cv.WireError(f"{what}: missing")
    return value


def _ms(value: str | None, what: str) -> int | None:
    return None if not value else cv.iso_ms(value, what)


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MARKET_RULES_MAX else text[: MARKET_RULES_MAX - 1] + "…"
