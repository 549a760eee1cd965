"""The sequencer: the one writer of a session's log, and the rounds that make its order deterministic.

**The rule.** Every state machine is a function of the log prefix it has seen: it handles every record
routed to it (:mod:`runtime.topology`) in seq order, and nothing else. The log's order must therefore be a
function of the inputs alone, never of which actor answered first. The sequencer gets that by running in
**rounds**:

1. :meth:`Sequencer.submit` appends a batch of inputs (venue messages, timers, operator commands); being the
   log's one writer, it knows their seqs before the log acknowledges them (it checks that it was so);
2. *while the batch is being written*, it fans it out to every node that receives any of its records, **one
   call per node per batch**, never one per event; each node handles its records in seq order and returns
   its derived events, each carrying ``cause_seq``. The round goes on only once both are done: nothing is
   derived from a batch that is not durable (backpressure: ``submit`` waits for the log);
3. it appends all derived events of the round as the next batch, ordered by ``cause_seq``, then by the
   node's place in the topology, then by emission order; each gets ``ts_ns`` = its cause record's ``ts_ns``
   (deterministic: event time, never the wall clock);
4. it fans that batch out too, and repeats until a round derives nothing; then ``submit`` returns.

So the log is a deterministic function of the input batching, which the log itself records: a run of
inputs, then the derived rounds they caused. Replay (:mod:`replay.verify`) regenerates each round in the
same order and compares positionally. Two input batches with no derived event between them fold exactly
like one batch (each machine sees the same records in the same order), so replay need not know where one
ended. What a machine has emitted but not yet seen logged is the machine's own business (the orchestrator
holds its pending intents' cash).

**Runners.** A runner hosts the machines behind one small interface, ``async handle(records) -> derived
events in round order``: :class:`InProcessRunner` calls them directly (replay, tests, training); the Ray
runner (:class:`actors.shell.RayRunner`) hosts one actor per node. Both give the same log byte for byte.

**Checkpoints.** After a ``submit`` (no round in flight: every machine has seen exactly the log's records),
once ``checkpoint_every`` records have been logged since the last one (or a sixteenth of the log, whichever is
more, so they cost a bounded share of the log however long it runs), the sequencer asks the runner for every
machine's snapshot and stores them as one :class:`Checkpoint` beside the records
(:meth:`~runtime.log.EventLog.put_checkpoint`). A restarted actor resumes from the latest one plus the log's
tail, and replay verifies the segments between checkpoints in parallel, each checked to end in exactly the
next checkpoint (:mod:`replay.verify`). A checkpoint that cannot be stored is a warning, not a stop: it is a
cache, and the records are the session.

**Failure.** If an append raises, the log cannot be trusted to hold what the machines have seen (they may
have handled the batch that failed): the sequencer stops, raises :class:`SequencerStopped` (chained to the
log's error), appends nothing the batch derived, and refuses every later ``submit``. Trading stops rather
than carrying on unrecorded (DESIGN §2.5); a restart rebuilds the machines from what the log holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from .events import Event, Record, is_derived
from .log import Entry, EventLog, SeqRange
from .logger import get_logger
from .topology import Node, Routes, snapshot_bytes

__all__ = ["CHECKPOINT_EVERY", "Checkpoint", "InProcessRunner", "Runner", "Sequencer", "SequencerStopped"]

CHECKPOINT_EVERY = 25_000
"""records between two checkpoints, at least (module docstring)"""
CHECKPOINT_SHARE = 16
"""and at least this fraction (1/16) of the log so far"""


class Checkpoint(msgspec.Struct, frozen=True):
    """Every machine's snapshot (msgpack, as ``Node.restore`` takes it) as of ``seq``, in topology order."""

    seq: int
    nodes: tuple[tuple[str, bytes], ...]


class SequencerStopped(RuntimeError):
    """The sequencer stopped (the log failed, or a machine misbehaved); no more inputs are taken."""


class Runner(Protocol):
    nodes: tuple[Node, ...]

    async def handle(self, records: list[Record]) -> list[Event]:
        """Fan ``records`` (consecutive, in seq order) out; their derived events, in round order."""
        ...

    async def snapshots(self) -> list[bytes]:
        """Every machine's snapshot (msgpack), in node order, as of the last record handled."""
        ...

    async def close(self) -> None:
        ...


class InProcessRunner:
    """Every node's machine in this process, called directly, record by record.

    Handling record by record and, per record, its nodes in topology order yields the derived events
    already in round order (cause seq, node, emission): no sort.
    """

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        self.machines = [node.build() for node in self.nodes]
        self.routes = Routes(self.nodes)

    def feed(self, records: Sequence[Record], out: list[Event]) -> None:
        """Handle ``records`` in order, appending what they derive to ``out``."""
        handlers = [m.handle for m in self.machines]
        targets = self.routes.targets
        for r in records:
            event = r.event
            for i in targets(event):
                derived = handlers[i](r.seq, r.ts_ns, event)
                if derived:
                    out.extend(derived)

    async def handle(self, records: list[Record]) -> list[Event]:
        out: list[Event] = []
        self.feed(records, out)
        return out

    async def snapshots(self) -> list[bytes]:
        return [snapshot_bytes(m) for m in self.machines]

    async def close(self) -> None:
        return None


class Sequencer:
    """Appends inputs and the rounds of derived events they cause (module docstring); the log's one writer."""

    def __init__(self, log: EventLog, runner: Runner, *,
                 on_durable: Callable[[list[Record]], None] | None = None,
                 checkpoint_every: int | None = CHECKPOINT_EVERY) -> None:
        self.log = log
        self.runner = runner
        self.checkpoint_every = checkpoint_every
        """records between checkpoints, at least (None: none are taken)"""
        self.checkpointed = log.last_seq  # the seq of the last checkpoint taken (or where this sequencer began)
        self.on_durable = on_durable
        """called with every batch (inputs, then each round) once it is durable, in seq order: what may act on
        the log (a status display, an order gateway) sees it there, never before"""
        self.rounds = 0
        self.derived = 0
        self._stopped: BaseException | None = None

    async def submit(self, inputs: Sequence[Entry]) -> SeqRange:
        """Append ``inputs`` (``(ts_ns, event)``, not derived) and every round they cause; the seqs used."""
        if self._stopped is not None:
            raise SequencerStopped(f"the sequencer has stopped ({self._stopped}); no input is taken") from self._stopped
        for n, (_, event) in enumerate(inputs):
            if is_derived(event):
                raise ValueError(f"submit: input {n} ({type(event).__name__}) names a cause_seq: derived events "
                                 "come from the machines, never from outside")
        entries = list(inputs)
        first = None
        while entries:
            rng = SeqRange(self.log.last_seq + 1, self.log.last_seq + len(entries))  # the one writer: seqs are known
            first = rng.first if first is None else first
            records = [Record(seq, ts, event) for seq, (ts, event) in zip(range(rng.first, rng.last + 1), entries,
                                                                         strict=True)]
            written = await self._enqueue(entries)  # a batch the log refuses raises here: nothing is fanned out
            durable = asyncio.ensure_future(self._written(written, rng, records))  # on_durable as soon as it is
            try:  # the fan-out runs while the batch is written: neither waits for the other
                derived = await self.runner.handle(records)
            except BaseException as exc:
                self._stopped = exc
                await asyncio.wait([durable])  # the batch's fate is settled before the error is raised
                if not durable.cancelled():
                    durable.exception()  # (retrieved: the fan-out's error is the one raised)
                raise SequencerStopped(f"fan-out of seqs {rng.first}..{rng.last} failed: {exc!r}") from exc
            await durable  # raises if the log failed: nothing derived is appended then
            entries = self._stamp(derived, records, rng)
            if entries:
                self.rounds += 1
                self.derived += len(entries)
        assert first is not None
        last = self.log.last_seq
        if self.checkpoint_every is not None and last - self.checkpointed >= max(self.checkpoint_every,
                                                                                 last // CHECKPOINT_SHARE):
            await self.checkpoint()
        return SeqRange(first, last)

    async def checkpoint(self) -> None:
        """Store every machine's snapshot as the checkpoint at the log's last seq (module docstring)."""
        seq = self.log.last_seq
        blobs = await self.runner.snapshots()
        data = msgspec.msgpack.encode(Checkpoint(seq, tuple((n.name, b) for n, b in zip(self.runner.nodes, blobs,
                                                                                         strict=True))))
        try:
            await self.log.put_checkpoint(seq, data)
        except Exception as exc:  # a cache: the session goes on without it
            get_logger("sequencer").warning("checkpoint not stored", seq=seq, log=self.log.location, error=repr(exc))
        self.checkpointed = seq

    async def _enqueue(self, entries: list[Entry]) -> asyncio.Future[SeqRange]:
        try:
            return await self.log.enqueue(entries)
        except BaseException as exc:
            self._stopped = exc
            raise SequencerStopped(f"{self.log.location}: append failed, trading stops: {exc}") from exc

    async def _written(self, written: asyncio.Future[SeqRange], expected: SeqRange, records: list[Record]) -> None:
        """Wait until the batch is durable, then show it to ``on_durable`` (while the fan-out may still run)."""
        try:
            rng = await written
        except BaseException as exc:
            self._stopped = exc
            raise SequencerStopped(f"{self.log.location}: append failed, trading stops: {exc}") from exc
        if rng != expected:  # another writer appended: the machines saw seqs the log gave to something else
            self._stopped = RuntimeError(f"the log gave seqs {rng.first}..{rng.last}, not {expected.first}..{expected.last}")
            raise SequencerStopped(f"{self.log.location}: the log gave seqs {rng.first}..{rng.last} to a batch the "
                                   f"machines handled as {expected.first}..{expected.last}: another writer?")
        if self.on_durable is not None:
            try:
                self.on_durable(records)
            except BaseException as exc:
                self._stopped = exc
                raise SequencerStopped(f"on_durable failed on seqs {rng.first}..{rng.last}: {exc!r}") from exc

    def _stamp(self, derived: list[Event], records: list[Record], rng: SeqRange) -> list[Entry]:
        """Derived events with their cause's ``ts_ns``; a cause outside the batch is a machine's bug."""
        out: list[Entry] = []
        for event in derived:
            cause = getattr(event, "cause_seq", None)
            if cause is None or not rng.first <= cause <= rng.last:
                self._stopped = RuntimeError(f"{type(event).__name__} names cause_seq {cause}")
                raise SequencerStopped(f"a machine derived {event!r} with cause_seq {cause}, outside the batch "
                                       f"{rng.first}..{rng.last} it was handling")
            out.append((records[cause - rng.first].ts_ns, event))
        return out

    async def close(self) -> None:
        await self.runner.close()
