"""Which fills have been applied: the bounded memory of trade ids that every machine folding fills keeps.

A venue may deliver a fill more than once (Kalshi's fill channel, then REST reconciliation after a reconnect, or
a restarted session's first read), and a fill must be applied exactly once. Remembering every trade id for the
life of a session grows without end; :class:`FillWindow` remembers only what a redelivery can still need, and
*never* accepts a duplicate:

* **Generations.** Trade ids are kept in a current generation and the one before it. When the current one holds
  :data:`GENERATION` ids it becomes the older one and the older one is forgotten. So an id is remembered for at
  least ``GENERATION`` fills after its own, and the memory never holds more than ``2 × GENERATION`` ids. It is
  counted in fills, not time: an outage adds no fills, so however long the venue is away, the fills it reconciles
  afterwards meet the ids of the fills before it.
* **What is forgotten is older than a horizon.** Each generation keeps the latest venue time (``venue_ts_ms``) of
  its fills; forgetting one raises the *horizon* to it. A fill whose trade id is not remembered but whose venue time
  is before ``horizon + PRECISION_MS`` is refused as **stale**: it may be a copy of a forgotten fill (the same
  trade has the same venue time, give or take the ``PRECISION_MS`` between a time in seconds and one in
  milliseconds). A genuine fill is refused only if it reaches us after a fill the venue made no earlier than a
  second after it *and* ``GENERATION`` fills more — which the venue's delivery (its fill channel in real time,
  REST reconciliation from the last fill less a minute) never comes near.
* **Fills without a venue time.** A fill the paper matcher derived (``cause_seq`` set) is made once and logged
  once, so it is forgotten with its generation; a venue's fill without a venue time cannot be checked against
  the horizon, so it is kept for good (Kalshi stamps every fill: ``ts`` on the fill channel, ``created_time``
  over REST).

The window is a pure function of the fills folded, in log order (no clock): a replay forgets exactly what the
session forgot. :meth:`FillWindow.snapshot_parts` gives the current generation as the machines' ``seen_trades``
(what they stored before the window existed) and the rest as a :class:`FillWindowSnapshot`, ``None`` while there
is nothing else — so a paper session with fewer than ``GENERATION`` fills snapshots byte for byte as it did. A
snapshot from before the window (``seen_trades`` alone) does not say when its venue fills were made, so they are
kept for good, as they were; its paper matcher's fills (``paper-…``) stay in the current generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Final

import msgspec

from runtime.events import OrderFilled

__all__ = ["GENERATION", "PAPER_TRADE", "PRECISION_MS", "FillWindow", "FillWindowSnapshot", "Verdict"]

GENERATION: Final = 4_096
"""trade ids per generation: an id is remembered for at least this many fills after it"""
PRECISION_MS: Final = 1_000
"""how far two copies of one fill's venue time may differ (``ts`` in seconds against ``created_time`` in ms)"""

PAPER_TRADE: Final = "paper-"
"""how the paper matcher's trade ids begin (``paper-<seq>-<n>``, :mod:`actors.matcher`)"""


class Verdict(Enum):
    NEW = "new"  # apply it
    SEEN = "seen"  # its trade id was applied: a duplicate
    STALE = "stale"  # not remembered, but older than the horizon: it may be a forgotten one, so it is refused


class FillWindowSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    """A window's state beyond its current generation (the machines' ``seen_trades``)."""

    older: tuple[str, ...] = ()  # sorted
    kept: tuple[str, ...] = ()  # sorted: venue fills without a venue time, never forgotten
    current_ms: int | None = None  # the latest venue time in the current generation
    older_ms: int | None = None  # and in the older one
    horizon_ms: int | None = None  # the latest venue time of any fill forgotten


class FillWindow:
    """The trade ids a machine has applied, bounded (module docstring)."""

    __slots__ = ("_current", "_kept", "_older", "current_ms", "generation", "horizon_ms", "older_ms")

    def __init__(self, generation: int = GENERATION) -> None:
        if generation < 1:
            raise ValueError(f"a generation holds at least one trade id, got {generation}")
        self.generation = generation
        self._current: set[str] = set()
        self._older: set[str] = set()
        self._kept: set[str] = set()
        self.current_ms: int | None = None
        self.older_ms: int | None = None
        self.horizon_ms: int | None = None

    def __len__(self) -> int:
        """How many trade ids are remembered."""
        return len(self._current) + len(self._older) + len(self._kept)

    def __contains__(self, trade_id: str) -> bool:
        return trade_id in self._current or trade_id in self._older or trade_id in self._kept

    def check(self, fill: OrderFilled) -> Verdict:
        """What ``fill`` is, without remembering it."""
        if fill.trade_id in self:
            return Verdict.SEEN
        ts = fill.venue_ts_ms
        if ts is not None and self.horizon_ms is not None and ts < self.horizon_ms + PRECISION_MS:
            return Verdict.STALE
        return Verdict.NEW

    def admit(self, fill: OrderFilled) -> Verdict:
        """What ``fill`` is; a new one is remembered (and may close the current generation)."""
        verdict = self.check(fill)
        if verdict is Verdict.NEW:
            self.remember(fill)
        return verdict

    def remember(self, fill: OrderFilled) -> None:
        """Remember ``fill`` as applied (:meth:`admit` does, for a new one)."""
        ts = fill.venue_ts_ms
        if ts is None and fill.cause_seq is None:
            self._kept.add(fill.trade_id)
            return
        self._current.add(fill.trade_id)
        if ts is not None and (self.current_ms is None or ts > self.current_ms):
            self.current_ms = ts
        if len(self._current) >= self.generation:
            if self.older_ms is not None and (self.horizon_ms is None or self.older_ms > self.horizon_ms):
                self.horizon_ms = self.older_ms
            self._older, self._current = self._current, set()
            self.older_ms, self.current_ms = self.current_ms, None

    # --- snapshots ------------------------------------------------------------------------------------
    def snapshot_parts(self) -> tuple[tuple[str, ...], FillWindowSnapshot | None]:
        """``(the current generation, sorted; the rest, or None when there is nothing else)``."""
        rest = FillWindowSnapshot(older=tuple(sorted(self._older)), kept=tuple(sorted(self._kept)),
                                  current_ms=self.current_ms, older_ms=self.older_ms, horizon_ms=self.horizon_ms)
        return tuple(sorted(self._current)), (None if rest == _EMPTY else rest)

    @classmethod
    def restore(cls, current: Iterable[str], rest: FillWindowSnapshot | None = None,
                generation: int = GENERATION) -> FillWindow:
        """The window whose :meth:`snapshot_parts` were ``(current, rest)``."""
        window = cls(generation)
        if rest is None:  # a snapshot from before the window: its venue fills' times are not known
            current = list(current)
            window._current = {t for t in current if t.startswith(PAPER_TRADE)}
            window._kept = {t for t in current if not t.startswith(PAPER_TRADE)}
        else:
            window._current = set(current)
            window._older, window._kept = set(rest.older), set(rest.kept)
            window.current_ms, window.older_ms, window.horizon_ms = rest.current_ms, rest.older_ms, rest.horizon_ms
        return window


_EMPTY: Final = FillWindowSnapshot()
