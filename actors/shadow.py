"""Shadow execution: the paper matcher beside live orders, its fills kept out of the ledger.

In a session whose orders go to a venue that matches them for real (``SessionSpec.execution == "venue"`` with
``shadow`` on: the local exchange, true price-time priority), this machine folds what the paper execution node
of a paper session would fold — the market data, the timers, our order intents, the cash pool's verdicts, our
cancels — through a :class:`~.matcher.PaperMatcher` with the session's paper settings, and says what the paper
matcher *would* have done with each of our orders:

* ``ShadowFilled`` for each paper fill (price, count, fee, taker or maker), and
* ``ShadowQueued`` when the paper copy of an order comes to rest (its queue position: the size ahead of it), and
  again, caused by it, at each ``QueuePositionReported`` input (the venue's true queue position of the live order,
  polled by the driver): the paper copy's queue position at that very seq — ``ahead`` and ``rested`` 0 when the
  paper copy is not resting (filled, or not yet at the simulated venue) — so the two stand side by side.

No other machine receives these: no cash, position or policy moves on them, so the session trades on the venue's
fills alone and the paper machine's guesses stand beside them in the same log, for ``tape fidelity`` to compare.

The book the matcher folds is the venue's, which shows our live orders too; the matcher runs with ``own_prefix``
(our client order ids) so that our own footprint never counts as queue or as liquidity to take (see
:mod:`.matcher`), and it folds the venue's maker fills of our orders (``OrderFilled`` inputs) to keep that
footprint. Everything else the paper matcher derives (accepted, rejected, canceled, expired) stays inside.

Deterministic as the matcher is; its snapshot is the matcher's.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.events import Event, OrderFilled, QueuePositionReported, ShadowFilled, ShadowQueued

from .machine import NOTHING
from .matcher import FeeFn, MatcherSnapshot, PaperMatcher, QueueModel

__all__ = ["ShadowExecution"]


class ShadowExecution:
    """The paper matcher's verdicts on our live orders (module docstring)."""

    def __init__(self, fee: FeeFn, *, prefix: str, latency_ns: int = 0, queue_model: QueueModel = "conservative",
                 cancel_ahead_pct: int = 0, pacing: str | None = None, matcher: PaperMatcher | None = None) -> None:
        self.matcher = matcher or PaperMatcher(fee, latency_ns=latency_ns, queue_model=queue_model,
                                               cancel_ahead_pct=cancel_ahead_pct, pacing=pacing, own_prefix=prefix + "-")

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        if type(event) is OrderFilled and event.cause_seq is not None:
            return NOTHING  # (a paper session's own fills: never the venue's)
        if type(event) is QueuePositionReported:
            order = self.matcher.orders.get(event.client_order_id)
            resting = order is not None and order.live and order.remaining > 0
            return (ShadowQueued(client_order_id=event.client_order_id, market=event.market,
                                 ahead=order.ahead if resting else 0,  # type: ignore[union-attr]
                                 rested=order.remaining if resting else 0, cause_seq=seq),)  # type: ignore[union-attr]
        out = self.matcher.handle(seq, ts_ns, event)
        rested = self.matcher.rested
        if not out and not rested:
            return NOTHING
        shadow: list[Event] = [ShadowQueued(client_order_id=coid, market=market, ahead=ahead, rested=rested, cause_seq=seq)
                               for coid, market, ahead, rested in rested]
        for e in out:
            if type(e) is OrderFilled:
                shadow.append(ShadowFilled(client_order_id=e.client_order_id, market=e.market, side=e.side,
                                           price=e.price, count=e.count, fee=e.fee, is_taker=e.is_taker, cause_seq=seq))
        return shadow or NOTHING

    def snapshot(self) -> MatcherSnapshot:
        return self.matcher.snapshot()

    @classmethod
    def restore(cls, snap: MatcherSnapshot, fee: FeeFn, *, prefix: str, latency_ns: int = 0,
                queue_model: QueueModel = "conservative", cancel_ahead_pct: int = 0,
                pacing: str | None = None) -> ShadowExecution:
        return cls(fee, prefix=prefix, matcher=PaperMatcher.restore(snap, fee, latency_ns=latency_ns,
                                                                    queue_model=queue_model, own_prefix=prefix + "-",
                                                                    cancel_ahead_pct=cancel_ahead_pct, pacing=pacing))
