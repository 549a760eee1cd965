"""The local exchange's WebSocket (see :mod:`.server` for the protocol and its error codes): a connection
(:class:`_Conn`, with its bounded send queue and writer) and its subscriptions (:class:`_Sub`), and
:class:`WsApi`, the upgrade handler and command handling that :class:`.server.ExchangeServer` inherits.

It sends the shapes Kalshi sends (``kalshi-protocol.md``): deltas with ``ts_ms`` and ``ts`` as an ISO-8601
string, and with ``client_order_id`` only on a connection whose owner's order caused the change; trades with
``ts_ms`` and ``ts`` in Unix seconds; on ``market_lifecycle_v2``, an ``event_lifecycle`` frame for a market's
event (each sim market is its own event, of the series before the ticker's first ``-``) before the market's
``activated`` frame; and the ``ticker`` channel: after each trade or change of a market's book, a ``ticker``
frame (top of book, last price, volume; ``ts_ms`` and ``ts`` in seconds) when one of them differs from the
last the subscription got — the market as it stands when the frame is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import WSMsgType, web

from runtime.events import (
    BookDelta,
    BookSnapshot,
    Event,
    EventLifecycle,
    MarketLifecycle,
    OrderFilled,
    OrderStatusReported,
    PositionReported,
    PublicTrade,
)

from ..kalshi import codec
from ..kalshi import convert as cv
from ..kalshi import messages as m
from .exchange import Exchange
from .faults import FaultError, Faults, FaultState
from .rest_api import _OWNER, _error, _log

# WebSocket error codes (Kalshi's numbering; 10, 12, 14 and 25 are the codec's)
UNABLE_TO_PROCESS: Final = 1
PARAMS_REQUIRED: Final = 2
CHANNELS_REQUIRED: Final = 3
SIDS_REQUIRED: Final = 4
UNKNOWN_COMMAND: Final = 5
UNKNOWN_SID: Final = 7
UNKNOWN_CHANNEL: Final = 8
INVALID_PARAMETER: Final = 11
UNSUPPORTED_ACTION: Final = 13
ACTION_REQUIRED: Final = 15

BOOK, TRADE, FILL, ORDERS, POSITIONS, LIFECYCLE, TICKER = (
    "orderbook_delta", "trade", "fill", "user_orders", "market_positions", "market_lifecycle_v2", "ticker")
CHANNELS: Final = (BOOK, TRADE, FILL, ORDERS, POSITIONS, LIFECYCLE, TICKER)
_FEEDS: Final = {TICKER: (BOOK, TRADE)}  # a ticker subscription is fed the book and trade events
_ALIASES: Final = {"user_order": ORDERS, "market_position": POSITIONS}
_PRIVATE: Final = frozenset({FILL, ORDERS, POSITIONS})
_CHANNEL_OF: Final[dict[type, str]] = {BookSnapshot: BOOK, BookDelta: BOOK, PublicTrade: TRADE, MarketLifecycle: LIFECYCLE,
                                       OrderFilled: FILL, OrderStatusReported: ORDERS, PositionReported: POSITIONS}
_WIRE_TYPE: Final[dict[type, str]] = {BookSnapshot: "orderbook_snapshot", BookDelta: "orderbook_delta", PublicTrade: "trade",
                                      MarketLifecycle: "market_lifecycle_v2", OrderFilled: "fill",
                                      OrderStatusReported: "user_order", PositionReported: "market_position"}
_ABORT: Final = object()  # a queue marker: close the connection abruptly here (the drop fault)


class _Sub:
    """One subscription of one connection."""

    __slots__ = ("channel", "live", "markets", "sent", "seq", "seqd", "sid", "use_yes_price")

    def __init__(self, sid: int, channel: str, markets: set[str] | None, use_yes_price: bool) -> None:
        self.sid = sid
        self.channel = channel
        self.markets = markets  # None: every market
        self.use_yes_price = use_yes_price
        self.seqd = channel in (BOOK, TRADE)
        self.seq = 0
        self.live = True
        self.sent: dict[str, Any] = {}  # ticker: each market's last state sent; lifecycle: events announced

    def wants(self, market: str) -> bool:
        return self.markets is None or market in self.markets


class _Conn:
    """One WebSocket connection: its subscriptions, its bounded send queue and writer, its faults."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, owner: str, faults: Faults, limit: int,
                 exchange: Exchange) -> None:
        self.ws = ws
        self.exchange = exchange
        self.market_ids = exchange.market_ids
        self.transport = transport
        self.owner = owner
        self.faults = faults
        self.fault = FaultState(faults) if faults.any else None
        self.limit = limit
        self.subs: dict[int, _Sub] = {}
        self.by_channel: dict[str, list[_Sub]] = {c: [] for c in CHANNELS}
        self.next_sid = 1
        self.queue: deque[bytes | object] = deque()  # frames, and perhaps _ABORT
        self.wake = asyncio.Event()
        self.closing = False
        self.sent = 0  # frames written

    # --- queueing ------------------------------------------------------------------------------------
    def reply(self, message: msgspec.Struct) -> None:
        """A reply or error: never refused by the bound (it is small and answers the client)."""
        self._put(codec.encode(message))

    def _put(self, frame: bytes | object) -> None:
        if self.closing:
            return
        self.queue.append(frame)
        if not self.wake.is_set():
            self.wake.set()

    def data(self, sub: _Sub, event: Event) -> None:
        """Queue the data frame of ``event`` on ``sub``, applying the connection's faults."""
        if self.closing or not sub.live:
            return
        kind = type(event)
        if sub.channel == TICKER:
            self._ticker(sub, event.market)  # type: ignore[attr-defined]
            return
        if kind is BookDelta and event.client_order_id is not None and not self.exchange.owns(  # type: ignore[attr-defined]
                self.owner, event.client_order_id):  # type: ignore[attr-defined]
            event = msgspec.structs.replace(event, client_order_id=None)  # type: ignore[type-var]
        elif kind is MarketLifecycle and event.kind == "activated":  # type: ignore[attr-defined]
            self._announce(sub, event)  # type: ignore[arg-type]
        seq = None
        fault = self.fault
        if sub.seqd:
            sub.seq = seq = sub.seq + 1
            if fault is not None and kind is not BookSnapshot and fault.lose(sub.sid):
                return
        if len(self.queue) >= self.limit:
            _log().warning("send queue full: subscription dropped", owner=self.owner, sid=sub.sid,
                           channel=sub.channel, queued=len(self.queue))
            self.end(sub, codec.BUFFER_OVERFLOW, "Subscription buffer overflow: the client reads too slowly")
            return
        frame = codec.encode_event(event, sid=sub.sid, seq=seq, use_yes_price=sub.use_yes_price,
                                   market_id=self.market_ids.get(event.market) if sub.channel == BOOK else None)  # type: ignore[attr-defined]
        if fault is None:
            self.queue.append(frame)
            if not self.wake.is_set():
                self.wake.set()
            return
        for _ in range(fault.copies(kind is OrderFilled)):
            self._put(frame)
        action = fault.sent()
        bad = fault.malformed_after(frame, _WIRE_TYPE[kind], sub.sid)
        if bad is not None:
            self._put(bad)
        if action == "error25":
            self.end(sub, codec.BUFFER_OVERFLOW, "Subscription buffer overflow (injected fault)")
        elif action == "drop":
            self._put(_ABORT)
            self.closing = True

    def _ticker(self, sub: _Sub, market: str) -> None:
        """A ``ticker`` frame for ``market`` if its state differs from the last one this subscription got."""
        state = self.exchange.ticker(market)
        if state is None or sub.sent.get(market) == state:
            return
        if len(self.queue) >= self.limit:
            self.end(sub, codec.BUFFER_OVERFLOW, "Subscription buffer overflow: the client reads too slowly")
            return
        sub.sent[market] = state
        ts_ms = self.exchange.now_ns // 1_000_000
        frame = cv.ticker_frame(market, sid=sub.sid, last_price=state.last_price, yes_bid=state.yes_bid,
                                yes_ask=state.yes_ask, yes_bid_size=state.yes_bid_size,
                                yes_ask_size=state.yes_ask_size, volume=state.volume, ts_ms=ts_ms,
                                market_id=self.market_ids.get(market))
        self._put(codec.encode(frame))

    def _announce(self, sub: _Sub, activated: MarketLifecycle) -> None:
        """The ``event_lifecycle`` frame of a market's event, once per subscription, before it opens."""
        market = activated.market
        if market in sub.sent:
            return
        sub.sent[market] = True
        close = activated.close_ts_ms
        event = EventLifecycle(event_ticker=market, series_ticker=market.partition("-")[0], title=market,
                               subtitle="", collateral_return_type="", strike_date_ms=close,
                               venue_ts_ms=activated.venue_ts_ms)
        self._put(codec.encode_event(event, sid=sub.sid))

    def error(self, id: int | None, code: int, message: str) -> None:
        self.reply(m.Error(id=id, msg=m.ErrorMsg(code=code, msg=codec.clip(message))))

    # --- subscriptions ---------------------------------------------------------------------------------
    def add(self, channel: str, markets: set[str] | None, use_yes_price: bool) -> _Sub:
        sub = _Sub(self.next_sid, channel, markets, use_yes_price)
        self.next_sid += 1
        self.subs[sub.sid] = sub
        for fed in _FEEDS.get(channel, (channel,)):
            self.by_channel[fed].append(sub)
        return sub

    def remove(self, sub: _Sub) -> None:
        sub.live = False
        if self.subs.pop(sub.sid, None) is not None:
            for fed in _FEEDS.get(sub.channel, (sub.channel,)):
                self.by_channel[fed].remove(sub)

    def end(self, sub: _Sub, code: int, message: str) -> None:
        """A terminal error for one subscription: it is dropped and told so (the frame names its sid)."""
        self.remove(sub)
        self.reply(m.Error(msg=m.ErrorMsg(code=code, msg=message), sid=sub.sid))

    # --- the writer ------------------------------------------------------------------------------------
    async def write(self) -> None:
        """Write queued frames in order until the connection closes (``slow_ms`` before each)."""
        ws, queue, wake = self.ws, self.queue, self.wake
        slow = self.faults.slow_ms / 1000
        text = WSMsgType.TEXT
        try:
            while True:
                if not queue:
                    wake.clear()
                    await wake.wait()
                    continue
                frame = queue.popleft()
                if frame is _ABORT:
                    _log().info("fault: connection dropped", owner=self.owner, frames=self.sent)
                    self.transport.abort()
                    return
                if slow:
                    await asyncio.sleep(slow)
                await ws.send_frame(frame, text)  # type: ignore[arg-type]
                self.sent += 1
        except (ConnectionError, RuntimeError):  # the peer went away (aiohttp raises both kinds)
            self.closing = True


class WsApi:
    """The WebSocket side of :class:`.server.ExchangeServer`, which inherits it (and provides ``exchange``,
    ``faults``, ``ping_interval_s``, ``queue_limit``, ``_conns``, ``_tick`` and ``_spawn``)."""

    exchange: Exchange
    faults: Faults
    ping_interval_s: float
    queue_limit: int
    _conns: list[_Conn]

    if TYPE_CHECKING:
        def _tick(self) -> bool: ...

        def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]: ...

    # --- WebSocket --------------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        spec = request.query.get("faults")
        if spec is not None:
            try:
                faults = Faults.parse(spec)
            except FaultError as exc:
                return _error(400, "bad_request", f"?faults={spec}: {exc}")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws, request.transport, request[_OWNER], faults, self.queue_limit, self.exchange)
        self._conns.append(conn)
        _log().debug("websocket connected", owner=conn.owner, faults=str(faults) or None)
        writer = self._spawn(conn.write(), "exchange-ws-writer")
        pinger = self._spawn(self._ping(conn), "exchange-ws-ping")
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        self._command(conn, msg.data)
                    except Exception:  # a bug answering one command must not end the connection
                        _log().exception("websocket command failed", owner=conn.owner)
                        conn.error(None, UNABLE_TO_PROCESS, "the exchange failed to process the command")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:  # the peer left, or the server stops: what is still queued has nobody to go to
            conn.closing = True
            if conn in self._conns:
                self._conns.remove(conn)
            pinger.cancel()
            writer.cancel()
            _log().debug("websocket closed", owner=conn.owner, frames=conn.sent, code=ws.close_code)
        return ws

    async def _ping(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not conn.closing:
                await asyncio.sleep(self.ping_interval_s)
                await conn.ws.ping(b"heartbeat")

    def _command(self, conn: _Conn, raw: str | bytes) -> None:
        """Answer one client command; a bad one gets an ``error`` reply and changes nothing."""
        command = codec.decode_command(raw)
        if isinstance(command, codec.BadCommand):
            code = _bad_command_code(raw)
            _log().debug("bad websocket command", owner=conn.owner, code=code, error=command.error)
            conn.error(command.id, code, command.error)
            return
        self._tick()
        if isinstance(command, m.Subscribe):
            self._subscribe(conn, command)
        elif isinstance(command, m.Unsubscribe):
            self._unsubscribe(conn, command)
        elif isinstance(command, m.ListSubscriptions):
            conn.reply(m.Ok(id=command.id, msg=[_describe(s) for s in conn.subs.values()]))
        else:
            self._update(conn, command)

    def _markets_of(self, conn: _Conn, id: int, single: str | None, many: Sequence[str] | None) -> list[str] | None:
        """The tickers a command names (deduplicated, in order), or None after an error reply."""
        tickers = list(dict.fromkeys([*(many or ()), *(() if not single else (single,))]))
        unknown = [t for t in tickers if self.exchange.market(t) is None]
        if unknown:
            conn.error(id, INVALID_PARAMETER, f"market ticker {unknown[0]!r} not found")
            return None
        return tickers

    def _subscribe(self, conn: _Conn, command: m.Subscribe) -> None:
        p, id = command.params, command.id
        if not p.channels:
            conn.error(id, CHANNELS_REQUIRED, "Channels required")
            return
        channels = [_ALIASES.get(c, c) for c in p.channels]
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            conn.error(id, UNKNOWN_CHANNEL, f"Unknown channel name {unknown[0]!r}")
            return
        single = p.market_ticker if isinstance(p.market_ticker, str) else None
        many = p.market_tickers if isinstance(p.market_tickers, list) else None
        tickers = self._markets_of(conn, id, single, many)
        if tickers is None:
            return
        if BOOK in channels and not tickers:
            conn.error(id, codec.MARKET_TICKER_REQUIRED, "Market ticker required: orderbook_delta needs market tickers")
            return
        for channel in dict.fromkeys(channels):
            sub = conn.add(channel, set(tickers) if tickers else None, p.use_yes_price)
            conn.reply(m.Subscribed(id=id, msg=m.SubscribedMsg(channel=channel, sid=sub.sid)))
            if channel == BOOK:
                self._snapshots(conn, sub, tickers)
        _log().debug("subscribed", owner=conn.owner, channels=channels, markets=len(tickers))

    def _snapshots(self, conn: _Conn, sub: _Sub, tickers: Iterable[str]) -> None:
        for ticker in tickers:
            book = self.exchange.book(ticker)
            if book is not None:
                conn.data(sub, book)

    def _unsubscribe(self, conn: _Conn, command: m.Unsubscribe) -> None:
        sids = command.params.sids
        if not sids:
            conn.error(command.id, SIDS_REQUIRED, "Subscription IDs required")
            return
        unknown = [s for s in sids if s not in conn.subs]
        if unknown:
            conn.error(command.id, UNKNOWN_SID, f"Unknown subscription ID {unknown[0]}")
            return
        for sid in dict.fromkeys(sids):
            sub = conn.subs[sid]
            conn.remove(sub)
            conn.reply(m.Unsubscribed(id=command.id, sid=sid, seq=sub.seq if sub.seqd else None))

    def _update(self, conn: _Conn, command: m.UpdateSubscription) -> None:
        p, id = command.params, command.id
        sids = p.sid_list()
        if len(sids) != 1:
            conn.error(id, codec.MULTIPLE_SIDS, f"Exactly one subscription ID is required, got {len(sids)}")
            return
        sub = conn.subs.get(sids[0])
        if sub is None:
            conn.error(id, UNKNOWN_SID, f"Unknown subscription ID {sids[0]}")
            return
        tickers = self._markets_of(conn, id, p.market_ticker, p.market_tickers)
        if tickers is None:
            return
        if p.action == "get_snapshot":
            if sub.channel != BOOK:
                conn.error(id, UNSUPPORTED_ACTION, f"get_snapshot is for orderbook_delta, not {sub.channel}")
                return
            wanted = [t for t in tickers if sub.wants(t)] if tickers else sorted(sub.markets or ())
            conn.reply(m.Ok(id=id, sid=sub.sid, msg={"market_tickers": sorted(sub.markets or ())}))
            self._snapshots(conn, sub, wanted)
            return
        if not tickers:
            conn.error(id, codec.MARKET_TICKER_REQUIRED, f"Market ticker required: {p.action} needs market tickers")
            return
        if p.action == "add_markets":
            added = [t for t in tickers if sub.markets is not None and t not in sub.markets]
            if sub.markets is not None:
                sub.markets.update(tickers)
        else:
            added = []
            if sub.markets is None:  # a channel of every market becomes one of all the others
                sub.markets = set(self.exchange.tickers)
            sub.markets.difference_update(tickers)
        markets = sorted(self.exchange.tickers if sub.markets is None else sub.markets)
        conn.reply(m.Ok(id=id, sid=sub.sid, msg={"market_tickers": markets}))  # no seq: clients read it two ways
        if sub.channel == BOOK:
            self._snapshots(conn, sub, added)


def _describe(sub: _Sub) -> dict[str, Any]:
    out: dict[str, Any] = {"channel": sub.channel, "sid": sub.sid}
    if sub.markets is not None:
        out["market_tickers"] = sorted(sub.markets)
    return out


class _Loose(msgspec.Struct, frozen=True):
    cmd: Any = None
    params: Any = None


_LOOSE = msgspec.json.Decoder(_Loose)
_NEEDS: Final = {"subscribe": ("channels", CHANNELS_REQUIRED), "unsubscribe": ("sids", SIDS_REQUIRED),
                 "update_subscription": ("action", ACTION_REQUIRED)}
_COMMANDS: Final = frozenset({"subscribe", "unsubscribe", "list_subscriptions", "update_subscription"})


def _bad_command_code(raw: str | bytes) -> int:
    """The Kalshi error code for a command the codec could not read (see :mod:`.server`'s docstring)."""
    try:
        loose = _LOOSE.decode(raw)
    except codec.DECODE_ERRORS:
        return UNABLE_TO_PROCESS
    if loose.cmd not in _COMMANDS:
        return UNKNOWN_COMMAND
    need = _NEEDS.get(loose.cmd)
    if need is None:
        return INVALID_PARAMETER
    if not isinstance(loose.params, dict):
        return PARAMS_REQUIRED
    field, code = need
    if not loose.params.get(field):
        return code
    return INVALID_PARAMETER
