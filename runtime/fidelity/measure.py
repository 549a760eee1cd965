"""A fidelity session's log read into outcomes, paper and true side by side.

:func:`measure` folds one log's records (a session with ``shadow`` on, :mod:`.session`) into an :class:`Outcome` per
order of ours and the session's :class:`SessionMeasure`. The *true* side is the venue's: its ``OrderFilled`` inputs
(deduplicated by trade id) and its ``QueuePositionReported``; the *paper* side is the shadow execution's
``ShadowFilled`` and ``ShadowQueued`` — or, for :mod:`.calibrate`, the fills a re-fold under other settings made
(``paper=``). Everything is exact integers until the figures are formed.

An order's **kind** is what it asked for: ``ioc``, ``fok``, ``post_only``, or a plain ``gtc`` that was ``marketable``
(it crossed the book when decided) or ``passive``. The **passive fill rate** is over the orders that could only fill
as makers (``post_only`` and ``passive``): filled contracts over ordered contracts. **Time to first fill** is from the
intent to the order's first fill (seconds of event time). **Queue position error** is the paper queue ahead minus
the true one, in contracts, at each seq the venue reported it while the paper copy rested too. **Slippage** is the
average fill price against the mid when the order was decided, per contract, signed so that positive costs us
(1/10,000 dollar). **Adverse selection** is the mid's move over :data:`MARKOUT_S` after each fill, against the
fill's side, per contract (positive: the market moved against us after we traded). **PnL** is what the fills
make marked at each market's final mid, net of fees (micro-dollars), with its curve over the session
and per market (not per order kind: a position mixes the kinds that built it).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from actors.book import OrderBook
from actors.positions import Positions
from runtime.events import (
    BookDelta,
    BookSnapshot,
    MarketLifecycle,
    OrderFilled,
    OrderIntent,
    QueuePositionReported,
    Record,
    ShadowFilled,
    ShadowQueued,
)

from ..topology import SessionSpec, SpecMissingError, spec_from_log
from .session import FidelityError

__all__ = ["KINDS", "MARKOUT_S", "Fill", "Outcome", "SessionMeasure", "measure"]

MARKOUT_S = 5.0
KINDS = ("passive", "post_only", "marketable", "ioc", "fok")
PASSIVE_KINDS = ("passive", "post_only")
_NS = 1_000_000_000
_CURVE_STEP_NS = _NS  # the PnL curve's sampling step (event time)


@dataclass(frozen=True, slots=True)
class Fill:
    ts_ns: int
    price: int
    count: int
    fee: int
    is_taker: bool


@dataclass(slots=True)
class Outcome:
    """One of our orders: what it asked for, and what each side made of it."""

    client_order_id: str
    market: str
    side: str
    price: int
    count: int
    kind: str
    ts_ns: int
    mid2: int | None  # twice the mid when it was decided (None: a side of the book was empty)
    true: list[Fill] = field(default_factory=list)
    paper: list[Fill] = field(default_factory=list)
    queue: list[tuple[int, int]] = field(default_factory=list)  # (paper ahead, true ahead), both resting
    session: str = ""  # the log it is from

    def filled(self, side: str) -> int:
        return sum(f.count for f in (self.true if side == "true" else self.paper))

    def first_fill_s(self, side: str) -> float | None:
        fills = self.true if side == "true" else self.paper
        return None if not fills else (min(f.ts_ns for f in fills) - self.ts_ns) / _NS


@dataclass(slots=True)
class SessionMeasure:
    """One session: its orders' outcomes, its mids over time, and its PnL either way."""

    log: str
    spec: SessionSpec
    outcomes: list[Outcome]
    mids: dict[str, tuple[list[int], list[int]]]  # market -> (times, twice the mid), in time order
    pnl_true: int
    pnl_paper: int
    curve: list[tuple[float, int, int]]  # (seconds since the start, true PnL, paper PnL)
    pnl_markets: dict[str, tuple[int, int]]  # market -> (true PnL, paper PnL)

    def mid2_at(self, market: str, ts_ns: int) -> int | None:
        times, mids = self.mids.get(market, ((), ()))
        i = bisect.bisect_right(times, ts_ns) - 1
        return None if i < 0 else mids[i]


def measure(records: Sequence[Record], *, log: str = "", paper: Sequence[ShadowFilled] | None = None,
            paper_queue: dict[int, tuple[int, int]] | None = None) -> SessionMeasure:
    """Fold a fidelity session's records (module docstring). ``paper`` replaces the log's shadow fills and
    ``paper_queue`` its shadow queue positions (``cause seq of the report -> (ahead, rested)``): a re-fold's (each
    fill is folded right after the record that caused it).
    Raises :class:`FidelityError` for a log that is not a fidelity session."""
    try:
        spec = spec_from_log(records)
    except SpecMissingError as exc:
        raise FidelityError(f"{log or 'the log'} is not a fidelity session ({exc}: recorded market data, say, where "
                            "nobody matched our orders for real); run `tape fidelity` to record one") from None
    if spec.execution != "venue" or not spec.shadow:
        why = ("a paper session: the paper matcher filled its orders, nobody matched them for real"
               if spec.execution == "paper" else "its orders went to the venue without the shadow execution beside them")
        raise FidelityError(f"{log or 'the log'} is not a fidelity session ({why}); run `tape fidelity` to record one")
    mine = spec.prefix + "-"
    books = {m: OrderBook(m) for m in spec.markets}
    mids: dict[str, tuple[list[int], list[int]]] = {m: ([], []) for m in spec.markets}
    outcomes: dict[str, Outcome] = {}
    true_pos, paper_pos = Positions(), Positions()
    seen_trades: set[str] = set()
    reports: dict[int, tuple[str, int]] = {}  # seq of a QueuePositionReported -> (client order id, true ahead)
    use_log_paper = paper is None
    caused: dict[int, list[ShadowFilled]] = {}
    for f in paper or ():
        caused.setdefault(f.cause_seq, []).append(f)
    curve: list[tuple[float, int, int]] = []
    start = records[0].ts_ns if records else 0
    next_sample = start
    made = 0  # paper fills folded (their trade ids)

    def value(pos: Positions) -> int:
        return sum(pos.value2(m, books[m].mid2()) for m in spec.markets) // 2

    def paper_fill(ts: int, f: ShadowFilled, seq: int) -> None:
        nonlocal made
        o = outcomes.get(f.client_order_id)
        if o is not None:
            o.paper.append(Fill(ts, f.price, f.count, f.fee, f.is_taker))
        made += 1
        paper_pos.handle(seq, ts, OrderFilled(trade_id=f"shadow-{made}",
                                              order_id="", client_order_id=f.client_order_id, market=f.market,
                                              side=f.side, price=f.price, count=f.count, fee=f.fee,
                                              is_taker=f.is_taker, cause_seq=seq))

    for r in records:
        event, kind = r.event, type(r.event)
        while r.ts_ns >= next_sample:
            curve.append(((next_sample - start) / _NS, value(true_pos), value(paper_pos)))
            next_sample += _CURVE_STEP_NS
        if kind is BookDelta or kind is BookSnapshot:
            book = books.get(event.market)  # type: ignore[union-attr]
            if book is not None:
                book.handle(r.seq, r.ts_ns, event)
                mid = book.mid2()
                if mid is not None:
                    times, values = mids[event.market]  # type: ignore[union-attr]
                    if not values or values[-1] != mid:
                        times.append(r.ts_ns)
                        values.append(mid)
        elif kind is OrderIntent and event.client_order_id.startswith(mine):  # type: ignore[union-attr]
            o = outcomes[event.client_order_id] = _outcome(event, r.ts_ns, books[event.market])  # type: ignore[union-attr]
            o.session = log
        elif kind is OrderFilled and event.cause_seq is None and event.client_order_id.startswith(mine):  # type: ignore[union-attr]
            if event.trade_id in seen_trades:  # type: ignore[union-attr]
                continue
            seen_trades.add(event.trade_id)  # type: ignore[union-attr]
            o = outcomes.get(event.client_order_id)  # type: ignore[union-attr]
            if o is not None:
                o.true.append(Fill(r.ts_ns, event.price, event.count, event.fee, event.is_taker))  # type: ignore[union-attr]
            true_pos.handle(r.seq, r.ts_ns, event)
        elif kind is ShadowFilled and use_log_paper:
            paper_fill(r.ts_ns, event, r.seq)  # type: ignore[arg-type]
        elif kind is QueuePositionReported:
            reports[r.seq] = (event.client_order_id, event.ahead)  # type: ignore[union-attr]
            if paper_queue is not None:
                _pair(outcomes, event.client_order_id, paper_queue.get(r.seq), event.ahead)  # type: ignore[union-attr]
        elif kind is ShadowQueued and paper_queue is None and event.cause_seq in reports:  # type: ignore[union-attr]
            coid, true_ahead = reports[event.cause_seq]  # type: ignore[union-attr]
            _pair(outcomes, coid, (event.ahead, event.rested), true_ahead)  # type: ignore[union-attr]
        elif kind is MarketLifecycle:
            true_pos.handle(r.seq, r.ts_ns, event)
            paper_pos.handle(r.seq, r.ts_ns, event)
        for f in caused.get(r.seq, ()):
            paper_fill(r.ts_ns, f, r.seq)
    end = records[-1].ts_ns if records else 0
    pnl_true, pnl_paper = value(true_pos), value(paper_pos)
    curve.append(((end - start) / _NS, pnl_true, pnl_paper))
    by_market = {m: (true_pos.value2(m, books[m].mid2()) // 2, paper_pos.value2(m, books[m].mid2()) // 2)
                 for m in spec.markets}
    return SessionMeasure(log=log, spec=spec, outcomes=list(outcomes.values()), mids=mids, pnl_true=pnl_true,
                          pnl_paper=pnl_paper, curve=curve, pnl_markets=by_market)


def _pair(outcomes: dict[str, Outcome], coid: str, paper: tuple[int, int] | None, true_ahead: int) -> None:
    o = outcomes.get(coid)
    if o is not None and paper is not None and paper[1] > 0:  # both resting
        o.queue.append((paper[0], true_ahead))


def _outcome(intent: OrderIntent, ts_ns: int, book: OrderBook) -> Outcome:
    if intent.tif != "gtc":
        kind = intent.tif
    elif intent.post_only:
        kind = "post_only"
    else:
        best = book.best_ask() if intent.side == "bid" else book.best_bid()
        crosses = best is not None and (best <= intent.price if intent.side == "bid" else best >= intent.price)
        kind = "marketable" if crosses else "passive"
    return Outcome(intent.client_order_id, intent.market, intent.side, intent.price, intent.count, kind, ts_ns,
                   book.mid2())

