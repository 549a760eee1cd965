"""One watched session: the head fold that follows its log, the scrubbing, and the clients it publishes to.

A :class:`Hub` opens the session's log read-only and folds it into a :class:`~.fold.SessionView` as it is
written (``follow``: a finished log is read to its end, a live one tailed). Ten times a second it turns what
changed into one delta per channel (``market``, ``trader``, ``trades``), numbered per channel (``n``), encodes
each once and hands it to every live client: book updates are thereby coalesced per market to at most ten a
second whatever the feed's rate. Handing over never waits: each client has a bounded queue, and a client whose
queue is full is marked *behind* — its queue is dropped and, once it reads again, it gets a fresh snapshot of
each channel instead (so a client that never reads costs a bounded amount of memory and nothing else). The
trading loop never sees any of this: the hub reads the log, never the actors.

**Scrubbing.** Every ``checkpoint_every`` records the head fold is copied (pickled: a few times cheaper than a
deep copy, the fold's pause included, and unpickled only when a seek needs it); a client that seeks to a seq (or an
event time, turned into the last seq at or before it) gets a view rebuilt from the nearest copy at or before it
plus the records after it, sent as snapshots marked ``paused``; it then receives only ``head`` messages (how
far the log goes) until it asks for ``live`` again.

**Damage.** A log that cannot be read past some point (a checksum mismatch mid-way, a missing segment) stops
the fold there: ``head`` messages then carry ``damage`` — the seq the fold reached and the log's own error —
and everything before it stays on view.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import pickle
import statistics
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from runtime.log import EventLog, LogError
from runtime.logger import get_logger

from .fold import SessionView

__all__ = ["CHANNELS", "Client", "Hub"]

CHANNELS = ("market", "trader", "trades")
TICK_S = 0.1  # deltas at most ten times a second
POLL_S = 0.02  # how often a log another process writes is looked at for new records, once the fold caught up
QUEUE_MAX = 64  # messages waiting for one client before it is marked behind
CHECKPOINT_EVERY = 25_000
CHECKPOINTS_KEPT = 32
_encode = msgspec.json.Encoder().encode


def _copy(view: SessionView) -> bytes:
    """``view`` frozen as it is now (``pickle.loads`` makes a view of it)."""
    return pickle.dumps(view, protocol=pickle.HIGHEST_PROTOCOL)


def _message(kind: str, channel: str | None, n: int, view: SessionView, data: Any, **extra: Any) -> str:
    body = {"type": kind, "channel": channel, "n": n, "through": view.through, "ts_ns": view.through_ts, **extra,
            "data": data}
    return _encode(body).decode()


class Client:
    """One WebSocket watching a hub: its bounded queue, whether it fell behind, whether it is scrubbed (paused)."""

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self.send = send
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.behind = True  # a new client starts with snapshots: as if it had fallen behind
        self.paused: SessionView | None = None
        self.snapshots = 0  # how many times it was sent a full set (the first, and after each time it fell behind)
        self.dropped = 0  # messages dropped because its queue was full

    def offer(self, message: str) -> None:
        """Queue ``message`` without waiting; a full queue marks the client behind (it gets snapshots instead)."""
        if self.behind:
            return
        if len(self.queue) >= QUEUE_MAX:
            self.dropped += len(self.queue) + 1
            self.queue.clear()
            self.behind = True
        else:
            self.queue.append(message)
        self.wake.set()


class Hub:
    """The session behind ``open_log`` (a coroutine opening it read-only), folded and published (module docstring)."""

    def __init__(self, open_log: Callable[[], Awaitable[EventLog]], *, halt: Callable[[], None] | None = None,
                 checkpoint_every: int = CHECKPOINT_EVERY, tick_s: float = TICK_S) -> None:
        self._open_log = open_log
        self.halt = halt
        self.view = SessionView()
        self.clients: set[Client] = set()
        self.n = dict.fromkeys(CHANNELS, 0)
        self.damage: dict[str, Any] | None = None
        self.log_status = "opening"
        self.location = ""
        self.meta: dict[str, Any] = {}
        self._ts = array("q")  # the running maximum of ts_ns, by seq - 1: event time -> seq
        self._checkpoints: list[tuple[int, bytes]] = []  # (through, the pickled view)
        self._every = checkpoint_every
        self._next_checkpoint = checkpoint_every
        self._tick_s = tick_s
        self._latency: deque[float] = deque(maxlen=500)  # receive -> read by the dashboard, live records (ms)
        self._sent_positions: dict[str, dict[str, Any]] = {}
        self._sent_head: dict[str, Any] = {}
        self._snapshot_sent = False
        self._tasks: list[asyncio.Task] = []
        self._log: EventLog | None = None
        self._seeker: EventLog | None = None
        self._seek_lock = asyncio.Lock()
        self.ready = asyncio.Event()  # set once the log is open (or could not be)

    # -- running ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(), name="dashboard-follow"),
                       asyncio.create_task(self._ticker(), name="dashboard-tick")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for log in (self._log, self._seeker):
            if log is not None:
                with contextlib.suppress(Exception):  # a reader's close failing changes nothing for anyone
                    await log.close()

    async def _follow(self) -> None:
        view = self.view
        try:
            self._log = log = await self._open_log()
        except (LogError, OSError) as exc:
            self.damage = {"after_seq": 0, "message": str(exc)}
            self.log_status = "unreadable"
            self.ready.set()
            return
        self.location = log.location
        await self._refresh_meta()
        self.ready.set()
        meta_at = time.monotonic()
        try:
            async for batch in log.follow(1, poll_s=POLL_S):
                view.fold(batch)
                ts, last = self._ts, self._ts[-1] if self._ts else 0
                for r in batch:
                    last = max(last, r.ts_ns)
                    ts.append(last)
                now = time.time_ns()
                if now - batch[-1].ts_ns < 60_000_000_000:  # live: what it took from the edge to here
                    self._latency.append((now - batch[-1].ts_ns) / 1e6)
                if view.through >= self._next_checkpoint:
                    self._checkpoint()
                if time.monotonic() - meta_at > 1.0:
                    meta_at = time.monotonic()
                    await self._refresh_meta()
            await self._refresh_meta()
        except (LogError, OSError) as exc:
            self.damage = {"after_seq": view.through, "message": str(exc)}
            get_logger("dashboard").warning("the log cannot be read further", at_seq=view.through, error=str(exc))
            await self._refresh_meta()

    async def _refresh_meta(self) -> None:
        if self._log is None:
            return
        try:
            meta = await self._log.meta()
        except (LogError, OSError):
            return
        self.log_status = meta.status
        self.meta = {"session_id": meta.session_id, "status": meta.status, "mode": meta.mode, "venue": meta.venue,
                     "seed": meta.seed, "created_ns": meta.created_ns, "end_reason": meta.end_reason,
                     "last_seq": meta.last_seq, "location": self.location}

    def _checkpoint(self) -> None:
        view = self.view
        self._checkpoints.append((view.through, _copy(view)))
        if len(self._checkpoints) > CHECKPOINTS_KEPT:  # keep the count bounded: every other one, twice as far apart
            del self._checkpoints[1::2]
            self._every *= 2
        self._next_checkpoint = view.through + self._every

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.tick()

    # -- publishing -------------------------------------------------------------------------------
    def tick(self) -> None:
        """Turn what changed since the last tick into deltas and hand them to every live client."""
        view = self.view
        changes = view.take_changes()
        out: list[tuple[str, Any]] = []
        markets = changes["markets"]
        if markets or changes["health"] or changes["trader"]:
            out.append(("market", {"markets": {m: view.market_row(m) for m in markets},
                                   "health": self.health()}))
        rows = {}
        fresh, self._snapshot_sent = self._snapshot_sent, False  # a snapshot since the last tick: send every change
        for m in markets:
            row = view.position_row(m)
            if fresh or self._sent_positions.get(m) != row:
                rows[m] = self._sent_positions[m] = row
        if rows or changes["trader"] or changes["history"]:
            out.append(("trader", {**view.trader_totals(), "positions": rows, "history": changes["history"]}))
        if changes["fills"] or changes["orders"] or changes["decisions"] or changes["models"]:
            out.append(("trades", {k: changes[k] for k in ("fills", "orders", "decisions", "models")}))
        for channel, data in out:
            self.n[channel] += 1
            message = _message("delta", channel, self.n[channel], view, data)
            for client in self.clients:
                if client.paused is None:
                    client.offer(message)
        head = self.head()
        if head != self._sent_head:
            self._sent_head = head
            message = _encode({"type": "head", **head}).decode()
            for client in self.clients:
                client.offer(message)

    def health(self, view: SessionView | None = None) -> dict[str, Any]:
        out = (view or self.view).health_state()
        if view is None or view is self.view:
            lat = sorted(self._latency)
            out["receive_to_log_ms"] = None if not lat else {
                "p50": round(statistics.median(lat), 1), "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                "samples": len(lat)}
            if self.log_status == "open" and self.view.through_ts:  # live: nothing heard for a while is not connected
                out["connected"] = out["connected"] and time.time_ns() - self.view.through_ts < 5_000_000_000
        return out

    def head(self) -> dict[str, Any]:
        view = self.view
        return {"through": view.through, "ts_ns": view.through_ts, "first_ts_ns": self._ts[0] if self._ts else None,
                "status": view.status, "log_status": self.log_status, "damage": self.damage,
                "halted_seq": view.halted_seq, "session": view.session or {"session_id": self.meta.get("session_id")},
                "location": self.location, "halt": self.halt is not None}

    def snapshots(self, client: Client) -> list[str]:
        """A full set for ``client``: the head's channels (numbered as the next delta expects), or its scrubbed view."""
        view = client.paused or self.view
        paused = client.paused is not None
        self._snapshot_sent = self._snapshot_sent or not paused
        health = self.health(view if paused else None)
        return [_encode({"type": "head", **self.head()}).decode(),
                _message("snapshot", "market", self.n["market"], view, {**view.market(), "health": health},
                         paused=paused),
                _message("snapshot", "trader", self.n["trader"], view, view.trader(), paused=paused),
                _message("snapshot", "trades", self.n["trades"], view, view.trades(), paused=paused)]

    # -- clients ----------------------------------------------------------------------------------
    def join(self, client: Client) -> None:
        self.clients.add(client)
        client.wake.set()

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    async def pump(self, client: Client) -> None:
        """Send ``client`` what is queued for it, snapshots when it is behind; returns when its send fails."""
        while True:
            await client.wake.wait()
            client.wake.clear()
            if client.behind:
                client.behind = False
                client.queue.clear()
                client.snapshots += 1
                batch = self.snapshots(client)
            else:
                batch = list(client.queue)
                client.queue.clear()
            for message in batch:
                await client.send(message)

    # -- scrubbing --------------------------------------------------------------------------------
    def seq_at(self, ts_ns: int) -> int:
        """The last seq whose event time is at or before ``ts_ns`` (1 if none is)."""
        return max(1, bisect.bisect_right(self._ts, ts_ns))

    async def view_at(self, seq: int) -> SessionView:
        """The session's view through ``seq`` (clamped to the log's end, or to its damage)."""
        if self.damage is not None:
            seq = min(seq, self.view.through)
        seq = max(1, seq)
        if seq == self.view.through:
            return pickle.loads(_copy(self.view))
        async with self._seek_lock:
            i = bisect.bisect_right([s for s, _ in self._checkpoints], seq)
            view = pickle.loads(self._checkpoints[i - 1][1]) if i else SessionView()
            if view.through < seq:
                if self._seeker is None:
                    self._seeker = await self._open_log()
                async for batch in self._seeker.read(view.through + 1, seq):
                    view.fold(batch)
            view.take_changes()
            return view
