"""Conversion between Kalshi's wire messages (:mod:`.messages`) and tape events, in both directions.

Used by the WebSocket codec and the REST bodies alike, by our client (wire -> events) and by the local
exchange (events -> wire). Every value goes through :mod:`runtime.units`, so nothing is rounded; a value
that cannot become an event raises :class:`WireError` whose message names the field by its path in the
frame (``orderbook_delta.msg.price_dollars: '0.12345' is off the 0.0001 grid``). Callers at the edge
turn that error into a ``MalformedInput`` event: it never escapes them.

Mappings (``kalshi-protocol.md``):

* **sides** — a fill's (``outcome_side``, ``book_side``) is (yes, bid) for buy YES and sell NO, and
  (no, ask) for buy NO and sell YES, so ``book_side`` alone is the YES-leg side; without it,
  ``outcome_side`` yes -> bid, no -> ask; without both, the deprecated ``side`` + ``action``. A trade's
  ``taker_outcome_side`` is its taker side; without it ``taker_book_side`` (bid -> yes, ask -> no), then
  the deprecated ``taker_side``.
* **use_yes_price** — when true, NO-side book levels arrive at the YES-leg price ``p``; tape keeps NO
  levels on the NO leg, so they become ``1 - p`` (and the encoder does the reverse).
* **user_order** -> one event: ``resting`` with nothing filled -> ``OrderAccepted``; ``canceled`` ->
  ``OrderCanceled`` (``canceled_count`` = initial - filled when the initial count is sent, else the
  remaining count; reason ``"venue"``); anything else (resting after fills, ``executed``, ``pending``)
  -> ``OrderStatusReported`` with the counts. Fills are never inferred from it: they come from ``fill``
  (trade id, price, fee). The encoder writes an ``OrderStatusReported`` (it has every field a
  ``user_order`` needs), so an exchange sends every order update from one event type.
  A REST read of an order is not a transition: :func:`order_report` gives ``OrderStatusReported`` as is.
* **market_position** -> ``PositionReported`` (``position_fp`` signed; cost, realized PnL and fees in
  micro-dollars when sent).
* **bounds** — counts and money must fit the log's int64 (a JSON ``1e308`` is refused, naming the
  field), and an absurdly long decimal string is refused by :mod:`runtime.units` before it is parsed.
* **assumed shapes** — the protocol notes do not give the fields of ``user_order``, ``market_position``
  or the V2 cancel reply. They are read as Kalshi's REST Order and MarketPosition shapes
  (``ticker``/``market_ticker``, ``*_count_fp``, ``yes_price_dollars``, side bid/ask or yes/no + action;
  ISO timestamps ignored, ``ts_ms`` read) and the cancel reply's ``reduced_by_fp``. A fill without a
  ``client_order_id`` gets ``""``. Check these against recorded demo traffic (``tape record``).
* **legacy** (only when asked): integer cents for prices (``yes_price``, ``price``, ``[[cents, qty]]``,
  integer ``settlement_value``) and integer counts under the old names (``count``, ``delta``, ...).
* **transition-era frames** carry both shapes at once: the ``_dollars`` / ``_fp`` value wins and the legacy
  twin must equal it, whatever ``legacy`` says (``orderbook_delta.msg.price_dollars: '0.4200' disagrees with
  orderbook_delta.msg.price 41``); a frame with only the legacy shape is read only with ``legacy=True``
  (Kalshi stopped sending it on 2026-03-12).
* **venue time** (:func:`venue_ms`): ``ts_ms`` (Unix ms) wins; else ``ts`` as Unix seconds (an int) or as an
  ISO-8601 string with ``Z`` or an offset and any fraction of a second. It is kept in Unix milliseconds,
  the unit of the events' ``venue_ts_ms``, by integer arithmetic: digits below the millisecond are dropped
  (floor), never rounded through a float. A string without a zone, or not a time, names the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, get_args

from runtime.events import (
    BookDelta,
    BookSnapshot,
    EventLifecycle,
    Level,
    MarketLifecycle,
    MarketResult,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderStatusReported,
    PositionReported,
    PublicTrade,
)
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

from . import messages as m

__all__ = ["WireError"]

CENT = 100  # price units per cent
_RESULTS: frozenset[str] = frozenset(get_args(MarketResult))


class WireError(ValueError):
    """A wire value that cannot become a tape event; the message names the field and the value."""


# --- fields -----------------------------------------------------------------------------------------
# Prices and counts repeat endlessly in a feed, so parsed strings are memoised (a pure function of the
# string alone; lru_cache keeps only successes, and a failure is parsed again to name its field).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@lru_cache(maxsize=65_536)
def _price(value: str) -> int:
    return parse_price(value)


@lru_cache(maxsize=65_536)
def _signed_count(value: str) -> int:
    return _int64(parse_count(value, signed=True), value, "count")


def price(value: object, what: str) -> int:
    """A dollar price -> 1/10,000 dollar, on the grid and in [0, 1]."""
    if value.__class__ is str:
        try:
            return _price(value)  # type: ignore[arg-type]
        except (UnitError, WireError):
            pass  # parse again below, so the error names the field
    return parse_price(value, what)


def signed_count(value: object, what: str) -> int:
    """A signed ``_fp`` count -> 1/100 contract."""
    if value.__class__ is str:
        try:
            return _signed_count(value)  # type: ignore[arg-type]
        except (UnitError, WireError):
            pass
    return _int64(parse_count(value, what, signed=True), value, what)


def _int64(units: int, value: object, what: str) -> int:
    """Units the log can hold (a msgpack int64): a JSON number like 1e308 is refused here."""
    if not INT64_MIN <= units <= INT64_MAX:
        raise WireError(f"{what}: {value!r} is out of range")
    return units


def count(value: object, what: str) -> int:
    """An ``_fp`` count -> 1/100 contract, never negative."""
    units = signed_count(value, what)
    if units < 0:
        raise UnitError(f"{what}: {value!r} is negative")
    return units


def money(value: object, what: str) -> int:
    """Dollars (up to 6 decimals) -> signed micro-dollars."""
    return _int64(parse_money(value, what), value, what)


def cents(value: object, what: str) -> int:
    """A legacy integer-cent price (0-100) -> 1/10,000 dollar."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise WireError(f"{what}: {value!r} is not a price in whole cents (0-100)")
    return value * CENT


def _missing(what: str, legacy_name: str | None = None, legacy_value: object = None) -> WireError:
    if legacy_name is not None and legacy_value is not None:
        return WireError(f"{what}: missing (the legacy `{legacy_name}` is read only with legacy=True)")
    return WireError(f"{what}: missing")


def agree(units: int, value: object, what: str, legacy_value: object, legacy_what: str,
          parse_legacy: Callable[[object, str], int]) -> None:
    """A transition-era frame's legacy twin must say what the fixed-point field says."""
    if parse_legacy(legacy_value, legacy_what) != units:
        raise WireError(f"{what}: {value!r} disagrees with {legacy_what} {legacy_value!r}")


def pick(
    value: object,
    what: str,
    parse: Callable[[object, str], int],
    legacy: bool,
    legacy_value: object = None,
    legacy_what: str = "",
    parse_legacy: Callable[[object, str], int] = count,
) -> int:
    """The current field if present (its legacy twin, if also present, must agree), else the legacy twin
    when ``legacy``; else a :class:`WireError`."""
    if value is not None:
        units = parse(value, what)
        if legacy_value is not None:
            agree(units, value, what, legacy_value, legacy_what, parse_legacy)
        return units
    if legacy and legacy_value is not None:
        return parse_legacy(legacy_value, legacy_what)
    raise _missing(what, legacy_what.rpartition(".")[2] or None, legacy_value)


def _levels(pairs: Sequence[tuple[Any, Any]], what: str, no_leg_from_yes: bool,
            parse: Callable[[object, str], int]) -> tuple[Level, ...]:
    out = []
    for i, (p, c) in enumerate(pairs):
        units = parse(p, f"{what}[{i}][0]")
        out.append((PRICE_MAX - units if no_leg_from_yes else units, count(c, f"{what}[{i}][1]")))
    return tuple(out)


def _pairs(levels: Sequence[Level], yes_leg: bool) -> list[tuple[str, str]] | None:
    if not levels:
        return None
    return [(format_price(PRICE_MAX - p if yes_leg else p), format_count(c)) for p, c in levels]


def _dollars(units: int | None) -> str | None:
    return None if units is None else format_price(units)


def _money(units: int | None) -> str | None:
    return None if units is None else format_money(units)


# --- venue time ---------------------------------------------------------------------------------------
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):?(\d{2}))",
                  re.ASCII)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def iso_ms(value: str, what: str) -> int:
    """An ISO-8601 time with a zone (``2025-03-01T18:26:53.361842Z``, ``...+01:00``) -> Unix ms, exactly
    (the fraction below the millisecond is dropped)."""
    match = _ISO.fullmatch(value)
    if match is None:
        raise WireError(f"{what}: {value!r} is not an ISO-8601 time with a zone (like 2025-03-01T18:26:53.361842Z)")
    y, mo, d, h, mi, s, frac, _, sign, oh, om = match.groups()
    try:
        day = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise WireError(f"{what}: {value!r} is not a date of the calendar") from None
    hour, minute, second = int(h), int(mi), int(s)
    if hour > 23 or minute > 59 or second > 59 or (sign is not None and (int(oh) > 23 or int(om) > 59)):
        raise WireError(f"{what}: {value!r} is not a time of day")
    ms = (((day * 24 + hour) * 60 + minute) * 60 + second) * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)
    if sign is not None:
        offset_ms = (int(oh) * 60 + int(om)) * 60_000
        ms = ms - offset_ms if sign == "+" else ms + offset_ms
    return ms


def ts_ms_of(value: object, what: str) -> int:
    """A ``ts``: Unix seconds (an int) or an ISO-8601 string -> Unix ms."""
    if value.__class__ is int:
        return value * 1000  # type: ignore[operator]  # the wire type bounds it to the int64 range in ms
    if value.__class__ is str:
        return iso_ms(value, what)  # type: ignore[arg-type]
    raise WireError(f"{what}: {value!r} is not a Unix time in seconds or an ISO-8601 string")


def venue_ms(ts_ms: int | None, ts: object, what: str) -> int | None:
    """The venue's time of a message in Unix ms: ``ts_ms`` if sent, else its ``ts`` (``what`` names it)."""
    if ts_ms is not None:
        return ts_ms
    return None if ts is None else ts_ms_of(ts, what)


def iso_of_ms(ms: int) -> str:
    """Unix ms -> the ISO-8601 string with microseconds that Kalshi has been seen sending as ``ts``."""
    days, rest = divmod(ms, 86_400_000)
    d = date.fromordinal(_EPOCH_DAY + days)
    seconds, milli = divmod(rest, 1000)
    hour, seconds = divmod(seconds, 3600)
    minute, second = divmod(seconds, 60)
    return f"{d.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}000Z"


# --- book ---------------------------------------------------------------------------------------------
def snapshot_levels(
    yes_fp: Sequence[Any] | None,
    no_fp: Sequence[Any] | None,
    yes_legacy: Sequence[Any] | None,
    no_legacy: Sequence[Any] | None,
    where: str,
    names: tuple[str, str],
    *,
    legacy: bool,
    use_yes_price: bool,
) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Both bid ladders of a snapshot (an absent side is empty); NO levels kept on the NO leg."""
    if yes_fp is None and no_fp is None and (yes_legacy is not None or no_legacy is not None):
        if not legacy:
            raise WireError(f"{where}.{names[0]}: missing (the legacy `yes`/`no` cent levels are read only with legacy=True)")
        return (_levels(yes_legacy or (), f"{where}.yes", False, cents),
                _levels(no_legacy or (), f"{where}.no", use_yes_price, cents))
    yes = _levels(yes_fp or (), f"{where}.{names[0]}", False, price)
    no = _levels(no_fp or (), f"{where}.{names[1]}", use_yes_price, price)
    for levels, fp, old, name, old_name, flip in ((yes, yes_fp, yes_legacy, names[0], "yes", False),
                                                  (no, no_fp, no_legacy, names[1], "no", use_yes_price)):
        if old is not None and sorted(_levels(old, f"{where}.{old_name}", flip, cents)) != sorted(levels):
            raise WireError(f"{where}.{name}: {fp!r} disagrees with {where}.{old_name} {old!r}")
    return yes, no


def snapshot_event(f: m.OrderbookSnapshot, *, legacy: bool, use_yes_price: bool) -> BookSnapshot:
    b = f.msg
    if b.yes_dollars_fp is not None or b.no_dollars_fp is not None:
        yes_fp, no_fp, names = b.yes_dollars_fp, b.no_dollars_fp, ("yes_dollars_fp", "no_dollars_fp")
    else:
        yes_fp, no_fp, names = b.yes_dollars, b.no_dollars, ("yes_dollars", "no_dollars")
    yes, no = snapshot_levels(yes_fp, no_fp, b.yes, b.no, "orderbook_snapshot.msg", names, legacy=legacy,
                              use_yes_price=use_yes_price)
    return BookSnapshot(market=b.market_ticker, yes_bids=yes, no_bids=no, sid=f.sid, venue_seq=f.seq,
                        venue_ts_ms=b.ts_ms if b.ts is None else venue_ms(b.ts_ms, b.ts, "orderbook_snapshot.msg.ts"))


def snapshot_frame(e: BookSnapshot, *, sid: int, seq: int | None, use_yes_price: bool,
                   market_id: str | None = None) -> m.OrderbookSnapshot:
    msg = m.OrderbookSnapshotMsg(market_ticker=e.market, market_id=market_id, yes_dollars_fp=_pairs(e.yes_bids, False),
                                 no_dollars_fp=_pairs(e.no_bids, use_yes_price), ts_ms=e.venue_ts_ms)
    return m.OrderbookSnapshot(sid=sid, seq=seq, msg=msg)


def delta_event(f: m.OrderbookDelta, *, legacy: bool, use_yes_price: bool) -> BookDelta:
    b = f.msg  # the hot path: the field paths are constants, the common case has no call to pick()
    p, d = b.price_dollars, b.delta_fp
    if p is not None and b.price is None:
        units = price(p, "orderbook_delta.msg.price_dollars")
    else:
        units = pick(p, "orderbook_delta.msg.price_dollars", price, legacy, b.price, "orderbook_delta.msg.price", cents)
    if use_yes_price and b.side == "no":
        units = PRICE_MAX - units
    if d is not None and b.delta is None:
        delta = signed_count(d, "orderbook_delta.msg.delta_fp")
    else:
        delta = pick(d, "orderbook_delta.msg.delta_fp", signed_count, legacy, b.delta, "orderbook_delta.msg.delta",
                     signed_count)
    ts = b.ts_ms if b.ts is None else venue_ms(b.ts_ms, b.ts, "orderbook_delta.msg.ts")
    return BookDelta(market=b.market_ticker, side=b.side, price=units, delta=delta, sid=f.sid, venue_seq=f.seq,
                     client_order_id=b.client_order_id, venue_ts_ms=ts)


def delta_frame(e: BookDelta, *, sid: int, seq: int | None, use_yes_price: bool,
                market_id: str | None = None) -> m.OrderbookDelta:
    """The delta frame; ``ts_ms`` and, as Kalshi has been seen sending it, ``ts`` as an ISO-8601 string."""
    units = PRICE_MAX - e.price if use_yes_price and e.side == "no" else e.price
    ts = e.venue_ts_ms
    msg = m.OrderbookDeltaMsg(market_ticker=e.market, market_id=market_id, price_dollars=format_price(units),
                              delta_fp=format_count(e.delta), side=e.side, client_order_id=e.client_order_id,
                              ts_ms=ts, ts=None if ts is None else iso_of_ms(ts))
    return m.OrderbookDelta(sid=sid, seq=seq, msg=msg)


def book_from_rest(body: m.OrderbookResponse, market: str, *, legacy: bool) -> BookSnapshot:
    """``GET /markets/{ticker}/orderbook`` -> the market's whole book (NO levels on the NO leg)."""
    fp, old = body.orderbook_fp, body.orderbook
    if fp is None and (old is None or not legacy):
        raise _missing("orderbook.orderbook_fp", "orderbook", old)
    yes, no = snapshot_levels(fp and fp.yes_dollars, fp and fp.no_dollars, old and old.yes, old and old.no,
                              "orderbook.orderbook_fp" if fp is not None else "orderbook.orderbook",
                              ("yes_dollars", "no_dollars"), legacy=legacy, use_yes_price=False)
    return BookSnapshot(market=market, yes_bids=yes, no_bids=no)


def book_to_rest(e: BookSnapshot) -> m.OrderbookResponse:
    """The REST order book of a snapshot: ascending by price (best bid last), as Kalshi sends it."""
    yes = sorted(e.yes_bids)
    no = sorted(e.no_bids)
    return m.OrderbookResponse(orderbook_fp=m.OrderbookFp(yes_dollars=_pairs(yes, False) or [],
                                                          no_dollars=_pairs(no, False) or []))


# --- trades and fills ---------------------------------------------------------------------------------
def trade_event(f: m.Trade, *, legacy: bool) -> PublicTrade:
    b = f.msg
    where = "trade.msg"
    if b.yes_price_dollars is None and b.no_price_dollars is not None:
        yes_price = PRICE_MAX - pick(b.no_price_dollars, f"{where}.no_price_dollars", price, legacy, b.no_price,
                                     f"{where}.no_price", cents)
    else:
        yes_price = pick(b.yes_price_dollars, f"{where}.yes_price_dollars", price, legacy, b.yes_price,
                         f"{where}.yes_price", cents)
        if b.no_price is not None and b.no_price_dollars is not None:
            agree(price(b.no_price_dollars, f"{where}.no_price_dollars"), b.no_price_dollars,
                  f"{where}.no_price_dollars", b.no_price, f"{where}.no_price", cents)
    n = pick(b.count_fp, f"{where}.count_fp", count, legacy, b.count, f"{where}.count")
    if b.taker_outcome_side is not None:
        taker = b.taker_outcome_side
    elif b.taker_book_side is not None:
        taker = "yes" if b.taker_book_side == "bid" else "no"
    elif b.taker_side is not None:
        taker = b.taker_side
    else:
        raise WireError(f"{where}.taker_outcome_side: missing (and no taker_book_side or taker_side)")
    return PublicTrade(market=b.market_ticker, trade_id=b.trade_id, yes_price=yes_price, count=n, taker_side=taker,
                       sid=f.sid, venue_seq=f.seq, venue_ts_ms=venue_ms(b.ts_ms, b.ts, f"{where}.ts"))


def trade_frame(e: PublicTrade, *, sid: int, seq: int | None) -> m.Trade:
    """The trade frame, with ``ts_ms`` and the deprecated ``ts`` in Unix seconds, as Kalshi sends them."""
    ts = e.venue_ts_ms
    msg = m.TradeMsg(trade_id=e.trade_id, market_ticker=e.market, yes_price_dollars=format_price(e.yes_price),
                     no_price_dollars=format_price(PRICE_MAX - e.yes_price), count_fp=format_count(e.count),
                     taker_outcome_side=e.taker_side, taker_book_side="bid" if e.taker_side == "yes" else "ask",
                     taker_side=e.taker_side, ts_ms=ts, ts=None if ts is None else ts // 1000)
    return m.Trade(sid=sid, seq=seq, msg=msg)


def fill_event(b: m.FillMsg, where: str, *, legacy: bool) -> OrderFilled:
    """A private fill (WebSocket ``fill`` or a REST fills item) -> ``OrderFilled``."""
    market = b.market_ticker if b.market_ticker is not None else b.ticker
    if market is None:
        raise WireError(f"{where}.market_ticker: missing (and no ticker)")
    if b.book_side is not None:
        side = b.book_side
    elif b.outcome_side is not None:
        side = "bid" if b.outcome_side == "yes" else "ask"
    elif b.side is not None and b.action is not None:
        side = "bid" if (b.side == "yes") == (b.action == "buy") else "ask"
    else:
        raise WireError(f"{where}.book_side: missing (and no outcome_side, or side with action)")
    yes_price = pick(b.yes_price_dollars, f"{where}.yes_price_dollars", price, legacy, b.yes_price,
                     f"{where}.yes_price", cents)
    n = pick(b.count_fp, f"{where}.count_fp", count, legacy, b.count, f"{where}.count")
    if b.fee_cost is not None:
        fee = money(b.fee_cost, f"{where}.fee_cost")
    elif legacy:
        fee = 0
    else:
        raise _missing(f"{where}.fee_cost")
    if b.post_position_fp is not None:
        post: int | None = pick(b.post_position_fp, f"{where}.post_position_fp", signed_count, legacy,
                                b.post_position, f"{where}.post_position", signed_count)
    elif legacy and b.post_position is not None:
        post = signed_count(b.post_position, f"{where}.post_position")
    else:
        post = None
    return OrderFilled(trade_id=b.trade_id, order_id=b.order_id, client_order_id=b.client_order_id or "",
                       market=market, side=side, price=yes_price, count=n, fee=fee, is_taker=b.is_taker,
                       post_position=post, venue_ts_ms=venue_ms(b.ts_ms, b.ts, f"{where}.ts"))


def fill_msg(e: OrderFilled, *, rest: bool = False) -> m.FillMsg:
    """The wire fill of an ``OrderFilled`` (``rest``: named as a REST fills item, ``ticker``)."""
    return m.FillMsg(trade_id=e.trade_id, order_id=e.order_id, client_order_id=e.client_order_id or None,
                     market_ticker=None if rest else e.market, ticker=e.market if rest else None,
                     is_taker=e.is_taker, yes_price_dollars=format_price(e.price), count_fp=format_count(e.count),
                     fee_cost=format_money(e.fee),
                     post_position_fp=None if e.post_position is None else format_count(e.post_position),
                     outcome_side="yes" if e.side == "bid" else "no", book_side=e.side, ts_ms=e.venue_ts_ms)


# --- orders and positions -----------------------------------------------------------------------------
def order_report(b: m.UserOrderMsg, where: str, *, legacy: bool) -> OrderStatusReported:
    """A wire order (``user_order`` msg or REST orders item) -> the venue's report of it, as it is."""
    market = b.ticker if b.ticker is not None else b.market_ticker
    if market is None:
        raise WireError(f"{where}.ticker: missing (and no market_ticker)")
    if b.side in ("bid", "ask"):
        side = b.side
    elif b.action is not None:
        side = "bid" if (b.side == "yes") == (b.action == "buy") else "ask"
    else:
        raise WireError(f"{where}.action: missing (needed with side {b.side!r})")
    if b.yes_price_dollars is None and b.no_price_dollars is not None:
        yes_price = PRICE_MAX - price(b.no_price_dollars, f"{where}.no_price_dollars")
    else:
        yes_price = pick(b.yes_price_dollars, f"{where}.yes_price_dollars", price, legacy, b.yes_price,
                         f"{where}.yes_price", cents)
    filled = pick(b.fill_count_fp, f"{where}.fill_count_fp", count, legacy, b.fill_count, f"{where}.fill_count")
    remaining = pick(b.remaining_count_fp, f"{where}.remaining_count_fp", count, legacy, b.remaining_count,
                     f"{where}.remaining_count")
    initial: int | None = None
    if b.initial_count_fp is not None or (legacy and b.initial_count is not None):
        initial = pick(b.initial_count_fp, f"{where}.initial_count_fp", count, legacy, b.initial_count,
                       f"{where}.initial_count")
    if initial is not None and filled > initial:
        raise WireError(f"{where}.fill_count_fp: {format_count(filled)} exceeds the initial count {format_count(initial)}")
    return OrderStatusReported(client_order_id=b.client_order_id or "", order_id=b.order_id, market=market,
                               status=b.status, side=side, price=yes_price, fill_count=filled, remaining_count=remaining,
                               initial_count=initial, venue_ts_ms=venue_ms(b.ts_ms, b.ts, f"{where}.ts"))


def order_event(b: m.UserOrderMsg, where: str, *, legacy: bool) -> OrderAccepted | OrderCanceled | OrderStatusReported:
    """One ``user_order`` -> the one event it implies (see the module docstring)."""
    r = order_report(b, where, legacy=legacy)
    if r.status == "resting" and r.fill_count == 0:
        return OrderAccepted(client_order_id=r.client_order_id, order_id=r.order_id, market=r.market,
                             venue_ts_ms=r.venue_ts_ms)
    if r.status == "canceled":
        gone = r.remaining_count if r.initial_count is None else r.initial_count - r.fill_count
        return OrderCanceled(client_order_id=r.client_order_id, order_id=r.order_id, canceled_count=gone,
                             reason="venue", venue_ts_ms=r.venue_ts_ms)
    return r


def order_msg(e: OrderStatusReported) -> m.UserOrderMsg:
    """The wire order (``user_order`` msg, or a REST orders item) of an order's reported state."""
    return m.UserOrderMsg(order_id=e.order_id, client_order_id=e.client_order_id or None, ticker=e.market,
                          status=e.status, side=e.side, yes_price_dollars=format_price(e.price),
                          no_price_dollars=format_price(PRICE_MAX - e.price),
                          initial_count_fp=None if e.initial_count is None else format_count(e.initial_count),
                          fill_count_fp=format_count(e.fill_count), remaining_count_fp=format_count(e.remaining_count),
                          ts_ms=e.venue_ts_ms)


def position_event(b: m.MarketPositionMsg, where: str, *, legacy: bool) -> PositionReported:
    market = b.market_ticker if b.market_ticker is not None else b.ticker
    if market is None:
        raise WireError(f"{where}.market_ticker: missing (and no ticker)")
    pos = pick(b.position_fp, f"{where}.position_fp", signed_count, legacy, b.position, f"{where}.position",
               signed_count)
    if b.position_cost_dollars is not None:
        cost: int | None = money(b.position_cost_dollars, f"{where}.position_cost_dollars")
    elif b.market_exposure_dollars is not None:
        cost = money(b.market_exposure_dollars, f"{where}.market_exposure_dollars")
    else:
        cost = None
    pnl = None if b.realized_pnl_dollars is None else money(b.realized_pnl_dollars, f"{where}.realized_pnl_dollars")
    fees = None if b.fees_paid_dollars is None else money(b.fees_paid_dollars, f"{where}.fees_paid_dollars")
    return PositionReported(market=market, position=pos, cost=cost, realized_pnl=pnl, fees_paid=fees,
                            venue_ts_ms=venue_ms(b.ts_ms, b.ts, f"{where}.ts"))


def position_msg(e: PositionReported, *, rest: bool = False) -> m.MarketPositionMsg:
    """The wire position (``rest``: a REST positions item, named ``ticker`` / ``market_exposure_dollars``)."""
    return m.MarketPositionMsg(
        market_ticker=None if rest else e.market, ticker=e.market if rest else None,
        position_fp=format_count(e.position),
        position_cost_dollars=None if rest else _money(e.cost), market_exposure_dollars=_money(e.cost) if rest else None,
        realized_pnl_dollars=_money(e.realized_pnl), fees_paid_dollars=_money(e.fees_paid), ts_ms=e.venue_ts_ms)


# --- lifecycle ------------------------------------------------------------------------------------------
def lifecycle_event(f: m.MarketLifecycleV2, *, legacy: bool) -> MarketLifecycle | None:
    """The market's transition; None for ``price_level_structure_updated`` / ``metadata_updated``, which
    change no state the runtime tracks (their values are still checked)."""
    b = f.msg
    where = "market_lifecycle_v2.msg"
    result = b.result or None
    if result is not None and result not in _RESULTS:
        raise WireError(f"{where}.result: {result!r} is not one of {', '.join(sorted(_RESULTS))}")
    value: int | None = None
    raw = b.settlement_value
    int_cents = raw.__class__ is int
    if b.settlement_value_dollars is not None:
        what = f"{where}.settlement_value_dollars"
        value = price(b.settlement_value_dollars, what)
        if raw is not None:  # a transition-era twin: cents if an int, else dollars
            agree(value, b.settlement_value_dollars, what, raw, f"{where}.settlement_value", cents if int_cents else price)
    elif raw is not None:
        value = cents(raw, f"{where}.settlement_value") if legacy and int_cents else price(raw, f"{where}.settlement_value")
    close_ms = b.close_ts_ms if b.close_ts_ms is not None else None if b.close_ts is None else b.close_ts * 1000
    ts = venue_ms(b.ts_ms, b.ts, f"{where}.ts")
    if b.event_type not in m.MARKET_TRANSITIONS:
        return None
    return MarketLifecycle(market=b.market_ticker, kind=b.event_type, result=result,  # type: ignore[arg-type]
                           settlement_value=value, close_ts_ms=close_ms, venue_ts_ms=ts)


def event_lifecycle_event(f: m.EventLifecycle) -> EventLifecycle:
    """An ``event_lifecycle`` message -> ``EventLifecycle`` (``strike_date`` in Unix ms)."""
    b = f.msg
    where = "event_lifecycle.msg"
    strike = None if b.strike_date is None else ts_ms_of(b.strike_date, f"{where}.strike_date")
    subtitle = b.subtitle if b.subtitle is not None else b.sub_title or ""
    return EventLifecycle(event_ticker=b.event_ticker, series_ticker=b.series_ticker, title=b.title,
                          subtitle=subtitle, collateral_return_type=b.collateral_return_type,
                          strike_date_ms=strike, strike_period=b.strike_period,
                          venue_ts_ms=venue_ms(b.ts_ms, b.ts, f"{where}.ts"))


def event_lifecycle_frame(e: EventLifecycle, *, sid: int) -> m.EventLifecycle:
    """The frame of an ``EventLifecycle``, as Kalshi's example writes it (``strike_date`` in Unix seconds)."""
    msg = m.EventLifecycleMsg(event_ticker=e.event_ticker, series_ticker=e.series_ticker, title=e.title,
                              subtitle=e.subtitle, collateral_return_type=e.collateral_return_type,
                              strike_date=None if e.strike_date_ms is None else e.strike_date_ms // 1000,
                              strike_period=e.strike_period, ts_ms=e.venue_ts_ms)
    return m.EventLifecycle(sid=sid, msg=msg)


# --- ticker ---------------------------------------------------------------------------------------------
def check_ticker(f: m.Ticker) -> None:
    """Every value of a ``ticker`` message must be readable exactly (else a :class:`WireError` naming it),
    a transition-era legacy twin agreeing; nothing is kept (see :mod:`.codec` for why)."""
    b = f.msg
    where = "ticker.msg"
    for value, name, parse, old, old_name, parse_old in (
            (b.price_dollars, "price_dollars", price, b.price, "price", cents),
            (b.yes_bid_dollars, "yes_bid_dollars", price, b.yes_bid, "yes_bid", cents),
            (b.yes_ask_dollars, "yes_ask_dollars", price, b.yes_ask, "yes_ask", cents),
            (b.volume_fp, "volume_fp", count, b.volume, "volume", count),
            (b.open_interest_fp, "open_interest_fp", count, b.open_interest, "open_interest", count),
            (b.yes_bid_size_fp, "yes_bid_size_fp", count, None, "", count),
            (b.yes_ask_size_fp, "yes_ask_size_fp", count, None, "", count),
            (b.last_trade_size_fp, "last_trade_size_fp", count, None, "", count)):
        if value is not None:
            pick(value, f"{where}.{name}", parse, False, old, f"{where}.{old_name}", parse_old)
        elif old is not None:
            parse_old(old, f"{where}.{old_name}")
    venue_ms(b.ts_ms, b.ts, f"{where}.ts")


def ticker_frame(market: str, *, sid: int, last_price: int | None, yes_bid: int | None, yes_ask: int | None,
                 yes_bid_size: int, yes_ask_size: int, volume: int, ts_ms: int,
                 market_id: str | None = None) -> m.Ticker:
    """A ``ticker`` frame (the local exchange's): prices in 1/10,000 dollar, counts in 1/100 contract;
    ``ts`` in Unix seconds beside ``ts_ms``, as Kalshi sends it."""
    msg = m.TickerMsg(market_ticker=market, market_id=market_id, price_dollars=_dollars(last_price),
                      yes_bid_dollars=_dollars(yes_bid), yes_ask_dollars=_dollars(yes_ask),
                      yes_bid_size_fp=format_count(yes_bid_size), yes_ask_size_fp=format_count(yes_ask_size),
                      volume_fp=format_count(volume), ts_ms=ts_ms, ts=ts_ms // 1000)
    return m.Ticker(sid=sid, msg=msg)


def lifecycle_frame(e: MarketLifecycle, *, sid: int) -> m.MarketLifecycleV2:
    close_s = None if e.close_ts_ms is None else e.close_ts_ms // 1000
    msg = m.MarketLifecycleMsg(market_ticker=e.market, event_type=e.kind, result=e.result,
                               settlement_value=_dollars(e.settlement_value), close_ts=close_s,
                               close_ts_ms=e.close_ts_ms, ts_ms=e.venue_ts_ms)
    return m.MarketLifecycleV2(sid=sid, msg=msg)
