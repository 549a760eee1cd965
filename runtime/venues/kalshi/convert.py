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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, get_args

from runtime.events import (
    BookDelta,
    BookSnapshot,
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


def pick(
    value: object,
    what: str,
    parse: Callable[[object, str], int],
    legacy: bool,
    legacy_value: object = None,
    legacy_what: str = "",
    parse_legacy: Callable[[object, str], int] = count,
) -> int:
    """The current field if present, else its legacy twin when ``legacy``; else a :class:`WireError`."""
    if value is not None:
        return parse(value, what)
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
    return (_levels(yes_fp or (), f"{where}.{names[0]}", False, price),
            _levels(no_fp or (), f"{where}.{names[1]}", use_yes_price, price))


def snapshot_event(f: m.OrderbookSnapshot, *, legacy: bool, use_yes_price: bool) -> BookSnapshot:
    b = f.msg
    if b.yes_dollars_fp is not None or b.no_dollars_fp is not None:
        yes_fp, no_fp, names = b.yes_dollars_fp, b.no_dollars_fp, ("yes_dollars_fp", "no_dollars_fp")
    else:
        yes_fp, no_fp, names = b.yes_dollars, b.no_dollars, ("yes_dollars", "no_dollars")
    yes, no = snapshot_levels(yes_fp, no_fp, b.yes, b.no, "orderbook_snapshot.msg", names, legacy=legacy,
                              use_yes_price=use_yes_price)
    return BookSnapshot(market=b.market_ticker, yes_bids=yes, no_bids=no, sid=f.sid, venue_seq=f.seq,
                        venue_ts_ms=b.ts_ms)


def snapshot_frame(e: BookSnapshot, *, sid: int, seq: int | None, use_yes_price: bool,
                   market_id: str | None = None) -> m.OrderbookSnapshot:
    msg = m.OrderbookSnapshotMsg(market_ticker=e.market, market_id=market_id, yes_dollars_fp=_pairs(e.yes_bids, False),
                                 no_dollars_fp=_pairs(e.no_bids, use_yes_price), ts_ms=e.venue_ts_ms)
    return m.OrderbookSnapshot(sid=sid, seq=seq, msg=msg)


def delta_event(f: m.OrderbookDelta, *, legacy: bool, use_yes_price: bool) -> BookDelta:
    b = f.msg  # the hot path: the field paths are constants, the common case has no call to pick()
    p, d = b.price_dollars, b.delta_fp
    units = price(p, "orderbook_delta.msg.price_dollars") if p is not None else pick(
        p, "orderbook_delta.msg.price_dollars", price, legacy, b.price, "orderbook_delta.msg.price", cents)
    if use_yes_price and b.side == "no":
        units = PRICE_MAX - units
    delta = signed_count(d, "orderbook_delta.msg.delta_fp") if d is not None else pick(
        d, "orderbook_delta.msg.delta_fp", signed_count, legacy, b.delta, "orderbook_delta.msg.delta", signed_count)
    return BookDelta(market=b.market_ticker, side=b.side, price=units, delta=delta, sid=f.sid, venue_seq=f.seq,
                     client_order_id=b.client_order_id, venue_ts_ms=b.ts_ms)


def delta_frame(e: BookDelta, *, sid: int, seq: int | None, use_yes_price: bool,
                market_id: str | None = None) -> m.OrderbookDelta:
    units = PRICE_MAX - e.price if use_yes_price and e.side == "no" else e.price
    msg = m.OrderbookDeltaMsg(market_ticker=e.market, market_id=market_id, price_dollars=format_price(units),
                              delta_fp=format_count(e.delta), side=e.side, client_order_id=e.client_order_id,
                              ts_ms=e.venue_ts_ms)
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
        yes_price = PRICE_MAX - price(b.no_price_dollars, f"{where}.no_price_dollars")
    else:
        yes_price = pick(b.yes_price_dollars, f"{where}.yes_price_dollars", price, legacy, b.yes_price,
                         f"{where}.yes_price", cents)
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
                       sid=f.sid, venue_seq=f.seq, venue_ts_ms=b.ts_ms)


def trade_frame(e: PublicTrade, *, sid: int, seq: int | None) -> m.Trade:
    msg = m.TradeMsg(trade_id=e.trade_id, market_ticker=e.market, yes_price_dollars=format_price(e.yes_price),
                     no_price_dollars=format_price(PRICE_MAX - e.yes_price), count_fp=format_count(e.count),
                     taker_outcome_side=e.taker_side, taker_book_side="bid" if e.taker_side == "yes" else "ask",
                     taker_side=e.taker_side, ts_ms=e.venue_ts_ms)
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
        post: int | None = signed_count(b.post_position_fp, f"{where}.post_position_fp")
    elif legacy and b.post_position is not None:
        post = signed_count(b.post_position, f"{where}.post_position")
    else:
        post = None
    return OrderFilled(trade_id=b.trade_id, order_id=b.order_id, client_order_id=b.client_order_id or "",
                       market=market, side=side, price=yes_price, count=n, fee=fee, is_taker=b.is_taker,
                       post_position=post, venue_ts_ms=b.ts_ms)


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
                               initial_count=initial, venue_ts_ms=b.ts_ms)


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
                            venue_ts_ms=b.ts_ms)


def position_msg(e: PositionReported, *, rest: bool = False) -> m.MarketPositionMsg:
    """The wire position (``rest``: a REST positions item, named ``ticker`` / ``market_exposure_dollars``)."""
    return m.MarketPositionMsg(
        market_ticker=None if rest else e.market, ticker=e.market if rest else None,
        position_fp=format_count(e.position),
        position_cost_dollars=None if rest else _money(e.cost), market_exposure_dollars=_money(e.cost) if rest else None,
        realized_pnl_dollars=_money(e.realized_pnl), fees_paid_dollars=_money(e.fees_paid), ts_ms=e.venue_ts_ms)


# --- lifecycle ------------------------------------------------------------------------------------------
def lifecycle_event(f: m.MarketLifecycleV2, *, legacy: bool) -> MarketLifecycle:
    b = f.msg
    where = "market_lifecycle_v2.msg"
    result = b.result or None
    if result is not None and result not in _RESULTS:
        raise WireError(f"{where}.result: {result!r} is not one of {', '.join(sorted(_RESULTS))}")
    value: int | None = None
    if b.settlement_value_dollars is not None:
        value = price(b.settlement_value_dollars, f"{where}.settlement_value_dollars")
    elif b.settlement_value is not None:
        raw = b.settlement_value
        legacy_cents = legacy and isinstance(raw, int) and not isinstance(raw, bool)
        value = cents(raw, f"{where}.settlement_value") if legacy_cents else price(raw, f"{where}.settlement_value")
    close_ms = b.close_ts_ms if b.close_ts_ms is not None else None if b.close_ts is None else b.close_ts * 1000
    return MarketLifecycle(market=b.market_ticker, kind=b.event_type, result=result,  # type: ignore[arg-type]
                           settlement_value=value, close_ts_ms=close_ms, venue_ts_ms=b.ts_ms)


def lifecycle_frame(e: MarketLifecycle, *, sid: int) -> m.MarketLifecycleV2:
    close_s = None if e.close_ts_ms is None else e.close_ts_ms // 1000
    msg = m.MarketLifecycleMsg(market_ticker=e.market, event_type=e.kind, result=e.result,
                               settlement_value=_dollars(e.settlement_value), close_ts=close_s,
                               close_ts_ms=e.close_ts_ms, ts_ms=e.venue_ts_ms)
    return m.MarketLifecycleV2(sid=sid, msg=msg)
