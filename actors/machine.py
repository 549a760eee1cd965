"""The shape every state machine of the market core has (DESIGN §2, STYLE habit 2).

A state machine is folded over the log in seq order: ``handle(seq, ts_ns, event)`` updates its state
and returns the derived events that handling produced (each carrying ``cause_seq=seq``), or
:data:`NOTHING`. It never reads the clock, never draws unseeded randomness, never does I/O, and never
raises for bad input: a rejection is an event. An exception means a bug.

For speed (training folds these millions of times) state is updated in place; ``snapshot()`` returns
the whole state as a msgspec Struct and ``restore(snapshot)`` rebuilds an equal machine, so a restarted
actor resumes from snapshot + the log's tail, and a test can round-trip it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from runtime.events import Event

NOTHING: tuple[Event, ...] = ()


class StateMachine(Protocol):
    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        """Apply one event of the log; return what it caused (``NOTHING`` if nothing)."""
        ...

    def snapshot(self) -> Any:
        """The whole state, as a msgspec Struct (msgpack-encodable)."""
        ...
