"""Replay a session's log through its topology, in-process, and check every derived event (DESIGN §2.3).

:func:`verify` rebuilds the session's :class:`~runtime.topology.SessionSpec` from its first two records,
builds the topology's machines in this process (no Ray), and walks the log once, in seq order, exactly as
the sequencer's rounds wrote it (:mod:`runtime.sequencer`):

* every record is handled by the machines it routes to, and what they derive is collected in round order;
* a run of inputs ends at the first derived record; from there the log must hold, position by position,
  the derived events the replay collected from that run (round 1), then those round 1 derived (round 2),
  and so on until a round derives nothing; then inputs again.

Comparison is msgspec equality of events (``ts_ns`` follows from the cause). The first divergence is
reported as ``(seq, kind, expected, got)``:

* ``differs`` — the log holds another derived event where the replay expected ``expected``;
* ``missing`` — the replay expected ``expected`` here and the log lacks it (it holds the event after it,
  an input, or ends);
* ``unexpected`` — the log holds a derived event ``got`` that the replay did not produce (the record
  after it is the one expected, or no round was due at all).

:func:`rebuild` folds the log (or a prefix) without checking and returns every node's final snapshot, for
``tape replay run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from runtime.events import Event, Record
from runtime.log import EventLog
from runtime.sequencer import InProcessRunner
from runtime.topology import SessionSpec, spec_from_log, topology

__all__ = ["Divergence", "VerifyReport", "rebuild", "verify"]

DivergenceKind = Literal["differs", "missing", "unexpected"]


class Divergence(msgspec.Struct, frozen=True):
    """Where the log first departs from its replay."""

    seq: int
    kind: DivergenceKind
    expected: Event | None
    got: Event | None

    def __str__(self) -> str:
        if self.kind == "differs":
            return f"seq {self.seq}: the log holds {self.got!r}, the replay derives {self.expected!r}"
        if self.kind == "missing":
            found = "the log ends" if self.got is None else f"the log holds {self.got!r}"
            return f"seq {self.seq}: missing {self.expected!r} (the replay derives it here; {found})"
        return f"seq {self.seq}: unexpected {self.got!r} (the replay derives nothing in its place)"


class VerifyReport(msgspec.Struct, kw_only=True):
    """What a replay found: counts, speed, and the first divergence (None if the log replays exactly)."""

    location: str
    spec: SessionSpec
    records: int = 0
    inputs: int = 0
    derived: dict[str, int] = {}
    seconds: float = 0.0
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    @property
    def rate(self) -> float:
        """Records replayed per second."""
        return self.records / max(self.seconds, 1e-9)


async def _spec(log: EventLog) -> SessionSpec:
    head: list[Record] = []
    async for batch in log.read(1, 2):
        head.extend(batch)
    return spec_from_log(head)


async def verify(log: EventLog, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Replay ``log`` through its topology and compare every derived record (module docstring)."""
    spec = await _spec(log)
    runner = InProcessRunner(topology(spec))
    handlers = [m.handle for m in runner.machines]
    targets = runner.routes.targets
    report = VerifyReport(location=log.location, spec=spec)
    counts: dict[type, int] = {}
    expected: list[Event] = []  # the derived events the log must hold next, in order
    pos = 0  # how many of them it held so far
    produced: list[Event] = []  # what the records since the current round began derived: the next round
    inputs = last = 0
    ambiguous: tuple[Record, Event] | None = None  # a mismatch that the next record classifies
    divergence: Divergence | None = None
    started = time.perf_counter()
    async for batch in log.read():
        for r in batch:
            event = r.event
            if ambiguous is not None:
                prev, want = ambiguous
                divergence = (Divergence(prev.seq, "unexpected", None, prev.event) if event == want
                              else Divergence(prev.seq, "differs", want, prev.event))
                break
            derived = getattr(event, "cause_seq", None) is not None
            if derived and produced and pos == len(expected):  # a run of inputs ends: its round begins
                expected, produced, pos = produced, [], 0
            if pos < len(expected):
                want = expected[pos]
                if event != want:
                    if not derived or event == _after(want, r, expected, pos, produced, handlers, targets):
                        divergence = Divergence(r.seq, "missing", want, event)
                        break
                    ambiguous = (r, want)
                    continue
                pos += 1
                counts[type(event)] = counts.get(type(event), 0) + 1
            elif derived:
                divergence = Divergence(r.seq, "unexpected", None, event)
                break
            else:
                inputs += 1
            seq = last = r.seq
            ts = r.ts_ns
            for i in targets(event):
                out = handlers[i](seq, ts, event)
                if out:
                    produced.extend(out)
            if pos and pos == len(expected):  # a round is complete: the next one is what it derived
                expected, produced, pos = produced, [], 0
        if divergence is not None:
            break
        if progress is not None:
            progress(last)
    if divergence is None and ambiguous is not None:
        divergence = Divergence(ambiguous[0].seq, "differs", ambiguous[1], ambiguous[0].event)
    if divergence is None and pos < len(expected):
        divergence = Divergence(last + 1, "missing", expected[pos], None)
    if divergence is None and produced:
        divergence = Divergence(last + 1, "missing", produced[0], None)
    report.seconds = time.perf_counter() - started
    report.records, report.inputs, report.divergence = last, inputs, divergence
    report.derived = dict(sorted((t.__struct_config__.tag, n) for t, n in counts.items()))  # type: ignore[attr-defined]
    return report


def _after(want: Event, r: Record, expected: list[Event], pos: int, produced: list[Event],
           handlers: list[Callable[..., Any]], targets: Callable[[Any], tuple[int, ...]]) -> Event | None:
    """The derived event the replay expects after ``want`` (None: an input). If ``want`` ends its round, it is
    handled as if logged at ``r.seq`` to learn how the next round starts (the replay stops here anyway)."""
    if pos + 1 < len(expected):
        return expected[pos + 1]
    following = list(produced)
    for i in targets(want):
        following.extend(handlers[i](r.seq, r.ts_ns, want))
    return following[0] if following else None


async def rebuild(log: EventLog, last: int | None = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fold the log (through seq ``last``, or all of it) without checking; every node's final snapshot."""
    spec = await _spec(log)
    runner = InProcessRunner(topology(spec))
    done = 0
    async for batch in log.read(1, last):
        runner.feed(batch, [])
        done += len(batch)
        if progress is not None:
            progress(done)
    return {node.name: machine.snapshot() for node, machine in zip(runner.nodes, runner.machines, strict=True)}

