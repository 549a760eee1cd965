"""What each role of the multi-agent environment is paid: its own share of a trade's outcome, and, when it declines
to trade, what the same decision horizon would have paid.

**The reference trade.** Every share is measured against one plain trade: at the decision's event time ``t``,
in at the mid, held for the decision horizon ``H`` (``horizon_s``), out at the mid at ``t + H``, or a minute before
the market closes if that is sooner (never through the settlement: its coin flip is no one's call but the exit's,
which chooses to hold through it). Its PnL, :func:`reference`, is the market's move over the horizon in the called
direction, ``s x (mid(t + H) - mid(t)) x count`` (``s`` +1 YES, -1 NO), in micro-dollars. It pays no spread and no
fee: what getting in and out costs is the execution's, not the call's. The quotes come from the tape itself
(:class:`QuotePath`: the market's book as the tape draws it, which our orders never change), so the reward may
look ``H`` ahead; no observation ever does.

**A trade's PnL split** (:mod:`policies.attribution`'s split, with the horizon between the signal and the exit). A
trade (:class:`~policies.attribution.Trade`: from the fill that takes the position away from zero until it is
zero again, or the end) of ``q`` contracts on side ``s`` decided at ``t`` splits into four parts that add up to its
PnL exactly, in integer micro-dollars (:func:`split`):

* ``signal`` — the market's move over the horizon in the direction it called, at the reference size
  ``reference`` (one contract): the reference trade;
* ``entry`` — getting in against the mid at the decision, fees included: ``s x (mid(t) x q - entry cost) -
  entry fees``, scaled to the reference size (a passive order that fills earns the half spread, a crossing one
  pays it and the taker fee);
* ``exit`` — everything else the trade made beyond the move to ``t + H`` and the entry, scaled to the reference
  size: the timing (holding longer or shorter than ``H``, or through the settlement) and the exit's execution
  and fees;
* ``sizing`` — the rest: what the chosen size made of it, ``pnl - signal - entry - exit``, which is about
  ``(q - reference) x`` the trade's PnL per contract. Sizing up before a winner earns, before a loser costs.

The signal, entry and exit parts are per reference contract, so a role is judged on its call, not on the size
another role chose; the size is sizing's alone.

**Declining to trade** is judged against the horizon, so abstaining is not a free optimum where an edge was:

* a signal's ``hold`` is charged ``abstain x |move|``: the move it passed on, in whichever direction it went; a
  ``buy_*`` is paid the move in its direction at once (so a wrong buy is charged the move that went against it,
  symmetrically);
* a sizing of 0 (skip) is charged the reference trade of the signal's direction (``(0 - reference) x`` its PnL per
  contract: the same formula as a size);
* an entry's ``skip``, or a passive order that never fills, is charged the reference trade it passed on. A
  passive order thus pays for its adverse selection: it fills when the market comes to it and misses the moves
  that run away, and each miss is charged.

A decision that could not act (no touch to take) earns nothing. Rewards are in cents (micro-dollars / 10,000)
times the environment's ``reward_scale``.
"""

from __future__ import annotations

from bisect import bisect_right

import msgspec

from actors.book import OrderBook
from runtime.events import BookDelta, BookSnapshot, MarketLifecycle, SeqGapDetected

from .attribution import Trade
from .data import Tape

__all__ = ["CENT", "QuotePath", "RewardConfig", "Shares", "reference", "split"]

CENT = 10_000
"""micro-dollars per reward unit (a cent)"""
_NS = 1_000_000_000
_BEFORE_CLOSE = 60 * _NS


class RewardConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The reward's parameters (module docstring)."""

    horizon_s: int = 300
    """the decision horizon: how long the reference trade is held"""
    abstain: float = 0.5
    """the weight of the opportunity cost charged to a signal's ``hold``"""
    reference: int = 100
    """the reference size, 1/100 contract (one contract)"""

    def __post_init__(self) -> None:
        if self.horizon_s <= 0 or self.reference <= 0 or self.abstain < 0:
            raise ValueError(f"rewards: horizon_s and reference must be > 0, abstain >= 0; got {self}")


class QuotePath:
    """The tape's best bid and ask after each book update, and its settlement: the quotes the reference trades."""

    def __init__(self, tape: Tape) -> None:
        book = OrderBook(tape.market)
        self.times: list[int] = []
        self.quotes: list[tuple[int | None, int | None]] = []
        self.close_ns: int | None = None
        """the market's close time, if the tape says it"""
        self.settled_ns: int | None = None
        """when it settled, if it did"""
        for seq, (ts, event) in enumerate(tape.events, 1):
            kind = type(event)
            if kind is BookDelta or kind is BookSnapshot or kind is SeqGapDetected:
                book.handle(seq, ts, event)
                if book.last_update_seq == seq:
                    self.times.append(ts)
                    self.quotes.append((book.best_bid(), book.best_ask()))
            elif kind is MarketLifecycle:
                if event.close_ts_ms is not None and self.close_ns is None:  # type: ignore[union-attr]
                    self.close_ns = event.close_ts_ms * 1_000_000  # type: ignore[union-attr]
                if event.kind == "settled" and self.settled_ns is None:  # type: ignore[union-attr]
                    self.settled_ns = ts

    def horizon(self, ts: int, horizon_s: int) -> int:
        """When the reference trade decided at ``ts`` takes the touch back (module docstring)."""
        later = ts + horizon_s * _NS
        if self.close_ns is not None:
            later = min(later, self.close_ns - _BEFORE_CLOSE)
        elif self.settled_ns is not None:
            later = min(later, self.settled_ns - 1)
        return max(ts, later)

    def at(self, ts: int) -> tuple[int | None, int | None]:
        """The best bid and ask as of event time ``ts`` (the last update at or before it)."""
        i = bisect_right(self.times, ts)
        return self.quotes[i - 1] if i else (None, None)

    def mid2(self, ts: int) -> int | None:
        """Twice the mid as of ``ts`` (exact), or None without both sides."""
        bid, ask = self.at(ts)
        return None if bid is None or ask is None else bid + ask


def reference(path: QuotePath, ts: int, side: int, count: int, horizon_s: int) -> int | None:
    """The reference trade's PnL in micro-dollars (module docstring): ``side`` +1 buys YES, -1 buys NO, ``count``
    in 1/100 contract, decided at ``ts``; None when the book at ``ts`` has no mid. (No mid at the horizon: no
    move.)"""
    start = path.mid2(ts)
    if start is None:
        return None
    end = path.mid2(path.horizon(ts, horizon_s))
    return side * ((start if end is None else end) - start) * count // 2


class Shares(msgspec.Struct, frozen=True):
    """A trade's PnL by role, micro-dollars; the four add up to it exactly."""

    signal: int
    sizing: int
    entry: int
    exit: int

    def total(self) -> int:
        return self.signal + self.sizing + self.entry + self.exit


def split(trade: Trade, path: QuotePath, config: RewardConfig) -> Shares:
    """The trade's PnL split between the roles (module docstring)."""
    q, s, t = trade.quantity or trade.size, trade.side, trade.decided_ns
    ref = config.reference
    mid2 = path.mid2(t)
    if not q or mid2 is None:  # nothing to measure against: all of it is the execution's
        return Shares(0, 0, trade.pnl, 0)
    signal_q = reference(path, t, s, q, config.horizon_s) or 0
    entry_q = s * (mid2 * q - 2 * trade.entry_cost) // 2 - trade.entry_fees
    exit_q = trade.pnl - signal_q - entry_q
    signal = reference(path, t, s, ref, config.horizon_s) or 0
    entry, exit_ = entry_q * ref // q, exit_q * ref // q
    return Shares(signal=signal, sizing=trade.pnl - signal - entry - exit_, entry=entry, exit=exit_)
