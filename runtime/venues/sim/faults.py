"""Faults the local exchange can inject into a connection, so that clients are tested against what a real
venue does on a bad day.

A spec is ``key=value`` pairs separated by commas (``"gap=50,error25=400,drop=300,dup_fills=1,malformed=97,
slow_ms=200,seed=3"``); every value is a non-negative integer and 0 turns a fault off. The server's default
(``tape exchange serve --faults SPEC``) applies to every connection; a WebSocket connection may choose its
own with the URL query ``?faults=SPEC`` (it replaces the default), and a REST request with the header
``X-Tape-Faults: SPEC`` (only ``slow_ms`` applies to REST).

Per connection, deterministic (counters, and an RNG seeded with ``seed`` for the choice of malformed frame).
A *data frame* is one a subscription carries (snapshot, delta, trade, fill, order, position, lifecycle);
replies are not counted, nor the extra frames faults add.

======================  ================================================================================
``gap=N``               every Nth ``orderbook_delta`` / ``trade`` frame of a subscription is lost: its seq
                        number is used up and the frame never sent, so the client sees a gap and must
                        resync (``update_subscription`` with ``get_snapshot`` sends fresh snapshots).
                        Snapshots are never lost.
``error25=N``           after the Nth data frame of the connection, its subscription gets error 25
                        (terminal: buffer overflow) and sends nothing more; once per connection.
``drop=N``              after the Nth data frame, the connection is closed abruptly (no close frame).
``dup_fills=1``         every ``fill`` frame is sent twice.
``malformed=N``         every Nth data frame is followed by a malformed one: truncated JSON, or a frame
                        whose ``msg`` has a field of the wrong type (chosen by the seeded RNG).
``slow_ms=X``           each frame (WebSocket) or reply (REST) waits X ms before it is written; a client
                        that reads from a slowed connection soon overflows its send queue (error 25).
``seed=S``              seed of the RNG above.
======================  ================================================================================
"""

from __future__ import annotations

import random
from typing import Final, Literal

import msgspec

__all__ = ["FaultError", "FaultState", "Faults"]

_KEYS: Final = ("gap", "error25", "drop", "dup_fills", "malformed", "slow_ms", "seed")
_LIMIT: Final = 10**12  # no fault needs a larger number


class FaultError(ValueError):
    """A fault spec that cannot be read; the message names the key and the value."""


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    """Which faults a connection gets (see the module docstring); all off by default."""

    gap: int = 0
    error25: int = 0
    drop: int = 0
    dup_fills: bool = False
    malformed: int = 0
    slow_ms: int = 0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Read ``"key=value,key=value"``; an empty spec is no faults. Raises :class:`FaultError`."""
        values: dict[str, int] = {}
        for part in spec.split(","):
            item = part.strip()
            if not item:
                continue
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq:
                raise FaultError(f"{item!r} is not key=value (faults: {', '.join(_KEYS)})")
            if key not in _KEYS:
                raise FaultError(f"unknown fault {key!r} (faults: {', '.join(_KEYS)})")
            if key in values:
                raise FaultError(f"{key} is given twice")
            if not value.isascii() or not value.isdigit() or int(value) > _LIMIT:
                raise FaultError(f"{key}={value!r} is not a whole number from 0 to {_LIMIT}")
            number = int(value)
            if key == "dup_fills" and number > 1:
                raise FaultError(f"dup_fills={value!r} must be 0 or 1")
            values[key] = number
        return cls(**{k: bool(v) if k == "dup_fills" else v for k, v in values.items()})  # type: ignore[arg-type]

    @property
    def any(self) -> bool:
        """True if some fault is on."""
        return bool(self.gap or self.error25 or self.drop or self.dup_fills or self.malformed or self.slow_ms)

    def __str__(self) -> str:
        """The spec that :meth:`parse` reads back (only the faults that are on, and a non-zero seed)."""
        parts = [f"{k}={int(getattr(self, k))}" for k in _KEYS if getattr(self, k)]
        return ",".join(parts)


Action = Literal["error25", "drop"]


class FaultState:
    """The counters of one connection's faults; the server asks it, frame by frame, what to do."""

    __slots__ = ("_data", "_fired25", "_lost", "_rng", "faults")

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._data = 0  # data frames so far
        self._lost: dict[int, int] = {}  # sid -> seq'd frames counted for gap
        self._fired25 = False

    def lose(self, sid: int) -> bool:
        """Whether this delta/trade frame of ``sid`` is lost (``gap``); call once per such frame."""
        gap = self.faults.gap
        if not gap:
            return False
        n = self._lost.get(sid, 0) + 1
        self._lost[sid] = n
        return n % gap == 0

    def sent(self) -> Action | None:
        """Count one data frame written to the queue; what must follow it, if anything."""
        self._data = n = self._data + 1
        f = self.faults
        if f.drop and n == f.drop:
            return "drop"
        if f.error25 and n >= f.error25 and not self._fired25:
            self._fired25 = True
            return "error25"
        return None

    def copies(self, is_fill: bool) -> int:
        return 2 if is_fill and self.faults.dup_fills else 1

    def malformed_after(self, frame: bytes, kind: str, sid: int) -> bytes | None:
        """The malformed frame to send after this data frame, if it is every ``malformed``-th."""
        every = self.faults.malformed
        if not every or self._data % every:
            return None
        if self._rng.random() < 0.5:
            return frame[: max(1, len(frame) // 2)]  # truncated JSON
        return b'{"type":"%s","sid":%d,"msg":{"market_ticker":12345,"market_id":[]}}' % (kind.encode(), sid)
