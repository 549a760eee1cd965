"""The event-log interface shared by every backend, and its write pipeline.

A log holds one session: records numbered 1, 2, 3, … with no gaps. Appends go through a bounded queue
to one writer task, which assigns seqs, writes whole batches (group commit: several queued batches
share one sync) and acknowledges each batch only once it is durable under the sync policy. A full
queue makes ``append`` wait (backpressure); nothing is ever dropped. If a write fails the log is
*broken*: every pending and later append fails with the original error, because carrying on
unrecorded is worse than stopping (DESIGN §2.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from ..events import EVENT_TYPES, SCHEMA_VERSION, Event, Record

__all__ = [
    "CorruptLogError",
    "Entry",
    "EventLog",
    "LogBrokenError",
    "LogError",
    "LogLockedError",
    "LogUnavailableError",
    "NotALogError",
    "Recovery",
    "SeqConflictError",
    "SeqRange",
    "SessionMeta",
]

Entry = tuple[int, Event]  # (ts_ns, event): what a producer appends; the log assigns the seq
SessionStatus = Literal["open", "closed", "ended", "crashed"]

_EVENT_CLASSES = frozenset(EVENT_TYPES.values())
_STOP = object()  # tells the writer task to finish after the batches queued before it
_REFUSED = object()  # a queue slot whose batch failed admission


class _Slot:
    """A producer's place in the write queue, and the batch admitted into it."""

    __slots__ = ("fut", "prepared")

    def __init__(self, fut: asyncio.Future[SeqRange]) -> None:
        self.fut = fut
        self.prepared: Any = None


class LogError(Exception):
    """Base of every error the event log raises on purpose."""


class NotALogError(LogError):
    """The target exists but is not a tape event log (or not one this version can read)."""


class CorruptLogError(LogError):
    """Stored data failed a check; names where, so the damage can be inspected or salvaged."""

    def __init__(self, where: str, offset: int | None, detail: str) -> None:
        self.where, self.offset, self.detail = where, offset, detail
        at = f"{where} at byte offset {offset}" if offset is not None else where
        super().__init__(
            f"corrupt log: {at}: {detail}. Run `tape log verify` for a full report, and "
            "`tape log repair LOG --out NEW` to salvage every record before the damage."
        )


class LogLockedError(LogError):
    """Another writer already holds the session: a log has exactly one writer."""


class LogUnavailableError(LogError):
    """The storage cannot be reached (e.g. PostgreSQL is down); nothing was acknowledged."""


class SeqConflictError(LogError):
    """A duplicate or out-of-order seq: two writers, or a bug. Never silently resolved."""


class LogBrokenError(LogError):
    """An earlier write failed; the log accepts no more appends until it is reopened."""


class SeqRange(NamedTuple):
    """The seqs assigned to one appended batch, both ends inclusive."""

    first: int
    last: int


@dataclass(frozen=True)
class Recovery:
    """What opening a log for writing found: how the last writer left it and what was truncated.

    ``previous_status`` is the status stored by the last writer: ``open`` means it died without
    closing (a crash), ``closed``/``ended`` that it finished cleanly.
    """

    previous_status: SessionStatus
    last_seq: int
    truncated_bytes: int
    truncated_at: str | None = None


class SessionMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What a log knows about its session. ``created_ns``/``ended_ns`` are wall-clock metadata only."""

    session_id: str
    status: SessionStatus = "open"
    mode: str = ""
    venue: str = ""
    seed: int = 0
    config_hash: str = ""
    code_version: str = ""
    schema_version: int = SCHEMA_VERSION
    created_ns: int = 0
    ended_ns: int | None = None
    end_reason: str | None = None
    last_seq: int = 0


_TS = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_ENTRY_ENCODER = msgspec.msgpack.Encoder()
_ENTRIES = msgspec.msgpack.Decoder(list[tuple[_TS, Event]])
_AT = re.compile(r"at `\$\[(\d+)\](?:\[(\d+)\](?:\[(\d+)\])?)?")


def check_entries(entries: Sequence[Entry]) -> None:
    """Refuse, before anything is written, a batch that the log could not read back.

    The batch is encoded and decoded with the schema's own decoder, so every constraint a reader will
    check (types, enum values, unit ranges, ``0 <= ts_ns < 2**63``) is checked now; the error names the
    entry and the field.
    """
    if not entries:
        raise ValueError("append: the batch is empty")
    try:
        _ENTRIES.decode(_ENTRY_ENCODER.encode(entries))
        return
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, OverflowError) as exc:
        error = exc
    for i, entry in enumerate(entries):  # name the first entry that is not even the right shape
        if type(entry) is not tuple or len(entry) != 2:
            raise TypeError(f"append: entry {i} is {entry!r}, expected a (ts_ns, event) tuple")
        ts, event = entry
        if type(event) not in _EVENT_CLASSES:
            raise TypeError(f"append: entry {i} holds {type(event).__name__}, not a tape event")
        if type(ts) is not int or not 0 <= ts < 2**63:
            raise TypeError(f"append: entry {i} has ts_ns {ts!r}, expected an int in [0, 2**63)")
    if not isinstance(error, msgspec.ValidationError):  # an encoding failure carries no path: find the entry
        for i, (_, event) in enumerate(entries):
            try:
                _ENTRY_ENCODER.encode(event)
            except (msgspec.EncodeError, TypeError, OverflowError) as exc:
                raise ValueError(f"append: entry {i} ({event.__struct_config__.tag}): {exc}") from exc
    raise ValueError(f"append: {_explain(error, entries)}") from error


def _explain(error: Exception, entries: Sequence[Entry]) -> str:
    """msgspec's ``… - at `$[5][1][3]``` as ``entry 5 (book_delta) field side: …``."""
    message = str(error)
    match = _AT.search(message)
    if match is None:
        return message
    reason = message[: match.start()].rstrip(" -")
    i = int(match.group(1))
    if match.group(2) is None or match.group(2) == "0":
        return f"entry {i} ts_ns: {reason}"
    event = entries[i][1]
    fields = event.__struct_fields__
    j = int(match.group(3) or 0)
    name = fields[j - 1] if 0 < j <= len(fields) else "type"
    return f"entry {i} ({event.__struct_config__.tag}) field {name}: {reason}"


class EventLog(ABC):
    """One session's append-only log. Use as ``async with``; see :func:`runtime.log.open_log`."""

    #: a human-readable name of where the log lives (a directory, a redacted DSN + session)
    location: str

    def __init__(self, *, writable: bool, queue_batches: int, group_batches: int) -> None:
        self.writable = writable
        self._queue_batches = queue_batches
        self._group_batches = group_batches
        self._queue: asyncio.Queue[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None
        self._closed = False
        self._closing = False
        self._appended = asyncio.Event()

    # -- reading ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def last_seq(self) -> int:
        """The last durable (acknowledged) seq, 0 for an empty log."""

    @abstractmethod
    async def meta(self) -> SessionMeta:
        """The session's metadata, with its current status and last seq."""

    @abstractmethod
    def read(self, first: int = 1, last: int | None = None) -> AsyncIterator[list[Record]]:
        """Records ``first..last`` (to the end if ``last`` is None) in seq order, in batches."""

    async def follow(self, first: int = 1, *, poll_s: float = 0.05) -> AsyncIterator[list[Record]]:
        """Records from ``first`` on as they are appended; ends once the session is marked ended."""
        nxt = first
        while True:
            async for batch in self.read(nxt):
                nxt = batch[-1].seq + 1
                yield batch
            meta = await self.meta()
            if meta.status == "ended" and nxt > meta.last_seq:
                return
            if self.writable:
                self._appended.clear()
                if self.last_seq < nxt:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._appended.wait(), timeout=max(poll_s, 1.0))
            else:
                await self._wait_external(poll_s)

    async def _wait_external(self, poll_s: float) -> None:
        """Wait a while for another process to append (backends may wake sooner)."""
        await asyncio.sleep(poll_s)

    # -- writing ------------------------------------------------------------------------------
    async def append(self, entries: Sequence[Entry]) -> SeqRange:
        """Append one batch atomically; returns its seqs once durable under the sync policy.

        A batch that reached the queue is written even if the caller stops waiting (a cancelled or
        timed-out ``append`` may still land): to learn its fate, read the log's tail, never retry blind.
        """
        return await (await self.enqueue(entries))

    async def enqueue(self, entries: Sequence[Entry]) -> asyncio.Future[SeqRange]:
        """Admit one batch (checked now: a bad batch raises here and nothing of it is queued) and queue it; the
        future resolves to its seqs once durable, or to the write's error. ``append`` awaits both steps; the
        sequencer does its fan-out in between."""
        if not self.writable:
            raise LogError(f"{self.location}: opened read-only; open it with mode='a' to append")
        if self._closed or self._closing:
            raise LogError(f"{self.location}: the log is closed")
        if self._broken is not None:
            raise LogBrokenError(f"{self.location}: an earlier write failed ({self._broken}); reopen the log")
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._queue_batches)
            self._writer = asyncio.create_task(self._write_loop(), name=f"tape-log-writer {self.location}")
        slot = _Slot(asyncio.get_running_loop().create_future())
        await self._queue.put(slot)  # waits while the queue is full (backpressure); cancelled here, nothing is queued
        try:  # admitted only now, with no await since taking the place: queue order is admission order
            slot.prepared = self._admit(entries)
        except BaseException:
            slot.prepared = _REFUSED
            raise
        return slot.fut

    def _admit(self, entries: Sequence[Entry]) -> Any:
        """Validate a batch before it is queued and return what ``_write_batches`` will receive.

        The default checks the batch against the schema and passes it on; a backend may instead encode
        it here once (validating the very bytes it will write).
        """
        check_entries(entries)
        return entries

    async def _write_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        while not stopping:
            group = []
            item = await queue.get()
            while item is not _STOP:
                if item.prepared is _REFUSED:  # its batch failed admission; its producer has the error
                    queue.task_done()
                else:
                    group.append((item.prepared, item.fut))
                if len(group) >= self._group_batches or queue.empty():
                    break
                item = queue.get_nowait()
            stopping = item is _STOP
            if stopping:
                queue.task_done()
            if not group:
                continue
            if self._broken is not None:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(LogBrokenError(f"{self.location}: an earlier write failed ({self._broken})"))
                    queue.task_done()
                continue
            try:
                ranges = await self._write_batches([prepared for prepared, _ in group])
            except BaseException as exc:
                self._broken = exc
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                    queue.task_done()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, fut), rng in zip(group, ranges, strict=True):
                if not fut.done():
                    fut.set_result(rng)
            for _ in group:
                queue.task_done()
            self._appended.set()

    async def flush(self) -> None:
        """Wait until every batch queued so far is written and synced."""
        if self._queue is not None and self._writer is not None and not self._writer.done():
            await self._queue.join()
        if self._broken is None:
            await self._sync()

    @abstractmethod
    async def _write_batches(self, batches: list[Any]) -> list[SeqRange]:
        """Write whole batches (as ``_admit`` returned them), durably under the sync policy; their seqs."""

    @abstractmethod
    async def _sync(self) -> None:
        """Make every written batch durable (for a policy that defers syncing)."""

    # -- checkpoints --------------------------------------------------------------------------
    async def put_checkpoint(self, seq: int, data: bytes) -> None:
        """Keep ``data`` beside the records as the checkpoint at ``seq`` (durable already): every machine's state
        as of that seq (:mod:`runtime.sequencer`). A checkpoint is a cache, never the truth: the records alone are
        the session, and replay trusts a checkpoint only after regenerating it from the records before it."""
        if not self.writable:
            raise LogError(f"{self.location}: opened read-only; open it with mode='a' to add a checkpoint")
        if not 0 < seq <= self.last_seq:
            raise LogError(f"{self.location}: a checkpoint must be at a durable seq (1..{self.last_seq}), not {seq}")
        await self._put_checkpoint(seq, data)

    @abstractmethod
    async def _put_checkpoint(self, seq: int, data: bytes) -> None:
        """Store a checkpoint durably (a second one at the same seq changes nothing)."""

    @abstractmethod
    async def checkpoints(self) -> list[int]:
        """The seqs that have a checkpoint, ascending."""

    @abstractmethod
    async def get_checkpoint(self, seq: int) -> bytes:
        """The checkpoint at ``seq``: ``LogError`` if there is none, ``CorruptLogError`` if it is damaged."""

    @property
    @abstractmethod
    def target(self) -> tuple[str, str | None]:
        """``(target, session)`` that :func:`runtime.log.open_log` opens this log with (from another process)."""

    # -- session status and closing -----------------------------------------------------------
    @abstractmethod
    async def mark(self, status: SessionStatus, reason: str | None = None) -> None:
        """Record the session's status (``ended`` when it finished, ``crashed`` if it died)."""

    async def close(self) -> None:
        """Drain pending appends, sync, mark an open session ``closed``, release the writer lock.

        Idempotent. A session that was not marked ``ended`` stays resumable: opening it with
        ``mode="a"`` continues at the next seq.
        """
        if self._closed or self._closing:
            return
        self._closing = True  # appends are refused from here on; those already accepted are written
        try:
            if self._writer is not None:
                assert self._queue is not None
                await self._queue.put(_STOP)  # queued behind every accepted batch
                await self._writer
                if self._broken is None:
                    await self._sync()
            if self.writable and self._broken is None and self._status() == "open":
                await self.mark("closed")
        finally:
            self._closed = True
            await self._release()

    @abstractmethod
    def _status(self) -> SessionStatus:
        """The status this writer last recorded."""

    @abstractmethod
    async def _release(self) -> None:
        """Release files, connections and the writer lock."""

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
