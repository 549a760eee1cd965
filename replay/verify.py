"""Replay a session's log through its topology, in-process, and check every derived event (DESIGN §2.3).

:func:`verify` rebuilds the session's :class:`~runtime.topology.SessionSpec` from its first two records,
builds the topology's machines in this process (no Ray; the orchestrator's policies from the
:class:`~runtime.topology.PolicyProvider` the caller passes: ``policies.registry.PROVIDER``), and walks the log once, in seq order, exactly as
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

**In parallel.** A log holds checkpoints (:mod:`runtime.sequencer`): every machine's snapshot at the end
of a submit, where no round is in flight. With ``jobs > 1`` the log is cut at checkpoints into segments of
about equal size and each is replayed in its own process: the first from scratch, each other from the
machines restored from the checkpoint it starts at. A segment that replays exactly must also *end* in
exactly the checkpoint it stops at, every machine's snapshot byte for byte (else the divergence is of kind
``state``, naming the node): so every checkpoint used is proven by the records before it, by induction
from the empty session, and a parallel replay proves what a serial one does. A log without checkpoints
(or ``jobs == 1``) replays serially. The segments run in this process and ``jobs - 1`` others on this machine
(:func:`_context` says how those start), or, ``on_ray``, as Ray tasks on the cluster this process is connected to.

:func:`rebuild` folds the log (or a prefix) without checking and returns every node's final snapshot, for
``tape replay run``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

import msgspec

from actors.machine import StateMachine
from runtime.events import Event, Record
from runtime.log import EventLog, LogError, open_log
from runtime.sequencer import Checkpoint, InProcessRunner
from runtime.topology import Node, PolicyProvider, Routes, SessionSpec, snapshot_bytes, spec_from_log, topology

__all__ = ["Divergence", "VerifyReport", "rebuild", "verify"]

DivergenceKind = Literal["differs", "missing", "unexpected", "state"]


class Divergence(msgspec.Struct, frozen=True):
    """Where the log first departs from its replay."""

    seq: int
    kind: DivergenceKind
    expected: Event | None
    got: Event | None
    node: str | None = None
    """``state``: the node whose state differs from the checkpoint at ``seq``"""

    def __str__(self) -> str:
        if self.kind == "state":
            return (f"seq {self.seq}: the replay's {self.node} differs from the checkpoint stored at this seq (the "
                    "checkpoint does not follow from the records before it: replay with --jobs 1, which needs none)")
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
    segments: int = 1
    """how many segments were replayed (in parallel when more than one)"""
    jobs: int = 1
    """processes that replayed them"""
    nodes: tuple[str, ...] = ()
    """(on Ray) the addresses of the nodes the segments ran on, sorted"""

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


async def verify(log: EventLog, progress: Callable[[int], None] | None = None, *, policies: PolicyProvider,
                 jobs: int = 1, on_ray: bool = False) -> VerifyReport:
    """Replay ``log`` through its topology, the orchestrator's policies from ``policies``, and compare every derived
    record (module docstring); with ``jobs > 1``
    and checkpoints in the log, in segments on ``jobs`` processes, or (``on_ray``) as Ray tasks on the cluster this
    process is connected to, ``jobs`` of them at a time."""
    spec = await _spec(log)
    started = time.perf_counter()
    bounds = _segments(await log.checkpoints(), log.last_seq, jobs) if jobs > 1 else [(0, None)]
    if len(bounds) == 1:
        runner = InProcessRunner(topology(spec, policies))
        part = await _walk(log, runner.nodes, runner.machines, 1, None, progress)
    elif on_ray:
        part, nodes = await _on_ray(log, bounds, jobs, policies, progress)
    else:
        part = await _parallel(log, bounds, jobs, policies, progress)
    report = VerifyReport(location=log.location, spec=spec, records=part.last, inputs=part.inputs,
                          divergence=part.divergence, segments=len(bounds), jobs=min(jobs, len(bounds)),
                          seconds=time.perf_counter() - started)
    report.derived = dict(sorted(part.derived.items()))
    if on_ray and len(bounds) > 1:
        report.nodes = tuple(sorted(nodes))
    return report


class _Part(msgspec.Struct):
    """What replaying one segment found: the last seq it checked, its counts, its first divergence."""

    last: int = 0
    inputs: int = 0
    derived: dict[str, int] = {}
    divergence: Divergence | None = None


def _segments(checkpoints: Sequence[int], last_seq: int, jobs: int) -> list[tuple[int, int | None]]:
    """Cut ``1..last_seq`` at checkpoints into at most ``2 * jobs`` segments of about equal length (a few more than
    processes, so a slow one does not hold up the end): ``(starting checkpoint or 0, ending checkpoint or None)``."""
    usable = [c for c in checkpoints if 0 < c < last_seq]
    cuts: list[int] = []
    pieces = 2 * jobs
    for k in range(1, pieces):
        want = last_seq * k // pieces
        best = min(usable, key=lambda c: (abs(c - want), c), default=None)
        if best is not None and (not cuts or best > cuts[-1]):
            cuts.append(best)
    return list(zip([0, *cuts], [*cuts, None], strict=True))


Segment = Callable[[int, int | None], Awaitable["_Part"]]
"""a worker: replays the segment from the checkpoint at ``start`` to the one at ``end`` (None: the log's end)"""


async def _share(bounds: list[tuple[int, int | None]], workers: Sequence[Segment],
                 progress: Callable[[int], None] | None) -> _Part:
    """The segments shared among ``workers``, each taking the next one when it is free (the first worker starts
    first); their findings merged: counts summed, the first divergence in seq order."""
    parts: list[_Part | None] = [None] * len(bounds)
    queue = list(range(len(bounds)))
    done = 0

    async def work(segment: Segment) -> None:
        nonlocal done
        while queue:
            k = queue.pop(0)
            start, end = bounds[k]
            part = parts[k] = await segment(start, end)
            done += part.last - start
            if progress is not None:
                progress(done)

    await asyncio.gather(*(work(w) for w in workers))
    total = _Part()
    for part in parts:
        assert part is not None
        total.last, total.inputs = part.last, total.inputs + part.inputs
        for kind, n in part.derived.items():
            total.derived[kind] = total.derived.get(kind, 0) + n
        if part.divergence is not None:
            total.divergence = part.divergence
            break
    return total


async def _parallel(log: EventLog, bounds: list[tuple[int, int | None]], jobs: int, policies: PolicyProvider,
                    progress: Callable[[int], None] | None) -> _Part:
    """The segments on ``jobs`` workers (module docstring): ``jobs - 1`` processes and this process (a thread of it,
    from the first segment, which needs no restore, while the others start)."""
    target, session = log.target
    loop = asyncio.get_running_loop()
    processes = min(jobs, len(bounds)) - 1
    with ProcessPoolExecutor(max_workers=processes, mp_context=_context()) as pool:

        async def in_pool(start: int, end: int | None) -> _Part:
            return await loop.run_in_executor(pool, _segment_in_process, target, session, start, end, policies)

        async def here(start: int, end: int | None) -> _Part:
            return await asyncio.to_thread(_segment_in_process, target, session, start, end, policies)

        # the processes first: a forking pool starts them all at its first task, before this process's thread
        return await _share(bounds, [*([in_pool] * processes), here], progress)


async def _on_ray(log: EventLog, bounds: list[tuple[int, int | None]], jobs: int, policies: PolicyProvider,
                  progress: Callable[[int], None] | None) -> tuple[_Part, set[str]]:
    """The segments as Ray tasks (one CPU each, dealt over the nodes), at most ``jobs`` running at once: on a
    cluster, replay runs at the speed of all its cores; the addresses of the nodes they ran on come back too. Each
    task reads its segment from the log itself: a PostgreSQL log, or a run directory on a filesystem every node sees.
    The environment the policies read (``policies.env_vars``: where the models are, ``--models``) is forwarded to the
    workers, so they look there too."""
    import ray
    from ray.exceptions import RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    env = {name: os.environ[name] for name in policies.env_vars if os.environ.get(name)}
    task = ray.remote(num_cpus=1, max_retries=0)(_segment_on_node)
    options = {"runtime_env": {"env_vars": env}} if env else {}
    target, session = log.target
    nodes: set[str] = set()
    # segments dealt round-robin over the nodes with CPUs (a soft affinity: a busy node's goes elsewhere); Ray's
    # own SPREAD kept short tasks on the driver's node
    cpus = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1)
    dealt = iter(range(len(bounds)))

    async def on_ray(start: int, end: int | None) -> _Part:
        k = next(dealt)
        where = task.options(**options, **({"scheduling_strategy": NodeAffinitySchedulingStrategy(
            node_id=cpus[k % len(cpus)], soft=True)} if cpus else {}))
        try:
            node, part = await where.remote(target, session, start, end, policies)
        except RayTaskError as exc:  # the task's own error (a log it cannot read, a model it cannot load)
            raise (exc.cause if isinstance(exc.cause, LogError | ValueError) else exc) from None
        nodes.add(node)
        return part

    return await _share(bounds, [on_ray] * min(jobs, len(bounds)), progress), nodes


def _context() -> multiprocessing.context.BaseContext:
    """How the segment processes start. ``fork`` (a few ms, every module already loaded) where it is safe: on Linux, in
    a process that runs no other thread: none of Python's, no Ray worker, no torch (their threads are outside
    Python's view, and a forked child inherits their locks but not them). Otherwise ``forkserver`` (about half a
    second: a fresh interpreter imports the replay once), or ``spawn`` where there is neither (Windows)."""
    methods = multiprocessing.get_all_start_methods()
    ray = sys.modules.get("ray")
    if (sys.platform == "linux" and "fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules
            and not (ray is not None and ray.is_initialized())):
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["replay.verify"])
        return context
    return multiprocessing.get_context("spawn")


def _segment_on_node(target: str, session: str | None, start: int, end: int | None,
                     policies: PolicyProvider) -> tuple[str, _Part]:
    """A Ray task's segment, with the address of its node: a log this node cannot open says so, naming the node."""
    import ray

    node = ray.util.get_node_ip_address()
    try:
        return node, _segment_in_process(target, session, start, end, policies)
    except LogError as exc:
        raise LogError(f"{exc} (on the Ray node at {node}: each replays its segments from the log itself, so the log "
                       "must be one every node reaches: a PostgreSQL log, or a run directory on a shared filesystem)"
                       ) from None


def _segment_in_process(target: str, session: str | None, start: int, end: int | None,
                        policies: PolicyProvider) -> _Part:
    try:
        return asyncio.run(_segment(target, session, start, end, policies))
    except LogError as exc:  # (some LogErrors take other arguments than their message: they would not unpickle)
        raise LogError(str(exc)) from None


async def _segment(target: str, session: str | None, start: int, end: int | None, policies: PolicyProvider) -> _Part:
    """Replay seqs ``start + 1 .. end`` from the machines of the checkpoint at ``start`` (fresh ones at 0) and check
    that they end in the checkpoint at ``end`` (None: the log's end)."""
    async with await open_log(target, session=session) as log:
        nodes = topology(await _spec(log), policies)
        if start:
            machines = _restore(nodes, await _checkpoint(log, start))
            if isinstance(machines, Divergence):
                return _Part(last=start, divergence=machines)
        else:
            machines = [node.build() for node in nodes]
        part = await _walk(log, nodes, machines, start + 1, end, None)
        if part.divergence is None and end is not None:
            ours = [(node.name, snapshot_bytes(m)) for node, m in zip(nodes, machines, strict=True)]
            part.divergence = _differs(nodes, ours, (await _checkpoint(log, end)).nodes, end)
        return part


async def _checkpoint(log: EventLog, seq: int) -> Checkpoint:
    try:
        checkpoint = msgspec.msgpack.decode(await log.get_checkpoint(seq), type=Checkpoint)
    except msgspec.DecodeError as exc:
        raise LogError(f"{log.location}: the checkpoint at seq {seq} cannot be read ({exc}); replay with --jobs 1, "
                       "which needs none") from None
    if checkpoint.seq != seq:
        raise LogError(f"{log.location}: the checkpoint stored at seq {seq} says it is of seq {checkpoint.seq}")
    return checkpoint


def _restore(nodes: Sequence[Node], checkpoint: Checkpoint) -> list[StateMachine] | Divergence:
    """The machines of a checkpoint, or a ``state`` divergence if it is not of this topology."""
    names = [name for name, _ in checkpoint.nodes]
    return (_differs(nodes, [node.name for node in nodes], names, checkpoint.seq)
            or [node.restore(data) for node, (_, data) in zip(nodes, checkpoint.nodes, strict=True)])


def _differs(nodes: Sequence[Node], ours: Sequence[Any], theirs: Sequence[Any], seq: int) -> Divergence | None:
    """A ``state`` divergence at ``seq`` naming the first node whose entry in ``ours`` differs from the checkpoint's
    (``theirs``, in node order), or that one of them lacks; None if they agree (see :func:`_agrees`)."""
    if list(ours) == list(theirs):
        return None
    k = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if not _agrees(a, b)),
             None if len(ours) == len(theirs) else min(len(ours), len(theirs)))
    if k is None:
        return None
    return Divergence(seq, "state", None, None, node=nodes[min(k, len(nodes) - 1)].name)


def _agrees(ours: Any, theirs: Any) -> bool:
    """Whether our ``(name, snapshot bytes)`` entry agrees with a checkpoint's. Equal bytes agree. A checkpoint
    written by older code may lack fields the code keeps today (new fields are appended with defaults, and a
    snapshot is a map per struct): then every field it does hold must equal ours — what it holds must agree, what
    it predates is not compared."""
    if ours == theirs:
        return True
    (name, data), (their_name, their_data) = ours, theirs
    if name != their_name or not isinstance(data, bytes) or not isinstance(their_data, bytes):
        return False
    try:
        mine, old = msgspec.msgpack.decode(data), msgspec.msgpack.decode(their_data)
    except msgspec.DecodeError:
        return False
    return _holds(mine, old)


def _holds(mine: Any, old: Any) -> bool:
    """``old`` (a decoded older snapshot) equals ``mine`` with the map keys ``old`` lacks left out, recursively."""
    if isinstance(old, dict):
        return isinstance(mine, dict) and old.keys() <= mine.keys() and all(_holds(mine[k], v) for k, v in old.items())
    if isinstance(old, list):
        return (isinstance(mine, list) and len(mine) == len(old)
                and all(_holds(a, b) for a, b in zip(mine, old, strict=True)))
    return type(mine) is type(old) and mine == old


async def _walk(log: EventLog, nodes: Sequence[Node], machines: Sequence[StateMachine], first: int, last: int | None,
                progress: Callable[[int], None] | None) -> _Part:
    """Replay records ``first..last`` through ``machines`` (the state as of ``first - 1``, at a submit boundary), and
    compare each derived record with what they derive (module docstring).

    What a record derives is needed only once the round after its own begins, so records are handled in runs
    (:class:`_Runs`): machine by machine, each machine's records in seq order, their outputs put in round order
    (seq, then node) only then. That is what the machines would derive record by record, and it keeps each
    machine's state and code hot in the caches while it folds its share (about a tenth faster than record by
    record on a 300-market session)."""
    runs = _Runs(nodes, machines)
    counts: dict[type, int] = {}
    expected: list[Event] = []  # the derived events the log must hold next, in order
    pos = 0  # how many of them it held so far
    inputs = 0
    done = first - 1
    ambiguous: tuple[Record, Event] | None = None  # a mismatch that the next record classifies
    divergence: Divergence | None = None
    async for batch in log.read(first, last):
        for r in batch:
            event = r.event
            if ambiguous is not None:
                prev, want = ambiguous
                divergence = (Divergence(prev.seq, "unexpected", None, prev.event) if event == want
                              else Divergence(prev.seq, "differs", want, prev.event))
                break
            derived = getattr(event, "cause_seq", None) is not None
            if derived and pos == len(expected) and runs.derived():  # a run of inputs ends: its round begins
                expected, pos = runs.take(), 0
            if pos < len(expected):
                want = expected[pos]
                if event != want:
                    if not derived or event == _after(want, r, expected, pos, runs):
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
            done = r.seq
            runs.add(r)
            if pos and pos == len(expected):  # a round is complete: the next one is what it derived
                expected, pos = runs.take(), 0
        if divergence is not None:
            break
        if progress is not None:
            progress(done)
    if divergence is None:
        rest = runs.take()  # (what is still queued is handled: the machines' state is that of ``done``)
        if ambiguous is not None:
            divergence = Divergence(ambiguous[0].seq, "differs", ambiguous[1], ambiguous[0].event)
        elif pos < len(expected):
            divergence = Divergence(done + 1, "missing", expected[pos], None)
        elif rest:
            divergence = Divergence(done + 1, "missing", rest[0], None)
    derived_counts = {t.__struct_config__.tag: n for t, n in counts.items()}  # type: ignore[attr-defined]
    return _Part(last=done, inputs=inputs, derived=derived_counts, divergence=divergence)


class _Runs:
    """Records handed to the machines, and what they derived, in round order (seq, node, emission).

    ``add`` queues a record; the queue is handled when what it derives is asked for (``derived``, ``take``), one
    machine at a time. Each machine still sees its records in seq order, and a machine's outputs depend on nothing
    but its own records, so the outputs are those of handling record by record; sorted by (seq, node) they are in
    the order the sequencer logs a round (:mod:`runtime.sequencer`)."""

    __slots__ = ("_handlers", "_queued", "_routes", "add", "produced")

    def __init__(self, nodes: Sequence[Node], machines: Sequence[StateMachine]) -> None:
        self._handlers = [m.handle for m in machines]
        self._routes = Routes(nodes)
        self._queued: list[Record] = []
        self.add = self._queued.append
        """queue a record"""
        self.produced: list[Event] = []  # what the records handled since the last ``take`` derived, in round order

    def derived(self) -> list[Event]:
        """What every record added since the last ``take`` derived (handling those still queued), in round order."""
        queued = self._queued
        if queued:
            outputs: list[tuple[int, int, Sequence[Event]]] = []  # (seq, node, what it derived)
            for node, (handle, records) in enumerate(zip(self._handlers, self._routes.split(queued, len(self._handlers)),
                                                         strict=True)):
                for r in records:
                    out = handle(r.seq, r.ts_ns, r.event)
                    if out:
                        outputs.append((r.seq, node, out))
            outputs.sort(key=_seq_node)
            for _, _, out in outputs:
                self.produced.extend(out)
            queued.clear()
        return self.produced

    def take(self) -> list[Event]:
        """``derived()``, and start collecting anew."""
        produced = self.derived()
        self.produced = []
        return produced

    def handle_now(self, seq: int, ts_ns: int, event: Event) -> list[Event]:
        """What ``event`` derives if logged at ``seq``, handled at once (after the queue), its outputs not kept."""
        self.derived()
        return [e for i in self._routes.targets(event) for e in self._handlers[i](seq, ts_ns, event)]


def _seq_node(output: tuple[int, int, Sequence[Event]]) -> tuple[int, int]:
    return output[0], output[1]


def _after(want: Event, r: Record, expected: list[Event], pos: int, runs: _Runs) -> Event | None:
    """The derived event the replay expects after ``want`` (None: an input). If ``want`` ends its round, it is
    handled as if logged at ``r.seq`` to learn how the next round starts (the replay stops here anyway)."""
    if pos + 1 < len(expected):
        return expected[pos + 1]
    following = [*runs.derived(), *runs.handle_now(r.seq, r.ts_ns, want)]
    return following[0] if following else None


async def rebuild(log: EventLog, last: int | None = None, progress: Callable[[int], None] | None = None, *,
                  policies: PolicyProvider) -> dict[str, Any]:
    """Fold the log (through seq ``last``, or all of it) without checking, the orchestrator's policies from
    ``policies``; every node's final snapshot."""
    spec = await _spec(log)
    runner = InProcessRunner(topology(spec, policies))
    done = 0
    async for batch in log.read(1, last):
        runner.feed(batch, [])
        done += len(batch)
        if progress is not None:
            progress(done)
    return {node.name: machine.snapshot() for node, machine in zip(runner.nodes, runner.machines, strict=True)}

