"""The Kalshi WebSocket codec: frames to tape events and back, commands and replies.

Client side: :class:`WsDecoder` (or :func:`decode_ws`) turns one text frame into a :class:`WsFrame` — the
events it means for the log, and the ``type``/``sid``/``seq`` and typed message the client needs to
track replies and sequence gaps. It never raises: a frame that is not JSON, has an unknown ``type``, a
field of the wrong type or a value off the grid becomes one ``MalformedInput`` event holding the raw
bytes and an error naming the field (``orderbook_delta.msg.price_dollars: '0.12345' is off the 0.0001
grid``). An ``error`` reply becomes a ``VenueError`` event (and stays in ``message`` for the client);
``subscribed`` / ``ok`` / ``unsubscribed`` carry no event. :func:`subscribe` and friends encode our
commands, always with ``use_yes_price`` explicit.

Every data shape Kalshi documents or has been seen sending decodes (see :mod:`.convert` for the rules):
the venue time from ``ts_ms``, ``ts`` in Unix seconds or ``ts`` as an ISO-8601 string; transition-era
frames carrying integer cents beside ``_dollars`` / ``_fp`` (which win; the two must agree);
``client_order_id`` on a delta our own order caused (kept on ``BookDelta``); ``event_lifecycle`` on the
``market_lifecycle_v2`` channel (an ``EventLifecycle`` event); ``market_lifecycle_v2`` with
``price_level_structure_updated`` or ``metadata_updated`` (no event: no state the runtime tracks changes).
A ``ticker`` frame is checked — every value must read exactly — and gives **no event**: the runtime does
not subscribe to that channel, and what it carries (top of book, last price, volume) is derived from the
book and the trades the log already holds; a client that subscribes finds the typed message in
:attr:`WsFrame.message`.

Exchange side: :func:`decode_command` reads a client's command (a :class:`BadCommand` instead of an
exception), :func:`encode_event` writes the data frame of a tape event for one subscription, and
:func:`encode` writes any wire Struct of :mod:`.messages` (replies: ``Subscribed``, ``Ok``, ...).

The decoders are built once (:data:`.messages.WS_MESSAGES`, tagged by ``type``); one
:class:`WsDecoder` per connection holds its options: ``legacy`` (accept integer-cent input) and
``use_yes_price`` (what the connection subscribed with; NO levels are then turned back to the NO leg).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec
from msgspec import Struct

from runtime.events import (
    BookDelta,
    BookSnapshot,
    Event,
    EventLifecycle,
    MalformedInput,
    MarketLifecycle,
    OrderFilled,
    OrderStatusReported,
    PositionReported,
    PublicTrade,
    VenueError,
    event_type,
)

from . import convert as cv
from . import messages as m

__all__ = [
    "BUFFER_OVERFLOW",
    "CHANNEL_ERROR",
    "MARKET_TICKER_REQUIRED",
    "MULTIPLE_SIDS",
    "SOURCE",
    "TERMINAL_ERRORS",
    "BadCommand",
    "WsDecoder",
    "WsFrame",
    "decode_command",
    "decode_ws",
    "encode",
    "encode_event",
    "list_subscriptions",
    "subscribe",
    "unsubscribe",
    "update_subscription",
]

SOURCE: Final = "kalshi.ws"

# error codes of an ``error`` reply (kalshi-protocol.md)
CHANNEL_ERROR: Final = 10  # terminal: resubscribe
MULTIPLE_SIDS: Final = 12  # update_subscription named more than one sid
MARKET_TICKER_REQUIRED: Final = 14  # order book subscriptions need explicit tickers
BUFFER_OVERFLOW: Final = 25  # terminal: resubscribe
TERMINAL_ERRORS: Final = frozenset({CHANNEL_ERROR, BUFFER_OVERFLOW})

MAX_ERROR_CHARS: Final = 1_000  # an error message quoting a huge value is cut here

# What decoding bad input raises: msgspec's DecodeError (a ValueError only from msgspec 0.21 on), the
# UnicodeDecodeError that msgspec up to 0.22 raises on bytes that are not UTF-8, and RecursionError.
DECODE_ERRORS: Final = (msgspec.DecodeError, ValueError, RecursionError)

_ENCODER = msgspec.json.Encoder()
_NO_EVENTS: tuple[Event, ...] = ()
_TAGS: dict[type, str] = {cls: cls.__struct_config__.tag for cls in m.WsMessage.__args__}  # type: ignore[attr-defined]


def encode(message: Struct) -> bytes:
    """The JSON of any wire Struct (optional fields left unset are omitted)."""
    return _ENCODER.encode(message)


# --- decoding frames ----------------------------------------------------------------------------------
class WsFrame(Struct, frozen=True, gc=False):
    """One decoded WebSocket frame.

    ``events`` go to the sequencer (stamped ``received_ns``). ``type``, ``sid`` and ``seq`` are read
    even from a frame that failed to decode, when its envelope could be read, so the client can keep
    its per-subscription sequence and resync a book whose delta was malformed. ``message`` is the
    typed wire message (None if the frame did not decode).
    """

    received_ns: int
    events: tuple[Event, ...]
    type: str | None = None
    sid: int | None = None
    seq: int | None = None
    message: m.WsMessage | None = None

    @property
    def malformed(self) -> bool:
        """True if the frame could not be turned into events (its one event is ``MalformedInput``)."""
        return bool(self.events) and type(self.events[0]) is MalformedInput


class WsDecoder:
    """Decodes the frames of one connection; holds its options and never raises on bad input."""

    __slots__ = ("_convert", "legacy", "source", "use_yes_price")

    def __init__(self, source: str = SOURCE, *, legacy: bool = False, use_yes_price: bool = False) -> None:
        self.source = source
        self.legacy = legacy
        self.use_yes_price = use_yes_price
        self._convert: dict[type, Callable[[Any], tuple[Event, ...]]] = {
            m.OrderbookDelta: self._delta,
            m.OrderbookSnapshot: self._snapshot,
            m.Trade: lambda f: (cv.trade_event(f, legacy=legacy),),
            m.Fill: lambda f: (cv.fill_event(f.msg, "fill.msg", legacy=legacy),),
            m.UserOrder: lambda f: (cv.order_event(f.msg, "user_order.msg", legacy=legacy),),
            m.MarketPosition: lambda f: (cv.position_event(f.msg, "market_position.msg", legacy=legacy),),
            m.MarketLifecycleV2: self._lifecycle,
            m.EventLifecycle: lambda f: (cv.event_lifecycle_event(f),),
            m.Ticker: self._ticker,
            m.Error: lambda f: (VenueError(where=source, message=f.msg.msg, code=f.msg.code),),
            m.Subscribed: lambda f: _NO_EVENTS,
            m.Ok: lambda f: _NO_EVENTS,
            m.Unsubscribed: lambda f: _NO_EVENTS,
        }

    def __repr__(self) -> str:
        return f"WsDecoder(source={self.source!r}, legacy={self.legacy}, use_yes_price={self.use_yes_price})"

    def _delta(self, f: m.OrderbookDelta) -> tuple[Event, ...]:
        return (cv.delta_event(f, legacy=self.legacy, use_yes_price=self.use_yes_price),)

    def _snapshot(self, f: m.OrderbookSnapshot) -> tuple[Event, ...]:
        return (cv.snapshot_event(f, legacy=self.legacy, use_yes_price=self.use_yes_price),)

    def _lifecycle(self, f: m.MarketLifecycleV2) -> tuple[Event, ...]:
        event = cv.lifecycle_event(f, legacy=self.legacy)
        return _NO_EVENTS if event is None else (event,)

    @staticmethod
    def _ticker(f: m.Ticker) -> tuple[Event, ...]:
        cv.check_ticker(f)
        return _NO_EVENTS

    def decode(self, raw: bytes | str, received_ns: int) -> WsFrame:
        """One text frame -> its events and envelope; bad input becomes a ``MalformedInput`` event."""
        try:
            frame = m.WS_MESSAGES.decode(raw)
        except DECODE_ERRORS as exc:
            return self._undecodable(raw, received_ns, exc)
        kind = frame.__class__
        tag = _TAGS[kind]
        if kind is m.Subscribed:
            sid, seq = frame.msg.sid, None
        else:
            sid, seq = getattr(frame, "sid", None), getattr(frame, "seq", None)
        try:
            events = self._convert[kind](frame)
        except ValueError as exc:  # WireError and UnitError name the field
            events = (MalformedInput(source=self.source, raw=_bytes(raw), error=clip(str(exc))),)
        return WsFrame(received_ns, events, tag, sid, seq, frame)

    def _undecodable(self, raw: bytes | str, received_ns: int, exc: Exception) -> WsFrame:
        tag = sid = seq = None
        try:
            env = m.ENVELOPE.decode(raw)
        except DECODE_ERRORS:
            pass
        else:
            tag = env.type if type(env.type) is str else None
            sid = env.sid if type(env.sid) is int else None
            seq = env.seq if type(env.seq) is int else None
        if tag is not None and tag not in m.WS_TYPES:
            error = f"frame.type: unknown message type {tag!r}"
        else:
            error = describe(exc, tag or "frame", raw)
        event = MalformedInput(source=self.source, raw=_bytes(raw), error=clip(error))
        return WsFrame(received_ns, (event,), tag, sid, seq, None)


_DEFAULT_DECODERS: dict[tuple[str, bool, bool], WsDecoder] = {}


def decode_ws(raw: bytes | str, received_ns: int, source: str = SOURCE, *, legacy: bool = False,
              use_yes_price: bool = False) -> WsFrame:
    """:meth:`WsDecoder.decode` with a decoder for these options (built once per distinct options)."""
    key = (source, legacy, use_yes_price)
    decoder = _DEFAULT_DECODERS.get(key)
    if decoder is None:
        decoder = _DEFAULT_DECODERS[key] = WsDecoder(source, legacy=legacy, use_yes_price=use_yes_price)
    return decoder.decode(raw, received_ns)


def describe(exc: BaseException, prefix: str, raw: bytes | str) -> str:
    """A decode error of ``raw`` as ``prefix.path: reason`` (msgspec's ``- at `$.path``` moved to the front),
    or as ``invalid JSON: …`` carrying msgspec's words. Bytes that are not UTF-8 are named by their offset in
    ``raw`` (``invalid JSON: not UTF-8 at byte 42 (…)``): msgspec's words for them name no offset in the
    input, and change between its versions."""
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    if isinstance(exc, msgspec.ValidationError):
        reason, sep, at = str(exc).rpartition(" - at `")
        if sep:
            return f"{prefix}{at.rstrip('`').removeprefix('$')}: {reason}"
        return f"{prefix}: {exc}"
    try:
        _bytes(raw).decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"invalid JSON: not UTF-8 at byte {bad.start} ({exc})"
    return f"invalid JSON: {exc}"


def _bytes(raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass")
    return bytes(raw)


def clip(text: str) -> str:
    """An error message cut to :data:`MAX_ERROR_CHARS`."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# --- encoding frames (the exchange) ----------------------------------------------------------------------
def encode_event(event: Event, *, sid: int, seq: int | None = None, use_yes_price: bool = False,
                 market_id: str | None = None) -> bytes:
    """The data frame that carries ``event`` on subscription ``sid``.

    ``seq`` is written for book and trade frames (the only ones that have one). The event's own
    ``sid``/``venue_seq`` are ignored: a subscription's numbers are the connection's. Order updates are
    written from ``OrderStatusReported`` (any status), positions from ``PositionReported``.
    """
    kind = type(event)
    frame: Struct
    if kind is BookDelta:
        frame = cv.delta_frame(event, sid=sid, seq=seq, use_yes_price=use_yes_price, market_id=market_id)  # type: ignore[arg-type]
    elif kind is BookSnapshot:
        frame = cv.snapshot_frame(event, sid=sid, seq=seq, use_yes_price=use_yes_price, market_id=market_id)  # type: ignore[arg-type]
    elif kind is PublicTrade:
        frame = cv.trade_frame(event, sid=sid, seq=seq)  # type: ignore[arg-type]
    elif kind is OrderFilled:
        frame = m.Fill(sid=sid, msg=cv.fill_msg(event))  # type: ignore[arg-type]
    elif kind is OrderStatusReported:
        frame = m.UserOrder(sid=sid, msg=cv.order_msg(event))  # type: ignore[arg-type]
    elif kind is PositionReported:
        frame = m.MarketPosition(sid=sid, msg=cv.position_msg(event))  # type: ignore[arg-type]
    elif kind is MarketLifecycle:
        frame = cv.lifecycle_frame(event, sid=sid)  # type: ignore[arg-type]
    elif kind is EventLifecycle:
        frame = cv.event_lifecycle_frame(event, sid=sid)  # type: ignore[arg-type]
    else:
        raise TypeError(f"no Kalshi WebSocket frame carries a {event_type(event)} event")
    return _ENCODER.encode(frame)


# --- commands -------------------------------------------------------------------------------------------
def subscribe(id: int, channels: Iterable[str], markets: Iterable[str] = (), *, use_yes_price: bool) -> bytes:
    """A ``subscribe`` command; ``markets`` go in ``market_tickers`` (none: every market the channel has)."""
    tickers = list(markets)
    params = m.SubscribeParams(channels=list(channels), market_tickers=tickers if tickers else msgspec.UNSET,
                               use_yes_price=use_yes_price)
    return _ENCODER.encode(m.Subscribe(id=id, params=params))


def unsubscribe(id: int, sids: Iterable[int]) -> bytes:
    return _ENCODER.encode(m.Unsubscribe(id=id, params=m.UnsubscribeParams(sids=list(sids))))


def list_subscriptions(id: int) -> bytes:
    return _ENCODER.encode(m.ListSubscriptions(id=id))


def update_subscription(id: int, sid: int, action: str, markets: Iterable[str] = ()) -> bytes:
    """An ``update_subscription`` for exactly one sid: ``add_markets``, ``delete_markets`` or ``get_snapshot``."""
    tickers = list(markets)
    params = m.UpdateSubscriptionParams(action=action, sids=[sid], market_tickers=tickers or None)  # type: ignore[arg-type]
    return _ENCODER.encode(m.UpdateSubscription(id=id, params=params))


class BadCommand(Struct, frozen=True):
    """A client command that could not be read; ``id`` when it could be salvaged, for the error reply."""

    id: int | None
    error: str


class _CommandEnvelope(Struct, frozen=True):
    id: Any = None
    cmd: Any = None


_COMMAND_ENVELOPE = msgspec.json.Decoder(_CommandEnvelope)
_COMMANDS: frozenset[str] = frozenset(c.__struct_config__.tag for c in m.WsCommand.__args__)  # type: ignore[attr-defined]


def decode_command(raw: bytes | str) -> m.WsCommand | BadCommand:
    """A client's command, or a :class:`BadCommand` naming what is wrong (never an exception)."""
    try:
        return m.WS_COMMANDS.decode(raw)
    except DECODE_ERRORS as exc:
        failure: BaseException = exc
    cid = cmd = None
    try:
        env = _COMMAND_ENVELOPE.decode(raw)
    except DECODE_ERRORS:
        pass
    else:
        cid = env.id if type(env.id) is int else None
        cmd = env.cmd if type(env.cmd) is str else None
    if cmd is not None and cmd not in _COMMANDS:
        return BadCommand(id=cid, error=clip(f"command.cmd: unknown command {cmd!r}"))
    return BadCommand(id=cid, error=clip(describe(failure, cmd or "command", raw)))
