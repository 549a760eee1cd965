"""The one generic Ray actor that hosts any state machine, and the Ray runner that starts one per node.

:class:`Shell` holds no business logic (STYLE habit 4): it builds its machine from a
:class:`~runtime.topology.Node` (or restores it from a snapshot), folds each batch of records through
``handle`` in seq order, and returns what they derived. Batches travel as msgpack bytes both ways (one
``bytes`` is 2x faster than a list of ``Record`` Structs through Ray at 100 records a batch and 12x at
10,000, because Ray pickles a list element by element).

:class:`RayRunner` is the sequencer's runner on Ray (:mod:`runtime.sequencer`): one shell per node, each
with ``num_cpus=0`` (they wait far more than they run, so hundreds share two cores); one call per node
per batch, only to the nodes that receive a record of it, all in flight at once; the answers merged in
round order (cause seq, node order, emission order: a stable sort of the concatenation in node order).
Each shell runs on the driver's node (a node affinity), unless placement
rules (:mod:`runtime.placement`) ask for a resource that only some nodes declare; a rebuilt shell asks the same.

**The data plane.** Ray creates, places and supervises the shells, and carries the cold calls (a restarted
shell's catch-up, the liveness probe). The batches, and the snapshots a checkpoint takes (an empty frame asks
for one), go over a direct TCP channel to each shell (:mod:`actors.channel`): a Ray actor call costs about
1 ms here, a channel round trip 0.13 ms, and every sequencer round (so every tick-to-order) waits for the
slowest node it touched, as does the submit that takes a checkpoint (8–14 ms over the channels at 300
markets, 22–38 ms through Ray calls). Where the driver cannot reach a shell's address (a Ray Client driver
outside the cluster), that shell's batches and snapshots go through Ray calls instead, with a warning:
slower, the same log.

**Restart.** At every checkpoint (:mod:`runtime.sequencer`) the runner keeps every shell's snapshot. A shell that died
(``ray.kill``, a crashed worker: its channel closes; a lost node: the watchdog's probe through Ray fails)
is rebuilt from its last snapshot (from scratch if none), then fed the records routed to it from the log
between that snapshot and the batch in hand (their outputs are already in the log and are dropped), and
then the batch is sent again. A machine is a function of the records it has seen, so the rebuilt one
answers exactly as the dead one would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from runtime.events import Event, Record
from runtime.log import EventLog
from runtime.logger import get_logger
from runtime.placement import Rule, check, ray_options
from runtime.topology import Node, Routes

from .channel import Channel, ChannelClosed, ChannelServer

__all__ = ["RayRunner", "Recovery", "Shell"]

_encode = msgspec.msgpack.Encoder().encode
_RECORDS = msgspec.msgpack.Decoder(list[Record])
_EVENTS = msgspec.msgpack.Decoder(list[Event])
_SNAPSHOT = msgspec.msgpack.Decoder(tuple[int, bytes])
_SNAPSHOT_REQUEST = b""  # on a channel: a snapshot (a batch is never empty: an empty list is one byte of msgpack)
_TAIL_BATCH = 10_000  # records per call while a restarted shell catches up
PROBE_S = 10.0
"""a batch unanswered this long: ask Ray whether its shell is still alive (a lost node closes no connection)"""
REBUILD_TRIES = 5
"""how many times a dead shell is rebuilt before the runner gives up (:meth:`RayRunner._restart`)"""


class Shell:
    """Hosts one state machine: ``handle_batch(records) -> derived``, ``snapshot()``, ``restore()``, and the
    channel that carries ``handle_batch`` without Ray (:meth:`open_channel`)."""

    def __init__(self, node: Node, snapshot: bytes | None = None, last_seq: int = 0) -> None:
        self.node = node
        self.machine = node.build() if snapshot is None else node.restore(snapshot)
        self._last_seq = last_seq
        self._lock = threading.Lock()  # the channel's thread and Ray's calls never fold at once
        self._channel: ChannelServer | None = None

    def handle_batch(self, records: bytes) -> bytes:
        """msgpack ``list[Record]`` in (seq order); msgpack ``list[Event]`` of what they derived out."""
        with self._lock:
            handle = self.machine.handle
            out: list[Event] = []
            batch = _RECORDS.decode(records)
            for r in batch:
                derived = handle(r.seq, r.ts_ns, r.event)
                if derived:
                    out.extend(derived)
            if batch:
                self._last_seq = batch[-1].seq
            return _encode(out)

    def open_channel(self) -> tuple[str, int, bytes]:
        """Serve ``handle_batch`` on a TCP channel on this node's address: ``(host, port, token)``."""
        if self._channel is None:
            import ray

            self._channel = ChannelServer(self._serve, ray.util.get_node_ip_address())
        return (*self._channel.address, self._channel.token)

    def _serve(self, frame: bytes) -> bytes:
        """A channel's request: a batch, or (empty) a snapshot, as msgpack ``(last seq, snapshot)``."""
        return _encode(self.snapshot()) if frame == _SNAPSHOT_REQUEST else self.handle_batch(frame)

    def snapshot(self) -> tuple[int, bytes]:
        """``(last seq handled, the machine's snapshot as msgpack)``."""
        with self._lock:
            return self._last_seq, _encode(self.machine.snapshot())

    def restore(self, snapshot: bytes, last_seq: int) -> None:
        with self._lock:
            self.machine = self.node.restore(snapshot)
            self._last_seq = last_seq

    def last_seq(self) -> int:
        """The seq of the last record handled (0 before any)."""
        return self._last_seq

    def node_ip(self) -> str:
        """The address of the node this shell runs on."""
        import ray

        return ray.util.get_node_ip_address()


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR  # the Ray actor class, made once (importing ray is slow; replay never needs it)
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(num_cpus=0, max_restarts=0)(Shell)
    return _ACTOR


class Recovery(NamedTuple):
    """A shell rebuilt after its death: from its snapshot at ``checkpoint_seq`` (0: from scratch), fed the
    ``replayed`` records routed to it through ``through_seq``, in ``seconds`` (from the rebuild's start until its
    channel connected)."""

    node: str
    checkpoint_seq: int
    through_seq: int
    replayed: int
    seconds: float


class _Dead(Exception):
    """A shell found dead while its batch was in flight (internal: the runner restarts it)."""


class RayRunner:
    """One :class:`Shell` actor per node on the connected Ray cluster (module docstring). ``channels=False``
    sends every batch through Ray calls (the fallback path, for comparison and tests)."""

    def __init__(self, nodes: Sequence[Node], log: EventLog, *, channels: bool = True,
                 placement: Sequence[Rule] = ()) -> None:
        self.nodes = tuple(nodes)
        self.log = log
        self.routes = Routes(self.nodes)
        self.use_channels = channels
        self.placement = tuple(placement)
        if self.placement:
            import ray

            check(self.placement, ray.cluster_resources(), [node.name for node in self.nodes])
        self.actors = [self._new(i) for i in range(len(self.nodes))]
        self.channels: list[Channel | None] = [None] * len(self.nodes)
        self.kept: list[tuple[int, bytes] | None] = [None] * len(self.nodes)  # (seq, snapshot) for restarts
        self.recoveries: list[Recovery] = []
        """every shell rebuilt, in order"""
        self._last_seq = 0
        self._ready = False

    def _new(self, i: int, *args: Any) -> Any:
        """A shell actor for node ``i``: where the placement rules say (:mod:`runtime.placement`), else on the
        driver's node (the sequencer's round trips stay on one host; a soft affinity let Ray spill shells to other
        nodes while the driver's was busy starting workers)."""
        options = ray_options(self.placement, self.nodes[i].name)
        return _actor_class().options(**options).remote(self.nodes[i], *args)

    @property
    def restarts(self) -> int:
        """How many shells were rebuilt."""
        return len(self.recoveries)

    async def where(self) -> list[str]:
        """The address of the node each shell runs on, in node order."""
        return list(await asyncio.gather(*(actor.node_ip.remote() for actor in self.actors)))

    async def ready(self) -> None:
        """Wait until every actor is up (its process started, its machine built) and its channel connected: a
        node's first call would otherwise pay that, seconds on a small machine, in the middle of the session."""
        if not self._ready:
            await asyncio.gather(*(actor.last_seq.remote() for actor in self.actors))
            if self.use_channels:
                await asyncio.gather(*(self._connect(i) for i in range(len(self.nodes))))
            self._ready = True

    async def _connect(self, i: int) -> None:
        """Open node ``i``'s channel; if its shell cannot be reached from here, its batches go through Ray."""
        host, port, token = await self.actors[i].open_channel.remote()
        try:
            self.channels[i] = await Channel.open(self.nodes[i].name, (host, port), token)
        except (OSError, TimeoutError) as exc:
            self.channels[i] = None
            get_logger("runner").warning("shell channel unreachable: its batches go through Ray calls",
                                         node=self.nodes[i].name, address=f"{host}:{port}", error=repr(exc))

    async def handle(self, records: list[Record]) -> list[Event]:
        await self.ready()
        parts = self.routes.split(records, len(self.nodes))
        busy = [i for i, part in enumerate(parts) if part]
        payloads = {i: _encode(parts[i]) for i in busy}
        answers = await self._call(busy, payloads)
        out: list[Event] = []
        for i, answer in zip(busy, answers, strict=True):
            if isinstance(answer, _Dead):
                await self._restart(i, records[0].seq - 1)
                (answer,) = await self._call([i], payloads)
                if isinstance(answer, BaseException):
                    raise RuntimeError(f"{self.nodes[i].name}: the rebuilt shell died too") from answer
            elif isinstance(answer, BaseException):
                raise answer
            out.extend(_EVENTS.decode(answer))
        out.sort(key=_cause)  # stable: node order, then emission order, within one cause
        self._last_seq = records[-1].seq
        return out

    async def _call(self, nodes: list[int], payloads: dict[int, bytes]) -> list[bytes | BaseException]:
        """Send each node its payload (all in flight at once) and collect the answers, in ``nodes`` order: bytes,
        ``_Dead`` for a shell that died, or the error its machine raised."""
        from ray.exceptions import RayActorError

        async def one(i: int) -> bytes:
            channel = self.channels[i]
            try:
                if channel is None:
                    return await self.actors[i].handle_batch.remote(payloads[i])
                channel.send(payloads[i])
                return await channel.receive()
            except (RayActorError, ChannelClosed) as exc:
                raise _Dead(self.nodes[i].name) from exc

        tasks = [asyncio.ensure_future(one(i)) for i in nodes]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=PROBE_S)
            if pending:  # slow: a busy machine, or a lost node that closes no connection
                await self._probe([i for i, t in zip(nodes, tasks, strict=True) if t in pending])
        return [t.exception() or t.result() for t in tasks]  # type: ignore[list-item]

    async def _probe(self, nodes: list[int]) -> None:
        """Ask Ray whether these shells live; a dead one's channel is closed, which ends its wait as ``_Dead``."""
        from ray.exceptions import RayActorError

        async def alive(ref: Any) -> None:
            await ref

        for i in nodes:
            try:
                await asyncio.wait_for(alive(self.actors[i].last_seq.remote()), PROBE_S)
            except RayActorError:
                if self.channels[i] is not None:
                    self.channels[i].close()  # type: ignore[union-attr]
            except TimeoutError:
                pass  # Ray itself is slow to answer: wait on

    async def snapshots(self) -> list[bytes]:
        """Every shell's snapshot (over its channel, else through Ray), kept for restarts too (a shell found dead is
        rebuilt first)."""
        from ray.exceptions import RayActorError

        await self.ready()

        async def one(i: int) -> tuple[int, bytes]:
            channel = self.channels[i]
            if channel is None:
                return await self.actors[i].snapshot.remote()
            channel.send(_SNAPSHOT_REQUEST)
            return _SNAPSHOT.decode(await channel.receive())

        answers = await asyncio.gather(*(one(i) for i in range(len(self.actors))), return_exceptions=True)
        for i, answer in enumerate(answers):
            if isinstance(answer, RayActorError | ChannelClosed):
                await self._restart(i, self._last_seq)
                answer = await self.actors[i].snapshot.remote()
            elif isinstance(answer, BaseException):
                raise answer
            self.kept[i] = answer
        return [data for _, data in self.kept]  # type: ignore[misc]

    async def _restart(self, i: int, upto: int) -> None:
        """A new shell for node ``i`` from its last snapshot and the log's records after it, through ``upto``. A
        rebuilt shell that dies before it is ready is rebuilt again (Ray may place it on the very node being lost,
        before that node is marked dead: seconds later it is cancelled), up to ``REBUILD_TRIES`` times."""
        from ray.exceptions import RayActorError

        started = time.perf_counter()
        for attempt in range(1, REBUILD_TRIES + 1):
            try:
                after, replayed = await self._rebuild(i, upto)
                break
            except RayActorError as exc:
                if attempt == REBUILD_TRIES:
                    raise RuntimeError(f"{self.nodes[i].name}: rebuilt {attempt} times, and each died before it was "
                                       "ready; is any node left that can host it (its placement's resource)?") from exc
                get_logger("runner").warning("rebuilt shell died before it was ready: rebuilding it again",
                                             node=self.nodes[i].name, attempt=attempt, error=type(exc).__name__)
        recovery = Recovery(self.nodes[i].name, after, upto, replayed, time.perf_counter() - started)
        self.recoveries.append(recovery)
        get_logger("runner").warning("shell rebuilt", node=recovery.node, from_checkpoint_seq=after, through_seq=upto,
                                     records_replayed=replayed, seconds=round(recovery.seconds, 3))

    async def _rebuild(self, i: int, upto: int) -> tuple[int, int]:
        """One try of :meth:`_restart`: ``(the seq of the snapshot it started from, the records it was fed)``."""
        channel = self.channels[i]
        if channel is not None:  # the dead shell's (or a dead rebuild's)
            channel.close()
            self.channels[i] = None
        kept = self.kept[i]
        after = 0 if kept is None else kept[0]
        actor = self._new(i, None if kept is None else kept[1], after)
        replayed = 0
        tail: list[Record] = []
        targets = self.routes.targets
        if upto > after:
            async for batch in self.log.read(after + 1, upto):
                tail.extend(r for r in batch if i in targets(r.event))
                if len(tail) >= _TAIL_BATCH:
                    await actor.handle_batch.remote(_encode(tail))
                    replayed += len(tail)
                    tail = []
        if tail:
            await actor.handle_batch.remote(_encode(tail))
            replayed += len(tail)
        self.actors[i] = actor
        if self.use_channels:
            await self._connect(i)
        await actor.last_seq.remote()  # ready: its process up, its machine built and fed
        return after, replayed

    async def close(self) -> None:
        import ray

        for channel in self.channels:
            if channel is not None:
                with contextlib.suppress(Exception):
                    channel.close()
        for actor in self.actors:
            ray.kill(actor)


def _cause(event: Any) -> int:
    return event.cause_seq
