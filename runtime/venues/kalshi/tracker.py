"""The pure state of one Kalshi WebSocket feed: subscriptions, sequence numbers, stale books, fill dedupe.

:class:`FeedTracker` is a state machine with no I/O and no clock. The client (:mod:`.ws`) tells it
what happened — :meth:`~FeedTracker.connect`, each decoded :meth:`~FeedTracker.frame`,
:meth:`~FeedTracker.disconnect`, the events of a REST :meth:`~FeedTracker.reconciled` read — and it
answers with a :class:`Step`: the events to deliver, in order, the commands to send (as data; the client
encodes them), and whether to reconcile over REST or reconnect.

Rules (``kalshi-protocol.md``):

* **Subscriptions.** One ``subscribe`` per channel, so an error reply or a resubscription concerns one
  channel. Market channels (:data:`MARKET_CHANNELS`: books, trades, tickers) name the markets
  explicitly; private channels and ``market_lifecycle_v2`` are subscribed for everything. A ``subscribed``
  reply binds its sid to the channel and markets of the command it answers. A reconnect forgets every sid.
* **Sequence per sid.** A data frame carrying ``seq`` on a known sid must have ``last + 1`` (the ``seq`` of an
  ``ok`` / ``unsubscribed`` reply is the sid's current one and is not checked); the first seq of a
  sid sets the baseline (it need not be 1). Any other seq — skipped, repeated or going back — is a gap:
  :class:`SeqGapDetected` is emitted *before* the frame's own events, and the sid continues from the seq
  received. On a book sid the gap names the sid's markets, marks them stale and asks for a
  ``get_snapshot`` of that sid (every gap asks again: a snapshot that was itself lost is asked for anew,
  and a redundant snapshot only replaces a book with the same state). A gap on a trade sid names no
  market (no book depends on it) and asks for nothing (trades cannot be resent).
* **Stale books.** A book market is stale from the start until its first ``orderbook_snapshot``, and again
  after every marker naming it. A snapshot of a stale market on a live sid clears it (one on a sid that is
  not, or no longer, ours clears nothing); if a marker had announced it stale, :class:`BookResynced`
  follows the snapshot. A delta for a market whose first snapshot on the current sid has not arrived means
  that snapshot was lost: a ``get_snapshot`` is asked for (once per subscription; the book is already
  stale, so no marker is needed). :meth:`FeedTracker.resync` asks every book sid for snapshots on demand
  (a check for a loss that no later frame has revealed); its markets count as stale until they arrive.
* **Unreadable frames.** A ``MalformedInput`` on a book sid is a lost update of an unknown market of that
  sid: a marker names all its markets and a snapshot is asked for. On a private sid it means a lost fill or
  order update: a REST reconciliation is asked for. Either way the frame still counts for the sid's seq.
* **Error replies.** Codes 10 and 25 (:data:`.codec.TERMINAL_ERRORS`) end a subscription (the venue drops
  it): the channel is subscribed again, its books marked stale until the new snapshots. The channel is
  found from the reply's ``sid``, else its ``id`` (the command it answers), else — an error that names
  nothing — every channel is resubscribed. A refused ``get_snapshot`` falls back to resubscribing its
  channel (unsubscribing the old sid first: that subscription is still alive). A subscribe refused with
  another code is not retried (it would be refused again; the ``VenueError`` is in the log). After
  :data:`MAX_RESUBSCRIBES` subscribes of one channel refused with a terminal code in a row, the tracker
  asks for a reconnect, whose backoff paces the retries.
* **Connection lost.** :meth:`FeedTracker.disconnect` emits one marker per book sid naming its markets and
  marks every book stale; :meth:`FeedTracker.connect` then subscribes everything afresh.
* **REST reconciliation** is due on every connection, and again when a private channel is resubscribed or
  loses a frame; :attr:`Step.reconcile` turns true once every private channel of the connection is
  confirmed (so no fill can fall between the REST read and the subscription), or at the first
  confirmation when no private channel is subscribed. It reads fills from :attr:`FeedTracker.reconcile_from_ms`:
  the last fill delivered when it *became due* (the connection lost, the channel ended), not when it runs — fills
  the new subscription brings first must not move the read past the ones the break lost. A reconciliation that
  fails is due again from the same point (:meth:`FeedTracker.reconcile_failed`).
* **Fills** are delivered once per ``trade_id``, whichever of the WebSocket and REST brings them first;
  later copies are dropped and counted (:attr:`FeedStats.duplicate_fills`). The ids are remembered in the
  bounded generations of :class:`actors.dedupe.FillWindow` (at least its ``GENERATION`` fills after each), far
  more than a reconciliation reads back (the fills since the last one less a minute). A fill older than what
  the window forgot is not dropped here but delivered (counted in :attr:`FeedStats.stale_fills`): the machines
  of the log, which apply the same rule, refuse it and record that they did.

The markers (:class:`SeqGapDetected`): ``expected`` and ``received`` say what happened —

====================================================  ========================  ==============
cause                                                 ``expected``              ``received``
====================================================  ========================  ==============
seq gap                                               last + 1                  the seq that came
unreadable book frame                                 its seq (last + 1 if      the same
                                                      it has none)
subscription ended (connection lost, error 10 / 25)   last + 1 (0 if none)      :data:`ENDED` (0)
====================================================  ========================  ==============
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Final, NamedTuple, TypeAlias, Union

from msgspec import Struct

from actors.dedupe import FillWindow, Verdict
from runtime.events import BookDelta, BookResynced, BookSnapshot, Event, OrderFilled, SeqGapDetected

from . import messages as m
from .codec import TERMINAL_ERRORS, WsFrame

__all__ = [
    "BOOK_CHANNEL",
    "DEFAULT_CHANNELS",
    "ENDED",
    "MARKET_CHANNELS",
    "MAX_RESUBSCRIBES",
    "PRIVATE_CHANNELS",
    "Command",
    "FeedStats",
    "FeedTracker",
    "GetSnapshot",
    "Step",
    "Subscribe",
    "Unsubscribe",
]

BOOK_CHANNEL: Final = "orderbook_delta"
PRIVATE_CHANNELS: Final = frozenset({"fill", "user_orders", "market_positions"})
MARKET_CHANNELS: Final = frozenset({BOOK_CHANNEL, "trade", "ticker", "ticker_v2"})  # subscribed with tickers
DEFAULT_CHANNELS: Final = ("orderbook_delta", "trade", "fill", "user_orders", "market_positions", "market_lifecycle_v2")
MAX_RESUBSCRIBES: Final = 3  # refused subscribes of one channel in a row before asking for a reconnect
ENDED: Final = 0  # SeqGapDetected.received of a subscription that ended (no seq arrived)


# --- what the tracker asks the client to send ------------------------------------------------------------
class Subscribe(Struct, frozen=True):
    """``subscribe`` to one channel (``markets`` empty: every market the channel has)."""

    id: int
    channel: str
    markets: tuple[str, ...] = ()


class GetSnapshot(Struct, frozen=True):
    """``update_subscription`` ``get_snapshot`` of one sid, for these markets."""

    id: int
    sid: int
    markets: tuple[str, ...] = ()


class Unsubscribe(Struct, frozen=True):
    id: int
    sid: int


Command: TypeAlias = Union[Subscribe, GetSnapshot, Unsubscribe]  # noqa: UP007


class Step(NamedTuple):
    """What one input leads to: events to deliver (in order), commands to send, and what to do next."""

    events: list[Event]
    commands: list[Command]
    reconcile: bool = False  # read fills, resting orders and positions over REST now
    reconnect: bool = False  # give up on this connection (subscribes keep being refused)


@dataclass(slots=True)
class FeedStats:
    """Counters of a feed's life."""

    frames: int = 0  # frames received
    gaps: int = 0  # seq gaps detected
    resyncs: int = 0  # book resyncs asked for (get_snapshot or resubscribe)
    books_resynced: int = 0  # stale books cleared by a snapshot after a marker
    reconnects: int = 0  # connections after the first
    duplicate_fills: int = 0  # fills dropped because their trade id was already delivered
    stale_fills: int = 0  # fills older than the forgotten ones: delivered, for the log's machines to refuse
    malformed: int = 0  # frames that could not be decoded

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Sub:
    """One live subscription: its channel, its markets, and the last seq seen on it."""

    __slots__ = ("channel", "last_seq", "markets", "unsynced")

    def __init__(self, channel: str, markets: tuple[str, ...]) -> None:
        self.channel = channel
        self.markets = markets
        self.last_seq: int | None = None
        self.unsynced: set[str] = set(markets) if channel == BOOK_CHANNEL else set()  # no snapshot yet on this sid


_NO_COMMANDS: list[Command] = []
_REPLIES: Final = frozenset({"subscribed", "ok", "unsubscribed", "error"})


class FeedTracker:
    """Subscriptions, seq per sid, stale books and fill dedupe of one feed (see the module docstring)."""

    def __init__(self, markets: Sequence[str], channels: Sequence[str] = DEFAULT_CHANNELS) -> None:
        if len(set(channels)) != len(channels):
            raise ValueError(f"channels {list(channels)!r} name a channel twice")
        if BOOK_CHANNEL in channels and not markets:
            raise ValueError(f"the {BOOK_CHANNEL} channel needs explicit market tickers; none were given")
        self.markets: tuple[str, ...] = tuple(dict.fromkeys(markets))
        self.channels: tuple[str, ...] = tuple(channels)
        self.stats = FeedStats()
        self._books = BOOK_CHANNEL in channels
        self._private = PRIVATE_CHANNELS.intersection(channels)
        self._next_id = 1
        self._connections = 0
        self._subs: dict[int, _Sub] = {}  # sid -> subscription
        self._sid_of: dict[str, int] = {}  # channel -> its live sid
        self._pending: dict[int, Subscribe] = {}  # command id -> subscribe awaiting its reply
        self._snapshot_asks: dict[int, int] = {}  # command id -> sid of a get_snapshot awaiting its reply
        self._refused: dict[str, int] = {}  # channel -> subscribes refused in a row (terminal codes)
        self._given_up: set[str] = set()  # channels refused for good on this connection
        self._stale: set[str] = set(self.markets) if self._books else set()
        self._announced: set[str] = set()  # stale markets a marker named (BookResynced is due on their snapshot)
        self._reconcile_due = False
        self._reconcile_from: int | None = None  # the last fill's venue time when the reconciliation became due
        self._fills = FillWindow()  # trade ids delivered (actors.dedupe)
        self._last_fill_ms: int | None = None

    # --- reads ----------------------------------------------------------------------------------------
    @property
    def stale(self) -> frozenset[str]:
        """Book markets whose state is not known now (never snapshotted, or marked since)."""
        return frozenset(self._stale)

    @property
    def last_fill_ms(self) -> int | None:
        """The latest ``venue_ts_ms`` of a delivered fill (None before the first one that has it)."""
        return self._last_fill_ms

    def subscriptions(self) -> dict[int, tuple[str, tuple[str, ...]]]:
        """sid -> (channel, markets) of every confirmed subscription of the connection."""
        return {sid: (s.channel, s.markets) for sid, s in self._subs.items()}

    # --- connection ---------------------------------------------------------------------------------
    def connect(self) -> list[Command]:
        """A new connection: forget every sid and subscribe every channel."""
        if self._connections:
            self.stats.reconnects += 1
        self._connections += 1
        self._subs.clear()
        self._sid_of.clear()
        self._pending.clear()
        self._snapshot_asks.clear()
        self._given_up.clear()
        self._due()
        return [self._subscribe(channel) for channel in self.channels]

    def disconnect(self) -> list[Event]:
        """The connection is gone: one marker per book sid naming its markets; every book is stale."""
        events: list[Event] = []
        for sid, sub in self._subs.items():
            if sub.channel == BOOK_CHANNEL:
                events.append(self._ended(sid, sub))
        self._stale.update(self.markets if self._books else ())
        self._subs.clear()
        self._sid_of.clear()
        self._pending.clear()
        self._snapshot_asks.clear()
        return events

    def resync(self) -> list[Command]:
        """Ask for a fresh snapshot of every book now (a check, for a loss that no later frame has revealed:
        the last frame before a quiet spell). Its markets count as stale until their snapshots arrive; no
        marker is emitted (the books' state is not known to be wrong)."""
        commands: list[Command] = []
        for sid, sub in self._subs.items():
            if sub.channel == BOOK_CHANNEL:
                self._stale.update(sub.markets)
                commands.append(self._get_snapshot(sid, sub))
        return commands

    # --- frames ---------------------------------------------------------------------------------------
    def frame(self, f: WsFrame) -> Step:
        """One decoded frame -> the events to deliver and the commands it calls for."""
        self.stats.frames += 1
        message = f.message
        if message is not None:
            kind = type(message)
            if kind is m.Subscribed:
                return self._on_subscribed(f, message)  # type: ignore[arg-type]
            if kind is m.Error:
                return self._on_error(f, message)  # type: ignore[arg-type]
            if kind is m.Ok or kind is m.Unsubscribed:  # their seq is the sid's current one, not a new frame's
                return Step(list(f.events), _NO_COMMANDS)
        elif f.type in _REPLIES:  # a reply that could not be read
            self.stats.malformed += 1
            return Step(list(f.events), _NO_COMMANDS)
        events: list[Event] = []
        commands: list[Command] = []
        sub = self._subs.get(f.sid) if f.sid is not None else None  # type: ignore[arg-type]
        gap = False
        if sub is not None and f.seq is not None:
            last = sub.last_seq
            if last is not None and f.seq != last + 1:
                gap = True
                self.stats.gaps += 1
                if sub.channel == BOOK_CHANNEL:
                    events.append(self._mark(f.sid, last + 1, f.seq, sub.markets))  # type: ignore[arg-type]
                    commands.append(self._get_snapshot(f.sid, sub))  # type: ignore[arg-type]
                else:
                    events.append(SeqGapDetected(sid=f.sid, expected=last + 1, received=f.seq))  # type: ignore[arg-type]
            sub.last_seq = f.seq
        if f.malformed:
            self.stats.malformed += 1
            events.extend(f.events)
            if sub is not None and sub.channel == BOOK_CHANNEL and not gap:
                seq = f.seq if f.seq is not None else (sub.last_seq or 0) + 1
                events.append(self._mark(f.sid, seq, seq, sub.markets))  # type: ignore[arg-type]
                commands.append(self._get_snapshot(f.sid, sub))  # type: ignore[arg-type]
            elif sub is not None and sub.channel in PRIVATE_CHANNELS:
                self._due()
            return Step(events, commands, self._reconcile_now())
        for event in f.events:
            kind = type(event)
            if kind is OrderFilled:
                if self._new_fill(event):  # type: ignore[arg-type]
                    events.append(event)
            elif kind is BookSnapshot:
                events.append(event)
                if sub is not None:  # a snapshot on a sid no longer (or not yet) ours clears nothing
                    sub.unsynced.discard(event.market)  # type: ignore[union-attr]
                    self._synced(event.market, f.sid, events)  # type: ignore[union-attr]
            elif kind is BookDelta:
                events.append(event)
                if sub is not None and event.market in sub.unsynced:  # type: ignore[union-attr]
                    # its snapshot on this subscription was lost: ask for all its markets' snapshots, once
                    commands.append(self._get_snapshot(f.sid, sub))  # type: ignore[arg-type]
            else:
                events.append(event)
        return Step(events, commands)

    def reconciled(self, events: Iterable[Event]) -> list[Event]:
        """Events of a REST reconciliation read, with fills already delivered dropped."""
        return [e for e in events if type(e) is not OrderFilled or self._new_fill(e)]  # type: ignore[arg-type]

    # --- replies --------------------------------------------------------------------------------------
    def _on_subscribed(self, f: WsFrame, message: m.Subscribed) -> Step:
        ask = self._pending.pop(message.id, None) if message.id is not None else None
        if ask is None or ask.channel != message.msg.channel:
            ask = next((a for a in self._pending.values() if a.channel == message.msg.channel), ask)
            if ask is not None:
                self._pending.pop(ask.id, None)
        channel = message.msg.channel
        if ask is None and channel not in self.channels:
            return Step(list(f.events), _NO_COMMANDS)  # a subscription we did not ask for: nothing to track
        markets = ask.markets if ask is not None else (self.markets if channel in MARKET_CHANNELS else ())
        sid = message.msg.sid
        self._subs[sid] = _Sub(channel, markets)
        self._sid_of[channel] = sid
        self._refused.pop(channel, None)
        return Step(list(f.events), _NO_COMMANDS, self._reconcile_now())

    def _on_error(self, f: WsFrame, message: m.Error) -> Step:
        events: list[Event] = list(f.events)  # the VenueError the decoder made of it
        commands: list[Command] = []
        code, cid = message.msg.code, message.id
        reconnect = False
        if cid is not None and cid in self._snapshot_asks:  # get_snapshot refused: resubscribe its channel
            sid = self._snapshot_asks.pop(cid)
            sub = self._subs.get(sid)
            if sub is not None:
                self._resubscribe(sub.channel, events, commands, unsubscribe=True)
        elif code in TERMINAL_ERRORS:  # the venue has ended the subscription: subscribe again
            channels = self._channels_named(f.sid, cid)
            for channel in channels:
                reconnect |= self._refusal(cid, channel)
                self._resubscribe(channel, events, commands, unsubscribe=False)
        elif cid is not None and cid in self._pending:  # a subscribe refused for good: not retried
            self._given_up.add(self._pending.pop(cid).channel)
        return Step(events, commands, self._reconcile_now(), reconnect)

    def _refusal(self, cid: int | None, channel: str) -> bool:
        """Count a refused subscribe of ``channel``; True once there were too many in a row."""
        if cid is None or self._pending.get(cid) is None:
            return False
        self._refused[channel] = self._refused.get(channel, 0) + 1
        return self._refused[channel] >= MAX_RESUBSCRIBES

    def _channels_named(self, sid: int | None, cid: int | None) -> list[str]:
        """The channels an error reply concerns: by sid, else by the command it answers, else all."""
        if sid is not None and sid in self._subs:
            return [self._subs[sid].channel]
        if cid is not None and cid in self._pending:
            return [self._pending[cid].channel]
        return list(self.channels)

    # --- actions --------------------------------------------------------------------------------------
    def _take_id(self) -> int:
        cid = self._next_id
        self._next_id += 1
        return cid

    def _subscribe(self, channel: str) -> Subscribe:
        ask = Subscribe(self._take_id(), channel, self.markets if channel in MARKET_CHANNELS else ())
        self._pending[ask.id] = ask
        return ask

    def _get_snapshot(self, sid: int, sub: _Sub) -> GetSnapshot:
        self.stats.resyncs += 1
        sub.unsynced.clear()  # every market's snapshot is asked for now
        ask = GetSnapshot(self._take_id(), sid, sub.markets)
        self._snapshot_asks[ask.id] = sid
        return ask

    def _resubscribe(self, channel: str, events: list[Event], commands: list[Command], *, unsubscribe: bool) -> None:
        """Drop the channel's subscription (forget its sid, unsubscribing it if the venue has not ended it, or
        forget its pending subscribe) and subscribe again."""
        for cid in [cid for cid, a in self._pending.items() if a.channel == channel]:
            del self._pending[cid]
        sid = self._sid_of.pop(channel, None)
        if sid is not None:
            sub = self._subs.pop(sid)
            if unsubscribe:
                commands.append(Unsubscribe(self._take_id(), sid))
            for cid in [cid for cid, s in self._snapshot_asks.items() if s == sid]:
                del self._snapshot_asks[cid]
            if channel == BOOK_CHANNEL:
                events.append(self._ended(sid, sub))
        if channel == BOOK_CHANNEL:
            self.stats.resyncs += 1
            self._stale.update(self.markets)
        if channel in PRIVATE_CHANNELS:
            self._due()
        commands.append(self._subscribe(channel))

    def _ended(self, sid: int, sub: _Sub) -> SeqGapDetected:
        expected = 0 if sub.last_seq is None else sub.last_seq + 1
        return self._mark(sid, expected, ENDED, sub.markets)

    def _mark(self, sid: int, expected: int, received: int, markets: tuple[str, ...]) -> SeqGapDetected:
        self._stale.update(markets)
        self._announced.update(markets)
        return SeqGapDetected(sid=sid, expected=expected, received=received, markets=markets)

    def _synced(self, market: str, sid: int | None, events: list[Event]) -> None:
        if market not in self._stale:
            return
        self._stale.discard(market)
        if market in self._announced:
            self._announced.discard(market)
            self.stats.books_resynced += 1
            events.append(BookResynced(market=market, sid=sid))

    def _new_fill(self, fill: OrderFilled) -> bool:
        verdict = self._fills.admit(fill)
        if verdict is Verdict.SEEN:
            self.stats.duplicate_fills += 1
            return False
        if verdict is Verdict.STALE:
            self.stats.stale_fills += 1
            return True
        ts = fill.venue_ts_ms
        if ts is not None and (self._last_fill_ms is None or ts > self._last_fill_ms):
            self._last_fill_ms = ts
        return True

    @property
    def reconcile_from_ms(self) -> int | None:
        """Where a reconciliation reads fills from: the last fill delivered when it became due (module docstring)."""
        return self._reconcile_from

    def reconcile_failed(self, from_ms: int | None) -> None:
        """The reconciliation that read from ``from_ms`` failed: it is due again, from there."""
        was = self._reconcile_due
        self._due()
        if not was or from_ms is None or (self._reconcile_from is not None and from_ms < self._reconcile_from):
            self._reconcile_from = from_ms

    def _due(self) -> None:
        """A reconciliation is due: it will read from the last fill delivered now (or from an earlier point still due)."""
        if not self._reconcile_due:
            self._reconcile_due = True
            self._reconcile_from = self._last_fill_ms

    def _reconcile_now(self) -> bool:
        """True (once) when a due reconciliation can run: every private channel is confirmed."""
        if not self._reconcile_due or not self._subs:
            return False
        if any(channel not in self._sid_of and channel not in self._given_up for channel in self._private):
            return False
        self._reconcile_due = False
        return True
